package features_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

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
