package serve

import (
	"time"

	"github.com/streamrec/streamrec/learner"
)

// renewal is a cached answer to recompute: its key and the user state the
// key was made from.
type renewal struct {
	key  recKey
	view *userView
}

// renewQueue bounds the renewals waiting for a worker.
const renewQueue = 4096

// renewAnswer queues the renewal of a cached answer (the hit that asked for
// it was answered from the cache) and makes sure a worker runs, at most
// maxRefreshes at once. A renewal that finds the queue full is dropped and
// its entry unmarked, so a later hit asks again; an entry nobody asks for
// again expires and is computed on a request.
func (s *Server) renewAnswer(key recKey, view *userView) {
	select {
	case s.renewals <- renewal{key: key, view: view}:
	default:
		s.cache.unask(&key)
		return
	}
	s.metrics.cacheRefresh.Inc()
	select {
	case s.refreshes <- struct{}{}:
		go s.renewWorker()
	default: // the running workers will get to it
	}
}

// renewWorker runs queued renewals until the queue is empty, then gives its
// slot back. Each renewal uses the model serving when it runs, so a renewal
// queued before a swap still yields the new model's answer.
//
// Renewals come in bursts (every hot answer after a swap, all asked within
// the swap grace): a worker rests three times what each renewal took before
// the next, so renewals use at most a quarter of a core per worker and leave
// the rest to requests.
func (s *Server) renewWorker() {
	for {
		for {
			var r renewal
			select {
			case r = <-s.renewals:
			default:
			}
			if r.view == nil {
				break
			}
			took := s.renew(&r)
			time.Sleep(3 * took)
		}
		<-s.refreshes
		// A renewal queued after the queue looked empty, while this
		// worker still held its slot, started no worker: take it on.
		if len(s.renewals) == 0 {
			return
		}
		select {
		case s.refreshes <- struct{}{}:
		default:
			return // another worker runs
		}
	}
}

// renew recomputes one answer and stores it; it returns how long it took.
func (s *Server) renew(r *renewal) time.Duration {
	t0 := time.Now()
	cur := s.cur.Load()
	if cur == nil {
		return 0
	}
	q := learner.Query{User: &r.view.user, Category: r.key.category, TS: s.now().UnixMilli()}
	if r.key.exclude && r.view.exclude != nil {
		q.Exclude = r.view.exclude
		q.ExcludeSet = r.view.excludeSet(cur.model, cur.info.Version)
	}
	items := cur.model.Recommend(&q, r.key.n, nil)
	s.cache.put(&r.key, s.now().UnixNano(), cur.info.Version, items)
	return time.Since(t0)
}
