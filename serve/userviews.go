package serve

import (
	"hash/maphash"
	"sync"

	"github.com/streamrec/streamrec/features"
)

// userView is one user's features and seen-set as of a store Stamp. It is
// immutable once built, so concurrent requests share it without locks.
type userView struct {
	stamp   features.Stamp
	user    features.User
	known   bool
	seen    map[string]struct{}
	exclude func(item string) bool // bound to seen once: requests allocate no closure
}

func newUserView(id string, st features.UserState) *userView {
	v := &userView{stamp: st.Stamp, user: st.User, known: st.Known}
	if !st.Known {
		v.user = features.User{ID: id} // cold start: popularity + session co-occurrence
	}
	if len(st.Seen) > 0 {
		v.seen = make(map[string]struct{}, len(st.Seen))
		for _, it := range st.Seen {
			v.seen[it] = struct{}{}
		}
		v.exclude = v.isSeen
	}
	return v
}

func (v *userView) isSeen(item string) bool {
	_, ok := v.seen[item]
	return ok
}

// cost is what a view counts against the cache's budget: its seen-set and
// recent items dominate its memory.
func (v *userView) cost() int { return 1 + len(v.seen) + len(v.user.Recent) }

const viewShards = 64

// userViews keeps the views of recently served users, so a request whose
// user has not changed since sends only the stamp to the store and gets one
// integer back, and reuses the seen-set index instead of rebuilding it. The
// budget bounds the items (seen-set and recent, summed over users) held.
type userViews struct {
	perShard int
	seed     maphash.Seed
	shards   [viewShards]struct {
		mu   sync.Mutex
		m    map[string]*userView
		cost int
	}
}

func newUserViews(budget int) *userViews {
	c := &userViews{perShard: max(budget/viewShards, 1), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*userView)
	}
	return c
}

func (c *userViews) get(id string) *userView {
	s := &c.shards[maphash.String(c.seed, id)%viewShards]
	s.mu.Lock()
	v := s.m[id]
	s.mu.Unlock()
	return v
}

// put stores v for id, evicting arbitrary views (map order is random) until
// the shard is within budget; a view bigger than a whole shard is not kept.
func (c *userViews) put(id string, v *userView) {
	cost := v.cost()
	s := &c.shards[maphash.String(c.seed, id)%viewShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[id]; ok {
		s.cost -= old.cost()
		delete(s.m, id)
	}
	if cost > c.perShard {
		return
	}
	for other, ov := range s.m {
		if s.cost+cost <= c.perShard {
			break
		}
		s.cost -= ov.cost()
		delete(s.m, other)
	}
	s.m[id] = v
	s.cost += cost
}
