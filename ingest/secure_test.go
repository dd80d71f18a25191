package ingest_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/ingest/kafkasec/kafkasectest"
	producer "github.com/streamrec/streamrec/ingest/produce"
)

// secureConfig is testConfig with c's dialer and transport.
func secureConfig(t *testing.T, addr string, c kafkasec.Config) ingest.Config {
	cfg := testConfig(addr)
	cfg.Dialer = kafkasectest.Dialer(t, c)
	cfg.Transport = kafkasectest.Transport(t, c)
	return cfg
}

// readSecure reads every record of topic with c's dialer.
func readSecure(t *testing.T, addr, topic string, c kafkasec.Config) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := kafkasectest.Dialer(t, c)
	parts, err := d.LookupPartitions(ctx, "tcp", addr, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range parts {
		pc, err := d.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.Seek(0, kafka.SeekAbsolute); err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; {
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := pc.ReadMessage(1 << 20)
			if err != nil {
				t.Fatalf("read %s/%d@%d: %v", topic, p.ID, off, err)
			}
			out = append(out, m)
			off = m.Offset + 1
		}
		pc.Close()
	}
	return out
}

// TestSecureProduceIngestDLQ runs over TLS (a private CA) and SASL, with
// SCRAM-SHA-256 and with PLAIN: the produce writer publishes a catalogue,
// events and some bad messages; the consumer applies the events exactly to
// the in-memory store, stores the catalogue, and dead-letters the bad
// messages, which read back from the DLQ with their headers.
func TestSecureProduceIngestDLQ(t *testing.T) {
	for _, mech := range []string{kafkasec.MechanismSCRAMSHA256, kafkasec.MechanismPlain} {
		t.Run(mech, func(t *testing.T) {
			b := kafkasectest.Start(t, 2)
			sec := b.Config(mech)
			evs := genEvents(500, 40, 60, 11)
			d := &dataset.Data{Name: "secure", Events: evs, Items: []streamrec.ItemMeta{{Item: "i1", Title: "One"}}}
			opts := producer.DefaultOptions()
			opts.Brokers = []string{b.Addr}
			opts.Transport = kafkasectest.Transport(t, sec)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if st, err := producer.Run(ctx, d, opts, zerolog.Nop()); err != nil || st.Events != int64(len(evs)) {
				t.Fatalf("produce: %d events, %v", st.Events, err)
			}
			w := producer.NewWriter([]string{b.Addr})
			w.Transport = opts.Transport
			bad := []kafka.Message{
				{Topic: streamrec.TopicEvents, Key: []byte("x"), Value: []byte(`{"type":"view"`)},
				{Topic: streamrec.TopicEvents, Key: []byte("y"), Value: []byte(`{"type":"warp","user":"u","item":"i","ts":1700000000}`)},
			}
			if err := w.WriteMessages(ctx, bad...); err != nil {
				t.Fatalf("produce bad messages: %v", err)
			}
			w.Close()

			s := newMemory(t)
			c := startConsumer(t, secureConfig(t, b.Addr, sec), s)
			waitFor(t, 20*time.Second, "events applied and bad messages dead-lettered", func() bool {
				return globalEvents(t, s) == int64(len(evs)) && metric(t, c.reg, "streamrec_ingest_dlq_total") == float64(len(bad))
			})
			waitFor(t, 10*time.Second, "catalogue stored", func() bool {
				it, ok, err := s.Item(context.Background(), "i1")
				return err == nil && ok && it.Title == "One"
			})
			if err := c.stop(t); err != nil {
				t.Fatal(err)
			}
			checkTruth(t, s, groundTruth(evs))
			dlq := readSecure(t, b.Addr, streamrec.TopicDLQ, sec)
			if len(dlq) != len(bad) {
				t.Fatalf("DLQ holds %d records, want %d", len(dlq), len(bad))
			}
			for _, m := range dlq {
				if h := header(m, ingest.HeaderError); !strings.HasPrefix(h, streamrec.ReasonMalformed) && !strings.HasPrefix(h, streamrec.ReasonUnknownType) {
					t.Errorf("DLQ record %q has error header %q", m.Value, h)
				}
			}
		})
	}
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// syncBuffer is a log sink safe for the consumer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecureWrongPassword: with a wrong password the producer fails within
// its retries (kafka-go's writer says only "unexpected EOF"; Probe, which
// the CLI runs first, names the SASL failure), and the consumer logs the
// broker's SASL error while it retries, instead of hanging silently.
func TestSecureWrongPassword(t *testing.T) {
	b := kafkasectest.Start(t, 1)
	sec := b.Config(kafkasec.MechanismSCRAMSHA256)
	sec.Password = "wrong"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := producer.DefaultOptions()
	opts.Brokers, opts.MaxRetries, opts.RetryBackoff = []string{b.Addr}, 1, 10*time.Millisecond
	opts.Transport = kafkasectest.Transport(t, sec)
	d := &dataset.Data{Name: "x", Events: genEvents(3, 2, 2, 1)}
	if _, err := producer.Run(ctx, d, opts, zerolog.Nop()); err == nil || ctx.Err() != nil {
		t.Fatalf("produce with a wrong password: %v (context: %v), want a failed write before the timeout", err, ctx.Err())
	}
	if err := sec.Probe(ctx, []string{b.Addr}, 5*time.Second); err == nil || !strings.Contains(err.Error(), "SASL Authentication failed") {
		t.Fatalf("Probe with a wrong password: %v, want the SASL error", err)
	}

	var logs syncBuffer
	c, err := ingest.New(secureConfig(t, b.Addr, sec), newMemory(t), prometheus.NewRegistry(), zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	waitFor(t, 10*time.Second, "the SASL failure in the consumer's log", func() bool {
		return strings.Contains(logs.String(), "SASL Authentication failed")
	})
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "SASL") {
			t.Logf("consumer log: %s", line)
			break
		}
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("consumer did not stop")
	}
}

// TestKcatSecureToIngest: kcat (librdkafka) publishes events over SASL_SSL
// with SCRAM-SHA-256, verifying the broker with the private CA; ingest,
// over the same security, applies them exactly.
func TestKcatSecureToIngest(t *testing.T) {
	kcat := lookKcat(t)
	b := kafkasectest.Start(t, 2)
	sec := b.Config(kafkasec.MechanismSCRAMSHA256)
	evs := genEvents(300, 30, 40, 5)
	var in bytes.Buffer
	for i := range evs {
		in.WriteString(evs[i].User + ":")
		in.Write(streamrec.AppendJSON(nil, &evs[i]))
		in.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-P", "-b", b.Addr, "-t", streamrec.TopicEvents, "-K", ":",
		"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-256",
		"-X", "sasl.username="+kafkasectest.User, "-X", "sasl.password="+kafkasectest.Password,
		"-X", "ssl.ca.location="+b.PKI.CAFile)
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P over SASL_SSL: %v\n%s", err, out)
	}
	s := newMemory(t)
	c := startConsumer(t, secureConfig(t, b.Addr, sec), s)
	waitFor(t, 20*time.Second, "kcat's events applied", func() bool { return globalEvents(t, s) == int64(len(evs)) })
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, s, groundTruth(evs))
}
