package kafkasec_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec/ingest/broker"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/internal/testpki"
)

func TestValidate(t *testing.T) {
	pki := testpki.New(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		cfg  kafkasec.Config
		want string // substring of the error; "" for valid
	}{
		{"zero", kafkasec.Config{}, ""},
		{"tls with system roots", kafkasec.Config{TLS: true}, ""},
		{"private CA", kafkasec.Config{TLS: true, CAFile: pki.CAFile}, ""},
		{"mutual TLS", kafkasec.Config{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, ""},
		{"scram", kafkasec.Config{SASLMechanism: "scram-sha-256", Username: "u", Password: "p"}, ""},
		{"mechanism case", kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}, ""},
		{"plain over tls", kafkasec.Config{TLS: true, SASLMechanism: "plain", Username: "u", Password: "p"}, ""},
		{"unreadable CA", kafkasec.Config{TLS: true, CAFile: missing}, "CA file: open " + missing},
		{"CA without certificates", kafkasec.Config{CAFile: notPEM}, "no PEM certificates"},
		{"key without cert", kafkasec.Config{KeyFile: pki.ClientKeyFile}, "client key " + pki.ClientKeyFile + " given without its certificate"},
		{"cert without key", kafkasec.Config{CertFile: pki.ClientCertFile}, "given without its key"},
		{"cert and wrong key", kafkasec.Config{CertFile: pki.ClientCertFile, KeyFile: pki.ServerKeyFile}, "private key does not match public key"},
		{"SASL without user", kafkasec.Config{SASLMechanism: "plain", Password: "p"}, "SASL plain needs a user name"},
		{"SASL without password", kafkasec.Config{SASLMechanism: "scram-sha-256", Username: "u"}, "SASL scram-sha-256 needs a password"},
		{"unknown mechanism", kafkasec.Config{SASLMechanism: "gssapi", Username: "u", Password: "p"}, `unknown SASL mechanism "gssapi" (want one of plain, scram-sha-256, scram-sha-512)`},
		{"user without mechanism", kafkasec.Config{Username: "u", Password: "p"}, "no SASL mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			// The builders refuse what Validate refuses.
			if _, err := tc.cfg.Dialer(time.Second); err == nil {
				t.Error("Dialer accepted an invalid config")
			}
			if _, err := tc.cfg.Transport(); err == nil {
				t.Error("Transport accepted an invalid config")
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := kafkasec.Config{SASLMechanism: "plain", KeyFile: "k.pem"}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"needs a user name", "needs a password", "without its certificate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestZeroConfigIsTodaysDefault: the zero Config builds kafka-go's default
// dialer and a transport like its default one: plain TCP, no SASL.
func TestZeroConfigIsTodaysDefault(t *testing.T) {
	var c kafkasec.Config
	if !c.IsZero() || c.UsesTLS() {
		t.Fatalf("zero config: IsZero %v, UsesTLS %v", c.IsZero(), c.UsesTLS())
	}
	d, err := c.Dialer(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, kafka.DefaultDialer) {
		t.Errorf("Dialer = %+v, want kafka.DefaultDialer %+v", *d, *kafka.DefaultDialer)
	}
	tr, err := c.Transport()
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLS != nil || tr.SASL != nil || tr.Dial == nil || tr.DialTimeout != 0 || tr.ClientID != "" {
		t.Errorf("Transport = %+v, want plain TCP like kafka.DefaultTransport", tr)
	}
	if tc, err := c.TLSConfig(); tc != nil || err != nil {
		t.Errorf("TLSConfig = %v, %v; want nil, nil", tc, err)
	}
	if m, err := c.SASL(); m != nil || err != nil {
		t.Errorf("SASL = %v, %v; want nil, nil", m, err)
	}
}

func TestBuilders(t *testing.T) {
	pki := testpki.New(t)
	tests := []struct {
		name     string
		cfg      kafkasec.Config
		tls      bool
		ca       bool
		certs    int
		insecure bool
		mech     string // SASL mechanism name on the wire; "" for none
	}{
		{"tls", kafkasec.Config{TLS: true}, true, false, 0, false, ""},
		{"ca implies tls", kafkasec.Config{CAFile: pki.CAFile}, true, true, 0, false, ""},
		{"client cert", kafkasec.Config{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, true, true, 1, false, ""},
		{"insecure", kafkasec.Config{InsecureSkipVerify: true}, true, false, 0, true, ""},
		{"plain", kafkasec.Config{SASLMechanism: "plain", Username: "u", Password: "p"}, false, false, 0, false, "PLAIN"},
		{"scram-sha-256", kafkasec.Config{SASLMechanism: "scram-sha-256", Username: "u", Password: "p"}, false, false, 0, false, "SCRAM-SHA-256"},
		{"scram-sha-512 over tls", kafkasec.Config{TLS: true, SASLMechanism: "Scram-Sha-512", Username: "u", Password: "p"}, true, false, 0, false, "SCRAM-SHA-512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.cfg.Dialer(3 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := tc.cfg.Transport()
			if err != nil {
				t.Fatal(err)
			}
			if d.Timeout != 3*time.Second || !d.DualStack {
				t.Errorf("dialer timeout %s, dual stack %v", d.Timeout, d.DualStack)
			}
			for what, c := range map[string]*tls.Config{"dialer": d.TLS, "transport": tr.TLS} {
				if (c != nil) != tc.tls {
					t.Fatalf("%s TLS = %v, want TLS %v", what, c, tc.tls)
				}
				if c == nil {
					continue
				}
				if c.MinVersion != tls.VersionTLS12 || (c.RootCAs != nil) != tc.ca || len(c.Certificates) != tc.certs || c.InsecureSkipVerify != tc.insecure {
					t.Errorf("%s TLS: min %x, roots %v, %d certs, insecure %v", what, c.MinVersion, c.RootCAs != nil, len(c.Certificates), c.InsecureSkipVerify)
				}
			}
			for what, m := range map[string]interface{ Name() string }{"dialer": d.SASLMechanism, "transport": tr.SASL} {
				got := ""
				if m != nil {
					got = m.Name()
				}
				if got != tc.mech {
					t.Errorf("%s SASL = %q, want %q", what, got, tc.mech)
				}
			}
		})
	}
}

func TestStringHidesPassword(t *testing.T) {
	c := kafkasec.Config{CAFile: "/ca.pem", SASLMechanism: "scram-sha-256", Username: "alice", Password: "hunter2"}
	s := c.String()
	if strings.Contains(s, "hunter2") || !strings.Contains(s, "alice") || !strings.Contains(s, "tls ca=/ca.pem") {
		t.Errorf("String() = %q", s)
	}
	if s := (kafkasec.Config{}).String(); s != "plaintext" {
		t.Errorf("zero String() = %q", s)
	}
}

const testTopic = "kafkasec.test"

// startSecureBroker runs the embedded broker with TLS (a certificate of a
// fresh private CA) and SASL user alice.
func startSecureBroker(t *testing.T, pki *testpki.PKI) string {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Addr, cfg.Partitions, cfg.Topics = "127.0.0.1:0", 1, []string{testTopic}
	cfg.TLSCertFile, cfg.TLSKeyFile = pki.ServerCertFile, pki.ServerKeyFile
	cfg.SASLUser, cfg.SASLPassword = "alice", "wonderland"
	b, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addrs()[0]
}

// TestOverTheWire writes with the Transport and reads back with the Dialer
// from a broker that requires TLS and SASL, with every mechanism; wrong
// credentials, plaintext and an unknown CA fail within the timeout.
func TestOverTheWire(t *testing.T) {
	pki := testpki.New(t)
	addr := startSecureBroker(t, pki)
	const topic = testTopic
	good := kafkasec.Config{CAFile: pki.CAFile, Username: "alice", Password: "wonderland"}
	for i, mech := range kafkasec.Mechanisms {
		t.Run(mech, func(t *testing.T) {
			c := good
			c.SASLMechanism = mech
			tr, err := c.Transport()
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: tr, BatchTimeout: time.Millisecond,
				RequiredAcks: kafka.RequireAll, AllowAutoTopicCreation: true}
			if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(mech)}); err != nil {
				t.Fatalf("write over %s: %v", mech, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			d, err := c.Dialer(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Dialer: d, MaxWait: 100 * time.Millisecond})
			defer r.Close()
			if err := r.SetOffset(int64(i)); err != nil {
				t.Fatal(err)
			}
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read over %s: %v", mech, err)
			}
			if string(m.Value) != mech {
				t.Errorf("read %q at offset %d, want %q", m.Value, m.Offset, mech)
			}
		})
	}

	refused := []struct {
		name string
		cfg  kafkasec.Config
		want string
	}{
		{"wrong password", kafkasec.Config{CAFile: pki.CAFile, SASLMechanism: "scram-sha-256", Username: "alice", Password: "nope"}, "SASL Authentication failed"},
		{"unknown user", kafkasec.Config{CAFile: pki.CAFile, SASLMechanism: "plain", Username: "bob", Password: "wonderland"}, "SASL Authentication failed"},
		{"no SASL", kafkasec.Config{CAFile: pki.CAFile}, ""},
		{"plaintext", kafkasec.Config{SASLMechanism: "plain", Username: "alice", Password: "wonderland"}, ""},
		{"system roots", kafkasec.Config{TLS: true, SASLMechanism: "plain", Username: "alice", Password: "wonderland"}, "certificate signed by unknown authority"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.cfg.Probe(ctx, []string{addr}, 3*time.Second)
			if err == nil {
				t.Fatal("Probe connected")
			}
			if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
				t.Fatalf("failed only by timeout after %s: %v", time.Since(start), err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kafka "+addr) {
				t.Errorf("error %q lacks %q or the broker address", err, tc.want)
			}
			if tc.cfg.Password != "" && strings.Contains(err.Error(), tc.cfg.Password) {
				t.Errorf("error %q shows the password", err)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
	for _, mech := range kafkasec.Mechanisms {
		c := good
		c.SASLMechanism = mech
		if err := c.Probe(context.Background(), []string{"127.0.0.1:1", addr}, 3*time.Second); err != nil {
			t.Errorf("Probe over %s (first broker down): %v", mech, err)
		}
	}
}
