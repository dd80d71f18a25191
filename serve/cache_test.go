package serve

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRecommendationCache: an answer is reused only while the model
// version, the request and the user's features are unchanged, and within
// the TTL.
func TestRecommendationCache(t *testing.T) {
	now := time.Unix(1700000000, 0)
	f := newFixture(t, func(c *Config, d *Deps) { d.Now = func() time.Time { return now }; c.CacheTTL = time.Second })
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
	// A new snapshot is never answered from the old one's cache.
	f.load(t, 2, 20)
	if r := decode[recResp](t, get(p)); r.ModelVersion != 2 || r.Items[0].Score != 2 {
		t.Fatalf("after a swap: %+v", r)
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
