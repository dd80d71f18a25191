package features_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
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

// TestRedisClientCacheStamps: over a client with the client-side cache, an
// unchanged user's stamp check is answered from memory (Redis sees no new
// reads), and a write by another client (as ingest and the learner are)
// reaches the reader through Redis's invalidation.
func TestRedisClientCacheStamps(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	writer, err := features.NewRedis(ctx, srv.Client(t), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	reader, err := features.NewRedis(ctx, srv.Client(t, features.ClientCache(1024)), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ev := func(item string, off int64) streamrec.Event {
		return streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: item,
			TS: 1700000000000 + off, Pos: streamrec.Position{Topic: "t", Offset: off}}
	}
	// A user read while unknown is seen when their first event arrives.
	if st, changed, err := reader.UserStateSince(ctx, "u", ""); err != nil || changed || st.Known {
		t.Fatalf("unknown user: %+v, %v, %v", st, changed, err)
	}
	if _, err := writer.Apply(ctx, []streamrec.Event{ev("a", 0)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	st, changed, err := reader.UserStateSince(ctx, "u", "")
	for err == nil && !changed && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		st, changed, err = reader.UserStateSince(ctx, "u", "")
	}
	if err != nil || !changed || !st.Known {
		t.Fatalf("first read: %+v, %v, %v", st, changed, err)
	}
	reads := func() int64 { // script calls Redis has served
		var n int64
		for _, c := range []string{"evalsha", "hget"} {
			info, err := admin.Do(ctx, "INFO", "commandstats").Text()
			if err != nil {
				t.Fatal(err)
			}
			_, rest, ok := strings.Cut(info, "cmdstat_"+c+":calls=")
			if ok {
				v, _ := strconv.ParseInt(rest[:strings.IndexAny(rest, ",\r\n")], 10, 64)
				n += v
			}
		}
		return n
	}
	if _, changed, err := reader.UserStateSince(ctx, "u", st.Stamp); err != nil || changed {
		t.Fatalf("unchanged user: changed %v, %v", changed, err)
	}
	before := reads()
	for range 100 {
		if _, changed, err := reader.UserStateSince(ctx, "u", st.Stamp); err != nil || changed {
			t.Fatalf("unchanged user: changed %v, %v", changed, err)
		}
	}
	if n := reads() - before; n != 0 {
		t.Errorf("100 stamp checks of an unchanged user made %d reads in Redis, want 0 (tracked)", n)
	}
	// Writes by other clients: the reader sees each within the cache's
	// staleness bound (MaxStaleness, 1 s; invalidations normally take ms).
	waitChanged := func(what string, since features.Stamp) features.UserState {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			st, changed, err := reader.UserStateSince(ctx, "u", since)
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not seen through the client cache within 1 s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if _, err := writer.Apply(ctx, []streamrec.Event{ev("b", 1)}); err != nil {
		t.Fatal(err)
	}
	st2 := waitChanged("a new event", st.Stamp)
	if st2.User.Events != 2 || len(st2.Seen) != 2 {
		t.Errorf("after the event: %+v", st2)
	}
	if err := writer.PutUserVectors(ctx, 9, map[string][]float32{"u": {1}}); err != nil {
		t.Fatal(err)
	}
	st3 := waitChanged("a vector write", st2.Stamp)
	if st3.User.VectorVersion != 9 {
		t.Errorf("after the vector write: %+v", st3)
	}
	// A script cache flushed under the reader: the next read reloads it.
	if _, err := writer.Apply(ctx, []streamrec.Event{ev("c", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if st4 := waitChanged("an event after SCRIPT FLUSH", st3.Stamp); st4.User.Events != 3 {
		t.Errorf("after SCRIPT FLUSH: %+v", st4)
	}
}
