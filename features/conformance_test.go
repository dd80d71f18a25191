package features_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/featurestest"
	"github.com/streamrec/streamrec/features/redistest"
)

func TestMemoryConformance(t *testing.T) {
	featurestest.Run(t, func(t *testing.T, cfg features.Config) features.Store {
		return mustMemory(t, cfg)
	})
}

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	t.Run("batched", func(t *testing.T) { redisConformance(t, srv, false) })
	// One key group (one slot) per script call, as on Redis Cluster.
	t.Run("single-slot", func(t *testing.T) { redisConformance(t, srv, true) })
}

func redisConformance(t *testing.T, srv *redistest.Server, singleSlot bool) {
	client := srv.Client(t)
	featurestest.Run(t, func(t *testing.T, cfg features.Config) features.Store {
		ctx := context.Background()
		if err := client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		// The store closes its client, so each gets its own.
		s, err := features.NewRedis(ctx, srv.Client(t), cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		s.SingleSlotCalls(singleSlot)
		return s
	})
}

// TestRedisUserTTLExpires checks that per-user keys really expire on the
// server (the suite checks the TTL's value).
func TestRedisUserTTLExpires(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := features.DefaultConfig()
	cfg.UserTTL = 200 * time.Millisecond
	s, err := features.NewRedis(ctx, srv.Client(t), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	e := featurestest.Ev("u", "i", streamrec.Implicit, 0, featurestest.T0, 0, 0)
	if _, err := s.Apply(ctx, []streamrec.Event{e}); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t)
	for _, k := range []string{features.UserKey("u"), features.UserKey("u") + ":recent", features.UserKey("u") + ":seen"} {
		if d := c.PTTL(ctx, k).Val(); d <= 0 || d > cfg.UserTTL {
			t.Errorf("%s: TTL %v, want (0, %v]", k, d, cfg.UserTTL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, err := s.User(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("user still there 5 s after its 200 ms TTL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := c.Exists(ctx, features.UserKey("u")+":recent", features.UserKey("u")+":seen").Val(); n != 0 {
		t.Errorf("%d of the user's keys outlived the TTL", n)
	}
}
