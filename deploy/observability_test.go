package deploy

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promConfig is the subset of Prometheus's configuration we use, decoded
// strictly.
type promConfig struct {
	Global struct {
		ScrapeInterval     string            `json:"scrape_interval"`
		EvaluationInterval string            `json:"evaluation_interval"`
		ExternalLabels     map[string]string `json:"external_labels,omitempty"`
	} `json:"global"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path,omitempty"`
		StaticConfigs []struct {
			Targets []string          `json:"targets"`
			Labels  map[string]string `json:"labels,omitempty"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

func loadPrometheus(t *testing.T) *promConfig {
	t.Helper()
	var cfg promConfig
	mustStrictYAML(t, filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"), &cfg)
	if len(cfg.ScrapeConfigs) == 0 {
		t.Fatal("prometheus.yml: no scrape_configs")
	}
	return &cfg
}

func mustStrictYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type grafanaDatasources struct {
	APIVersion  int `json:"apiVersion"`
	Datasources []struct {
		Name      string            `json:"name"`
		UID       string            `json:"uid"`
		Type      string            `json:"type"`
		Access    string            `json:"access"`
		URL       string            `json:"url"`
		IsDefault bool              `json:"isDefault"`
		Editable  bool              `json:"editable"`
		JSONData  map[string]string `json:"jsonData,omitempty"`
	} `json:"datasources"`
}

type grafanaProviders struct {
	APIVersion int `json:"apiVersion"`
	Providers  []struct {
		Name                  string `json:"name"`
		OrgID                 int    `json:"orgId"`
		Folder                string `json:"folder"`
		Type                  string `json:"type"`
		DisableDeletion       bool   `json:"disableDeletion"`
		AllowUIUpdates        bool   `json:"allowUiUpdates"`
		UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `json:"path"`
			FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
		} `json:"options"`
	} `json:"providers"`
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestGrafanaProvisioning(t *testing.T) {
	var ds grafanaDatasources
	mustStrictYAML(t, filepath.Join(repoRoot, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	var pv grafanaProviders
	mustStrictYAML(t, filepath.Join(repoRoot, "deploy", "grafana", "provisioning", "dashboards", "streamrec.yml"), &pv)
	if ds.APIVersion != 1 || pv.APIVersion != 1 || len(ds.Datasources) != 1 || len(pv.Providers) != 1 {
		t.Fatalf("want apiVersion 1, one datasource and one provider")
	}
	c := loadCompose(t)
	promURL := "http://prometheus:9090"
	if ds.Datasources[0].URL != promURL || c.Services["prometheus"] == nil {
		t.Errorf("datasource URL %q, want %q (the compose service)", ds.Datasources[0].URL, promURL)
	}
	// The provider reads the folder compose mounts the dashboards into.
	g := c.Services["grafana"]
	if g == nil {
		t.Fatal("no grafana service")
	}
	mounted := map[string]string{}
	for _, v := range g.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			mounted[parts[1]] = parts[0]
		}
	}
	if src := mounted[pv.Providers[0].Options.Path]; src != "./deploy/grafana/dashboards" {
		t.Errorf("provider path %s is not where compose mounts ./deploy/grafana/dashboards (%v)", pv.Providers[0].Options.Path, mounted)
	}
	if mounted["/etc/grafana/provisioning"] != "./deploy/grafana/provisioning" {
		t.Errorf("compose does not mount the provisioning folder")
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" && !strings.HasPrefix(home, pv.Providers[0].Options.Path+"/") {
		t.Errorf("home dashboard %s is outside the provisioned folder", home)
	}

	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy", "grafana", "dashboards", "*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards")
	}
	known := sourceMetricNames(t)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", filepath.Base(f), p.ID)
			}
			ids[p.ID] = true
			if p.Datasource.UID != ds.Datasources[0].UID {
				t.Errorf("panel %q uses datasource %q, not the provisioned %q", p.Title, p.Datasource.UID, ds.Datasources[0].UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				for _, m := range queryMetrics(tg.Expr) {
					if !known.has(m) && !known.has(baseMetric(m, known.names)) {
						t.Errorf("panel %q queries %s, which no Go source registers", p.Title, m)
					}
				}
			}
		}
		// The panels the issue asks for.
		var titles []string
		for _, p := range d.Panels {
			titles = append(titles, strings.ToLower(p.Title))
		}
		all := strings.Join(titles, "|")
		for _, want := range []string{"ingest rate", "lag", "dead-letter", "rmse", "hr@10", "snapshot version", "snapshot age", "request rate", "p99"} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: no panel about %q", filepath.Base(f), want)
			}
		}
	}
}

var (
	promIdent   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promStrings = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promGroup   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promMatcher = regexp.MustCompile(`\{[^}]*\}`)
	promRange   = regexp.MustCompile(`\[[^\]]*\]`)
)

// queryMetrics returns the metric names a PromQL expression reads: the
// identifiers that are not functions, keywords or label names.
func queryMetrics(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promGroup.ReplaceAllString(s, " ")
	s = promMatcher.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " ")
		if strings.HasPrefix(rest, "(") || promKeywords[id] {
			continue // a function call or a keyword
		}
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // a number's exponent or unit
		}
		out = append(out, id)
	}
	return out
}

var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "offset": true, "bool": true, "inf": true, "nan": true, "Inf": true, "NaN": true,
}

// baseMetric strips the series suffixes a histogram or summary exposes.
func baseMetric(name string, known map[string]bool) string {
	if known[name] {
		return name
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			return b
		}
	}
	return name
}

func TestQueryMetrics(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`sum by (instance) (rate(streamrec_ingest_events_applied_total{job="x"}[1m]))`, "streamrec_ingest_events_applied_total"},
		{`histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket[5m])))`, "a_seconds_bucket"},
		{`time() - b_timestamp_seconds > 1e3`, "b_timestamp_seconds"},
		{`c / on (instance) group_left d`, "c,d"},
	}
	for _, tc := range tests {
		if got := strings.Join(queryMetrics(tc.expr), ","); got != tc.want {
			t.Errorf("queryMetrics(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// metricName is what a Prometheus metric name looks like in our sources.
var metricName = regexp.MustCompile(`^streamrec_[a-z0-9_]+$`)

// metricSuffix is what a metric name passed to a helper looks like.
var metricSuffix = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// knownMetrics are the metric names the sources register: exact names and
// patterns for names built at run time ("online_hr_at_"+strconv.Itoa(k)).
type knownMetrics struct {
	names    map[string]bool
	patterns []*regexp.Regexp
}

func (k *knownMetrics) has(name string) bool {
	if k.names[name] {
		return true
	}
	for _, p := range k.patterns {
		if p.MatchString(name) {
			return true
		}
	}
	return false
}

// sourceMetricNames collects the metric names registered in the module's
// non-test Go sources: string literals that are whole metric names, and
// Namespace/Subsystem/Name fields of prometheus *Opts literals (constants
// resolved). When Name is a helper's parameter (g := func(name …) { …Opts{
// Namespace: "streamrec", Subsystem: "learner", Name: name} }), every
// name-like literal passed in the enclosing function counts, with
// "prefix_"+expr taken as prefix followed by digits. The Go and process
// collectors' names are added.
func sourceMetricNames(t *testing.T) *knownMetrics {
	t.Helper()
	km := &knownMetrics{names: map[string]bool{
		"up": true, "go_goroutines": true, "go_memstats_heap_alloc_bytes": true,
		"process_cpu_seconds_total": true, "process_resident_memory_bytes": true,
	}}
	fset := token.NewFileSet()
	consts := map[string]string{}
	var files []*ast.File
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != repoRoot && (strings.HasPrefix(n, ".") || n == "testdata" || n == "deploy" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // a file being edited by someone else; its names are not counted
		}
		files = append(files, f)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	str := func(e ast.Expr) string {
		if s, ok := stringLit(e); ok {
			return s
		}
		if id, ok := e.(*ast.Ident); ok {
			return consts[id.Name]
		}
		if sel, ok := e.(*ast.SelectorExpr); ok {
			return consts[sel.Sel.Name]
		}
		return ""
	}
	for _, f := range files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			var helperPrefixes []string
			ast.Inspect(decl, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.BasicLit:
					if s, ok := stringLit(x); ok && metricName.MatchString(s) {
						km.names[s] = true
					}
				case *ast.CompositeLit:
					sel, ok := x.Type.(*ast.SelectorExpr)
					if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
						return true
					}
					var parts [3]string
					nameIsParam := false
					for _, el := range x.Elts {
						kv, ok := el.(*ast.KeyValueExpr)
						if !ok {
							continue
						}
						key, _ := kv.Key.(*ast.Ident)
						if key == nil {
							continue
						}
						switch key.Name {
						case "Namespace":
							parts[0] = str(kv.Value)
						case "Subsystem":
							parts[1] = str(kv.Value)
						case "Name":
							parts[2] = str(kv.Value)
							_, nameIsParam = kv.Value.(*ast.Ident)
						}
					}
					prefix := joinNonEmpty(parts[0], parts[1])
					switch {
					case parts[2] != "":
						km.names[joinNonEmpty(prefix, parts[2])] = true
					case nameIsParam && prefix != "" && !slices.Contains(helperPrefixes, prefix+"_"):
						helperPrefixes = append(helperPrefixes, prefix+"_")
					}
				}
				return true
			})
			if !ok || len(helperPrefixes) == 0 {
				continue
			}
			// Names handed to the helper inside this function.
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				var name, pattern string
				switch a := call.Args[0].(type) {
				case *ast.BasicLit:
					name, _ = stringLit(a)
				case *ast.BinaryExpr:
					if s, ok := stringLit(a.X); ok && a.Op == token.ADD {
						pattern = s
					}
				}
				for _, p := range helperPrefixes {
					if metricSuffix.MatchString(name) {
						km.names[p+name] = true
					}
					if metricSuffix.MatchString(pattern) {
						km.patterns = append(km.patterns, regexp.MustCompile("^"+regexp.QuoteMeta(p+pattern)+"[0-9]+$"))
					}
				}
				return true
			})
		}
	}
	return km
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "_" + b
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func TestSourceMetricNames(t *testing.T) {
	km := sourceMetricNames(t)
	var ours []string
	for n := range km.names {
		if strings.HasPrefix(n, "streamrec_") {
			ours = append(ours, n)
		}
	}
	sort.Strings(ours)
	t.Logf("%d streamrec metrics in the sources: %s; patterns %v", len(ours), strings.Join(ours, " "), km.patterns)
	for _, want := range []string{
		"streamrec_ingest_dlq_total",           // a literal name (ingest/metrics.go)
		"streamrec_learner_online_rmse",        // Namespace+Subsystem+helper argument (learner/stream.go)
		"streamrec_learner_online_hr_at_10",    // "online_hr_at_"+strconv.Itoa(k)
		"streamrec_serve_snapshot_age_seconds", // a GaugeFunc (serve/metrics.go)
	} {
		if !km.has(want) {
			t.Errorf("the scan misses %s", want)
		}
	}
	if km.has("streamrec_learner_no_such_metric") {
		t.Error("the scan accepts a name nobody registers")
	}
}

// TestDockerfile checks the image recipe: a multi-stage static build on a
// distroless non-root base, building what compose's health checks run.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER nonroot",
		`ENTRYPOINT ["/usr/local/bin/streamrec"]`,
		"./cmd/streamrec",
		"./deploy/healthcheck",
		"/out/streamrec-healthcheck",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(df, "\nFROM ") < 1 || !strings.HasPrefix(strings.TrimLeft(df[strings.Index(df, "FROM"):], " "), "FROM golang") {
		t.Errorf("Dockerfile: want a builder stage first")
	}
	// The module version the builder image must provide.
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (1\.\d+)`).FindSubmatch(mod)
	if m == nil || !strings.Contains(df, "golang:"+string(m[1])) {
		t.Errorf("builder image does not match go.mod's go %s", m)
	}
	for _, dir := range []string{"cmd/streamrec", "deploy/healthcheck"} {
		if !fileExists(filepath.Join(repoRoot, dir)) {
			t.Errorf("Dockerfile builds ./%s, which does not exist", dir)
		}
	}
}
