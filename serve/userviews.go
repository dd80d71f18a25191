package serve

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// userView is one user's features and seen-set as of a store Stamp. It is
// immutable once built, so concurrent requests share it without locks.
type userView struct {
	stamp   features.Stamp
	user    features.User
	known   bool
	seen    map[string]struct{}
	exclude func(item string) bool // bound to seen once: requests allocate no closure

	// resolved is seen as the serving model's item set (Query.ExcludeSet),
	// made by the first request after a swap that needs it. It is the one
	// part of a view that changes; a race only builds it twice.
	resolved atomic.Pointer[resolvedSet]
}

// resolvedSet is a seen-set resolved by the model of one version.
type resolvedSet struct {
	version int64
	set     *learner.ItemSet
}

// itemSetter is met by a Model that filters by index (*learner.Snapshot):
// it resolves a seen-set to its own item indexes.
type itemSetter interface {
	ItemSet(items []string) *learner.ItemSet
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

// excludeSet is the seen-set as model (of version) resolves it, nil when
// there is nothing to exclude or the model filters by name only. The set
// is kept for the next requests with the same model; it refers to the
// model's index by a tag, so it does not keep a replaced model in memory.
func (v *userView) excludeSet(model Model, version int64) *learner.ItemSet {
	if len(v.seen) == 0 {
		return nil
	}
	if r := v.resolved.Load(); r != nil && r.version == version {
		return r.set
	}
	is, ok := model.(itemSetter)
	if !ok {
		return nil
	}
	items := make([]string, 0, len(v.seen))
	for it := range v.seen {
		items = append(items, it)
	}
	r := &resolvedSet{version: version, set: is.ItemSet(items)}
	v.resolved.Store(r)
	return r.set
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
