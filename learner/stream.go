package learner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
)

// VectorWriter receives the user vectors the learner changes (the feature
// store's PutUserVectors).
type VectorWriter interface {
	PutUserVectors(ctx context.Context, version int64, vectors map[string][]float32) error
}

// StreamConfig configures the streaming learner (`streamrec learn`, and the
// learner embedded in `streamrec run`).
type StreamConfig struct {
	Brokers []string
	// Dialer connects to the brokers: the consumer group, the partition
	// readers and the items-topic lookup (TLS and SASL settings live here;
	// kafkasec.Config builds one). Nil is kafka-go's default dialer.
	Dialer *kafka.Dialer
	// Topic is the event topic; ItemsTopic the item metadata topic ("" to
	// not read metadata).
	Topic      string
	ItemsTopic string
	// Group is the consumer group (its committed offsets follow the
	// snapshots, but a restart resumes from the newest snapshot's offsets).
	Group string
	// SnapshotInterval and SnapshotEvents: a snapshot is published once
	// the oldest event it would add was trained this long ago, or once this
	// many events wait, whichever comes first. The checkpoint begins early
	// by its last duration and 5% of the interval (the servers' load), so
	// that under steady traffic an event is served within the interval;
	// without events no snapshot is taken.
	SnapshotInterval time.Duration
	SnapshotEvents   int64
	// Models are trained and snapshotted; the first drives the guardrail
	// metrics. Default: twostage.
	Models  []string
	Learner Config
	// GuardrailMinEvents is how many paired evaluations (explicit events for
	// RMSE, sampled positives for HR@K) the live and the frozen serving model
	// need before the guardrail judges that metric; fewer pass.
	GuardrailMinEvents int64
	// Decoder validates messages (nil: the default event types).
	Decoder *streamrec.Decoder
	// Now is the wall clock.
	Now func() time.Time
}

// DefaultStreamConfig returns the defaults of product.md §4 and §8.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{
		Topic: streamrec.TopicEvents, ItemsTopic: streamrec.TopicItems, Group: "streamrec-learner",
		SnapshotInterval: 5 * time.Second, SnapshotEvents: 10000,
		Models: []string{"twostage"}, Learner: DefaultConfig(), GuardrailMinEvents: 100, Now: time.Now,
	}
}

// Validate checks the configuration.
func (c *StreamConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("stream learner: no brokers"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("stream learner: empty topic"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("stream learner: empty group"))
	}
	if c.SnapshotInterval <= 0 && c.SnapshotEvents <= 0 {
		errs = append(errs, errors.New("stream learner: snapshot interval or event count must be positive"))
	}
	if len(c.Models) == 0 {
		errs = append(errs, errors.New("stream learner: no models"))
	}
	if c.GuardrailMinEvents < 0 {
		errs = append(errs, fmt.Errorf("stream learner: guardrail min events must be >= 0, got %d", c.GuardrailMinEvents))
	}
	if c.Now == nil {
		errs = append(errs, errors.New("stream learner: clock (Now) is nil"))
	}
	if err := c.Learner.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ParseSnapshotEvery parses --snapshot-every: "5s,10000" (time and count,
// whichever first), "5s" (time only) or "10000" (count only).
func ParseSnapshotEvery(s string) (time.Duration, int64, error) {
	var d time.Duration
	var n int64
	for part := range splitComma(s) {
		if part == "" {
			continue
		}
		if v, err := strconv.ParseInt(part, 10, 64); err == nil {
			if v <= 0 {
				return 0, 0, fmt.Errorf("snapshot-every %q: count must be positive", s)
			}
			n = v
			continue
		}
		v, err := time.ParseDuration(part)
		if err != nil || v <= 0 {
			return 0, 0, fmt.Errorf("snapshot-every %q: want DURATION, COUNT or DURATION,COUNT", s)
		}
		d = v
	}
	if d == 0 && n == 0 {
		return 0, 0, fmt.Errorf("snapshot-every %q: want DURATION, COUNT or DURATION,COUNT", s)
	}
	return d, n, nil
}

func splitComma(s string) func(func(string) bool) {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(s); i++ {
			if i == len(s) || s[i] == ',' {
				if !yield(trimSpace(s[start:i])) {
					return
				}
				start = i + 1
			}
		}
	}
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// Guardrail decides whether a candidate snapshot may replace the serving
// one: it is held back when its windowed RMSE is higher, or its HR@K lower,
// than the serving snapshot's by more than Margin. Missing metrics pass.
// The two maps must be measured on the same events (the stream learner
// passes Trainer.GuardMetrics: the live model and a frozen copy of the
// serving one scored side by side), since the metrics drift with the stream.
type Guardrail struct{ Margin float64 }

// Check returns "" when candidate may be published, else the reason.
func (g Guardrail) Check(candidate, serving map[string]float64) string {
	for k, c := range candidate {
		s, ok := serving[k]
		if !ok || math.IsNaN(c) || math.IsNaN(s) {
			continue
		}
		switch {
		case k == "rmse" && c > s+g.Margin:
			return fmt.Sprintf("rmse %.4f is worse than serving %.4f by more than %.4f", c, s, g.Margin)
		case len(k) > 3 && k[:3] == "hr@" && c < s-g.Margin:
			return fmt.Sprintf("%s %.4f is worse than serving %.4f by more than %.4f", k, c, s, g.Margin)
		}
	}
	return ""
}

type streamMetrics struct {
	rmse, hr, events, version, size, created prometheus.Gauge
	published, heldBack, publishErrors       prometheus.Counter
	badMessages                              prometheus.Counter
}

func newStreamMetrics(reg prometheus.Registerer, k int) *streamMetrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "streamrec", Subsystem: "learner", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "streamrec", Subsystem: "learner", Name: name, Help: help})
	}
	m := &streamMetrics{
		rmse:          g("online_rmse", "Windowed prequential RMSE over explicit events (primary model)."),
		hr:            g("online_hr_at_"+strconv.Itoa(k), "Windowed prequential HR@K over new positive pairs (primary model)."),
		events:        g("events_trained", "Events trained on (restored from the snapshot on restart)."),
		version:       g("snapshot_version", "Version of the newest published snapshot."),
		size:          g("snapshot_bytes", "Size of the newest published snapshot."),
		created:       g("snapshot_created_seconds", "Creation time of the newest published snapshot (Unix seconds)."),
		published:     c("snapshots_published_total", "Snapshots published."),
		heldBack:      c("snapshots_held_back_total", "Snapshots held back by the guardrail."),
		publishErrors: c("snapshot_errors_total", "Snapshots that failed to encode or publish."),
		badMessages:   c("bad_messages_total", "Messages that are not valid events (ingest dead-letters them)."),
	}
	if reg != nil {
		reg.MustRegister(m.rmse, m.hr, m.events, m.version, m.size, m.created, m.published, m.heldBack,
			m.publishErrors, m.badMessages)
	}
	return m
}

// StreamLearner consumes the event topic, trains a Trainer on it and
// publishes snapshots; restarted, it resumes from its newest snapshot and
// the offsets recorded in it.
type StreamLearner struct {
	cfg     StreamConfig
	vectors VectorWriter
	snaps   SnapshotStore
	log     zerolog.Logger
	met     *streamMetrics
	guard   Guardrail
	dec     *streamrec.Decoder

	mu        sync.Mutex // guards everything below (training vs. status readers)
	tr        *Trainer
	version   int64         // newest published (or restored) version
	since     int64         // events since the last snapshot
	pending   time.Time     // when the oldest of those was trained
	lastSnap  time.Time     // when the last checkpoint began
	lastDur   time.Duration // how long it took to build and publish
	heldBack  int64
	lastInfo  SnapshotInfo
	published int64
}

// NewStreamLearner builds a learner; vectors may be nil (no vector writes).
func NewStreamLearner(cfg StreamConfig, vectors VectorWriter, snaps SnapshotStore, reg prometheus.Registerer, log zerolog.Logger) (*StreamLearner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if snaps == nil {
		return nil, errors.New("stream learner: no snapshot store")
	}
	var models []Model
	for _, n := range cfg.Models {
		m, err := New(n, cfg.Learner)
		if err != nil {
			return nil, fmt.Errorf("stream learner: %w", err)
		}
		models = append(models, m)
	}
	tr, err := NewTrainerWith(cfg.Learner, models, log, TrainerOptions{Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("stream learner: %w", err)
	}
	dec := cfg.Decoder
	if dec == nil {
		dec = streamrec.NewDecoder()
	}
	return &StreamLearner{cfg: cfg, vectors: vectors, snaps: snaps, log: log, met: newStreamMetrics(reg, cfg.Learner.K),
		guard: Guardrail{Margin: cfg.Learner.GuardrailMargin}, dec: dec, tr: tr, lastSnap: cfg.Now()}, nil
}

// Resume restores the newest decodable snapshot of the store (falling back
// to older kept versions when the current one is corrupt). It returns false
// when there is none.
func (l *StreamLearner) Resume(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	infos, err := l.snaps.List(ctx)
	if err != nil {
		return false, fmt.Errorf("resume: %w", err)
	}
	for _, in := range infos {
		l.version = max(l.version, in.Version)
	}
	cur, blob, err := l.snaps.Current(ctx)
	if errors.Is(err, ErrNoSnapshot) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("resume: %w", err)
	}
	candidates := []int64{cur}
	for _, in := range infos {
		if in.Version != cur {
			candidates = append(candidates, in.Version)
		}
	}
	for k, v := range candidates {
		if k > 0 {
			if blob, err = l.snaps.Get(ctx, v); err != nil {
				continue
			}
		}
		info, err := l.tr.Restore(blob)
		if err != nil {
			l.log.Error().Err(err).Int64("version", v).Msg("snapshot unusable; trying an older one")
			continue
		}
		l.version = max(l.version, info.Version)
		l.lastInfo = info
		// The restored model is the serving one the guardrail compares with.
		if err := l.tr.FreezeServing(info.Version, blob); err != nil {
			l.log.Warn().Err(err).Int64("version", info.Version).Msg("no frozen serving model; the next snapshot is not judged")
		}
		l.met.events.Set(float64(info.EventsTrained))
		l.log.Info().Int64("version", info.Version).Int64("events", info.EventsTrained).
			Interface("offsets", info.Offsets).Msg("resumed from snapshot")
		return true, nil
	}
	return false, fmt.Errorf("resume: no decodable snapshot among %d kept", len(candidates))
}

// Train trains on one event (the Kafka loop calls it; embedded callers and
// tests may too).
func (l *StreamLearner) Train(ev *streamrec.Event) {
	l.mu.Lock()
	l.tr.Process(ev)
	if l.since == 0 {
		l.pending = l.cfg.Now()
	}
	l.since++
	l.mu.Unlock()
}

// PutItems records item metadata for the snapshots' item table.
func (l *StreamLearner) PutItems(items []streamrec.ItemMeta) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tr.PutItems(items)
}

// Status describes the learner.
type Status struct {
	Events   int64              `json:"events_trained"`
	Version  int64              `json:"snapshot_version"`
	HeldBack int64              `json:"held_back"`
	Metrics  map[string]float64 `json:"metrics"`
	// Guard holds the live and the frozen serving model's metrics over the
	// same events since the serving snapshot (what the guardrail compares).
	Guard   GuardMetrics     `json:"guardrail"`
	Offsets map[string]int64 `json:"offsets"`
	Last    SnapshotInfo     `json:"last_snapshot"`
}

// Status returns the learner's counters.
func (l *StreamLearner) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Events: l.tr.Events(), Version: l.version, HeldBack: l.heldBack, Metrics: l.tr.OnlineMetrics(),
		Guard: l.tr.GuardMetrics(), Offsets: l.tr.Offsets(), Last: l.lastInfo}
}

// due reports whether a snapshot is due.
func (l *StreamLearner) due() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since == 0 {
		return false
	}
	if l.cfg.SnapshotEvents > 0 && l.since >= l.cfg.SnapshotEvents {
		return true
	}
	if l.cfg.SnapshotInterval <= 0 {
		return false
	}
	wait := snapshotWait(l.cfg.SnapshotInterval, l.lastDur)
	now := l.cfg.Now()
	return now.Sub(l.pending) >= wait && now.Sub(l.lastSnap) >= wait
}

// snapshotWait is how long the oldest untrained-into-a-snapshot event may
// wait before a checkpoint begins, so that it is published within interval
// of being trained: interval less the last checkpoint's duration and 5% for
// the servers to fetch and load the snapshot, but never below half the
// interval (a slow checkpoint must not make them back to back).
func snapshotWait(interval, lastDur time.Duration) time.Duration {
	return max(interval-lastDur-interval/20, interval/2)
}

// Checkpoint takes a snapshot of everything trained so far and publishes it
// unless the guardrail holds it back. It returns the published info (ok
// false when nothing new was trained or the snapshot was held back).
func (l *StreamLearner) Checkpoint(ctx context.Context) (SnapshotInfo, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.since == 0 {
		return SnapshotInfo{}, false, nil
	}
	now := l.cfg.Now()
	l.lastSnap = now
	metrics := l.tr.OnlineMetrics()
	if v, ok := metrics["rmse"]; ok {
		l.met.rmse.Set(v)
	}
	if v, ok := metrics["hr@"+strconv.Itoa(l.cfg.Learner.K)]; ok {
		l.met.hr.Set(v)
	}
	l.met.events.Set(float64(l.tr.Events()))
	gm := l.tr.GuardMetrics()
	live, serving := judged(gm, l.cfg.GuardrailMinEvents)
	if reason := l.guard.Check(live, serving); reason != "" {
		l.heldBack++
		l.met.heldBack.Inc()
		l.log.Warn().Str("reason", reason).Int64("events", l.tr.Events()).Int64("serving_version", gm.Version).
			Int64("explicit", gm.Explicit).Int64("hr_evaluated", gm.HREvaluated).Msg("snapshot held back by the guardrail")
		return SnapshotInfo{}, false, nil
	}
	version := l.version + 1
	blob, info, err := l.tr.Snapshot(version, nil, now)
	if err != nil {
		l.met.publishErrors.Inc()
		return SnapshotInfo{}, false, fmt.Errorf("checkpoint: %w", err)
	}
	if err := l.snaps.Publish(ctx, info, blob); err != nil {
		l.met.publishErrors.Inc()
		return SnapshotInfo{}, false, fmt.Errorf("checkpoint: %w", err)
	}
	l.lastDur = l.cfg.Now().Sub(now)
	l.version, l.since, l.pending, l.lastInfo = version, 0, time.Time{}, info
	// The published model becomes the frozen serving model; the paired
	// windows restart on the events that follow.
	if err := l.tr.FreezeServing(version, blob); err != nil {
		l.log.Warn().Err(err).Int64("version", version).Msg("no frozen serving model; the next snapshot is not judged")
	}
	l.published++
	l.met.published.Inc()
	l.met.version.Set(float64(version))
	l.met.size.Set(float64(len(blob)))
	l.met.created.Set(float64(now.UnixNano()) / 1e9)
	if l.vectors != nil {
		if vecs := l.tr.DrainUserVectors(); len(vecs) > 0 {
			if err := l.vectors.PutUserVectors(ctx, version, vecs); err != nil {
				l.log.Warn().Err(err).Int("users", len(vecs)).Msg("writing user vectors failed")
			}
		}
	}
	l.log.Info().Int64("version", version).Int("bytes", len(blob)).Int64("events", info.EventsTrained).
		Interface("metrics", metrics).Interface("guard", gm).Msg("snapshot published")
	return info, true, nil
}

// judged returns the paired live and serving metrics the guardrail judges:
// only those with at least minEvents paired evaluations.
func judged(g GuardMetrics, minEvents int64) (live, serving map[string]float64) {
	live, serving = map[string]float64{}, map[string]float64{}
	for k, v := range g.Live {
		n := g.HREvaluated
		if k == "rmse" {
			n = g.Explicit
		}
		if s, ok := g.Serving[k]; ok && n >= minEvents {
			live[k], serving[k] = v, s
		}
	}
	return live, serving
}

// backoff is a capped exponential back-off.
type backoff struct{ n int }

func (b *backoff) wait(ctx context.Context) {
	d := min(100*time.Millisecond<<min(b.n, 6), 5*time.Second)
	b.n++
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Run resumes from the newest snapshot, then consumes until ctx ends, and
// publishes a final snapshot on the way out.
func (l *StreamLearner) Run(ctx context.Context) error {
	if _, err := l.Resume(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	if l.cfg.ItemsTopic != "" {
		wg.Add(1)
		go func() { defer wg.Done(); l.readItems(ctx) }()
	}
	err := l.consume(ctx)
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, _, ferr := l.Checkpoint(fctx); ferr != nil {
		l.log.Error().Err(ferr).Msg("final snapshot failed")
		err = errors.Join(err, ferr)
	}
	return err
}

// consume runs consumer-group generations until ctx ends.
func (l *StreamLearner) consume(ctx context.Context) error {
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: l.cfg.Group, Brokers: l.cfg.Brokers, Topics: []string{l.cfg.Topic}, Dialer: l.cfg.Dialer,
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) { l.log.Debug().Msgf("kafka: "+f, a...) }),
	})
	if err != nil {
		return fmt.Errorf("stream learner: consumer group: %w", err)
	}
	defer cg.Close()
	var bo backoff
	for ctx.Err() == nil {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			l.log.Warn().Err(err).Msg("joining consumer group failed; retrying")
			bo.wait(ctx)
			continue
		}
		bo = backoff{}
		l.runGeneration(ctx, gen)
	}
	return nil
}

// runGeneration reads the assigned partitions from the snapshot's offsets
// (the group's committed offsets only for partitions the snapshot lacks)
// and trains until the generation or ctx ends.
func (l *StreamLearner) runGeneration(ctx context.Context, gen *kafka.Generation) {
	offsets := l.Status().Offsets
	msgs := make(chan kafka.Message, 4096)
	done := make(chan struct{})
	gen.Start(func(gctx context.Context) {
		<-gctx.Done()
		close(done)
	})
	for topic, parts := range gen.Assignments {
		for _, p := range parts {
			start := p.Offset
			if off, ok := offsets[topic+"/"+strconv.Itoa(p.ID)]; ok {
				start = off
			}
			if start < 0 {
				start = kafka.FirstOffset
			}
			topic, part := topic, p.ID
			gen.Start(func(gctx context.Context) { l.readPartition(gctx, topic, part, start, msgs) })
		}
	}
	l.log.Info().Int32("generation", gen.ID).Interface("assignments", gen.Assignments).Msg("consuming")
	tick := time.NewTicker(max(min(l.cfg.SnapshotInterval, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case m := <-msgs:
			l.handle(m)
			// Drain what is buffered before checking the clock.
			for n := 0; n < 1024; n++ {
				select {
				case m := <-msgs:
					l.handle(m)
					continue
				default:
				}
				break
			}
			if l.due() {
				l.checkpoint(ctx, gen)
			}
		case <-tick.C:
			if l.due() {
				l.checkpoint(ctx, gen)
			}
		}
	}
}

func (l *StreamLearner) checkpoint(ctx context.Context, gen *kafka.Generation) {
	info, ok, err := l.Checkpoint(ctx)
	if err != nil {
		l.log.Error().Err(err).Msg("snapshot failed; will retry")
		return
	}
	if !ok {
		return
	}
	commit := map[string]map[int]int64{}
	for k, off := range info.Offsets {
		topic, part, ok := splitOffsetKey(k)
		if !ok || topic != l.cfg.Topic {
			continue
		}
		if commit[topic] == nil {
			commit[topic] = map[int]int64{}
		}
		commit[topic][int(part)] = off
	}
	if err := gen.CommitOffsets(commit); err != nil {
		l.log.Debug().Err(err).Msg("committing snapshot offsets to the group failed")
	}
}

func (l *StreamLearner) handle(m kafka.Message) {
	ev, err := l.dec.Decode(m.Value)
	if err != nil {
		l.met.badMessages.Inc()
		return
	}
	ev.Pos = streamrec.Position{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
	l.Train(&ev)
}

func (l *StreamLearner) readPartition(ctx context.Context, topic string, part int, start int64, out chan<- kafka.Message) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: l.cfg.Brokers, Topic: topic, Partition: part, Dialer: l.cfg.Dialer,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		l.log.Error().Err(err).Str("topic", topic).Int("partition", part).Msg("seek failed")
		return
	}
	var bo backoff
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Warn().Err(err).Str("topic", topic).Int("partition", part).Msg("read failed; retrying")
			bo.wait(ctx)
			continue
		}
		bo = backoff{}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// readItems follows the item metadata topic from the start (all partitions).
func (l *StreamLearner) readItems(ctx context.Context) {
	dialer := l.cfg.Dialer
	if dialer == nil {
		dialer = kafka.DefaultDialer
	}
	conn, err := dialer.DialContext(ctx, "tcp", l.cfg.Brokers[0])
	if err != nil {
		l.log.Warn().Err(err).Msg("items topic: dial failed; item titles come only from events")
		return
	}
	parts, err := conn.ReadPartitions(l.cfg.ItemsTopic)
	conn.Close()
	if err != nil || len(parts) == 0 {
		l.log.Info().Err(err).Str("topic", l.cfg.ItemsTopic).Msg("no item metadata topic; skipping")
		return
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func(part int) {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: l.cfg.Brokers, Topic: l.cfg.ItemsTopic, Partition: part, Dialer: l.cfg.Dialer,
				MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
			defer r.Close()
			var bo backoff
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					bo.wait(ctx)
					continue
				}
				meta, err := streamrec.DecodeItem(m.Value, streamrec.DefaultMaxBytes)
				if err != nil {
					continue
				}
				if err := l.PutItems([]streamrec.ItemMeta{meta}); err != nil {
					l.log.Warn().Err(err).Msg("item metadata")
				}
			}
		}(p.ID)
	}
	wg.Wait()
}
