package features_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
)

func TestZZTmpApply(t *testing.T) {
	addr := os.Getenv("ZZ_REDIS")
	if addr == "" {
		t.Skip()
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.FlushAll(ctx)
	s, err := features.NewRedis(ctx, c, features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	evs := syntheticEvents(20000, 943, 1682, 4, 1)
	start := time.Now()
	for i := 0; i < len(evs); i += 1000 {
		t0 := time.Now()
		if _, err := s.Apply(ctx, evs[i:i+1000]); err != nil {
			t.Fatal(err)
		}
		if i%5000 == 0 {
			t.Log(time.Since(t0))
		}
	}
	t.Log(time.Since(start), float64(len(evs))/time.Since(start).Seconds())
}
