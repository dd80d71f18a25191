package ingest_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest"
)

func TestConfigValidate(t *testing.T) {
	if cfg := ingest.DefaultConfig(); cfg.Validate() != nil {
		t.Fatalf("default config invalid: %v", cfg.Validate())
	}
	tests := []struct {
		name string
		mod  func(*ingest.Config)
	}{
		{"no brokers", func(c *ingest.Config) { c.Brokers = nil }},
		{"empty broker", func(c *ingest.Config) { c.Brokers = []string{""} }},
		{"no group", func(c *ingest.Config) { c.Group = "" }},
		{"dlq is the topic", func(c *ingest.Config) { c.DLQTopic = c.Topic }},
		{"zero batch", func(c *ingest.Config) { c.BatchSize = 0 }},
		{"zero wait", func(c *ingest.Config) { c.IdleWait = 0 }},
		{"inverted back-off", func(c *ingest.Config) { c.MaxBackoff = c.MinBackoff / 2 }},
		{"no types", func(c *ingest.Config) { c.Types = nil }},
		{"inverted value range", func(c *ingest.Config) { c.MinValue, c.MaxValue = 5, 1 }},
		{"zero max bytes", func(c *ingest.Config) { c.MaxBytes = 0 }},
		{"heartbeat above session", func(c *ingest.Config) { c.HeartbeatInterval = c.SessionTimeout }},
		{"no clock", func(c *ingest.Config) { c.Now = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ingest.DefaultConfig()
			tt.mod(&cfg)
			if err := cfg.Validate(); err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			if _, err := ingest.New(cfg, newMemory(t), prometheus.NewRegistry(), zerolog.Nop()); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

// TestBadInputToDLQ sends one message of each bad class between good
// events: each lands in the DLQ with its reason and the source headers, and
// the good events around it are applied.
func TestBadInputToDLQ(t *testing.T) {
	addr := startBroker(t, 2)
	good := genEvents(40, 5, 8, 1)
	bad := []struct{ value, reason string }{
		{`{"type":"view","user":"u1",`, streamrec.ReasonMalformed},
		{`{"type":"view","item":"i1","ts":1700000000}`, streamrec.ReasonMissing},
		{"{\"type\":\"view\",\"user\":\"\xff\xfe\",\"item\":\"i1\",\"ts\":1700000000}", streamrec.ReasonInvalidUTF8},
		{`{"type":"teleport","user":"u1","item":"i1","ts":1700000000}`, streamrec.ReasonUnknownType},
		{`{"type":"rating","user":"u1","item":"i1","value":9,"ts":1700000000}`, streamrec.ReasonValueRange},
		{`{"type":"rating","user":"u1","item":"i1","value":"NaN","ts":1700000000}`, streamrec.ReasonValueRange},
		{`{"type":"view","user":"u1","item":"i1","ts":1700000000,"pad":"` + strings.Repeat("x", streamrec.DefaultMaxBytes) + `"}`, streamrec.ReasonOversized},
		{`{"type":"view","user":"u1","item":"i1","ts":"last tuesday"}`, streamrec.ReasonTimestamp},
	}
	var msgs []kafka.Message
	goodMsgs := encode(good)
	for i, m := range goodMsgs {
		msgs = append(msgs, m)
		if i%5 == 4 && i/5 < len(bad) {
			msgs = append(msgs, kafka.Message{Key: []byte("bad" + strconv.Itoa(i/5)), Value: []byte(bad[i/5].value)})
		}
	}
	produce(t, addr, streamrec.TopicEvents, msgs)
	// A bad item record goes to the same DLQ.
	produce(t, addr, streamrec.TopicItems, []kafka.Message{
		{Key: []byte("i1"), Value: []byte(`{"item":"i1","title":"One","categories":["A"]}`)},
		{Key: []byte("ix"), Value: []byte(`{"title":"no id"}`)},
	})

	mem := newMemory(t)
	c := startConsumer(t, testConfig(addr), mem)
	waitFor(t, 30*time.Second, "good events applied and bad ones dead-lettered", func() bool {
		return globalEvents(t, mem) == int64(len(good)) && metric(t, c.reg, "streamrec_ingest_dlq_total") == float64(len(bad)+1)
	})
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, mem, groundTruth(good))
	if it, ok, _ := mem.Item(context.Background(), "i1"); !ok || it.Title != "One" {
		t.Fatalf("item metadata not applied: %+v", it)
	}

	wantReasons := map[string]int{streamrec.ReasonMissing: 1} // the item without an id
	for _, b := range bad {
		wantReasons[b.reason]++
	}
	for reason, n := range wantReasons {
		if got := metric(t, c.reg, "streamrec_ingest_dlq_total", "reason="+reason); got != float64(n) {
			t.Errorf("dlq_total{reason=%s} = %v, want %d", reason, got, n)
		}
	}
	dead := readTopic(t, addr, streamrec.TopicDLQ)
	if len(dead) != len(bad)+1 {
		t.Fatalf("DLQ holds %d records, want %d", len(dead), len(bad)+1)
	}
	byValue := map[string]string{}
	for _, b := range bad {
		byValue[b.value] = b.reason
	}
	byValue[`{"title":"no id"}`] = streamrec.ReasonMissing
	for _, m := range dead {
		h := headers(m)
		reason, ok := byValue[string(m.Value)]
		if !ok {
			t.Fatalf("DLQ record with unexpected value %.60q", m.Value)
		}
		if !strings.HasPrefix(h[ingest.HeaderError], reason+":") {
			t.Errorf("error header %q, want reason %s", h[ingest.HeaderError], reason)
		}
		wantTopic := streamrec.TopicEvents
		if reason == streamrec.ReasonMissing && strings.Contains(string(m.Value), "no id") {
			wantTopic = streamrec.TopicItems
		}
		if h[ingest.HeaderSourceTopic] != wantTopic {
			t.Errorf("source.topic = %q, want %s", h[ingest.HeaderSourceTopic], wantTopic)
		}
		p, err1 := strconv.Atoi(h[ingest.HeaderSourcePartition])
		off, err2 := strconv.ParseInt(h[ingest.HeaderSourceOffset], 10, 64)
		if err1 != nil || err2 != nil || p < 0 || p > 1 || off < 0 {
			t.Errorf("source.partition/offset headers %q/%q", h[ingest.HeaderSourcePartition], h[ingest.HeaderSourceOffset])
		}
		if len(m.Key) == 0 {
			t.Errorf("DLQ record lost its key")
		}
	}
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, kv := range m.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// TestCrashAfterWriteBeforeCommit stops the consumer abruptly after a batch
// is durable in the store but before its offsets are committed; the next
// consumer gets the batch again and the store counts it once.
func TestCrashAfterWriteBeforeCommit(t *testing.T) {
	addr := startBroker(t, 3)
	evs := genEvents(3000, 60, 120, 2)
	produce(t, addr, streamrec.TopicEvents, encode(evs))
	s := newStore(t)

	cfg := testConfig(addr)
	cfg.BatchSize = 200
	var batches atomic.Int32
	crash := errors.New("simulated crash")
	cfg.AfterWrite = func(ctx context.Context, evs []streamrec.Event) error {
		if batches.Add(1) == 4 {
			return crash
		}
		return nil
	}
	first := startConsumer(t, cfg, s)
	select {
	case err := <-first.done:
		close(first.done)
		if !errors.Is(err, crash) {
			t.Fatalf("Run returned %v, want the simulated crash", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the crash hook never ran")
	}
	appliedBefore := globalEvents(t, s)
	if appliedBefore <= 0 || appliedBefore >= int64(len(evs)) {
		t.Fatalf("after the crash the store holds %d events, want some but not all", appliedBefore)
	}

	cfg.AfterWrite = nil
	second := startConsumer(t, cfg, s)
	waitFor(t, 60*time.Second, "all events applied", func() bool { return globalEvents(t, s) >= int64(len(evs)) })
	waitFor(t, 10*time.Second, "the last batch committed", func() bool {
		return metric(t, second.reg, "streamrec_ingest_events_consumed_total") ==
			metric(t, second.reg, "streamrec_ingest_events_applied_total")+metric(t, second.reg, "streamrec_ingest_events_duplicates_total")
	})
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	if d := metric(t, second.reg, "streamrec_ingest_events_duplicates_total"); d == 0 {
		t.Fatal("the uncommitted batch was not redelivered (no duplicates skipped)")
	}
	checkTruth(t, s, groundTruth(evs))
}

// TestCrashDuringRebalance runs one consumer, lets a second join the group
// (partitions move), crashes the first one right after a write, and
// finishes with a fresh consumer: counters equal the truth.
func TestCrashDuringRebalance(t *testing.T) {
	addr := startBroker(t, 4)
	evs := genEvents(4000, 80, 150, 3)
	msgs := encode(evs)
	produce(t, addr, streamrec.TopicEvents, msgs[:2000])
	s := newStore(t)
	slow := &gatedWriter{store: s}
	slow.set(nil, 15*time.Millisecond) // keep the first consumer busy while B joins

	cfgA := testConfig(addr)
	cfgA.BatchSize = 50
	// A crashes right after a write once B has taken partitions from it
	// (B consumed something), with A's own batches still in flight; on a
	// slow machine, at the latest 5 s after B started.
	var bRunning atomic.Pointer[running]
	var bStarted atomic.Int64
	crash := errors.New("simulated crash during rebalance")
	cfgA.AfterWrite = func(ctx context.Context, evs []streamrec.Event) error {
		b := bRunning.Load()
		if b != nil && (metric(t, b.reg, "streamrec_ingest_events_consumed_total") > 0 ||
			time.Since(time.Unix(0, bStarted.Load())) > 5*time.Second) {
			return crash
		}
		return nil
	}
	a := startConsumer(t, cfgA, slow)
	waitFor(t, 30*time.Second, "consumer A to make progress", func() bool { return globalEvents(t, s) > 200 })

	cfgB := testConfig(addr)
	cfgB.BatchSize = 50
	b := startConsumer(t, cfgB, slow)
	bStarted.Store(time.Now().UnixNano())
	bRunning.Store(b)
	// New events on every partition while the group rebalances, so both
	// consumers have work.
	produce(t, addr, streamrec.TopicEvents, msgs[2000:])
	select {
	case err := <-a.done:
		close(a.done)
		if !errors.Is(err, crash) {
			t.Fatalf("A returned %v, want the simulated crash", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("A never crashed")
	}
	slow.set(nil, 0)
	c := startConsumer(t, cfgB, s)
	waitFor(t, 90*time.Second, "all events applied", func() bool { return globalEvents(t, s) >= int64(len(evs)) })
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	if consumedB := metric(t, b.reg, "streamrec_ingest_events_consumed_total"); consumedB == 0 {
		t.Error("consumer B never got a partition")
	}
	checkTruth(t, s, groundTruth(evs))
}

// TestGracefulDrainCommits cancels the consumer: the batch in hand is
// written and committed, so a new consumer in the group finds nothing to
// redeliver.
func TestGracefulDrainCommits(t *testing.T) {
	addr := startBroker(t, 2)
	evs := genEvents(500, 20, 40, 4)
	produce(t, addr, streamrec.TopicEvents, encode(evs))
	mem := newMemory(t)
	cfg := testConfig(addr)
	cfg.BatchWait = time.Hour // only a full batch or the drain flushes
	cfg.IdleWait = time.Hour
	cfg.BatchSize = 10000
	c := startConsumer(t, cfg, mem)
	waitFor(t, 30*time.Second, "all events fetched", func() bool {
		return metric(t, c.reg, "streamrec_ingest_events_consumed_total") == float64(len(evs))
	})
	if n := globalEvents(t, mem); n != 0 {
		t.Fatalf("%d events applied before the drain; the batch should still be pending", n)
	}
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, mem, groundTruth(evs))

	client := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{
		GroupID: cfg.Group, Topics: map[string][]int{streamrec.TopicEvents: {0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for _, p := range resp.Topics[streamrec.TopicEvents] {
		committed += p.CommittedOffset
	}
	if committed != int64(len(evs)) {
		t.Fatalf("committed offsets sum to %d, want %d", committed, len(evs))
	}
	if g := metric(t, c.reg, "streamrec_ingest_committed_offset", "topic="+streamrec.TopicEvents); g != float64(len(evs)) {
		t.Fatalf("committed_offset gauges sum to %v, want %d", g, len(evs))
	}
	if n := metric(t, c.reg, "streamrec_ingest_batch_size"); n != 1 {
		t.Fatalf("%v batches observed, want the single drained one", n)
	}
}

// TestStoreDownRetries makes the store fail for a while: the consumer backs
// off (a bounded number of retries, not a tight loop), loses nothing, and
// the counters are exact once the store is back.
func TestStoreDownRetries(t *testing.T) {
	addr := startBroker(t, 2)
	evs := genEvents(1000, 30, 50, 5)
	mem := newMemory(t)
	gw := &gatedWriter{store: mem}
	gw.set(errors.New("store unavailable"), 0)
	cfg := testConfig(addr)
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	c := startConsumer(t, cfg, gw)
	produce(t, addr, streamrec.TopicEvents, encode(evs))
	const down = time.Second
	waitFor(t, 30*time.Second, "a failed write", func() bool { return metric(t, c.reg, "streamrec_ingest_retries_total", "op=apply") > 0 })
	time.Sleep(down)
	gw.set(nil, 0)
	waitFor(t, 30*time.Second, "all events applied", func() bool { return globalEvents(t, mem) == int64(len(evs)) })
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, mem, groundTruth(evs))
	// Back-off doubles from 20 ms to a 200 ms cap: about 10 retries in the
	// second the store was down. A tight loop would make thousands.
	if r := metric(t, c.reg, "streamrec_ingest_retries_total", "op=apply"); r > 40 {
		t.Fatalf("%v retries while the store was down for %s: not backing off", r, down)
	}
}

// TestShutdownWhileStoreDown stops the consumer while the store is down: Run
// gives up after DrainTimeout without committing, and the next consumer gets
// the whole batch again — nothing is lost.
func TestShutdownWhileStoreDown(t *testing.T) {
	addr := startBroker(t, 2)
	evs := genEvents(300, 10, 20, 10)
	produce(t, addr, streamrec.TopicEvents, encode(evs))
	mem := newMemory(t)
	gw := &gatedWriter{store: mem}
	gw.set(errors.New("store unavailable"), 0)
	cfg := testConfig(addr)
	cfg.DrainTimeout = 300 * time.Millisecond
	c := startConsumer(t, cfg, gw)
	waitFor(t, 30*time.Second, "a failed write", func() bool { return metric(t, c.reg, "streamrec_ingest_retries_total", "op=apply") > 0 })
	if err := c.stop(t); err != nil {
		t.Fatalf("Run returned %v after an abandoned drain, want nil", err)
	}
	if n := globalEvents(t, mem); n != 0 {
		t.Fatalf("%d events applied through a failing store", n)
	}
	gw.set(nil, 0)
	next := startConsumer(t, testConfig(addr), mem)
	waitFor(t, 30*time.Second, "all events applied by the next consumer", func() bool { return globalEvents(t, mem) == int64(len(evs)) })
	if err := next.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, mem, groundTruth(evs))
}
