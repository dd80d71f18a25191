package serve

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRecommendationCache: an answer is reused only while the model
// version, the request and the user's features are unchanged, and within
// the TTL.
func TestRecommendationCache(t *testing.T) {
	now := time.Unix(1700000000, 0)
	f := newFixture(t, func(c *Config, d *Deps) {
		d.Now = func() time.Time { return now }
		c.CacheTTL, c.SwapGrace = time.Second, 300*time.Millisecond
	})
	f.load(t, 1, 20)
	calls := func() int64 { return f.srv.cur.Load().model.(*fakeModel).calls.Load() }
	get := func(path string) string {
		t.Helper()
		status, body := f.do(t, "GET", path, "")
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		return body
	}
	const p = "/v1/users/u1/recommendations?n=3"
	first := get(p)
	steps := []struct {
		name      string
		change    func()
		path      string
		wantCalls int64 // model calls after the step
	}{
		{"same request: hit", func() {}, p, 1},
		{"other n: miss", func() {}, "/v1/users/u1/recommendations?n=4", 2},
		{"other category: miss", func() {}, p + "&category=Even", 3},
		{"exclude_seen=false: miss", func() {}, p + "&exclude_seen=false", 4},
		{"same again: hit", func() {}, p, 4},
		{"new event for the user: miss", func() {
			f.feat.mu.Lock()
			u := f.feat.users["u1"]
			u.Events++
			f.feat.users["u1"] = u
			f.feat.seen["u1"] = append(f.feat.seen["u1"], "i4")
			f.feat.mu.Unlock()
		}, p, 5},
		{"after the TTL: miss", func() { now = now.Add(2 * time.Second) }, p, 6},
	}
	for _, st := range steps {
		st.change()
		body := get(st.path)
		if got := calls(); got != st.wantCalls {
			t.Fatalf("%s: %d model calls, want %d", st.name, got, st.wantCalls)
		}
		if st.name == "same request: hit" && body != first {
			t.Fatalf("cached answer differs: %s vs %s", body, first)
		}
		if st.name == "new event for the user: miss" && body == first {
			t.Fatalf("answer did not change after the user saw i4: %s", body)
		}
	}
	if hits := testutil.ToFloat64(f.srv.metrics.cacheHit); hits != 2 {
		t.Errorf("cache hits %v, want 2", hits)
	}
	// After a swap, within the grace: the previous model's answer, saying
	// so, while the new model's is computed in the background; then the new
	// model's, from the cache.
	f.load(t, 2, 20)
	if r := decode[recResp](t, get(p)); r.ModelVersion != 1 || r.Items[0].Score != 1 {
		t.Fatalf("right after a swap: %+v, want the cached answer of version 1", r)
	}
	waitRefreshes(t, f.srv, func() bool { return calls() == 1 })
	if r := decode[recResp](t, get(p)); r.ModelVersion != 2 || r.Items[0].Score != 2 {
		t.Fatalf("after the renewal: %+v", r)
	}
	if calls() != 1 {
		t.Fatalf("new model ran %d times, want once (the renewal)", calls())
	}
	if s := testutil.ToFloat64(f.srv.metrics.cacheStale); s != 1 {
		t.Errorf("stale hits %v, want 1", s)
	}
	// Past the grace (within the answer's TTL), a previous model's answer
	// is never served.
	f.load(t, 3, 20)
	now = now.Add(f.srv.cfg.SwapGrace)
	if r := decode[recResp](t, get(p)); r.ModelVersion != 3 || r.Items[0].Score != 3 {
		t.Fatalf("past the grace: %+v", r)
	}
}

// waitRefreshes waits until done holds and no background renewal is in
// flight (they release their slot after storing the answer).
func waitRefreshes(t *testing.T, s *Server, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for (!done() || len(s.refreshes) > 0) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !done() || len(s.refreshes) > 0 {
		t.Fatal("background renewal did not finish")
	}
}

// TestSwapGraceOff: with no grace, a swap drops the cached answers.
func TestSwapGraceOff(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { c.SwapGrace = 0 })
	f.load(t, 1, 20)
	const p = "/v1/users/u1/recommendations?n=3"
	f.do(t, "GET", p, "")
	f.load(t, 2, 20)
	if _, body := f.do(t, "GET", p, ""); decode[recResp](t, body).ModelVersion != 2 {
		t.Fatalf("after a swap with no grace: %s", body)
	}
	if s := testutil.ToFloat64(f.srv.metrics.cacheStale); s != 0 {
		t.Errorf("stale hits %v, want 0", s)
	}
}

// TestRecommendationCacheRefresh: a hit in the TTL's last quarter renews
// the answer in the background, so the next request after the original
// expiry is still a hit; the model ran twice, neither time on a request.
func TestRecommendationCacheRefresh(t *testing.T) {
	var now atomic.Int64 // unix nanos; the renewal reads the clock from its own goroutine
	now.Store(time.Unix(1700000000, 0).UnixNano())
	f := newFixture(t, func(c *Config, d *Deps) {
		d.Now = func() time.Time { return time.Unix(0, now.Load()) }
		c.CacheTTL = time.Second
	})
	f.load(t, 1, 20)
	calls := func() int64 { return f.srv.cur.Load().model.(*fakeModel).calls.Load() }
	const p = "/v1/users/u1/recommendations?n=3"
	get := func() {
		t.Helper()
		if status, body := f.do(t, "GET", p, ""); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	get() // miss: the model runs
	now.Add(int64(800 * time.Millisecond))
	get() // hit in the last quarter: renewal in the background
	deadline := time.Now().Add(5 * time.Second)
	for calls() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if calls() != 2 {
		t.Fatalf("%d model calls after a hit in the TTL's last quarter, want 2 (one renewal)", calls())
	}
	if r := testutil.ToFloat64(f.srv.metrics.cacheRefresh); r != 1 {
		t.Errorf("refreshes %v, want 1", r)
	}
	for len(f.srv.refreshes) > 0 && time.Now().Before(deadline) { // released after the renewal's put
		time.Sleep(time.Millisecond)
	}
	now.Add(int64(500 * time.Millisecond)) // past the first answer's expiry, within the renewed one's
	get()
	if calls() != 2 || testutil.ToFloat64(f.srv.metrics.cacheMiss) != 1 {
		t.Errorf("after the first expiry: %d model calls, %v misses; want 2 and 1 (the renewed answer)",
			calls(), testutil.ToFloat64(f.srv.metrics.cacheMiss))
	}
	if r := testutil.ToFloat64(f.srv.metrics.cacheRefresh); r != 1 {
		t.Errorf("refreshes %v, want 1 (the renewed answer is not yet in its last quarter)", r)
	}
}

func TestRecommendationCacheOff(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { c.CacheTTL = 0 })
	f.load(t, 1, 5)
	for i := 0; i < 3; i++ {
		f.do(t, "GET", "/v1/users/u1/recommendations", "")
	}
	if got := f.srv.cur.Load().model.(*fakeModel).calls.Load(); got != 3 {
		t.Fatalf("%d model calls with the cache off, want 3", got)
	}
}

// TestSwapGraceOneVersionBack: within the grace, only the model the last
// swap replaced may still answer; an answer two versions old is recomputed.
func TestSwapGraceOneVersionBack(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { c.SwapGrace = time.Hour })
	const p = "/v1/users/u1/recommendations?n=3"
	f.load(t, 1, 20)
	f.do(t, "GET", p, "") // cached by version 1
	f.load(t, 2, 20)
	f.load(t, 3, 20)
	if _, body := f.do(t, "GET", p, ""); decode[recResp](t, body).ModelVersion != 3 {
		t.Fatalf("two swaps later: %s, want version 3", body)
	}
}
