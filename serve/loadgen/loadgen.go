package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config shapes an open-loop run.
type Config struct {
	// Rate is the offered load in requests per second.
	Rate float64
	// Duration is how long requests are issued (after Warmup).
	Duration time.Duration
	// Warmup requests are sent at Rate but not recorded.
	Warmup time.Duration
	// MaxInFlight bounds concurrent requests; a request that would exceed
	// it is counted in Result.Dropped (the target is overloaded).
	MaxInFlight int
	// Timeout is the client timeout per request.
	Timeout time.Duration
	// Observe, when set, is called (concurrently) with each recorded
	// request's scheduled start and latency, e.g. to line latency up with
	// events on the target.
	Observe func(at time.Time, latency time.Duration)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Rate <= 0:
		return errors.New("loadgen: rate must be positive")
	case c.Duration <= 0:
		return errors.New("loadgen: duration must be positive")
	case c.Warmup < 0:
		return errors.New("loadgen: warmup must not be negative")
	case c.MaxInFlight <= 0:
		return errors.New("loadgen: max in flight must be positive")
	case c.Timeout <= 0:
		return errors.New("loadgen: timeout must be positive")
	}
	return nil
}

// Result is what a run measured (warmup excluded).
type Result struct {
	Sent     int64
	Non2xx   int64
	Errors   int64
	Dropped  int64
	Elapsed  time.Duration
	Latency  *Histogram
	FirstErr string
}

// Throughput is completed requests per second.
func (r *Result) Throughput() float64 {
	return float64(r.Latency.Count()) / r.Elapsed.Seconds()
}

func (r *Result) String() string {
	h := r.Latency
	return fmt.Sprintf("%d requests in %.1fs (%.0f/s): p50 %s p99 %s p99.9 %s max %s; non-2xx %d, errors %d, dropped %d",
		h.Count(), r.Elapsed.Seconds(), r.Throughput(), fmtDur(h.Quantile(0.5)), fmtDur(h.Quantile(0.99)),
		fmtDur(h.Quantile(0.999)), fmtDur(h.Max()), r.Non2xx, r.Errors, r.Dropped)
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/1e6) }

// NewClient is an HTTP client with enough keep-alive connections for the
// given concurrency.
func NewClient(conns int, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = conns, conns, 0
	tr.DisableCompression = true
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Run offers cfg.Rate requests per second of url(i) for cfg.Warmup +
// cfg.Duration. Each latency runs from the request's scheduled start, so a
// stalled server shows up in the tail instead of lowering the load.
func Run(ctx context.Context, cfg Config, url func(i int) string) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client := NewClient(cfg.MaxInFlight, cfg.Timeout)
	defer client.CloseIdleConnections()
	res := &Result{Latency: &Histogram{}}
	var (
		wg       sync.WaitGroup
		inflight atomic.Int64
		sent     atomic.Int64
		non2xx   atomic.Int64
		errs     atomic.Int64
		errOnce  sync.Once
	)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		record := !at.Before(measureFrom)
		if inflight.Load() >= int64(cfg.MaxInFlight) {
			if record {
				res.Dropped++
			}
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func(i int, at time.Time, record bool) {
			defer wg.Done()
			defer inflight.Add(-1)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url(i), nil)
			if err != nil {
				errOnce.Do(func() { res.FirstErr = err.Error() })
				errs.Add(1)
				return
			}
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			lat := time.Since(at)
			if !record {
				return
			}
			sent.Add(1)
			switch {
			case err != nil:
				errs.Add(1)
				errOnce.Do(func() { res.FirstErr = err.Error() })
			case resp.StatusCode/100 != 2:
				non2xx.Add(1)
				errOnce.Do(func() { res.FirstErr = resp.Status })
			default:
				res.Latency.Record(lat)
				if cfg.Observe != nil {
					cfg.Observe(at, lat)
				}
			}
		}(i, at, record)
	}
	wg.Wait()
	res.Elapsed = time.Since(measureFrom)
	if res.Elapsed > cfg.Duration {
		res.Elapsed = cfg.Duration // the tail of in-flight requests is not extra offered time
	}
	res.Sent, res.Non2xx, res.Errors = sent.Load(), non2xx.Load(), errs.Load()
	return res, ctx.Err()
}

// Closed runs conns closed-loop clients (each sends its next request when
// the previous answered) for d and returns the result: its throughput is the
// peak the target sustains from this client.
func Closed(ctx context.Context, conns int, d time.Duration, url func(i int) string) (*Result, error) {
	if conns <= 0 || d <= 0 {
		return nil, errors.New("loadgen: conns and duration must be positive")
	}
	client := NewClient(conns, 10*time.Second)
	defer client.CloseIdleConnections()
	res := &Result{Latency: &Histogram{}}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		non2xx  atomic.Int64
		errs    atomic.Int64
		errOnce sync.Once
	)
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1))
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(i), nil)
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return
				}
				switch {
				case err != nil:
					errs.Add(1)
					errOnce.Do(func() { res.FirstErr = err.Error() })
				case resp.StatusCode/100 != 2:
					non2xx.Add(1)
				default:
					res.Latency.Record(time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Sent = next.Load()
	res.Non2xx, res.Errors = non2xx.Load(), errs.Load()
	return res, nil
}
