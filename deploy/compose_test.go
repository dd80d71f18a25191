package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// compose is the subset of the Compose Specification that
// docker-compose.yml uses. Decoding is strict: a key not listed here is an
// error, so a typo cannot pass silently when no docker-compose client is
// installed.
type compose struct {
	Services map[string]*composeService `json:"services"`
	Volumes  map[string]*struct{}       `json:"volumes,omitempty"`
}

type composeService struct {
	Image           string                      `json:"image,omitempty"`
	Build           *composeBuild               `json:"build,omitempty"`
	Hostname        string                      `json:"hostname,omitempty"`
	Restart         string                      `json:"restart,omitempty"`
	ReadOnly        bool                        `json:"read_only,omitempty"`
	User            string                      `json:"user,omitempty"`
	StopGracePeriod string                      `json:"stop_grace_period,omitempty"`
	Tmpfs           []string                    `json:"tmpfs,omitempty"`
	Profiles        []string                    `json:"profiles,omitempty"`
	Entrypoint      []string                    `json:"entrypoint,omitempty"`
	Command         []string                    `json:"command,omitempty"`
	Environment     map[string]string           `json:"environment,omitempty"`
	DependsOn       map[string]composeDependsOn `json:"depends_on,omitempty"`
	Ports           []string                    `json:"ports,omitempty"`
	Volumes         []string                    `json:"volumes,omitempty"`
	Healthcheck     *composeHealthcheck         `json:"healthcheck,omitempty"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeDependsOn struct {
	Condition string `json:"condition"`
}

type composeHealthcheck struct {
	Test        []string `json:"test"`
	Interval    string   `json:"interval,omitempty"`
	Timeout     string   `json:"timeout,omitempty"`
	Retries     int      `json:"retries,omitempty"`
	StartPeriod string   `json:"start_period,omitempty"`
}

// oneShot reports whether the service runs to completion instead of
// staying up (so it needs no health check).
func (s *composeService) oneShot() bool { return s.Restart == "no" }

// streamrec reports whether the service runs the streamrec image.
func (s *composeService) streamrec() bool {
	return s.Build != nil && s.Build.Dockerfile == "deploy/Dockerfile"
}

// parseCompose strictly decodes a compose file. YAML is read with yaml.v3,
// which applies merge keys (<<: *anchor, with the service's own keys
// winning, as Compose does) and rejects duplicate keys; the result is decoded
// into the structs with unknown fields rejected. Top-level keys other than
// services and volumes must be x- extension fields (anchors live there).
func parseCompose(data []byte) (*compose, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("compose file as JSON: %w", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, err
	}
	for k := range top {
		if strings.HasPrefix(k, "x-") {
			delete(top, k)
			continue
		}
		if k != "services" && k != "volumes" {
			return nil, fmt.Errorf("unsupported top-level key %q", k)
		}
	}
	rest, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	var c compose
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if len(c.Services) == 0 {
		return nil, fmt.Errorf("no services")
	}
	return &c, nil
}

var dependsConditions = map[string]bool{
	"service_started": true, "service_healthy": true, "service_completed_successfully": true,
}

// checkCompose returns the structural problems of a compose file: broken or
// cyclic dependencies, wrong conditions, services without health checks,
// duplicate host ports, bind mounts of missing files.
func checkCompose(c *compose, root string) []string {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	hostPorts := map[string]string{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.Image == "" && s.Build == nil {
			add("%s: neither image nor build", name)
		}
		if s.Build != nil && !fileExists(filepath.Join(root, s.Build.Context, s.Build.Dockerfile)) {
			add("%s: build file %s/%s missing", name, s.Build.Context, s.Build.Dockerfile)
		}
		if s.Healthcheck == nil && !s.oneShot() {
			add("%s: long-running service without a healthcheck", name)
		}
		if s.Healthcheck != nil {
			if len(s.Healthcheck.Test) < 2 || (s.Healthcheck.Test[0] != "CMD" && s.Healthcheck.Test[0] != "CMD-SHELL") {
				add("%s: healthcheck test %q is not [CMD …] or [CMD-SHELL …]", name, s.Healthcheck.Test)
			}
			for _, d := range []string{s.Healthcheck.Interval, s.Healthcheck.Timeout, s.Healthcheck.StartPeriod} {
				if _, err := time.ParseDuration(d); d != "" && err != nil {
					add("%s: healthcheck duration %q: %v", name, d, err)
				}
			}
		}
		for dep, cond := range s.DependsOn {
			target := c.Services[dep]
			switch {
			case target == nil:
				add("%s: depends on undefined service %q", name, dep)
			case !dependsConditions[cond.Condition]:
				add("%s: depends_on %s has condition %q", name, dep, cond.Condition)
			case cond.Condition == "service_healthy" && target.Healthcheck == nil:
				add("%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case cond.Condition == "service_completed_successfully" && !target.oneShot():
				add("%s: waits for %s to complete, but %s is long-running", name, dep, dep)
			case cond.Condition == "service_started" && target.oneShot():
				add("%s: depends on one-shot %s with service_started; use service_completed_successfully", name, dep)
			case len(target.Profiles) > 0 && len(s.Profiles) == 0:
				add("%s: depends on %s, which only runs in profiles %v", name, dep, target.Profiles)
			}
		}
		for _, p := range s.Ports {
			host := hostPort(p)
			if prev, dup := hostPorts[host]; dup {
				add("host port %s used by %s and %s", host, prev, name)
			}
			hostPorts[host] = name
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") && !fileExists(filepath.Join(root, src)) {
				add("%s: bind mount source %s does not exist", name, src)
			}
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "$") {
				if _, ok := c.Volumes[src]; !ok {
					add("%s: named volume %q is not declared", name, src)
				}
			}
		}
	}
	if cyc := dependencyCycle(c); cyc != "" {
		add("depends_on cycle: %s", cyc)
	}
	return probs
}

// hostPort is the host side of a port mapping "[IP:]HOST:CONTAINER".
func hostPort(mapping string) string {
	parts := strings.Split(mapping, ":")
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ":")
}

func dependencyCycle(c *compose) string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(string) string
	visit = func(n string) string {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range sortedKeys(c.Services[n].DependsOn) {
			if c.Services[d] == nil {
				continue
			}
			switch color[d] {
			case grey:
				return strings.Join(append(stack, d), " → ")
			case white:
				if cyc := visit(d); cyc != "" {
					return cyc
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return ""
	}
	for _, n := range sortedKeys(c.Services) {
		if color[n] == white {
			if cyc := visit(n); cyc != "" {
				return cyc
			}
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func loadCompose(t *testing.T) *compose {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCompose(data)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// TestComposeClient validates docker-compose.yml with the docker-compose
// client (Debian's docker-compose, or the docker compose plugin) when one
// is installed; the strict parse below runs either way.
func TestComposeClient(t *testing.T) {
	var cmd []string
	if p, err := exec.LookPath("docker-compose"); err == nil {
		cmd = []string{p}
	} else if p, err := exec.LookPath("docker"); err == nil && exec.Command(p, "compose", "version").Run() == nil {
		cmd = []string{p, "compose"}
	} else {
		t.Skip("no docker-compose client installed; TestComposeFile checks the file with a strict parse")
	}
	for _, profile := range []string{"", "produce"} {
		args := append(cmd[1:], "-f", filepath.Join(repoRoot, "docker-compose.yml"))
		if profile != "" {
			args = append(args, "--profile", profile)
		}
		args = append(args, "config", "-q")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c := exec.CommandContext(ctx, cmd[0], args...)
		c.Dir = repoRoot
		c.Env = cleanEnv()
		out, err := c.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", cmd[0], strings.Join(args, " "), err, out)
		}
	}
}

func TestParseComposeRejects(t *testing.T) {
	const base = "x-a: &a\n  restart: \"no\"\nservices:\n  s:\n    <<: *a\n    image: x\n"
	tests := []struct {
		name, doc, want string
	}{
		{"valid with anchor", base, ""},
		{"unknown service key", base + "    bogus: 1\n", "unknown field"},
		{"unknown healthcheck key", base + "    healthcheck:\n      test: [CMD, x]\n      intervall: 5s\n", "unknown field"},
		{"unknown top-level key", base + "secrets: {}\n", "unsupported top-level"},
		{"duplicate key", base + "    image: y\n", "already defined"},
		{"override merged key", base + "    restart: always\n", ""},
		{"list environment", base + "    environment:\n      - A=1\n", "cannot unmarshal"},
		{"no services", "volumes: {}\n", "no services"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCompose([]byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want == "" && c.Services["s"].Restart != "no" && !strings.Contains(tc.doc, "restart: always"):
				t.Fatalf("merge key not applied: %+v", c.Services["s"])
			case tc.want == "" && strings.Contains(tc.doc, "restart: always") && c.Services["s"].Restart != "always":
				t.Fatalf("the service's own key must win over the merged one: %+v", c.Services["s"])
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckComposeFindsProblems(t *testing.T) {
	hc := &composeHealthcheck{Test: []string{"CMD", "true"}}
	tests := []struct {
		name string
		svcs map[string]*composeService
		want string
	}{
		{"missing dependency", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"b": {"service_started"}}}}, "undefined service"},
		{"healthy without healthcheck", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"b": {"service_healthy"}}},
			"b": {Image: "x", Restart: "no"}}, "has no healthcheck"},
		{"completed on a daemon", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"b": {"service_completed_successfully"}}},
			"b": {Image: "x", Healthcheck: hc}}, "is long-running"},
		{"no healthcheck", map[string]*composeService{"a": {Image: "x"}}, "without a healthcheck"},
		{"duplicate port", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, Ports: []string{"8080:80"}},
			"b": {Image: "x", Healthcheck: hc, Ports: []string{"8080:8080"}}}, "host port 8080"},
		{"cycle", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"b": {"service_started"}}},
			"b": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"a": {"service_started"}}}}, "cycle"},
		{"bad condition", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, DependsOn: map[string]composeDependsOn{"b": {"service_up"}}},
			"b": {Image: "x", Healthcheck: hc}}, "condition"},
		{"undeclared volume", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, Volumes: []string{"data:/data"}}}, "not declared"},
		{"missing bind source", map[string]*composeService{
			"a": {Image: "x", Healthcheck: hc, Volumes: []string{"./nope/x.yml:/x.yml"}}}, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probs := checkCompose(&compose{Services: tc.svcs}, repoRoot)
			if !strings.Contains(strings.Join(probs, "\n"), tc.want) {
				t.Fatalf("problems %q lack %q", probs, tc.want)
			}
		})
	}
}

func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	for _, p := range checkCompose(c, repoRoot) {
		t.Error(p)
	}

	// The topology the issue asks for.
	var serves []string
	byCommand := map[string][]string{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.streamrec() && len(s.Command) > 0 && len(s.Profiles) == 0 {
			byCommand[s.Command[0]] = append(byCommand[s.Command[0]], name)
			if s.Command[0] == "serve" {
				serves = append(serves, name)
			}
		}
	}
	if len(byCommand["ingest"]) != 1 || len(byCommand["learn"]) != 1 || len(serves) != 2 {
		t.Errorf("want one ingest, one learn and two serve services; have %v", byCommand)
	}
	kafka := c.Services["kafka"]
	if kafka == nil || !strings.HasPrefix(kafka.Image, "apache/kafka:") || !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("kafka: want the apache/kafka image in KRaft mode (process roles with controller)")
	}
	// Kafka formats its storage with CLUSTER_ID, which must be a UUID in
	// unpadded base64url (22 characters, 16 bytes).
	if kafka != nil {
		id, err := base64.RawURLEncoding.DecodeString(kafka.Environment["CLUSTER_ID"])
		if err != nil || len(id) != 16 {
			t.Errorf("kafka: CLUSTER_ID %q is not a base64url UUID (%d bytes, %v)", kafka.Environment["CLUSTER_ID"], len(id), err)
		}
		for _, k := range []string{"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"} {
			if kafka.Environment[k] == "" {
				t.Errorf("kafka: %s is required in KRaft mode", k)
			}
		}
		if !strings.Contains(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"], "kafka:9092") {
			t.Errorf("kafka: containers reach the broker as kafka:9092; advertise it")
		}
	}
	redis := c.Services["redis"]
	if redis == nil || !strings.HasPrefix(redis.Image, "redis:7") || !containsSeq(redis.Command, "--appendonly", "yes") {
		t.Errorf("redis: want Redis 7 with --appendonly yes")
	}
	init := c.Services["kafka-init"]
	if init == nil || !init.oneShot() {
		t.Fatalf("kafka-init: want a one-shot topic creator")
	}
	script := strings.Join(init.Command, " ")
	for _, topic := range []string{"streamrec.events", "streamrec.items", "streamrec.events.dlq"} {
		if !strings.Contains(script, topic) {
			t.Errorf("kafka-init does not create %s", topic)
		}
	}
	if !regexp.MustCompile(`\$\{STREAMREC_PARTITIONS:-\d+\}`).MatchString(init.Environment["PARTITIONS"]) || !strings.Contains(script, `"$$PARTITIONS"`) {
		t.Errorf("kafka-init: partition count must come from ${STREAMREC_PARTITIONS:-N}")
	}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !s.streamrec() {
			continue
		}
		if s.Image != "" && s.Image != c.Services[serves[0]].Image {
			t.Errorf("%s: image %q differs from the serve image", name, s.Image)
		}
		if len(s.Profiles) == 0 {
			for _, need := range []string{"kafka-init", "redis"} {
				if _, ok := s.DependsOn[need]; !ok && s.Command[0] != "produce" {
					t.Errorf("%s: does not wait for %s", name, need)
				}
			}
		}
		// The health check probes the port the command listens on.
		if s.Healthcheck != nil {
			port := listenPort(s.Command, nil, nil)
			probe := strings.Join(s.Healthcheck.Test, " ")
			if port == "" || !strings.Contains(probe, "127.0.0.1:"+port+"/") {
				t.Errorf("%s: healthcheck %q does not probe the command's port %q", name, probe, port)
			}
			if !strings.Contains(probe, "/usr/local/bin/streamrec-healthcheck") {
				t.Errorf("%s: the distroless image has no shell; use /usr/local/bin/streamrec-healthcheck", name)
			}
		}
	}
	prom := c.Services["prometheus"]
	if prom == nil {
		t.Fatal("no prometheus service")
	}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.streamrec() && len(s.Profiles) == 0 {
			if _, ok := prom.DependsOn[name]; !ok {
				t.Errorf("prometheus does not wait for %s", name)
			}
		}
	}
	if g := c.Services["grafana"]; g == nil || g.DependsOn["prometheus"].Condition != "service_healthy" {
		t.Errorf("grafana must wait for a healthy prometheus")
	}
}

// TestComposeCommandLines checks every streamrec service's command and
// STREAMREC_* variables against the real CLI.
func TestComposeCommandLines(t *testing.T) {
	c := loadCompose(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !s.streamrec() {
			continue
		}
		t.Run(name, func(t *testing.T) {
			env := sortedKeys(s.Environment)
			for _, p := range checkInvocation(t, name, s.Command, env) {
				t.Error(p)
			}
		})
	}
}

func containsSeq(xs []string, a, b string) bool {
	for i := 0; i+1 < len(xs); i++ {
		if xs[i] == a && xs[i+1] == b {
			return true
		}
	}
	return false
}

// TestPrometheusScrapesCompose checks that prometheus.yml parses strictly
// and scrapes exactly the long-running streamrec services, each on the port
// its command listens on.
func TestPrometheusScrapesCompose(t *testing.T) {
	cfg := loadPrometheus(t)
	c := loadCompose(t)
	want := map[string]bool{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.streamrec() && len(s.Profiles) == 0 && !s.oneShot() {
			want[name+":"+listenPort(s.Command, nil, nil)] = true
		}
	}
	got := map[string]bool{}
	jobs := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if jobs[sc.JobName] {
			t.Errorf("job %q defined twice", sc.JobName)
		}
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, _, _ := strings.Cut(tg, ":")
				if host != "127.0.0.1" && host != "localhost" && c.Services[host] == nil {
					t.Errorf("job %s scrapes %s, which is no compose service", sc.JobName, tg)
				}
				got[tg] = true
			}
		}
	}
	for tg := range want {
		if !got[tg] {
			t.Errorf("prometheus does not scrape %s", tg)
		}
	}
}
