package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest"
	"github.com/streamrec/streamrec/ingest/broker"
)

func testLogger(tb testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel)
	}
	return zerolog.Nop()
}

// startBroker runs an embedded broker on a free port for the test.
func startBroker(tb testing.TB, partitions int) string {
	tb.Helper()
	cfg := broker.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Partitions = partitions
	b, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b.Addrs()[0]
}

// testConfig is a consumer config for fast tests.
func testConfig(addr string) ingest.Config {
	cfg := ingest.DefaultConfig()
	cfg.Brokers = []string{addr}
	cfg.MinBackoff = 20 * time.Millisecond
	cfg.MaxBackoff = 500 * time.Millisecond
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second // kfake's minimum
	cfg.RebalanceTimeout = 5 * time.Second
	return cfg
}

func newMemory(tb testing.TB) *features.Memory {
	tb.Helper()
	m, err := features.NewMemory(features.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// running is a consumer running in the background.
type running struct {
	c      *ingest.Consumer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startConsumer(tb testing.TB, cfg ingest.Config, w ingest.Writer) *running {
	tb.Helper()
	reg := prometheus.NewRegistry()
	c, err := ingest.New(cfg, w, reg, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	tb.Cleanup(func() { r.stop(tb) })
	return r
}

// stop cancels the consumer and waits for Run to return (nil expected,
// unless it already returned).
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		tb.Fatal("consumer did not stop within 30s")
		return nil
	}
}

// metric sums the counter or gauge name over the series whose labels
// include labels ("k=v" pairs).
func metric(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// genEvents makes n valid events over users and items, keyed by user,
// with values exact in binary floating point so sums compare exactly.
func genEvents(n, users, items int, seed uint64) []streamrec.Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	types := []string{"rating", "view", "click", "like", "purchase"}
	dt := streamrec.DefaultEventTypes()
	evs := make([]streamrec.Event, n)
	ts := int64(1_700_000_000_000)
	for i := range evs {
		typ := types[rng.IntN(len(types))]
		et := dt[typ]
		e := streamrec.Event{Type: typ, Kind: et.Kind, Weight: et.Weight,
			User: "u" + strconv.Itoa(rng.IntN(users)), Item: "i" + strconv.Itoa(rng.IntN(items)), TS: ts}
		if et.Kind == streamrec.Explicit {
			e.Weight = 1
			e.Value = float64(1+rng.IntN(10)) / 2
		}
		if i%3 == 0 {
			e.ID = "e" + strconv.Itoa(i)
		}
		ts += int64(rng.IntN(5000))
		evs[i] = e
	}
	return evs
}

func encode(evs []streamrec.Event) []kafka.Message {
	msgs := make([]kafka.Message, len(evs))
	for i := range evs {
		msgs[i] = kafka.Message{Key: []byte(evs[i].User), Value: streamrec.AppendJSON(nil, &evs[i])}
	}
	return msgs
}

// produce writes msgs to topic, keyed (the Hash balancer, as Kafka's
// producers partition by key).
func produce(tb testing.TB, addr, topic string, msgs []kafka.Message) {
	tb.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{},
		BatchSize: 1000, BatchBytes: 8 << 20, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			tb.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[n:]
	}
}

// readTopic reads every record of topic (all partitions, start to end).
func readTopic(tb testing.TB, addr, topic string) []kafka.Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		tb.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			tb.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := pc.Seek(0, kafka.SeekAbsolute); err != nil {
			tb.Fatal(err)
		}
		for off := int64(0); off < last; {
			pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := pc.ReadMessage(16 << 20)
			if err != nil {
				tb.Fatalf("read %s/%d@%d: %v", topic, p.ID, off, err)
			}
			out = append(out, m)
			off = m.Offset + 1
		}
		pc.Close()
	}
	return out
}

// truth is the expected state, computed directly from the input.
type truth struct {
	users, items map[string]*features.Counters
	events       int64
}

func groundTruth(evs []streamrec.Event) truth {
	t := truth{users: map[string]*features.Counters{}, items: map[string]*features.Counters{}}
	add := func(m map[string]*features.Counters, id string, e *streamrec.Event) {
		c := m[id]
		if c == nil {
			c = &features.Counters{}
			m[id] = c
		}
		c.Events++
		if e.Kind == streamrec.Explicit {
			c.Explicit++
			c.ExplicitSum += e.Value
		} else {
			c.Implicit++
			c.ImplicitWeight += e.Weight
		}
		if c.FirstTS == 0 || e.TS < c.FirstTS {
			c.FirstTS = e.TS
		}
		c.LastTS = max(c.LastTS, e.TS)
	}
	for i := range evs {
		add(t.users, evs[i].User, &evs[i])
		add(t.items, evs[i].Item, &evs[i])
		t.events++
	}
	return t
}

// store is what the checks read.
type store interface {
	ingest.Writer
	User(ctx context.Context, id string) (features.User, bool, error)
	Item(ctx context.Context, id string) (features.Item, bool, error)
	Global(ctx context.Context) (features.Global, error)
}

func globalEvents(tb testing.TB, s store) int64 {
	tb.Helper()
	g, err := s.Global(context.Background())
	if err != nil {
		return -1 // the store may be down on purpose
	}
	return g.Events
}

// checkTruth asserts that every user's and item's counters equal the truth.
func checkTruth(tb testing.TB, s store, want truth) {
	tb.Helper()
	ctx := context.Background()
	var errs []error
	for id, c := range want.users {
		u, ok, err := s.User(ctx, id)
		if err != nil || !ok {
			tb.Fatalf("user %s: ok=%v err=%v", id, ok, err)
		}
		if u.Counters != *c {
			errs = append(errs, fmt.Errorf("user %s: got %+v, want %+v", id, u.Counters, *c))
		}
	}
	for id, c := range want.items {
		it, ok, err := s.Item(ctx, id)
		if err != nil || !ok {
			tb.Fatalf("item %s: ok=%v err=%v", id, ok, err)
		}
		if it.Counters != *c {
			errs = append(errs, fmt.Errorf("item %s: got %+v, want %+v", id, it.Counters, *c))
		}
	}
	g, err := s.Global(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if g.Events != want.events || g.Users != int64(len(want.users)) || g.Items != int64(len(want.items)) {
		errs = append(errs, fmt.Errorf("global: got %+v, want %d events, %d users, %d items", g, want.events, len(want.users), len(want.items)))
	}
	if len(errs) > 0 {
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("... and %d more", len(errs)-10))
		}
		tb.Fatal(errors.Join(errs...))
	}
}

// gatedWriter wraps a store: it can fail on demand, slow writes down, and
// counts calls.
type gatedWriter struct {
	store
	mu      sync.Mutex
	fail    error
	delay   time.Duration
	applies int
}

func (g *gatedWriter) Apply(ctx context.Context, evs []streamrec.Event) (features.ApplyResult, error) {
	g.mu.Lock()
	fail, delay := g.fail, g.delay
	g.applies++
	g.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail != nil {
		return features.ApplyResult{}, fail
	}
	return g.store.Apply(ctx, evs)
}

func (g *gatedWriter) set(fail error, delay time.Duration) {
	g.mu.Lock()
	g.fail, g.delay = fail, delay
	g.mu.Unlock()
}
