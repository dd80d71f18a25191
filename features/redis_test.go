package features_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
)

// TestRedisOutageRetry: a batch that fails while Redis is down is retried
// after it returns and counts once; a restart also flushes the scripts
// (NOSCRIPT), which Apply recovers from.
func TestRedisOutageRetry(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s, err := features.NewRedis(ctx, srv.Client(t), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	evs := syntheticEvents(600, 20, 30, 3, 7)
	if _, err := s.Apply(ctx, evs[:300]); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = s.Apply(cctx, evs[200:500])
	cancel()
	if err == nil {
		t.Fatal("Apply succeeded with Redis down")
	}
	if err := srv.Start(); err != nil { // scripts are gone after a restart
		t.Fatal(err)
	}
	res, err := s.Apply(ctx, evs[200:500])
	if err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	if res.Applied != 200 || res.Duplicates != 100 {
		t.Errorf("retry: %+v, want 200 applied, 100 duplicates", res)
	}
	if err := srv.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, evs[500:]); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
	if err := srv.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if us, changed, err := s.UserStateSince(ctx, evs[0].User, ""); err != nil || !changed || !us.Known {
		t.Fatalf("UserStateSince after SCRIPT FLUSH: %+v, changed %v, %v", us, changed, err)
	}
	m := mustMemory(t, features.DefaultConfig())
	if _, err := m.Apply(ctx, evs); err != nil {
		t.Fatal(err)
	}
	gr, err := s.Global(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gm := m.GlobalNow(); gr.Events != gm.Events || gr.Users != gm.Users || gr.Items != gm.Items || gr.Explicit != gm.Explicit {
		t.Errorf("global after outage = %+v, want %+v", gr, gm)
	}
	for _, e := range evs[:20] {
		a, _, _ := m.User(ctx, e.User)
		b, _, err := s.User(ctx, e.User)
		if err != nil || a.Counters != b.Counters {
			t.Errorf("user %s after outage = %+v (%v), want %+v", e.User, b.Counters, err, a.Counters)
		}
	}
}
