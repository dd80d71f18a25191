package ingest_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest"
)

// sharedData finds ../shared/data beside the repository (or STREAMREC_TEST_DATA).
func sharedData() string {
	if d := os.Getenv("STREAMREC_TEST_DATA"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for i := 0; i < 5; i++ {
		if st, err := os.Stat(filepath.Join(dir, "..", "shared", "data")); err == nil && st.IsDir() {
			return filepath.Join(dir, "..", "shared", "data")
		}
		dir = filepath.Dir(dir)
	}
	return ""
}

// benchEvents is MovieLens 100K u.data as rating events keyed by user, or
// 100,000 generated events when the data is absent.
func benchEvents(b *testing.B) ([]kafka.Message, string) {
	b.Helper()
	path := filepath.Join(sharedData(), "ml-100k", "u.data")
	f, err := os.Open(path)
	if err != nil {
		b.Logf("MovieLens 100K not found (%v): using 100,000 generated events", err)
		return encode(genEvents(100000, 943, 1682, 42)), "synthetic-100k"
	}
	defer f.Close()
	var msgs []kafka.Message
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 {
			b.Fatalf("u.data line %q", sc.Text())
		}
		v, _ := strconv.ParseFloat(fields[2], 64)
		ts, _ := strconv.ParseInt(fields[3], 10, 64)
		e := streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: fields[0], Item: fields[1], Value: v, TS: ts * 1000}
		msgs = append(msgs, kafka.Message{Key: []byte(e.User), Value: streamrec.AppendJSON(nil, &e)})
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return msgs, "ml-100k"
}

// countingWriter signals when n events have been handled.
type countingWriter struct {
	ingest.Writer
	seen atomic.Int64
	n    int64
	done chan struct{}
}

func (c *countingWriter) Apply(ctx context.Context, evs []streamrec.Event) (features.ApplyResult, error) {
	res, err := c.Writer.Apply(ctx, evs)
	if err == nil && c.seen.Add(int64(len(evs))) == c.n {
		close(c.done)
	}
	return res, err
}

// BenchmarkIngestEndToEnd measures Kafka (embedded broker, over TCP) →
// decode → batched exactly-once writes → commit, on MovieLens 100K
// pre-produced to the events topic. Each iteration consumes the whole topic
// with a new consumer group into an empty store. The redis sub-benchmark
// also runs redis-benchmark -P 16 -t set against the same server, for the
// ratio product.md §7 asks for.
func BenchmarkIngestEndToEnd(b *testing.B) {
	msgs, name := benchEvents(b)
	b.Logf("data: %s, %d events", name, len(msgs))
	addr := startBroker(b, 3)
	produce(b, addr, streamrec.TopicEvents, msgs)

	b.Run("store=memory", func(b *testing.B) {
		_ = benchIngest(b, addr, len(msgs), func(b *testing.B) ingest.Writer { return newMemory(b) })
	})
	b.Run("store=redis", func(b *testing.B) {
		benchRedisIngest(b, addr, len(msgs))
	})
}

// benchIngest runs the iterations and returns the time spent consuming.
func benchIngest(b *testing.B, addr string, n int, newWriter func(*testing.B) ingest.Writer) time.Duration {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := &countingWriter{Writer: newWriter(b), n: int64(n), done: make(chan struct{})}
		cfg := ingest.DefaultConfig()
		cfg.Brokers = []string{addr}
		if v, err := strconv.Atoi(os.Getenv("STREAMREC_BENCH_BATCH")); err == nil {
			cfg.BatchSize = v
		}
		cfg.Group = "bench-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		c, err := ingest.New(cfg, w, prometheus.NewRegistry(), zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- c.Run(ctx) }()
		select {
		case <-w.done:
		case <-time.After(5 * time.Minute):
			b.Fatal("ingest did not finish in 5 minutes")
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "events/s")
	return total
}

var redisBenchRE = regexp.MustCompile(`SET: ([0-9.]+) requests per second`)

// redisSetRate runs redis-benchmark -P 16 -t set -q -n 1000000 against
// addr and returns its SET rate (ops/s), or 0 when it is not installed.
func redisSetRate(b *testing.B, addr string) float64 {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Logf("redis-benchmark not installed: no ratio")
		return 0
	}
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(bin, "-h", host, "-p", port, "-P", "16", "-t", "set", "-q", "-n", "1000000").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	m := redisBenchRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("redis-benchmark output not understood: %q", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
