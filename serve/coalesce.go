package serve

import (
	"context"
	"sync"
	"time"

	"github.com/streamrec/streamrec/features"
)

// batchReader reads many users' states in one round trip (both feature
// stores meet it).
type batchReader interface {
	ReadUserStates(ctx context.Context, reads []features.StateRead) error
}

// stateRead is one request's place in a batch.
type stateRead struct {
	read features.StateRead
	done chan struct{} // closed-over signal: one send when answered or told to lead
	lead []*stateRead  // set when this request is to run the next batch
}

var stateReadPool = sync.Pool{New: func() any { return &stateRead{done: make(chan struct{}, 1)} }}

// coalescer shares feature-store round trips between concurrent requests
// (group commit): a request that finds fewer than maxBatches batches in
// flight reads at once; the others queue, and when a batch returns its
// leader hands the whole queue to the first queued request, which reads it
// as the next batch. Under load one round trip serves many requests, so the
// syscalls and Redis's per-command overhead are paid once per batch; alone,
// a request reads immediately as it would without the coalescer. No
// goroutine of its own: nothing to start or stop.
type coalescer struct {
	r          batchReader
	timeout    time.Duration // budget of one batch's round trip
	maxBatches int
	maxSize    int

	mu       sync.Mutex
	inflight int
	queue    []*stateRead
}

func newCoalescer(r batchReader, timeout time.Duration, maxBatches, maxSize int) *coalescer {
	return &coalescer{r: r, timeout: timeout, maxBatches: maxBatches, maxSize: maxSize}
}

// read fills rd.read's outputs. It returns within about two batch budgets:
// the batch ahead of it and its own.
func (c *coalescer) read(rd *stateRead) {
	c.mu.Lock()
	if c.inflight < c.maxBatches {
		c.inflight++
		c.mu.Unlock()
		batch := [1]*stateRead{rd}
		c.run(batch[:])
		return
	}
	c.queue = append(c.queue, rd)
	c.mu.Unlock()
	<-rd.done
	if rd.lead != nil {
		batch := rd.lead
		rd.lead = nil
		c.run(batch)
	}
}

// run reads batch (whose first entry is the caller), hands the queue on,
// then answers the batch's other requests.
func (c *coalescer) run(batch []*stateRead) {
	reads := make([]features.StateRead, len(batch))
	for i, rd := range batch {
		reads[i] = rd.read
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	_ = c.r.ReadUserStates(ctx, reads) // a batch error is in every read
	cancel()

	c.mu.Lock()
	if len(c.queue) == 0 {
		c.inflight--
	} else {
		n := min(len(c.queue), c.maxSize)
		next := make([]*stateRead, n)
		copy(next, c.queue)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		next[0].lead = next
		next[0].done <- struct{}{}
	}
	c.mu.Unlock()

	for i, rd := range batch {
		rd.read = reads[i]
		if i > 0 {
			rd.done <- struct{}{}
		}
	}
}
