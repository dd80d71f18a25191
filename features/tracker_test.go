package features

import (
	"strconv"
	"testing"
)

// TestTrackerCurrent: a user read is current until an invalidation of any
// of their keys (namespaced as go-redis passes them), a lost connection or
// a flush; a read during which an invalidation arrived, or whose entry was
// evicted meanwhile, does not count as current.
func TestTrackerCurrent(t *testing.T) {
	tr := NewTracker(1 << 10)
	u := "u" // the tracker keys users by escaped id
	read := func(key string, stamp Stamp) {
		tr.readDone(key, stamp, tr.readStarted(key))
	}
	if tr.current(u, "") {
		t.Fatal("a user never read is current")
	}
	read(u, "s1")
	if !tr.current(u, "s1") || tr.current(u, "s0") {
		t.Fatal("after a read: current must hold for its stamp only")
	}
	for _, suffix := range []string{"", ":recent", ":seen", ":vec"} {
		read(u, "s1")
		tr.DeleteByRedisKey("0:default:" + UserKey(u) + suffix) // go-redis's namespace prefix
		if tr.current(u, "s1") {
			t.Errorf("still current after an invalidation of %s%s", u, suffix)
		}
	}
	read(u, "s1")
	tr.DeleteByRedisKey(UserKey("other") + ":seen")
	if !tr.current(u, "s1") {
		t.Error("another user's invalidation made u stale")
	}
	// An invalidation while the read is in flight: the read may predate the write.
	m := tr.readStarted(u)
	tr.DeleteByRedisKey(UserKey(u) + ":seen")
	tr.readDone(u, "s2", m)
	if tr.current(u, "s2") {
		t.Error("a read overtaken by an invalidation counts as current")
	}
	read(u, "s2")
	tr.EvictByConn(7)
	if tr.current(u, "s2") {
		t.Error("current after a lost connection")
	}
	read(u, "s2")
	tr.Flush()
	if tr.current(u, "s2") {
		t.Error("current after a flush")
	}
	// Ids with hash-tag characters are escaped in keys; invalidations find them.
	odd := escapeID("a}b{c%")
	read(odd, "s1")
	tr.DeleteByRedisKey(UserKey("a}b{c%") + ":vec")
	if tr.current(odd, "s1") {
		t.Error("an invalidation of an escaped id's key missed the user")
	}
	// A read whose entry was evicted while in flight missed invalidations.
	small := NewTracker(1) // one user per shard
	var a, b string
	for i := 0; b == ""; i++ {
		k := "x" + strconv.Itoa(i)
		switch {
		case a == "":
			a = k
		case small.shard(k) == small.shard(a):
			b = k
		}
	}
	m = small.readStarted(a)
	small.readStarted(b) // evicts a's entry
	small.DeleteByRedisKey(UserKey(a))
	small.readStarted(a) // a new entry, blind to that invalidation
	small.readDone(a, "old", m)
	if small.current(a, "old") {
		t.Error("a read whose entry was evicted in flight counts as current")
	}
}
