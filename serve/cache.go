package serve

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/streamrec/streamrec"
)

// recKey identifies a recommendation answer exactly: the model version,
// the request's parameters, and a fingerprint of the user's features (event
// count, last event time, vector version). Any new event of the user or a
// new snapshot changes the key, so a cached answer is never staler than the
// features it was computed from; the TTL bounds the drift of time-dependent
// scores (popularity decay, time-of-day features).
type recKey struct {
	version  int64
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
	expires int64 // unix nanos
	// refreshAt (unix nanos, in the TTL's last quarter): the first hit from
	// then on asks for the answer to be recomputed in the background, so an
	// answer asked for often is renewed before it expires instead of being
	// recomputed on a request's path. The entry never outlives expires.
	refreshAt int64
}

const cacheShards = 64

// recCache is a sharded, bounded map of recent answers.
type recCache struct {
	ttl      time.Duration
	perShard int
	seed     maphash.Seed
	shards   [cacheShards]struct {
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

// get appends the cached items for k to dst; refresh is true for the one
// hit that should renew the entry (see recEntry.refreshAt).
func (c *recCache) get(k *recKey, now int64, dst []streamrec.Scored) (items []streamrec.Scored, hit, refresh bool) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	e, ok := s.m[*k]
	if ok && now >= e.expires {
		delete(s.m, *k)
		ok = false
	}
	if ok {
		dst = append(dst, e.items...)
		if now >= e.refreshAt {
			refresh = true
			e.refreshAt = e.expires // asked once
			s.m[*k] = e
		}
	}
	s.mu.Unlock()
	return dst, ok, refresh
}

func (c *recCache) put(k *recKey, now int64, items []streamrec.Scored) {
	ttl := int64(c.ttl)
	e := recEntry{items: append([]streamrec.Scored(nil), items...), expires: now + ttl, refreshAt: now + ttl - ttl/4}
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		for old := range s.m { // evict one arbitrary entry (map order is random)
			delete(s.m, old)
			break
		}
	}
	s.m[*k] = e
	s.mu.Unlock()
}

// reset drops every entry (a new snapshot makes them unreachable anyway).
func (c *recCache) reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
