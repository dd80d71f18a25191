package features

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tracker is a go-redis client-side cache that also follows Redis's
// invalidations of user keys, so a store over the client can tell that a
// user it read is unchanged without asking Redis. With tracking on (RESP3),
// Redis remembers every key a connection read — the reads of lua/user.lua
// included — and pushes an invalidation when any client writes it; go-redis
// hands each one to the cache (DeleteByRedisKey) as it reads the connection,
// or within DrainInterval (5 ms) for an idle one. When a connection goes
// away its tracking goes with it (EvictByConn), and every user read before
// counts as changed.
//
// A user is current when the state last read had the caller's stamp, no
// invalidation of the user arrived since that read began, no connection was
// lost since, and the read is younger than trackMaxAge: a backstop only, for
// an invalidation lost some way we do not know of (a lost connection, a
// flush and Redis's own tracking-table evictions are all reported), kept
// long enough that re-checks stay rare on the serving path. So UserStateSince costs no round trip
// for a current user and one script call otherwise: never more than the one
// round trip the serving read is allowed.
type Tracker struct {
	*redis.LocalCache // replies of cacheable commands (HGET, ZRANGE…) on the client

	maxAge   time.Duration
	perShard int
	seed     maphash.Seed
	seq      atomic.Uint64 // counts invalidations and connection losses
	epoch    atomic.Uint64 // counts connection losses and flushes
	shards   [trackShards]struct {
		mu sync.Mutex
		m  map[string]*tracked // by escaped user id (escapeID), as in the keys
	}
}

const (
	trackShards = 64
	trackMaxAge = 30 * time.Second
)

type tracked struct {
	stamp    Stamp
	valid    bool
	epoch    uint64
	readAt   time.Time
	invalSeq uint64 // seq of the user's last invalidation
}

// NewTracker returns a tracker remembering up to users users, with a local
// cache of as many replies for the client's cacheable commands.
func NewTracker(users int) *Tracker {
	t := &Tracker{
		LocalCache: redis.NewLocalCache(redis.CacheConfig{MaxEntries: users, MaxStaleness: time.Second}),
		maxAge:     trackMaxAge,
		perShard:   max(users/trackShards, 1),
		seed:       maphash.MakeSeed(),
	}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*tracked)
	}
	return t
}

// Options returns a copy of o with RESP3 and this tracker as the
// client-side cache.
func (t *Tracker) Options(o *redis.Options) *redis.Options {
	c := *o
	c.Protocol = 3
	c.ClientSideCache = t
	c.ClientSideCacheConfig = nil
	return &c
}

// ClientCache returns an option edit giving a client a Tracker for up to
// users users (see Tracker): a Redis store over it answers the stamp check
// of an unchanged user from memory. It is for the serving read; writers gain
// nothing from it.
func ClientCache(users int) func(*redis.Options) *redis.Options {
	return NewTracker(users).Options
}

func (t *Tracker) shard(key string) *struct {
	mu sync.Mutex
	m  map[string]*tracked
} {
	return &t.shards[maphash.String(t.seed, key)%trackShards]
}

// current reports whether the user (escaped id) has the state with stamp.
func (t *Tracker) current(key string, stamp Stamp) bool {
	s := t.shard(key)
	s.mu.Lock()
	e := s.m[key]
	ok := e != nil && e.valid && e.stamp == stamp && e.epoch == t.epoch.Load() && time.Since(e.readAt) < t.maxAge
	s.mu.Unlock()
	return ok
}

// readMark is where a read of a user began: the counters then, and the
// entry that records invalidations while it is in flight.
type readMark struct {
	seq, epoch uint64
	at         time.Time
	entry      *tracked
}

// readStarted marks the start of a read of the user (escaped id).
func (t *Tracker) readStarted(key string) readMark {
	m := readMark{seq: t.seq.Load(), epoch: t.epoch.Load(), at: time.Now()}
	s := t.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	if !ok {
		if len(s.m) >= t.perShard {
			for k := range s.m { // evict one arbitrary user: it is read again next time
				delete(s.m, k)
				break
			}
		}
		e = &tracked{}
		s.m[key] = e
	}
	m.entry = e
	s.mu.Unlock()
	return m
}

// readDone records the stamp a read begun at m found. It counts as current
// only if nothing invalidated the user meanwhile, which the entry knows only
// if it stayed in the map all along (an evicted one missed invalidations).
func (t *Tracker) readDone(key string, stamp Stamp, m readMark) {
	s := t.shard(key)
	s.mu.Lock()
	if e := s.m[key]; e != nil && e == m.entry {
		e.stamp, e.readAt, e.epoch = stamp, m.at, m.epoch
		e.valid = e.invalSeq <= m.seq && t.epoch.Load() == m.epoch
	}
	s.mu.Unlock()
}

// DeleteByRedisKey is go-redis applying an invalidation: the key's user (if
// it is a user key) is no longer current.
func (t *Tracker) DeleteByRedisKey(redisKey string) int {
	const prefix = "sr:{u:"
	if i := strings.Index(redisKey, prefix); i >= 0 {
		rest := redisKey[i+len(prefix):]
		if j := strings.IndexByte(rest, '}'); j >= 0 {
			key := rest[:j]
			seq := t.seq.Add(1)
			s := t.shard(key)
			s.mu.Lock()
			if e := s.m[key]; e != nil {
				e.valid, e.invalSeq = false, seq
			}
			s.mu.Unlock()
		}
	}
	return t.LocalCache.DeleteByRedisKey(redisKey)
}

// EvictByConn is go-redis dropping a connection, and the server's tracking
// of what it read: no user read before is known current any more.
func (t *Tracker) EvictByConn(connID uint64) int {
	t.lost()
	return t.LocalCache.EvictByConn(connID)
}

// Flush is a FLUSHDB or FLUSHALL (or a reset of the cache).
func (t *Tracker) Flush() int {
	t.lost()
	return t.LocalCache.Flush()
}

func (t *Tracker) lost() {
	t.seq.Add(1)
	t.epoch.Add(1)
}

var _ redis.Cache = (*Tracker)(nil)
