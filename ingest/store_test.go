package ingest_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest"
)

// newStore is the store the exactly-once tests run against: the real Redis
// store on a redis-server started for the test.
func newStore(tb testing.TB) store {
	tb.Helper()
	s, _ := newRedisStore(tb)
	return s
}

func newRedisStore(tb testing.TB, args ...string) (*features.Redis, *redistest.Server) {
	tb.Helper()
	srv := redistest.StartOptions(tb, redistest.Options{Args: args})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	s, err := features.NewRedis(context.Background(), client, features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, srv
}

// TestRedisDownMidStream stops redis-server while events flow: the consumer
// backs off (a bounded number of retries, no tight loop), resumes when Redis
// is back, and the counters are exact.
func TestRedisDownMidStream(t *testing.T) {
	addr := startBroker(t, 3)
	s, srv := newRedisStore(t)
	evs := genEvents(3000, 50, 100, 8)
	msgs := encode(evs)
	cfg := testConfig(addr)
	cfg.BatchSize = 100
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 300*time.Millisecond
	c := startConsumer(t, cfg, s)

	produce(t, addr, streamrec.TopicEvents, msgs[:1000])
	waitFor(t, 30*time.Second, "the first events applied", func() bool { return globalEvents(t, s) > 0 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	produce(t, addr, streamrec.TopicEvents, msgs[1000:])
	waitFor(t, 30*time.Second, "a failed write", func() bool { return metric(t, c.reg, "streamrec_ingest_retries_total", "op=apply") > 0 })
	const down = 1500 * time.Millisecond
	time.Sleep(down)
	retriesDown := metric(t, c.reg, "streamrec_ingest_retries_total", "op=apply")
	if err := c.c.Ready(); err == nil {
		t.Error("Ready() = nil while Redis is down")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "all events applied after Redis came back", func() bool { return globalEvents(t, s) >= int64(len(evs)) })
	if err := c.c.Ready(); err != nil {
		t.Errorf("Ready() = %v after Redis came back", err)
	}
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, s, groundTruth(evs))
	// Back-off doubles from 20 ms to a 300 ms cap: about 10 retries in the
	// 1.5 s Redis was down. A tight loop would make thousands.
	if retriesDown > 40 {
		t.Fatalf("%v retries while Redis was down for %s: not backing off", retriesDown, down)
	}
	t.Logf("%v retries while Redis was down", retriesDown)
}

// benchRedisIngest runs the ingest benchmark against a real Redis store
// (AOF with fsync every second, as a production Redis), then runs
// redis-benchmark against the same server for the ratio.
func benchRedisIngest(b *testing.B, addr string, n int) {
	s, srv := newRedisStore(b, benchRedisArgs()...)
	flush := func(b *testing.B) ingest.Writer {
		if err := s.Client().FlushAll(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
		return s
	}
	ctx := context.Background()
	cmds0, cpu0 := redisStats(b, s.Client())
	self0 := selfCPU()
	wall := benchIngest(b, addr, n, flush)
	self1 := selfCPU()
	cmds1, cpu1 := redisStats(b, s.Client())
	if os.Getenv("STREAMREC_BENCH_CMDSTATS") != "" {
		info, _ := s.Client().Info(context.Background(), "commandstats").Result()
		b.Log(info)
	}
	events := float64(n) * float64(b.N)
	perEvent := (cmds1 - cmds0) / events
	b.ReportMetric(perEvent, "redis-cmds/event")
	// CPU per event is what a loaded, shared machine cannot distort much.
	b.ReportMetric(1e6*(cpu1-cpu0)/events, "redis-cpu-µs/event")
	b.ReportMetric(1e6*(self1-self0)/events, "go-cpu-µs/event")
	if rate := redisSetRate(b, srv.Addr()); rate > 0 {
		b.ReportMetric(rate, "redis-set-ops/s")
		target := 0.25 * rate / perEvent
		b.Logf("redis-benchmark -P 16 -t set: %.0f SET/s on the same server; %.1f Redis commands per event "+
			"(script calls and the commands they run); product.md §7 target 25%% × %.0f ÷ %.1f = %.0f events/s; measured %.0f",
			rate, perEvent, rate, perEvent, target, events/wall.Seconds())
	}
	_ = ctx
}

// redisStats returns the commands Redis has run (INFO commandstats, Lua's
// inner commands included) and its CPU seconds.
func redisStats(b *testing.B, c redis.UniversalClient) (cmds, cpu float64) {
	ctx := context.Background()
	info, err := c.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "cmdstat_"):
			if i := strings.Index(line, "calls="); i >= 0 {
				v, _, _ := strings.Cut(line[i+len("calls="):], ",")
				f, _ := strconv.ParseFloat(v, 64)
				if !strings.HasPrefix(line, "cmdstat_info:") && !strings.HasPrefix(line, "cmdstat_flushall:") {
					cmds += f
				}
			}
		case strings.HasPrefix(line, "used_cpu_sys:"), strings.HasPrefix(line, "used_cpu_user:"):
			_, v, _ := strings.Cut(line, ":")
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		}
	}
	return cmds, cpu
}

// selfCPU is this process's CPU seconds (user + system): the consumer, the
// Kafka client and the embedded broker.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// benchRedisArgs is the benchmark server's persistence: AOF with fsync every
// second (a common production setting), or what STREAMREC_BENCH_REDIS_ARGS
// says (space-separated redis-server arguments).
func benchRedisArgs() []string {
	if v := os.Getenv("STREAMREC_BENCH_REDIS_ARGS"); v != "" {
		return strings.Fields(v)
	}
	return []string{"--appendfsync", "everysec"}
}
