package ingest_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest"
)

// latencyWriter records, for each event, the time from its creation (its
// ID holds the Unix nanoseconds when it was produced) to the end of the
// store write that made it durable.
type latencyWriter struct {
	ingest.Writer
	mu   sync.Mutex
	lats []time.Duration
}

func (l *latencyWriter) Apply(ctx context.Context, evs []streamrec.Event) (features.ApplyResult, error) {
	res, err := l.Writer.Apply(ctx, evs)
	now := time.Now()
	l.mu.Lock()
	for i := range evs {
		if ns, perr := strconv.ParseInt(evs[i].ID, 10, 64); perr == nil {
			l.lats = append(l.lats, now.Sub(time.Unix(0, ns)))
		}
	}
	l.mu.Unlock()
	return res, err
}

// BenchmarkIngestLatency measures event → store latency at a low rate
// (about 300 events/s, one record per produce request) with the default
// batching (flush after 5 ms idle or 20 ms age): p50 and p99 in ms, for the
// feature freshness target (p99 ≤ 100 ms).
func BenchmarkIngestLatency(b *testing.B) {
	addr := startBroker(b, 3)
	for _, st := range []struct {
		name string
		w    func(*testing.B) ingest.Writer
	}{
		{"store=memory", func(b *testing.B) ingest.Writer { return newMemory(b) }},
		{"store=redis", func(b *testing.B) ingest.Writer { return newStore(b) }},
	} {
		b.Run(st.name, func(b *testing.B) {
			lw := &latencyWriter{Writer: st.w(b)}
			cfg := ingest.DefaultConfig()
			cfg.Brokers = []string{addr}
			cfg.Group = "latency-" + st.name
			c := startConsumer(b, cfg, lw)
			w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: streamrec.TopicEvents, Balancer: &kafka.Hash{},
				BatchSize: 1, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
			defer w.Close()
			send := func(i int) {
				e := streamrec.Event{ID: strconv.FormatInt(time.Now().UnixNano(), 10), Type: "view", Kind: streamrec.Implicit, Weight: 1,
					User: "u" + strconv.Itoa(i%50), Item: "i" + strconv.Itoa(i%70), TS: time.Now().UnixMilli()}
				if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(e.User), Value: streamrec.AppendJSON(nil, &e)}); err != nil {
					b.Fatal(err)
				}
			}
			// Warm up: the group has joined and every partition is being
			// fetched once a few events went through.
			for i := 0; i < 30; i++ {
				send(i)
			}
			waitFor(b, 30*time.Second, "warm-up events applied", func() bool {
				lw.mu.Lock()
				defer lw.mu.Unlock()
				return len(lw.lats) >= 30
			})
			lw.mu.Lock()
			lw.lats = lw.lats[:0]
			lw.mu.Unlock()
			const perIter = 300
			b.ResetTimer()
			for i := 0; i < b.N*perIter; i++ {
				send(i)
				time.Sleep(3 * time.Millisecond)
			}
			waitFor(b, 30*time.Second, "all events applied", func() bool {
				lw.mu.Lock()
				defer lw.mu.Unlock()
				return len(lw.lats) >= b.N*perIter
			})
			b.StopTimer()
			c.stop(b)
			slices.Sort(lw.lats)
			q := func(p float64) float64 { return float64(lw.lats[int(p*float64(len(lw.lats)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
		})
	}
}
