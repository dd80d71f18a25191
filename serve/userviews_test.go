package serve

import (
	"context"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/learner"
)

// TestUserViewsFollowTheStore: with both real feature stores, a repeated
// request reuses the kept view (a stamp check only), and a new event of the
// user is read at once: the item just seen leaves the answer.
func TestUserViewsFollowTheStore(t *testing.T) {
	ctx := context.Background()
	redisStore := func(t *testing.T, rs *redistest.Server, edit ...func(*redis.Options) *redis.Options) features.Store {
		r, err := features.NewRedis(ctx, rs.Client(t, edit...), features.DefaultConfig(), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Each opener returns the store the server reads and the one events are
	// written to (another client, as ingest is), and whether a write reaches
	// the reader only eventually (the client cache's invalidation).
	stores := map[string]func(t *testing.T) (read, write features.Store, eventual bool){
		"memory": func(t *testing.T) (features.Store, features.Store, bool) {
			m, err := features.NewMemory(features.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			return m, m, false
		},
		"redis": func(t *testing.T) (features.Store, features.Store, bool) {
			rs := redistest.Start(t)
			return redisStore(t, rs), redisStore(t, rs), false
		},
		"redis-client-cache": func(t *testing.T) (features.Store, features.Store, bool) {
			rs := redistest.Start(t)
			return redisStore(t, rs, features.ClientCache(1024)), redisStore(t, rs), true
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			store, writer, eventual := open(t)
			cfg := DefaultConfig()
			cfg.CacheTTL = 0 // the model runs on every request, on the view it gets
			srv, err := New(cfg, Deps{Features: store, Snapshots: &fakeSnapshots{}, Decode: decodeFake,
				Registry: prometheus.NewRegistry(), Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Load(1, fakeBlob(1, 20)); err != nil {
				t.Fatal(err)
			}
			h := srv.Handler()
			off := int64(0)
			view := func(item string) {
				ev := streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: item, TS: 1700000000000 + off,
					Pos: streamrec.Position{Topic: "t", Offset: off}}
				off++
				if _, err := writer.Apply(ctx, []streamrec.Event{ev}); err != nil {
					t.Fatal(err)
				}
			}
			recs := func() []string {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/users/u/recommendations?n=3", nil))
				r := decode[recResp](t, w.Body.String())
				if w.Code != 200 || r.Degraded {
					t.Fatalf("recommendations: %d %+v", w.Code, r)
				}
				var ids []string
				for _, it := range r.Items {
					ids = append(ids, it.Item)
				}
				return ids
			}
			reads := func(result string) float64 { return testutil.ToFloat64(srv.metrics.userState.WithLabelValues(result)) }

			view("i1")
			if got := recs(); !slices.Equal(got, []string{"i2", "i3", "i4"}) {
				t.Fatalf("after viewing i1: %v", got)
			}
			if got := recs(); !slices.Equal(got, []string{"i2", "i3", "i4"}) {
				t.Fatalf("repeated: %v", got)
			}
			if c, n := reads("current"), reads("changed"); c != 1 || n != 1 {
				t.Errorf("state reads: %v current, %v changed; want 1 and 1", c, n)
			}
			view("i2")
			// With the client cache the event arrives by invalidation, within
			// its 1 s staleness bound (typically a few ms).
			deadline := time.Now().Add(time.Second)
			got := recs()
			for eventual && !slices.Equal(got, []string{"i3", "i4", "i5"}) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
				got = recs()
			}
			if !slices.Equal(got, []string{"i3", "i4", "i5"}) {
				t.Fatalf("after viewing i2: %v (a kept view hid the new event)", got)
			}
			if n := reads("changed"); n != 2 {
				t.Errorf("changed reads after a new event: %v, want 2", n)
			}
		})
	}
}

// TestUserViewsBudget: the kept views stay within the item budget, the
// newest view is always kept unless it alone exceeds a shard's share, and
// replacing a view does not count it twice.
func TestUserViewsBudget(t *testing.T) {
	const budget = viewShards * 10 // 10 items a shard
	c := newUserViews(budget)
	seen := func(n int) features.UserState {
		st := features.UserState{Stamp: "s", Known: true}
		for i := range n {
			st.Seen = append(st.Seen, "i"+strconv.Itoa(i))
		}
		return st
	}
	for i := range 1000 {
		id := "u" + strconv.Itoa(i)
		c.put(id, newUserView(id, seen(i%5)))
		if c.get(id) == nil {
			t.Fatalf("view %s (cost %d) not kept right after put", id, 1+i%5)
		}
	}
	c.put("u0", newUserView("u0", seen(4))) // replace
	c.put("u0", newUserView("u0", seen(4)))
	total := 0
	for i := range c.shards {
		s := &c.shards[i]
		sum := 0
		for _, v := range s.m {
			sum += v.cost()
		}
		if sum != s.cost || s.cost > c.perShard {
			t.Errorf("shard %d: cost %d, counted %d, share %d", i, sum, s.cost, c.perShard)
		}
		total += s.cost
	}
	if total > budget {
		t.Errorf("views hold %d items, budget %d", total, budget)
	}
	c.put("big", newUserView("big", seen(50)))
	if c.get("big") != nil {
		t.Error("a view bigger than a shard's share was kept")
	}
}

// setterModel is a fake model that resolves item sets with a real MF index
// and counts how often it is asked to.
type setterModel struct {
	*fakeModel
	mf    *learner.MF
	calls int
}

func (m *setterModel) ItemSet(items []string) *learner.ItemSet {
	m.calls++
	return m.mf.ItemSet(items)
}

// TestUserViewResolvesSeenOncePerModel: a view resolves its seen-set with
// the first model that asks and keeps it for that model's version; a swap
// resolves again; a model without index filtering and a user with nothing
// seen get no set.
func TestUserViewResolvesSeenOncePerModel(t *testing.T) {
	v := newUserView("u", features.UserState{Known: true, User: features.User{ID: "u"}, Seen: []string{"a", "b"}})
	m := &setterModel{fakeModel: newFakeModel(1, 5), mf: learner.NewMF(learner.DefaultConfig().MF, 1)}
	first := v.excludeSet(m, 1)
	if first == nil || v.excludeSet(m, 1) != first || m.calls != 1 {
		t.Fatalf("version 1: set %p, %d resolutions; want one kept set", first, m.calls)
	}
	if second := v.excludeSet(m, 2); second == nil || second == first || m.calls != 2 {
		t.Fatalf("version 2: set %p (first %p), %d resolutions; want a new set", second, first, m.calls)
	}
	if got := v.excludeSet(newFakeModel(3, 5), 3); got != nil {
		t.Fatalf("a model without ItemSet got a set: %v", got)
	}
	empty := newUserView("w", features.UserState{Known: true, User: features.User{ID: "w"}})
	if got := empty.excludeSet(m, 2); got != nil || m.calls != 2 {
		t.Fatalf("nothing seen: set %v after %d resolutions", got, m.calls)
	}
}
