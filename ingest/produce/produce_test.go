package produce_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/ingest/produce"
)

// fakeClock advances only when the producer sleeps.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

// recorder is a MessageWriter that keeps what it is sent, stamped with the
// fake time, and can fail on chosen calls.
type recorder struct {
	mu    sync.Mutex
	clock *fakeClock
	msgs  []kafka.Message
	at    []time.Time
	calls int
	// fail returns the error for call n (0-based), nil to succeed.
	fail func(n int, msgs []kafka.Message) error
	// after runs after each successful call.
	after func(total int)
}

func (r *recorder) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	n := r.calls
	r.calls++
	r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(n, msgs); err != nil {
			var werr kafka.WriteErrors
			if errors.As(err, &werr) {
				// Keep the messages that "succeeded".
				r.mu.Lock()
				for i, e := range werr {
					if e == nil {
						r.msgs = append(r.msgs, clone(msgs[i]))
					}
				}
				r.mu.Unlock()
			}
			return err
		}
	}
	r.mu.Lock()
	for _, m := range msgs {
		r.msgs = append(r.msgs, clone(m))
		if r.clock != nil {
			r.at = append(r.at, r.clock.Now())
		}
	}
	total := len(r.msgs)
	r.mu.Unlock()
	if r.after != nil {
		r.after(total)
	}
	return nil
}

func clone(m kafka.Message) kafka.Message {
	m.Key, m.Value = slices.Clone(m.Key), slices.Clone(m.Value)
	return m
}

func (r *recorder) events(t *testing.T, topic string) []streamrec.Event {
	t.Helper()
	dec := streamrec.NewDecoder()
	var out []streamrec.Event
	for _, m := range r.msgs {
		if m.Topic != topic {
			continue
		}
		e, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatalf("message %s does not decode: %v", m.Value, err)
		}
		if string(m.Key) != e.User {
			t.Fatalf("key %q, want the user %q", m.Key, e.User)
		}
		out = append(out, e)
	}
	return out
}

func synth(events int) *dataset.Data {
	c := dataset.DefaultSyntheticConfig()
	c.Users, c.Items, c.Events = 50, 40, events
	d, _ := dataset.Synthetic(c)
	return d
}

func fakeOpts(clock *fakeClock, w produce.MessageWriter) produce.Options {
	o := produce.DefaultOptions()
	o.Writer, o.Now, o.Sleep = w, clock.Now, clock.Sleep
	return o
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestRunSendsItemsThenEventsInOrder(t *testing.T) {
	d := synth(2500)
	clock := newClock()
	rec := &recorder{clock: clock}
	o := fakeOpts(clock, rec)
	o.BatchSize = 300
	st, err := produce.Run(context.Background(), d, o, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != 2500 || st.Items != 40 || st.Loops != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v", st)
	}
	for i, m := range rec.msgs[:40] {
		if m.Topic != streamrec.TopicItems {
			t.Fatalf("message %d on %s before the catalogue was sent", i, m.Topic)
		}
		it, err := streamrec.DecodeItem(m.Value, 1<<16)
		if err != nil || it.Item != d.Items[i].Item || it.Title != d.Items[i].Title || string(m.Key) != it.Item {
			t.Fatalf("item %d: %+v %v", i, it, err)
		}
	}
	got := rec.events(t, streamrec.TopicEvents)
	if len(got) != len(d.Events) {
		t.Fatalf("%d events sent, want %d", len(got), len(d.Events))
	}
	for i := range got {
		w := d.Events[i]
		if g := got[i]; g.User != w.User || g.Item != w.Item || g.TS != w.TS || g.Type != w.Type || g.Value != w.Value {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
	if st.Batches != 1+9 { // one catalogue batch, ceil(2500/300) event batches
		t.Errorf("batches %d, want 10", st.Batches)
	}
}

func TestRateIsHonoured(t *testing.T) {
	d := synth(1000)
	clock := newClock()
	rec := &recorder{clock: clock}
	o := fakeOpts(clock, rec)
	o.Rate = 100
	o.ItemsTopic = "-"
	start := clock.Now()
	st, err := produce.Run(context.Background(), d, o, zerolog.Nop())
	if err != nil || st.Events != 1000 {
		t.Fatalf("stats %+v err %v", st, err)
	}
	// Count events per (fake) second: each second holds about Rate events.
	perSec := map[int]int{}
	for _, at := range rec.at {
		perSec[int(at.Sub(start)/time.Second)]++
	}
	for sec, n := range perSec {
		if n > 101 {
			t.Errorf("second %d carried %d events, rate is 100", sec, n)
		}
	}
	if len(perSec) < 9 || len(perSec) > 11 {
		t.Errorf("1000 events at 100/s spread over %d seconds, want ~10", len(perSec))
	}
}

func TestSpeedupFollowsEventTime(t *testing.T) {
	// Three events 100 s and 1000 s apart in event time, at speedup 100.
	d := &dataset.Data{Name: "t", Events: []streamrec.Event{
		{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "a", Item: "x", TS: 1_000_000},
		{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "a", Item: "y", TS: 1_100_000},
		{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "b", Item: "y", TS: 2_100_000},
	}}
	clock := newClock()
	rec := &recorder{clock: clock}
	o := fakeOpts(clock, rec)
	o.Speedup = 100
	start := clock.Now()
	if _, err := produce.Run(context.Background(), d, o, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, time.Second, 11 * time.Second}
	for i, at := range rec.at {
		if got := at.Sub(start); got != want[i] {
			t.Errorf("event %d sent at +%s, want +%s", i, got, want[i])
		}
	}
}

func TestLoopRetimeAndGracefulStop(t *testing.T) {
	d := synth(100)
	clock := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{clock: clock, after: func(total int) {
		if total >= 40+250 { // catalogue + events
			cancel()
		}
	}}
	o := fakeOpts(clock, rec)
	o.Loop, o.Retime, o.Rate, o.BatchSize = true, true, 1000, 7
	st, err := produce.Run(ctx, d, o, zerolog.Nop())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	got := rec.events(t, streamrec.TopicEvents)
	if int64(len(got)) != st.Events || st.Events < 250 || st.Loops < 2 {
		t.Fatalf("recorded %d, stats %+v", len(got), st)
	}
	for i, e := range got {
		if e.Item != d.Events[i%100].Item {
			t.Fatalf("event %d is %s, want the loop's %s", i, e.Item, d.Events[i%100].Item)
		}
		if e.TS < clock.now.Add(-time.Hour).UnixMilli() {
			t.Fatalf("event %d keeps ts %d; Retime should move it to the clock", i, e.TS)
		}
		if i > 0 && e.TS < got[i-1].TS {
			t.Fatalf("retimed events go back in time at %d", i)
		}
	}
}

func TestStopFlushesBufferedEvents(t *testing.T) {
	d := synth(100)
	clock := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	o := fakeOpts(clock, rec)
	o.ItemsTopic, o.Retime, o.BatchSize = "-", true, 1000
	calls := 0
	o.Now = func() time.Time {
		// Retime reads the clock once per event: stop in the middle of the
		// first (unflushed) batch.
		if calls++; calls == 30 {
			cancel()
		}
		return clock.Now()
	}
	st, err := produce.Run(ctx, d, o, zerolog.Nop())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if st.Events == 0 || st.Events >= 100 || int64(len(rec.msgs)) != st.Events || st.Batches != 1 {
		t.Fatalf("stats %+v, recorded %d: want the buffered part of the batch flushed once", st, len(rec.msgs))
	}
}

func TestRetriesFailedMessagesOnly(t *testing.T) {
	d := synth(10)
	clock := newClock()
	rec := &recorder{clock: clock}
	rec.fail = func(n int, msgs []kafka.Message) error {
		switch n {
		case 0:
			return errors.New("broker down")
		case 1:
			werr := make(kafka.WriteErrors, len(msgs))
			for i := range werr {
				if i%2 == 1 {
					werr[i] = kafka.NotLeaderForPartition
				}
			}
			return werr
		}
		return nil
	}
	o := fakeOpts(clock, rec)
	o.ItemsTopic = "-"
	start := clock.Now()
	st, err := produce.Run(context.Background(), d, o, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if st.Retries != 2 || st.Events != 10 || len(rec.msgs) != 10 {
		t.Fatalf("stats %+v, recorded %d", st, len(rec.msgs))
	}
	// Back-off 100 ms then 200 ms.
	if got := clock.Now().Sub(start); got != 300*time.Millisecond {
		t.Errorf("slept %s, want 300ms of back-off", got)
	}
	items := map[string]int{}
	for _, e := range rec.events(t, streamrec.TopicEvents) {
		items[fmt.Sprint(e.User, e.Item, e.TS)]++
	}
	for k, n := range items {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
}

func TestGivesUpAfterMaxRetries(t *testing.T) {
	clock := newClock()
	rec := &recorder{fail: func(int, []kafka.Message) error { return errors.New("broker down") }}
	o := fakeOpts(clock, rec)
	o.MaxRetries, o.MaxBackoff = 4, 250*time.Millisecond
	start := clock.Now()
	_, err := produce.Run(context.Background(), synth(5), o, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Fatalf("err = %v", err)
	}
	if rec.calls != 5 {
		t.Errorf("%d attempts, want 5", rec.calls)
	}
	// 100 + 200 + 250 + 250 ms: capped.
	if got := clock.Now().Sub(start); got != 800*time.Millisecond {
		t.Errorf("slept %s, want 800ms", got)
	}
}

func TestProgressLines(t *testing.T) {
	clock := newClock()
	var buf bytes.Buffer
	o := fakeOpts(clock, &recorder{})
	o.Progress, o.ProgressEvery, o.Rate, o.BatchSize = &buf, time.Second, 500, 100
	if _, err := produce.Run(context.Background(), synth(2000), o, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 3 || !strings.Contains(lines[len(lines)-1], "2000/2000 events (100.0%)") {
		t.Fatalf("progress:\n%s", buf.String())
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		mod  func(*produce.Options)
		want string
	}{
		{func(o *produce.Options) { o.Rate = -1 }, "rate"},
		{func(o *produce.Options) { o.Speedup = -2 }, "speedup"},
		{func(o *produce.Options) { o.Brokers = []string{" "} }, "brokers"},
		{func(o *produce.Options) { o.ItemsTopic = o.Topic }, "topics"},
	}
	for _, tc := range tests {
		o := produce.DefaultOptions()
		tc.mod(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error about %s", err, tc.want)
		}
	}
	if err := produce.DefaultOptions().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// newBroker starts an in-process Kafka-protocol broker with the topics.
func newBroker(t testing.TB, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func TestKafkaRoundTrip(t *testing.T) {
	addr := newBroker(t, "t", "items")
	d := synth(3000)
	o := produce.DefaultOptions()
	o.Brokers, o.Topic, o.ItemsTopic, o.BatchSize = []string{addr}, "t", "items", 400
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := produce.Run(ctx, d, o, zerolog.Nop())
	if err != nil || st.Events != 3000 || st.Items != 40 {
		t.Fatalf("produce: %+v %v", st, err)
	}

	// Every user's events sit in one partition, in time order.
	userPart := map[string]int{}
	for p := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "t", Partition: p, MaxWait: 50 * time.Millisecond})
		conn, err := kafka.DialLeader(ctx, "tcp", addr, "t", p)
		if err != nil {
			t.Fatal(err)
		}
		_, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		var prev int64
		dec := streamrec.NewDecoder()
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e, err := dec.Decode(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if q, ok := userPart[e.User]; ok && q != p {
				t.Fatalf("user %s in partitions %d and %d", e.User, q, p)
			}
			userPart[e.User] = p
			if e.TS < prev {
				t.Fatalf("partition %d goes back in time at offset %d", p, m.Offset)
			}
			prev = e.TS
		}
		r.Close()
	}

	// The kafka: spec reads it all back.
	back, err := dataset.Load(ctx, "kafka:"+addr+"/t", dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Events) != len(d.Events) || back.Rejected != 0 {
		t.Fatalf("read back %d events (%d rejected), want %d", len(back.Events), back.Rejected, len(d.Events))
	}
	key := func(e streamrec.Event) string { return fmt.Sprint(e.TS, e.User, e.Item, e.Type, e.Value) }
	want := map[string]int{}
	for _, e := range d.Events {
		want[key(e)]++
	}
	for i, e := range back.Events {
		want[key(e)]--
		if i > 0 && e.TS < back.Events[i-1].TS {
			t.Fatal("read-back events are not in time order")
		}
	}
	for k, n := range want {
		if n != 0 {
			t.Fatalf("event %s: count differs by %d", k, n)
		}
	}

	// A time range keeps [From, To).
	from, to := d.Events[1000].Time(), d.Events[2000].Time()
	part, err := dataset.Load(ctx, "kafka:"+addr+"/t", dataset.Options{From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	wantN := 0
	for _, e := range d.Events {
		if e.TS >= from.UnixMilli() && e.TS < to.UnixMilli() {
			wantN++
		}
	}
	if len(part.Events) != wantN {
		t.Fatalf("range read %d events, want %d", len(part.Events), wantN)
	}

	// Bad records on the topic are counted, not fatal.
	w := produce.NewWriter([]string{addr})
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: "t", Key: []byte("x"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	back, err = dataset.Load(ctx, "kafka:"+addr+"/t", dataset.Options{})
	if err != nil || back.Rejected != 1 || len(back.Events) != 3000 {
		t.Fatalf("with a bad record: %d events, %d rejected, %v", len(back.Events), back.Rejected, err)
	}
}

func TestKafkaCatalogueReadBack(t *testing.T) {
	addr := newBroker(t, streamrec.TopicEvents, streamrec.TopicItems)
	d := synth(200)
	o := produce.DefaultOptions()
	o.Brokers = []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := produce.Run(ctx, d, o, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	back, err := dataset.Load(ctx, "kafka:"+addr+"/"+streamrec.TopicEvents, dataset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Events) != 200 || len(back.Items) != len(d.Items) {
		t.Fatalf("read back %d events and %d items, want 200 and %d", len(back.Events), len(back.Items), len(d.Items))
	}
	want := map[string]string{}
	for _, m := range d.Items {
		want[m.Item] = m.Title + strings.Join(m.Categories, "|")
	}
	for _, m := range back.Items {
		if got := m.Title + strings.Join(m.Categories, "|"); got != want[m.Item] {
			t.Fatalf("item %s = %q, want %q", m.Item, got, want[m.Item])
		}
	}
}

func TestKafkaRateRealClock(t *testing.T) {
	addr := newBroker(t, "t", "items")
	o := produce.DefaultOptions()
	o.Brokers, o.Topic, o.ItemsTopic, o.Rate = []string{addr}, "t", "items", 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := produce.Run(ctx, synth(5000), o, zerolog.Nop())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	// At 100 events/s for at most 2 s (plus the first event at t=0), never
	// more than 201; counted, not timed. The first event goes out at once,
	// so even a slow machine sends some.
	if st.Events < 1 || st.Events > 201 {
		t.Fatalf("sent %d events in 2 s at rate 100", st.Events)
	}
	back, err := dataset.Load(context.Background(), "kafka:"+addr+"/t", dataset.Options{})
	if err != nil || int64(len(back.Events)) != st.Events {
		t.Fatalf("topic holds %d events, stats say %d (%v)", len(back.Events), st.Events, err)
	}
}

// BenchmarkProduceKfake publishes 100,000 synthetic events to an in-process
// broker over the Kafka protocol.
func BenchmarkProduceKfake(b *testing.B) {
	addr := newBroker(b, "t", "items")
	c := dataset.DefaultSyntheticConfig()
	c.Events = 100_000
	d, _ := dataset.Synthetic(c)
	o := produce.DefaultOptions()
	o.Brokers, o.Topic, o.ItemsTopic = []string{addr}, "t", "-"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := produce.Run(ctx, d, o, zerolog.Nop()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(d.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEncode is the producer's per-event work without a broker.
func BenchmarkEncode(b *testing.B) {
	c := dataset.DefaultSyntheticConfig()
	c.Events = 100_000
	d, _ := dataset.Synthetic(c)
	o := produce.DefaultOptions()
	o.Writer, o.ItemsTopic = discard{}, "-"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := produce.Run(ctx, d, o, zerolog.Nop()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(d.Events))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }
