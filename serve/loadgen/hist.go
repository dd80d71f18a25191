// Package loadgen is an open-loop HTTP load generator for benchmarks: it
// issues requests at a fixed rate whatever the latency (so slow answers do
// not slow the offered load — no coordinated omission), measures each
// latency from the request's scheduled time, and records it in a
// log-linear histogram (HDR-style, ~1.6% resolution) for p50/p99/p999.
package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in log-linear buckets: exact below 64 ns, then
// 32 sub-buckets per power of two. Record is safe for concurrent use.
type Histogram struct {
	counts [64 + 58*32]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

func bucket(v uint64) int {
	if v < 64 {
		return int(v)
	}
	e := bits.Len64(v) - 6 // v>>e is in [32, 63]
	return 64 + (e-1)*32 + int(v>>e) - 32
}

// upper is the largest value that falls in bucket i.
func upper(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	e := (i-64)/32 + 1
	m := uint64((i-64)%32 + 32)
	return (m+1)<<e - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d))].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count is the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max is the largest recorded duration.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the duration at or below which a fraction q of the
// recorded values fall (the bucket's upper bound, capped at Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= rank {
			return min(time.Duration(upper(i)), h.Max())
		}
	}
	return h.Max()
}
