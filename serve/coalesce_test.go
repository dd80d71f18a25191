package serve

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamrec/streamrec/features"
)

// slowBatches answers each read with a state naming the user, after a pause
// long enough that concurrent requests must queue; it records batch sizes
// and the most batches it saw in flight.
type slowBatches struct {
	inflight, peak atomic.Int64
	mu             sync.Mutex
	sizes          []int
	fail           atomic.Bool
}

func (s *slowBatches) ReadUserStates(ctx context.Context, reads []features.StateRead) error {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	s.mu.Lock()
	s.sizes = append(s.sizes, len(reads))
	s.mu.Unlock()
	select {
	case <-time.After(2 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.fail.Load() {
		err := errors.New("store down")
		for i := range reads {
			reads[i].Err = err
		}
		return err
	}
	for i := range reads {
		rd := &reads[i]
		rd.State = features.UserState{User: features.User{ID: rd.ID}, Stamp: features.Stamp("s:" + rd.ID), Known: true}
		rd.Changed = rd.Since != rd.State.Stamp
	}
	return nil
}

// TestCoalescer: 200 concurrent reads each get their own answer (or the
// batch's error), share round trips, and never exceed the batch limit.
func TestCoalescer(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run("fail="+strconv.FormatBool(fail), func(t *testing.T) {
			sb := &slowBatches{}
			sb.fail.Store(fail)
			c := newCoalescer(sb, time.Second, 2, 16)
			var wg sync.WaitGroup
			for i := range 200 {
				wg.Go(func() {
					id := "u" + strconv.Itoa(i)
					since := features.Stamp("")
					if i%2 == 0 {
						since = features.Stamp("s:" + id)
					}
					rd := &stateRead{read: features.StateRead{ID: id, Since: since}, done: make(chan struct{}, 1)}
					c.read(rd)
					r := rd.read
					switch {
					case fail:
						if r.Err == nil {
							t.Errorf("%s: no error from a failed batch", id)
						}
					case r.Err != nil || r.State.User.ID != id || r.Changed != (i%2 == 1):
						t.Errorf("%s: got %+v", id, r)
					}
				})
			}
			wg.Wait()
			if p := sb.peak.Load(); p > 2 {
				t.Errorf("%d batches in flight, limit 2", p)
			}
			total, most := 0, 0
			for _, n := range sb.sizes {
				total += n
				most = max(most, n)
			}
			if total != 200 || most > 16 {
				t.Errorf("batches %v: %d reads, largest %d (limit 16)", sb.sizes, total, most)
			}
			if len(sb.sizes) >= 200 {
				t.Errorf("%d round trips for 200 concurrent reads: nothing shared", len(sb.sizes))
			}
			if c.inflight != 0 || len(c.queue) != 0 {
				t.Errorf("after: %d in flight, %d queued", c.inflight, len(c.queue))
			}
		})
	}
}
