package serve

import (
	"sync/atomic"
	"time"
)

// breaker stops the hot path from waiting on a feature store that keeps
// failing: after `failures` consecutive errors it opens for `cooldown`, during
// which requests answer degraded at once; then one probe is let through and
// its outcome closes or re-opens it.
type breaker struct {
	failures  int64
	cooldown  time.Duration
	now       func() time.Time
	consec    atomic.Int64
	openUntil atomic.Int64 // unix nanos; 0 when closed
	onChange  func(open bool)
}

// allow reports whether a request may try the store.
func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	now := b.now().UnixNano()
	if now < until {
		return false
	}
	// Half-open: the first request past the cooldown claims the probe by
	// pushing the deadline out; the others stay degraded meanwhile.
	return b.openUntil.CompareAndSwap(until, now+int64(b.cooldown))
}

func (b *breaker) success() {
	b.consec.Store(0)
	if b.openUntil.Swap(0) != 0 && b.onChange != nil {
		b.onChange(false)
	}
}

func (b *breaker) failure() {
	if b.consec.Add(1) < b.failures {
		return
	}
	if b.openUntil.Swap(b.now().Add(b.cooldown).UnixNano()) == 0 && b.onChange != nil {
		b.onChange(true)
	}
}
