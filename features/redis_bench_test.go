package features_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
)

// BenchmarkRedisApply measures Apply over a real redis-server with the
// exactly-once marks on: batches of 1000 synthetic events (every event new,
// so every script writes). ns/op is per event. The AOF is fsynced every
// second (the production setting of deploy/) or on every write (the test
// servers' setting, bounded by the disk's fsync rate).
func BenchmarkRedisApply(b *testing.B) {
	for _, sz := range []struct {
		fsync        string
		users, items int
	}{{"everysec", 943, 1682}, {"everysec", 100000, 20000}, {"always", 943, 1682}} {
		b.Run(fmt.Sprintf("fsync=%s/users=%d/items=%d", sz.fsync, sz.users, sz.items), func(b *testing.B) {
			ctx := context.Background()
			srv := redistest.StartOptions(b, redistest.Options{Args: []string{"--appendfsync", sz.fsync}})
			s, err := features.NewRedis(ctx, srv.Client(b), features.DefaultConfig(), zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			evs := syntheticEvents(100_000, sz.users, sz.items, 4, 1)
			base := int64(len(evs))
			const batch = 1000
			b.ReportAllocs()
			cpu0 := redisCPU(b, srv)
			b.ResetTimer()
			for done := 0; done < b.N; {
				k := min(batch, b.N-done)
				start := done % len(evs)
				chunk := evs[start : start+k]
				for i := range chunk {
					chunk[i].Pos.Offset += base // fresh offsets: every event applies
				}
				res, err := s.Apply(ctx, chunk)
				if err != nil {
					b.Fatal(err)
				}
				if res.Applied != k {
					b.Fatalf("applied %d of %d", res.Applied, k)
				}
				done += k
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			reportRedisCost(b, srv, cpu0)
		})
	}
}

// BenchmarkUserSeen measures the serving read: features and seen-set in one
// round trip.
func BenchmarkUserSeen(b *testing.B) {
	ctx := context.Background()
	evs := syntheticEvents(100_000, 1000, 2000, 4, 1) // ~100 events per user
	open := map[string]func(b *testing.B) features.Store{
		"memory": func(b *testing.B) features.Store { return mustMemory(b, features.DefaultConfig()) },
		"redis": func(b *testing.B) features.Store {
			srv := redistest.Start(b)
			s, err := features.NewRedis(ctx, srv.Client(b), features.DefaultConfig(), zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			s := open[name](b)
			for i := 0; i < len(evs); i += 1000 {
				if _, err := s.Apply(ctx, evs[i:i+1000]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, seen, ok, err := s.UserSeen(ctx, evs[i%len(evs)].User)
				if err != nil || !ok || len(seen) == 0 {
					b.Fatalf("UserSeen: %v %v", ok, err)
				}
			}
		})
	}
}

// movieLens loads MovieLens 100K's ratings in time order (stable), spread
// over 3 partitions by user, or skips when the data is absent.
func movieLens(b *testing.B) []streamrec.Event {
	dir := os.Getenv("STREAMREC_TEST_DATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "data")
	}
	f, err := os.Open(filepath.Join(dir, "ml-100k", "u.data"))
	if err != nil {
		b.Skipf("MovieLens 100K not found: %v", err)
	}
	defer f.Close()
	var evs []streamrec.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 4 {
			b.Fatalf("bad line %q", sc.Text())
		}
		v, _ := strconv.ParseFloat(fs[2], 64)
		ts, _ := strconv.ParseInt(fs[3], 10, 64)
		evs = append(evs, streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: fs[0], Item: fs[1], Value: v, TS: ts * 1000})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
	var offs [3]int64
	for i := range evs {
		u, _ := strconv.Atoi(evs[i].User)
		p := u % 3
		evs[i].Pos = streamrec.Position{Topic: "streamrec.events", Partition: int32(p), Offset: offs[p]}
		offs[p]++
	}
	return evs
}

// BenchmarkRedisApplyMovieLens applies MovieLens 100K in time order in
// batches of 1000 (an ingest batch) to a real redis-server (AOF fsync every
// second), exactly-once marks on. ns/op is per event.
func BenchmarkRedisApplyMovieLens(b *testing.B) {
	ctx := context.Background()
	evs := movieLens(b)
	srv := redistest.StartOptions(b, redistest.Options{Args: []string{"--appendfsync", "everysec"}})
	s, err := features.NewRedis(ctx, srv.Client(b), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	base := int64(len(evs))
	b.ReportAllocs()
	cpu0 := redisCPU(b, srv)
	b.ResetTimer()
	for done := 0; done < b.N; {
		start := done % len(evs)
		chunk := evs[start:min(start+1000, len(evs), start+b.N-done)]
		for i := range chunk {
			chunk[i].Pos.Offset += base
		}
		if _, err := s.Apply(ctx, chunk); err != nil {
			b.Fatal(err)
		}
		done += len(chunk)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	reportRedisCost(b, srv, cpu0)
}

// redisCPU is the server process's CPU time so far (user + system), in
// seconds, from INFO cpu.
func redisCPU(b *testing.B, srv *redistest.Server) float64 {
	info, err := srv.Client(b).Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

// reportRedisCost reports, per event, the commands the scripts ran, the
// server's wall time in EVALSHA and the server's CPU time since cpu0 (see
// redisCPU). The command count and the CPU time do not grow with the load
// of a shared machine; the EVALSHA time does (it is wall time, including
// time the server was not scheduled). Set STREAMREC_CMDSTATS to log the
// per-command breakdown.
func reportRedisCost(b *testing.B, srv *redistest.Server, cpu0 float64) {
	cpu := redisCPU(b, srv) - cpu0
	info, err := srv.Client(b).Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var calls, evalUsec float64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var n, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				n, _ = strconv.ParseFloat(v, 64)
			case "usec":
				usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		if os.Getenv("STREAMREC_CMDSTATS") != "" && n > 0 {
			b.Logf("%-22s %8.3f calls/event %8.0f ns/event", name, n/float64(b.N), usec*1000/float64(b.N))
		}
		switch name {
		case "cmdstat_evalsha":
			evalUsec = usec
		case "cmdstat_hmget", "cmdstat_hset", "cmdstat_sadd", "cmdstat_smismember", "cmdstat_lpush", "cmdstat_lrem",
			"cmdstat_ltrim", "cmdstat_pexpire", "cmdstat_pttl", "cmdstat_zincrby", "cmdstat_zadd", "cmdstat_zrange", "cmdstat_zmscore":
			calls += n
		}
	}
	b.ReportMetric(calls/float64(b.N), "redis-cmds/event")
	b.ReportMetric(evalUsec*1000/float64(b.N), "redis-script-ns/event")
	b.ReportMetric(cpu*1e9/float64(b.N), "redis-cpu-ns/event")
}
