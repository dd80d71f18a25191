package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/ingest/kafkasec/kafkasectest"
	"github.com/streamrec/streamrec/internal/testpki"
)

var kafkaSecurityFlags = []string{"kafka-tls", "kafka-ca", "kafka-cert", "kafka-key", "kafka-sasl-mechanism", "kafka-user", "kafka-password"}
var redisTLSFlags = []string{"redis-ca", "redis-cert", "redis-key"}

// TestSecurityFlagsInHelp: every subcommand that talks to Kafka has the
// --kafka-* flags, every one that talks to Redis the --redis-* TLS flags,
// and the broker its TLS and SASL flags.
func TestSecurityFlagsInHelp(t *testing.T) {
	tests := []struct {
		cmd   string
		flags []string
	}{
		{"ingest", append(kafkaSecurityFlags, redisTLSFlags...)},
		{"learn", append(kafkaSecurityFlags, redisTLSFlags...)},
		{"serve", append(kafkaSecurityFlags, redisTLSFlags...)},
		{"run", append(kafkaSecurityFlags, redisTLSFlags...)},
		{"produce", kafkaSecurityFlags},
		{"replay", kafkaSecurityFlags},
		{"tune", kafkaSecurityFlags},
		{"inspect", redisTLSFlags},
		{"model", redisTLSFlags},
		{"broker", []string{"tls-cert", "tls-key", "sasl-user", "sasl-password"}},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			env, _, errb := testEnv(nil)
			if code := Main(context.Background(), []string{tc.cmd, "--help"}, env); code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, f := range tc.flags {
				if !regexp.MustCompile(`(?m)^\s+-` + f + `\b`).MatchString(errb.String()) {
					t.Errorf("streamrec %s --help lacks --%s", tc.cmd, f)
				}
			}
		})
	}
}

// TestSecurityUsageErrors: bad security settings are usage errors (exit 2,
// one line naming the problem) before anything connects.
func TestSecurityUsageErrors(t *testing.T) {
	pki := testpki.New(t)
	tests := []struct {
		args []string
		vars map[string]string
		msg  string
	}{
		{[]string{"ingest", "--kafka-sasl-mechanism", "gssapi", "--kafka-user", "u", "--kafka-password", "p"}, nil, `unknown SASL mechanism "gssapi"`},
		{[]string{"learn", "--kafka-user", "u"}, nil, "no SASL mechanism"},
		{[]string{"serve", "--kafka-key", pki.ClientKeyFile}, nil, "given without its certificate"},
		{[]string{"produce", "--data", "synthetic:users=2,items=2,events=2", "--kafka-ca", "/nonexistent/ca.pem"}, nil, "CA file: open /nonexistent/ca.pem"},
		{[]string{"ingest", "--kafka-sasl-mechanism", "scram-sha-256"}, map[string]string{"STREAMREC_KAFKA_USER": "u"}, "needs a password"},
		{[]string{"run", "--kafka-tls"}, nil, "apply to external --brokers"},
		{[]string{"replay", "--data", "kafka:127.0.0.1:1/t", "--kafka-sasl-mechanism", "plain", "--kafka-user", "u"}, nil, "SASL plain needs a password"},
		{[]string{"ingest", "--redis-ca", "/nonexistent/ca.pem"}, nil, "redis CA file: open /nonexistent/ca.pem"},
		{[]string{"model", "list", "--redis", "127.0.0.1:1", "--redis-cert", pki.ClientCertFile}, nil, "--redis-cert and --redis-key go together"},
		{[]string{"inspect", "stats", "--redis", "redis://127.0.0.1:1", "--redis-ca", pki.CAFile}, nil, "use rediss://"},
		{[]string{"broker", "--tls-cert", pki.ServerCertFile}, nil, "TLS needs both a certificate and a key file"},
		{[]string{"broker", "--sasl-user", "u"}, nil, "SASL needs both a user and a password"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			env, _, errb := testEnv(tc.vars)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := Main(ctx, tc.args, env); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errb)
			}
			if !strings.Contains(errb.String(), tc.msg) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("stderr %q: want one line with %q", errb, tc.msg)
			}
		})
	}
}

// TestKafkaSecurityCommands runs the commands against a broker that
// requires TLS (a private CA) and SASL SCRAM-SHA-256: produce (password
// from STREAMREC_KAFKA_PASSWORD) publishes a data set, ingest applies it,
// learn trains on it, serve's POST /v1/events reaches ingest through Kafka,
// and replay reads the topic back with a kafka: spec. A wrong password fails
// produce at once with the broker's reason. No output shows the password.
func TestKafkaSecurityCommands(t *testing.T) {
	b := kafkasectest.Start(t, 2)
	sec := []string{"--brokers", b.Addr, "--kafka-ca", b.PKI.CAFile, "--kafka-sasl-mechanism", "scram-sha-256", "--kafka-user", kafkasectest.User}
	withPassword := append(append([]string{}, sec...), "--kafka-password", kafkasectest.Password)
	vars := map[string]string{"STREAMREC_KAFKA_PASSWORD": kafkasectest.Password}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	env, out, errb := testEnv(vars)
	args := append([]string{"produce", "--data", "synthetic:users=20,items=30,events=300,seed=1", "--log-level", "info"}, sec...)
	if code := Main(ctx, args, env); code != 0 {
		t.Fatalf("produce: exit %d; stderr: %s", code, errb)
	}
	m := regexp.MustCompile(`produced (\d+) events`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("produce stdout %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	if !strings.Contains(errb.String(), "sasl scram-sha-256 user="+kafkasectest.User) {
		t.Errorf("produce did not log the security in use: %s", errb)
	}
	logs := errb.String()

	ingestAddrs, stopIngest := startMain(t, append([]string{"ingest", "--metrics-addr", "127.0.0.1:0", "--log-level", "warn"}, withPassword...)...)
	learnAddrs, stopLearn := startMain(t, append([]string{"learn", "--metrics-addr", "127.0.0.1:0", "--models", "pop",
		"--snapshot-every", "200ms", "--log-level", "error"}, withPassword...)...)
	waitFor(t, 30*time.Second, func() bool {
		return metricValue(t, ingestAddrs["metrics"], "streamrec_ingest_events_applied_total") == float64(n)
	})
	waitFor(t, 30*time.Second, func() bool {
		var st struct {
			Events int64 `json:"events_trained"`
		}
		return getJSON("http://"+learnAddrs["metrics"]+"/status", &st) == nil && st.Events == int64(n)
	})

	serveAddrs, stopServe := startServeMain(t, nil, append([]string{"--addr", "127.0.0.1:0", "--log-level", "warn"}, withPassword...)...)
	if code, body := httpDo(t, http.MethodPost, "http://"+serveAddrs["http"]+"/v1/events",
		`{"type":"view","user":"tls-user","item":"i1","ts":1700000000}`); code != http.StatusAccepted {
		t.Fatalf("POST /v1/events over TLS+SASL Kafka: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, func() bool {
		return metricValue(t, ingestAddrs["metrics"], "streamrec_ingest_events_applied_total") == float64(n+1)
	})
	for name, stop := range map[string]func() int{"serve": stopServe, "learn": stopLearn, "ingest": stopIngest} {
		if code := stop(); code != 0 {
			t.Errorf("%s exit %d", name, code)
		}
	}

	env, out, errb = testEnv(vars)
	args = append([]string{"replay", "--data", "kafka:" + b.Addr + "/streamrec.events", "--models", "pop", "--json"}, sec[2:]...)
	if code := Main(ctx, args, env); code != 0 {
		t.Fatalf("replay: exit %d; stderr: %s", code, errb)
	}
	if r := mustReplayJSON(t, out.String()); r.Events != n+1 {
		t.Errorf("replay of the secured topic saw %d events, want %d", r.Events, n+1)
	}
	logs += errb.String()

	const wrong = "not-the-password-42"
	env, _, errb = testEnv(map[string]string{"STREAMREC_KAFKA_PASSWORD": wrong})
	start := time.Now()
	args = append([]string{"produce", "--data", "synthetic:users=2,items=2,events=5", "--log-level", "error"}, sec...)
	if code := Main(ctx, args, env); code != 1 {
		t.Fatalf("produce with a wrong password: exit %d, want 1; stderr: %s", code, errb)
	}
	if !strings.Contains(errb.String(), "SASL Authentication failed") || time.Since(start) > 15*time.Second {
		t.Errorf("produce with a wrong password took %s and said %q; want the SASL reason at once", time.Since(start), errb)
	}
	logs += errb.String()
	if strings.Contains(logs, kafkasectest.Password) || strings.Contains(logs, wrong) {
		t.Error("a password appears in the output")
	}
}

// TestSecuredBrokerCommand: `streamrec broker` with --tls-cert/--tls-key
// and --sasl-user (password from STREAMREC_SASL_PASSWORD) accepts a client
// with the CA and the credentials, and refuses a wrong password.
func TestSecuredBrokerCommand(t *testing.T) {
	pki := testpki.New(t)
	env, out, errb := testEnv(map[string]string{"STREAMREC_SASL_PASSWORD": "pw"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	ready := make(chan map[string]string, 1)
	env.Ready = func(a map[string]string) { ready <- a }
	go func() {
		done <- Main(ctx, []string{"broker", "--addr", "127.0.0.1:0", "--tls-cert", pki.ServerCertFile, "--tls-key", pki.ServerKeyFile,
			"--sasl-user", "dev", "--log-level", "warn"}, env)
	}()
	var addr string
	select {
	case a := <-ready:
		addr = a["kafka"]
	case code := <-done:
		cancel()
		t.Fatalf("broker exited with %d: %s", code, errb)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("broker never became ready")
	}
	good := kafkasec.Config{CAFile: pki.CAFile, SASLMechanism: "scram-sha-512", Username: "dev", Password: "pw"}
	if err := good.Probe(ctx, []string{addr}, 5*time.Second); err != nil {
		t.Errorf("probe with the right credentials: %v", err)
	}
	bad := good
	bad.Password = "nope"
	if err := bad.Probe(ctx, []string{addr}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "SASL Authentication failed") {
		t.Errorf("probe with a wrong password: %v", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("broker exit %d: %s", code, errb)
	}
	if strings.TrimSpace(out.String()) != addr {
		t.Errorf("broker printed %q, want its address %s", out, addr)
	}
}

func TestOpenRedisClientTLSFlags(t *testing.T) {
	pki := testpki.New(t)
	ca := redisTLS{CAFile: pki.CAFile}
	mutual := redisTLS{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}
	tests := []struct {
		name    string
		addr    string
		rt      redisTLS
		roots   bool
		certs   int
		wantErr string
	}{
		{"host:port with a CA is TLS", "127.0.0.1:6380", ca, true, 0, ""},
		{"rediss with a CA", "rediss://:pw@h:6380", ca, true, 0, ""},
		{"rediss with a client certificate", "rediss://h:6380", mutual, true, 1, ""},
		{"cluster with a CA", "a:1,b:2", ca, true, 0, ""},
		{"plaintext URL with a CA", "redis://h:6379", ca, false, 0, "use rediss://"},
		{"key without certificate", "rediss://h:1", redisTLS{KeyFile: pki.ClientKeyFile}, false, 0, "go together"},
		{"unreadable CA", "rediss://h:1", redisTLS{CAFile: "/nonexistent/ca.pem"}, false, 0, "redis CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := openRedisClient(tc.addr, tc.rt)
			if tc.wantErr != "" {
				var ue *usageError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var tlsRoots bool
			var certs int
			switch cc := c.(type) {
			case *redis.Client:
				o := cc.Options()
				tlsRoots, certs = o.TLSConfig != nil && o.TLSConfig.RootCAs != nil, len(o.TLSConfig.Certificates)
			case *redis.ClusterClient:
				o := cc.Options()
				tlsRoots, certs = o.TLSConfig != nil && o.TLSConfig.RootCAs != nil, len(o.TLSConfig.Certificates)
			}
			if tlsRoots != tc.roots || certs != tc.certs {
				t.Errorf("TLS roots %v, %d client certificates; want %v, %d", tlsRoots, certs, tc.roots, tc.certs)
			}
		})
	}
}

// TestRedisTLSCommands: against a real redis-server serving TLS only with a
// certificate of a private CA, the store opens with --redis-ca (rediss://
// and host:port), not without it, and inspect works through it; against one
// requiring client certificates, --redis-cert/--redis-key are needed.
func TestRedisTLSCommands(t *testing.T) {
	pki := testpki.New(t)
	opts := redistest.TLSOptions{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, CAFile: pki.CAFile}
	srv := redistest.StartOptions(t, redistest.Options{TLS: &opts, Password: "pw"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := redisTLS{CAFile: pki.CAFile}
	for _, addr := range []string{srv.URL(), "rediss://:pw@localhost:" + strings.Split(srv.Addr(), ":")[1]} {
		s, err := openStore(ctx, addr, ca, 0, features.DefaultConfig(), zerolog.Nop())
		if err != nil {
			t.Fatalf("openStore %s with --redis-ca: %v", redactRedisAddr(addr), err)
		}
		if _, err := s.Global(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if _, err := openStore(ctx, srv.URL(), redisTLS{}, 0, features.DefaultConfig(), zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("openStore without --redis-ca: %v, want an unknown-authority error", err)
	}

	env, out, errb := testEnv(map[string]string{"STREAMREC_REDIS": srv.URL(), "STREAMREC_REDIS_CA": pki.CAFile})
	if code := Main(ctx, []string{"inspect", "stats"}, env); code != 0 {
		t.Fatalf("inspect over TLS: exit %d; stderr: %s", code, errb)
	}
	var g features.Global
	if err := json.Unmarshal(out.Bytes(), &g); err != nil {
		t.Fatalf("inspect stats output %q: %v", out, err)
	}

	mutual := opts
	mutual.ClientCertFile, mutual.ClientKeyFile = pki.ClientCertFile, pki.ClientKeyFile
	msrv := redistest.StartOptions(t, redistest.Options{TLS: &mutual})
	host := msrv.Addr() // host:port: the TLS flags turn TLS on
	if _, err := openStore(ctx, host, redisTLS{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile},
		0, features.DefaultConfig(), zerolog.Nop()); err != nil {
		t.Errorf("openStore with a client certificate: %v", err)
	}
	if _, err := openStore(ctx, host, ca, 0, features.DefaultConfig(), zerolog.Nop()); err == nil {
		t.Error("openStore without a client certificate succeeded on a server that requires one")
	}
}
