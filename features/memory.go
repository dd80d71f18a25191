package features

import (
	"container/heap"
	"context"
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/streamrec/streamrec"
)

// Memory is the in-memory Store. It backs the embedded default, replay and
// the learner's private point-in-time store, so Apply is allocation-free once
// a user and an item exist. It is safe for concurrent use: reads share a
// read lock while a batch holds the write lock.
type Memory struct {
	cfg      Config
	hlMillis float64

	mu       sync.RWMutex
	parts    map[partKey]int32
	partList []partKey
	users    map[string]*memUser
	items    map[string]int32 // id -> index into itemList
	itemList []*memItem
	global   memGlobal
}

var _ Store = (*Memory)(nil)

// mark is a key's highest applied offset in one source partition.
type mark struct {
	part int32 // index into Memory.partList
	off  int64
}

// marks holds a key's marks; the first partition's inline (most keys see
// one partition), saving a pointer chase on the hot path.
type marks struct {
	n     int // marks held
	first mark
	rest  []mark
}

// advance raises the mark of part to off and reports whether off was above
// it. part < 0 (no position) always applies.
func (m *marks) advance(part int32, off int64) bool {
	if part < 0 {
		return true
	}
	if m.n == 0 {
		m.first, m.n = mark{part, off}, 1
		return true
	}
	if m.first.part == part {
		if off <= m.first.off {
			return false
		}
		m.first.off = off
		return true
	}
	for i := range m.rest {
		if m.rest[i].part == part {
			if off <= m.rest[i].off {
				return false
			}
			m.rest[i].off = off
			return true
		}
	}
	m.rest = append(m.rest, mark{part, off})
	m.n++
	return true
}

func (m *marks) reset() { m.n, m.rest = 0, m.rest[:0] }

// all appends every mark to dst.
func (m *marks) all(dst []mark) []mark {
	if m.n == 0 {
		return dst
	}
	return append(append(dst, m.first), m.rest...)
}

type memUser struct {
	id      string
	c       Counters
	marks   marks
	written int64 // wall clock Unix ns of the last write
	counted bool  // already in Global.Users
	// seen maps item index -> node index in recent (-1 when not in it).
	seen   map[int32]int32
	recent lru

	vec        []float32
	vecVersion int64
	vecWritten int64
}

type memItem struct {
	id         string
	c          Counters
	marks      marks
	pop        float64
	popTS      int64
	rank       float64 // log2(pop) + popTS/halfLife: decay-free ranking key
	title      string
	categories []string
}

type memGlobal struct {
	c     Counters
	marks marks
	users int64
	items int64
}

// lru is a user's recent items, newest first, as a doubly linked list in a
// slice (node slots are reused once the cap is reached).
type lru struct {
	nodes      []lnode
	head, tail int32 // -1 when empty
	n          int
}

type lnode struct {
	item       int32
	prev, next int32
}

func newLRU() lru { return lru{head: -1, tail: -1} }

func (l *lru) unlink(i int32) {
	n := &l.nodes[i]
	if n.prev >= 0 {
		l.nodes[n.prev].next = n.next
	} else {
		l.head = n.next
	}
	if n.next >= 0 {
		l.nodes[n.next].prev = n.prev
	} else {
		l.tail = n.prev
	}
}

func (l *lru) pushFront(i int32) {
	n := &l.nodes[i]
	n.prev, n.next = -1, l.head
	if l.head >= 0 {
		l.nodes[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}

// NewMemory returns an empty in-memory store.
func NewMemory(cfg Config) (*Memory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Memory{
		cfg:      cfg,
		hlMillis: float64(cfg.HalfLife.Milliseconds()),
		parts:    map[partKey]int32{},
		users:    map[string]*memUser{},
		items:    map[string]int32{},
	}, nil
}

// Config returns the store's configuration.
func (m *Memory) Config() Config { return m.cfg }

// Apply applies a batch of events exactly once per key (see the rules in
// order.go). It never fails.
func (m *Memory) Apply(ctx context.Context, events []streamrec.Event) (ApplyResult, error) {
	events = ordered(events)
	now := m.cfg.Now().UnixNano()
	var res ApplyResult
	m.mu.Lock()
	for i := range events {
		if m.apply(&events[i], now) {
			res.Applied++
		} else {
			res.Duplicates++
		}
	}
	m.mu.Unlock()
	return res, nil
}

// ApplyEvent applies one event (the learner's fast path, without a batch)
// and reports whether it changed any key.
func (m *Memory) ApplyEvent(e *streamrec.Event) bool {
	now := m.cfg.Now().UnixNano()
	m.mu.Lock()
	ok := m.apply(e, now)
	m.mu.Unlock()
	return ok
}

func (m *Memory) partIndex(p *streamrec.Position) int32 {
	if p.Topic == "" {
		return -1
	}
	k := partKey{p.Topic, p.Partition}
	if i, ok := m.parts[k]; ok {
		return i
	}
	i := int32(len(m.partList))
	m.parts[k] = i
	m.partList = append(m.partList, k)
	return i
}

func (m *Memory) itemIndex(id string) (int32, *memItem) {
	if i, ok := m.items[id]; ok {
		return i, m.itemList[i]
	}
	it := &memItem{id: id}
	i := int32(len(m.itemList))
	m.items[id] = i
	m.itemList = append(m.itemList, it)
	return i, it
}

func (m *Memory) expired(u *memUser, now int64) bool {
	return now-u.written > int64(m.cfg.UserTTL)
}

// userForWrite returns user id, creating it (or resetting an expired one).
func (m *Memory) userForWrite(id string, now int64) (u *memUser, created bool) {
	u, ok := m.users[id]
	if !ok {
		u = &memUser{id: id, seen: map[int32]int32{}, recent: newLRU()}
		m.users[id] = u
		created = true
	} else if u.c.Events > 0 && m.expired(u, now) {
		// Expired: its features (and marks) are gone, as a Redis key would be.
		u.c = Counters{}
		u.marks.reset()
		clear(u.seen)
		u.recent = lru{nodes: u.recent.nodes[:0], head: -1, tail: -1}
	}
	return u, created
}

func count(c *Counters, e *streamrec.Event, w float64) {
	c.Events++
	if e.Kind == streamrec.Explicit {
		c.Explicit++
		c.ExplicitSum += e.Value
	} else {
		c.Implicit++
		c.ImplicitWeight += w
	}
	if c.FirstTS == 0 || e.TS < c.FirstTS {
		c.FirstTS = e.TS
	}
	if e.TS > c.LastTS {
		c.LastTS = e.TS
	}
}

func (m *Memory) apply(e *streamrec.Event, now int64) bool {
	pi := m.partIndex(&e.Pos)
	off := e.Pos.Offset
	w := weight(e)
	applied := false

	ii, it := m.itemIndex(e.Item)
	if it.marks.advance(pi, off) {
		applied = true
		if it.c.Events == 0 {
			m.global.items++
		}
		count(&it.c, e, w)
		if it.c.Events == 1 || e.TS >= it.popTS {
			it.pop = Decay(it.pop, e.TS-it.popTS, m.cfg.HalfLife) + w
			it.popTS = e.TS
		} else {
			it.pop += w * math.Exp2(-float64(it.popTS-e.TS)/m.hlMillis)
		}
		it.rank = math.Log2(it.pop) + float64(it.popTS)/m.hlMillis
	}

	u, created := m.userForWrite(e.User, now)
	if u.marks.advance(pi, off) {
		applied = true
		if !u.counted {
			u.counted = true
			m.global.users++
		}
		count(&u.c, e, w)
		u.written = now
		m.touchRecent(u, ii)
	} else if created {
		// Created for a duplicate only: leave no trace.
		delete(m.users, e.User)
	}

	if m.global.marks.advance(pi, off) {
		applied = true
		count(&m.global.c, e, w)
	}
	return applied
}

// touchRecent moves item ii to the front of u's recent list, adding it to
// the seen-set, and trims the list to the cap.
func (m *Memory) touchRecent(u *memUser, ii int32) {
	l := &u.recent
	if node, ok := u.seen[ii]; ok && node >= 0 {
		if l.head != node {
			l.unlink(node)
			l.pushFront(node)
		}
		return
	}
	var node int32
	if l.n < m.cfg.RecentCap {
		node = int32(len(l.nodes))
		l.nodes = append(l.nodes, lnode{item: ii})
		l.n++
	} else {
		// Reuse the oldest node.
		node = l.tail
		l.unlink(node)
		u.seen[l.nodes[node].item] = -1
		l.nodes[node].item = ii
	}
	l.pushFront(node)
	u.seen[ii] = node
}

// PutItems stores item metadata.
func (m *Memory) PutItems(ctx context.Context, items []streamrec.ItemMeta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range items {
		_, it := m.itemIndex(items[i].Item)
		it.title = items[i].Title
		it.categories = append([]string(nil), items[i].Categories...)
	}
	return nil
}

// PutUserVectors stores user embeddings (copied).
func (m *Memory) PutUserVectors(ctx context.Context, version int64, vectors map[string][]float32) error {
	now := m.cfg.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, v := range vectors {
		u, ok := m.users[id]
		if !ok {
			u = &memUser{id: id, seen: map[int32]int32{}, recent: newLRU()}
			m.users[id] = u
		}
		u.vec = append(u.vec[:0], v...)
		u.vecVersion, u.vecWritten = version, now
	}
	return nil
}

// UserInto copies user id's features into dst, reusing dst's slices, and
// reports whether the user exists.
func (m *Memory) UserInto(id string, dst *User) bool {
	return m.UserFeaturesInto(id, dst, -1)
}

// UserFeaturesInto is UserInto copying at most maxRecent recent items (all
// when maxRecent < 0), for callers that need only the newest few.
func (m *Memory) UserFeaturesInto(id string, dst *User, maxRecent int) bool {
	now := m.cfg.Now().UnixNano()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.userInto(id, dst, maxRecent, now)
}

func (m *Memory) userInto(id string, dst *User, maxRecent int, now int64) bool {
	dst.Recent, dst.Vector = dst.Recent[:0], dst.Vector[:0]
	u, ok := m.users[id]
	if !ok || u.c.Events == 0 || m.expired(u, now) {
		*dst = User{ID: id, Recent: dst.Recent, Vector: dst.Vector}
		if !ok || now-u.vecWritten > int64(m.cfg.UserTTL) {
			dst.Vector = nil
		}
		return false
	}
	dst.ID, dst.Counters = u.id, u.c
	l := &u.recent
	for n := l.head; n >= 0 && maxRecent != 0; n = l.nodes[n].next {
		dst.Recent = append(dst.Recent, m.itemList[l.nodes[n].item].id)
		maxRecent--
	}
	dst.VectorVersion = 0
	if len(u.vec) > 0 && now-u.vecWritten <= int64(m.cfg.UserTTL) {
		dst.Vector = append(dst.Vector, u.vec...)
		dst.VectorVersion = u.vecVersion
	} else {
		dst.Vector = nil
	}
	return true
}

// User returns a user's features.
func (m *Memory) User(ctx context.Context, id string) (User, bool, error) {
	var u User
	ok := m.UserInto(id, &u)
	if !ok {
		return User{}, false, nil
	}
	return u, true, nil
}

// UserSeen returns a user's features and seen-set.
func (m *Memory) UserSeen(ctx context.Context, id string) (User, []string, bool, error) {
	st, _, err := m.UserStateSince(ctx, id, "")
	return st.User, st.Seen, st.Known, err
}

// UserStateSince returns the user's state unless since is its current stamp.
func (m *Memory) UserStateSince(ctx context.Context, id string, since Stamp) (UserState, bool, error) {
	now := m.cfg.Now().UnixNano()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mu, ok := m.users[id]
	if !ok || mu.c.Events == 0 || m.expired(mu, now) {
		return UserState{}, since != "", nil
	}
	stamp := m.stamp(mu, now)
	if stamp == since {
		return UserState{}, false, nil
	}
	st := UserState{Stamp: stamp, Known: true}
	m.userInto(id, &st.User, -1, now)
	st.Seen = make([]string, 0, len(mu.seen))
	for ii := range mu.seen {
		st.Seen = append(st.Seen, m.itemList[ii].id)
	}
	return st, true, nil
}

// ReadUserStates is UserStateSince for each read.
func (m *Memory) ReadUserStates(ctx context.Context, reads []StateRead) error {
	for i := range reads {
		rd := &reads[i]
		rd.State, rd.Changed, rd.Err = m.UserStateSince(ctx, rd.ID, rd.Since)
	}
	return nil
}

// UserCurrent reports whether stamp is the user's current stamp (for an
// unknown user, ""), without allocating.
func (m *Memory) UserCurrent(id string, stamp Stamp) bool {
	now := m.cfg.Now().UnixNano()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mu, ok := m.users[id]
	if !ok || mu.c.Events == 0 || m.expired(mu, now) {
		return stamp == ""
	}
	b := m.stampBytes(mu, now)
	return string(b[:]) == string(stamp)
}

// stamp packs what changes with every write of u: the event count and write
// time (events, recent, seen) and the vector's write time, version and
// liveness (it expires on its own clock).
func (m *Memory) stamp(u *memUser, now int64) Stamp {
	b := m.stampBytes(u, now)
	return Stamp(b[:])
}

func (m *Memory) stampBytes(u *memUser, now int64) [33]byte {
	var b [33]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(u.c.Events))
	binary.LittleEndian.PutUint64(b[8:], uint64(u.written))
	binary.LittleEndian.PutUint64(b[16:], uint64(u.vecWritten))
	binary.LittleEndian.PutUint64(b[24:], uint64(u.vecVersion))
	if len(u.vec) > 0 && now-u.vecWritten <= int64(m.cfg.UserTTL) {
		b[32] = 1
	}
	return b
}

// Seen reports whether user has interacted with each of items.
func (m *Memory) Seen(ctx context.Context, user string, items []string) ([]bool, error) {
	out := make([]bool, len(items))
	now := m.cfg.Now().UnixNano()
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[user]
	if !ok || u.c.Events == 0 || m.expired(u, now) {
		return out, nil
	}
	for i, id := range items {
		if ii, ok := m.items[id]; ok {
			_, out[i] = u.seen[ii]
		}
	}
	return out, nil
}

// ItemInto copies item id's features into dst, reusing dst.Categories, and
// reports whether the item exists (events or metadata).
func (m *Memory) ItemInto(id string, dst *Item) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.itemInto(id, dst)
}

func (m *Memory) itemInto(id string, dst *Item) bool {
	cats := dst.Categories[:0]
	i, ok := m.items[id]
	if !ok {
		*dst = Item{ID: id, Categories: cats}
		return false
	}
	it := m.itemList[i]
	*dst = Item{ID: it.id, Counters: it.c, Popularity: it.pop, PopularityTS: it.popTS, Title: it.title,
		Categories: append(cats, it.categories...)}
	if len(dst.Categories) == 0 {
		dst.Categories = nil
	}
	return true
}

// Item returns an item's features.
func (m *Memory) Item(ctx context.Context, id string) (Item, bool, error) {
	var it Item
	if !m.ItemInto(id, &it) {
		return Item{}, false, nil
	}
	return it, true, nil
}

// Popular returns up to n items by popularity decayed to ts (Unix ms; ts <= 0
// means the store's last event time), optionally only those in category.
func (m *Memory) Popular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error) {
	if n <= 0 {
		return nil, nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if ts <= 0 {
		ts = m.global.c.LastTS
	}
	h := make(rankHeap, 0, n)
	for _, it := range m.itemList {
		if it.pop <= 0 || (category != "" && !hasCategory(it.categories, category)) {
			continue
		}
		if len(h) < n {
			heap.Push(&h, it)
		} else if better(it, h[0]) {
			h[0] = it
			heap.Fix(&h, 0)
		}
	}
	out := make([]streamrec.Scored, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		it := heap.Pop(&h).(*memItem)
		out[i] = streamrec.Scored{Item: it.id, Score: m.decayedTo(it, ts)}
	}
	return out, nil
}

func (m *Memory) decayedTo(it *memItem, ts int64) float64 {
	return it.pop * math.Exp2(-float64(ts-it.popTS)/m.hlMillis)
}

func hasCategory(cats []string, c string) bool {
	for _, x := range cats {
		if x == c {
			return true
		}
	}
	return false
}

// better orders items by decayed popularity, ties by id.
func better(a, b *memItem) bool {
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	return a.id < b.id
}

// rankHeap is a min-heap on better (its root is the worst kept item).
type rankHeap []*memItem

func (h rankHeap) Len() int           { return len(h) }
func (h rankHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h rankHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rankHeap) Push(x any)        { *h = append(*h, x.(*memItem)) }
func (h *rankHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// GlobalNow returns the store-wide counters without a context.
func (m *Memory) GlobalNow() Global {
	m.mu.RLock()
	defer m.mu.RUnlock()
	g := &m.global
	return Global{Events: g.c.Events, Explicit: g.c.Explicit, ExplicitSum: g.c.ExplicitSum,
		Users: g.users, Items: g.items, LastTS: g.c.LastTS}
}

// Global returns the store-wide counters.
func (m *Memory) Global(ctx context.Context) (Global, error) { return m.GlobalNow(), nil }

// EachUser calls fn for every live user. fn runs without the store's lock
// held, so it may call the store.
func (m *Memory) EachUser(ctx context.Context, fn func(User) error) error {
	m.mu.RLock()
	ids := make([]string, 0, len(m.users))
	for id := range m.users {
		ids = append(ids, id)
	}
	m.mu.RUnlock()
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		var u User
		if !m.UserInto(id, &u) {
			continue
		}
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}

// Close releases nothing; the store stays usable.
func (m *Memory) Close() error { return nil }

// UserTTL is how long user id has left before it expires (0 for an unknown
// or expired user), by the injected clock.
func (m *Memory) UserTTL(ctx context.Context, id string) (time.Duration, error) {
	now := m.cfg.Now().UnixNano()
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, ok := m.users[id]
	if !ok || u.c.Events == 0 || m.expired(u, now) {
		return 0, nil
	}
	return time.Duration(int64(m.cfg.UserTTL) - (now - u.written)), nil
}

// Sweep frees the state of users whose TTL has passed, keeping only what
// Global.Users needs, and returns how many it freed. Expired users are
// already invisible; a long-running process calls Sweep now and then (say
// hourly) to bound memory.
func (m *Memory) Sweep() int {
	now := m.cfg.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id, u := range m.users {
		vecGone := now-u.vecWritten > int64(m.cfg.UserTTL)
		if u.c.Events > 0 && m.expired(u, now) {
			u.c = Counters{}
			u.marks = marks{}
			u.seen = map[int32]int32{}
			u.recent = newLRU()
			n++
		}
		if vecGone {
			u.vec, u.vecVersion = nil, 0
		}
		if u.c.Events == 0 && u.vec == nil && !u.counted {
			delete(m.users, id)
		}
	}
	return n
}
