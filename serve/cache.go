package serve

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamrec/streamrec"
)

// recKey identifies a recommendation request exactly: its parameters and
// a fingerprint of the user's features (event count, last event time,
// vector version). Any new event of the user changes the key, so a cached
// answer is never staler than the features it was computed from; the TTL
// bounds the drift of time-dependent scores (popularity decay, time-of-day
// features). The model version is the entry's, not the key's: see get.
type recKey struct {
	user     string
	events   int64
	lastTS   int64
	vecVer   int64
	n        int
	category string
	exclude  bool
}

type recEntry struct {
	items   []streamrec.Scored
	version int64 // of the model that computed items
	expires int64 // unix nanos
	// refreshAt (unix nanos, in the TTL's last quarter): the first hit from
	// then on asks for the answer to be recomputed in the background, so an
	// answer asked for often is renewed before it expires instead of being
	// recomputed on a request's path. The entry never outlives expires.
	refreshAt int64
	// asked is the serving version for which a renewal was last asked
	// (0: none), so each version asks once.
	asked int64
}

const cacheShards = 64

// recCache is a sharded, bounded map of recent answers.
type recCache struct {
	ttl      time.Duration
	perShard int
	seed     maphash.Seed
	// staleUntil (unix nanos): until then, an answer of the previous model
	// version is still a hit (see swapped).
	staleUntil atomic.Int64
	// serving is the serving model's version (see put), previous the one it
	// replaced.
	serving, previous atomic.Int64
	shards            [cacheShards]struct {
		mu sync.Mutex
		m  map[recKey]recEntry
	}
}

func newRecCache(ttl time.Duration, size int) *recCache {
	c := &recCache{ttl: ttl, perShard: max(size/cacheShards, 1), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[recKey]recEntry)
	}
	return c
}

func (c *recCache) shard(k *recKey) int {
	return int(maphash.String(c.seed, k.user) % cacheShards)
}

// get appends the cached items for k to dst, with the version of the model
// that computed them. version is the serving model's: an entry of the
// model it replaced is a hit only until the grace set by swapped ends, and
// one of any other model is not. refresh is true for the one hit per
// serving version that should renew the entry: the first in the TTL's last
// quarter (see recEntry.refreshAt), or the first of an entry from the
// replaced model. A caller that cannot queue the renewal calls unask.
func (c *recCache) get(k *recKey, now, version int64, dst []streamrec.Scored) (items []streamrec.Scored, from int64, hit, refresh bool) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	e, ok := s.m[*k]
	if ok && (now >= e.expires || e.version != version && (e.version != c.previous.Load() || now >= c.staleUntil.Load())) {
		delete(s.m, *k)
		ok = false
	}
	if ok {
		dst = append(dst, e.items...)
		from = e.version
		if (now >= e.refreshAt || e.version != version) && e.asked != version {
			refresh = true
			e.asked = version
			s.m[*k] = e
		}
	}
	s.mu.Unlock()
	return dst, from, ok, refresh
}

// unask undoes get's refresh mark for k (the renewal could not start), so a
// later hit asks again.
func (c *recCache) unask(k *recKey) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	if e, ok := s.m[*k]; ok {
		e.asked = 0
		s.m[*k] = e
	}
	s.mu.Unlock()
}

// put stores the answer that model version computed for k, unless another
// model serves by now: an answer that finished computing after a swap must
// not replace the new model's (a client would see the version go back).
func (c *recCache) put(k *recKey, now, version int64, items []streamrec.Scored) {
	ttl := int64(c.ttl)
	e := recEntry{items: append([]streamrec.Scored(nil), items...), version: version, expires: now + ttl, refreshAt: now + ttl - ttl/4}
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	if v := c.serving.Load(); v != 0 && v != version {
		s.mu.Unlock()
		return
	}
	if len(s.m) >= c.perShard {
		for old := range s.m { // evict one arbitrary entry (map order is random)
			delete(s.m, old)
			break
		}
	}
	s.m[*k] = e
	s.mu.Unlock()
}

// swapped is told of a new serving model (version) at now: the previous
// model's answers stay hits for grace, each asking once to be recomputed by
// the new model in the background, so that a swap does not send every
// user's next request through the model at once. With no grace they are
// dropped.
func (c *recCache) swapped(now, version int64, grace time.Duration) {
	c.previous.Store(c.serving.Swap(version))
	if grace <= 0 {
		c.reset()
		return
	}
	c.staleUntil.Store(now + int64(grace))
}

// reset drops every entry.
func (c *recCache) reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
