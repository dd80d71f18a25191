package serve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamrec/streamrec/learner"
)

// loaded is one verified snapshot; requests read it through an
// atomic.Pointer, so each sees exactly one whole model.
type loaded struct {
	model    Model
	info     ModelInfo
	loadedAt time.Time
}

// ErrNoSnapshot is what a Snapshots returns (wrapped or not) when none is
// published yet; it is learner's.
var ErrNoSnapshot = learner.ErrNoSnapshot

// isNoSnapshot tells "no snapshot published yet" apart from failures.
func isNoSnapshot(err error) bool { return errors.Is(err, ErrNoSnapshot) }

// RunSnapshots keeps the serving snapshot current until ctx ends: it loads
// the current one, then reloads on every Watch notification and every
// PollInterval (the fallback when notifications are lost). Loading and
// verification happen here, off the request path; a snapshot that fails to
// decode is counted, logged and skipped while the old one keeps serving.
func (s *Server) RunSnapshots(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	var stopWatch context.CancelFunc
	subscribe := func() <-chan int64 {
		wctx, cancel := context.WithCancel(ctx)
		stopWatch = cancel
		return s.deps.Snapshots.Watch(wctx)
	}
	watch := subscribe()
	defer func() { stopWatch() }()
	var resub <-chan time.Time
	backoff := s.cfg.PollInterval
	s.refresh(ctx, 0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case v, ok := <-watch:
			if !ok {
				// The subscription broke; polling covers us while we
				// re-subscribe with capped exponential back-off.
				watch = nil
				resub = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
				s.log.Warn().Msg("snapshot notifications closed; re-subscribing")
				continue
			}
			backoff = s.cfg.PollInterval
			s.refresh(ctx, v)
		case <-resub:
			resub = nil
			stopWatch()
			watch = subscribe()
		case <-tick.C:
			s.refresh(ctx, 0)
		}
	}
}

// refresh loads the current snapshot if it differs from the serving one.
// hint is a notified version (0 when polling).
func (s *Server) refresh(ctx context.Context, hint int64) {
	cur := s.cur.Load()
	var serving int64
	if cur != nil {
		serving = cur.info.Version
	}
	if hint != 0 && hint == serving {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if p, ok := s.deps.Snapshots.(versionProber); ok && hint == 0 {
		v, err := p.CurrentVersion(fctx)
		if err != nil {
			s.fetchFailed(err)
			return
		}
		if v == serving || v == s.rejected {
			return
		}
	}
	v, blob, err := s.deps.Snapshots.Current(fctx)
	if err != nil {
		s.fetchFailed(err)
		return
	}
	s.fetchErrs = 0
	if v == serving || v == s.rejected {
		return
	}
	if err := s.Load(v, blob); err != nil {
		s.rejected = v
		s.log.Error().Err(err).Int64("version", v).Int64("serving", serving).Msg("snapshot rejected; keeping the serving one")
	}
}

func (s *Server) fetchFailed(err error) {
	if isNoSnapshot(err) || errors.Is(err, context.Canceled) {
		return
	}
	s.metrics.swapFails.WithLabelValues("fetch").Inc()
	s.fetchErrs++
	// Log the first failure, then every 60th, so an outage does not flood.
	if s.fetchErrs%60 == 1 {
		s.log.Warn().Err(err).Int("consecutive", s.fetchErrs).Msg("snapshot fetch failed")
	}
}

// Load verifies blob and swaps it in as the serving snapshot; on error the
// serving snapshot stays and the failure is counted. It is what the snapshot
// loop calls; the embedded mode may also call it directly.
func (s *Server) Load(version int64, blob []byte) error {
	t0 := time.Now()
	m, info, err := s.decode(blob)
	took := time.Since(t0)
	if err != nil {
		s.metrics.swapFails.WithLabelValues("decode").Inc()
		return fmt.Errorf("snapshot %d: %w", version, err)
	}
	if info.Version == 0 {
		info.Version = version
	}
	if info.Size == 0 {
		info.Size = len(blob)
	}
	if s.cache != nil {
		// Before the swap: from here on only the new model's answers are
		// stored, so no request can see the new version and then an
		// older one.
		s.cache.swapped(s.now().UnixNano(), info.Version, s.cfg.SwapGrace)
	}
	old := s.cur.Swap(&loaded{model: m, info: info, loadedAt: s.now()})
	s.metrics.swaps.Inc()
	s.metrics.decode.Observe(took.Seconds())
	s.metrics.version.Set(float64(info.Version))
	ev := s.log.Info().Int64("version", info.Version).Int("bytes", info.Size).Int("items", info.Items).Dur("decode", took)
	if old != nil {
		ev = ev.Int64("previous", old.info.Version)
	}
	ev.Msg("snapshot loaded")
	return nil
}

// snapshotAge is the serving snapshot's age in seconds, 0 when none.
func (s *Server) snapshotAge() float64 {
	cur := s.cur.Load()
	if cur == nil || cur.info.Created.IsZero() {
		return 0
	}
	return s.now().Sub(cur.info.Created).Seconds()
}
