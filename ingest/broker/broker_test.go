package broker_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/broker"
	"github.com/streamrec/streamrec/internal/testpki"
)

func mustStart(tb testing.TB, cfg broker.Config) *broker.Broker {
	tb.Helper()
	b, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testConfig(dir string) broker.Config {
	cfg := broker.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Partitions = 2
	cfg.DataDir = dir
	return cfg
}

func produce(t *testing.T, addr, topic string, values ...string) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte(v), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// readAll reads every partition of topic from the start up to its end.
func readAll(t *testing.T, addr, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; {
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := pc.ReadMessage(1 << 20)
			if err != nil {
				t.Fatalf("read %s/%d@%d: %v", topic, p.ID, off, err)
			}
			out = append(out, string(m.Value))
			off = m.Offset + 1
		}
		pc.Close()
	}
	return out
}

func TestBrokerTopicsAndRoundTrip(t *testing.T) {
	b := mustStart(t, testConfig(""))
	defer b.Close()
	addrs := b.Addrs()
	if len(addrs) != 1 || strings.HasSuffix(addrs[0], ":0") {
		t.Fatalf("Addrs() = %v, want one bound address", addrs)
	}
	for _, topic := range []string{streamrec.TopicEvents, streamrec.TopicItems, streamrec.TopicDLQ} {
		if n := b.Partitions(topic); n != 2 {
			t.Fatalf("topic %s has %d partitions, want 2", topic, n)
		}
	}
	produce(t, addrs[0], streamrec.TopicEvents, "a", "b", "c")
	got := readAll(t, addrs[0], streamrec.TopicEvents)
	if len(got) != 3 {
		t.Fatalf("read back %v, want 3 records", got)
	}
}

func TestBrokerKcatMetadata(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (CI=true)")
		}
		t.Skip("kcat not installed")
	}
	b := mustStart(t, testConfig(""))
	defer b.Close()
	out, err := exec.Command(kcat, "-b", b.Addrs()[0], "-L", "-t", streamrec.TopicDLQ).CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `topic "streamrec.events.dlq" with 2 partitions`) {
		t.Fatalf("kcat -L output lacks the DLQ topic with 2 partitions:\n%s", out)
	}
}

// TestBrokerTLSAndSASLWithKcat: a broker with TLS (a private CA's
// certificate) and SASL answers kcat (librdkafka) over SASL_SSL with each
// SCRAM mechanism and PLAIN, and refuses a wrong password and plaintext.
func TestBrokerTLSAndSASLWithKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (CI=true)")
		}
		t.Skip("kcat not installed")
	}
	pki := testpki.New(t)
	cfg := testConfig("")
	cfg.TLSCertFile, cfg.TLSKeyFile = pki.ServerCertFile, pki.ServerKeyFile
	cfg.SASLUser, cfg.SASLPassword = "alice", "wonderland"
	b := mustStart(t, cfg)
	defer b.Close()
	list := func(protocol, mech, pass string) (string, error) {
		wait := "3" // seconds kcat waits for metadata
		if pass != "wonderland" || protocol != "SASL_SSL" {
			wait = "1" // expected to fail
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kcat, "-b", b.Addrs()[0], "-L", "-t", streamrec.TopicEvents, "-m", wait,
			"-X", "security.protocol="+protocol, "-X", "sasl.mechanisms="+mech,
			"-X", "sasl.username=alice", "-X", "sasl.password="+pass, "-X", "ssl.ca.location="+pki.CAFile).CombinedOutput()
		return string(out), err
	}
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"} {
		out, err := list("SASL_SSL", mech, "wonderland")
		if err != nil || !strings.Contains(out, `topic "streamrec.events" with 2 partitions`) {
			t.Errorf("kcat -L over SASL_SSL %s: %v\n%s", mech, err, out)
		}
	}
	if out, err := list("SASL_SSL", "SCRAM-SHA-256", "wrong"); err == nil || !strings.Contains(out, "SASL authentication error") {
		t.Errorf("kcat -L with a wrong password: %v\n%s", err, out)
	}
	if out, err := list("SASL_PLAINTEXT", "SCRAM-SHA-256", "wonderland"); err == nil {
		t.Errorf("kcat -L in plaintext to the TLS listener succeeded:\n%s", out)
	}
}

func TestBrokerDataDirPersists(t *testing.T) {
	dir := t.TempDir()
	b := mustStart(t, testConfig(dir))
	addr := b.Addrs()[0]
	produce(t, addr, streamrec.TopicEvents, "x", "y")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(dir)
	cfg.Addr = addr // clients remember the address; reuse it
	b2, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		// The port may have been taken in between; a free one will do.
		cfg.Addr = "127.0.0.1:0"
		b2 = mustStart(t, cfg)
	}
	defer b2.Close()
	got := readAll(t, b2.Addrs()[0], streamrec.TopicEvents)
	if len(got) != 2 {
		t.Fatalf("after restart read %v, want the 2 records written before", got)
	}
	if n := b2.Partitions(streamrec.TopicItems); n != 2 {
		t.Fatalf("items topic has %d partitions after restart, want 2", n)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*broker.Config)
	}{
		{"bad addr", func(c *broker.Config) { c.Addr = "nohost" }},
		{"zero partitions", func(c *broker.Config) { c.Partitions = 0 }},
		{"bad topic", func(c *broker.Config) { c.Topics = []string{"a b"} }},
		{"TLS cert without key", func(c *broker.Config) { c.TLSCertFile = "cert.pem" }},
		{"TLS key without cert", func(c *broker.Config) { c.TLSKeyFile = "key.pem" }},
		{"TLS files missing", func(c *broker.Config) { c.TLSCertFile, c.TLSKeyFile = "/nonexistent/c.pem", "/nonexistent/k.pem" }},
		{"SASL user without password", func(c *broker.Config) { c.SASLUser = "alice" }},
		{"SASL password without user", func(c *broker.Config) { c.SASLPassword = "secret" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := broker.DefaultConfig()
			tt.mod(&cfg)
			if err := cfg.Validate(); err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			if _, err := broker.Start(cfg, zerolog.Nop()); err == nil {
				t.Fatal("Start accepted a bad config")
			}
		})
	}
	if cfg := broker.DefaultConfig(); cfg.Validate() != nil {
		t.Fatal("default config invalid")
	}
}
