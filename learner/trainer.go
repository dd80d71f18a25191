package learner

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// window is a sliding mean over the last n values.
type window struct {
	vals []float64
	next int
	full bool
	sum  float64
	adds int
}

func newWindow(n int) window { return window{vals: make([]float64, n)} }

func (w *window) add(v float64) {
	if w.full {
		w.sum -= w.vals[w.next]
	}
	w.vals[w.next] = v
	w.sum += v
	w.next++
	if w.next == len(w.vals) {
		w.next, w.full = 0, true
	}
	if w.adds++; w.adds >= 1<<16 { // resum now and then against drift
		w.adds, w.sum = 0, 0
		for _, x := range w.vals[:w.len()] {
			w.sum += x
		}
	}
}

func (w *window) len() int {
	if w.full {
		return len(w.vals)
	}
	return w.next
}

func (w *window) reset() {
	clear(w.vals)
	w.next, w.full, w.sum, w.adds = 0, false, 0, 0
}

func (w *window) mean() float64 {
	if n := w.len(); n > 0 {
		return w.sum / float64(n)
	}
	return math.NaN()
}

// ModelMetrics are one model's prequential metrics in the trainer.
type ModelMetrics struct {
	Model string `json:"model"`
	// RMSE and HR are windowed (the last Config.Window evaluations); NaN
	// before the first evaluation.
	RMSE float64 `json:"rmse"`
	HR   float64 `json:"hr"`
	// Cumulative figures over the whole stream.
	RMSEAll     float64 `json:"rmse_all"`
	HRAll       float64 `json:"hr_all"`
	Explicit    int64   `json:"explicit"`
	HREvaluated int64   `json:"hr_evaluated"`
}

type modelState struct {
	m     Model
	rec   Recommender // nil when m cannot recommend
	se    window
	hit   window
	seAll float64
	nExp  int64
	hits  int64
	nHR   int64
}

type partKey struct {
	topic string
	part  int32
}

// TrainerOptions are the trainer's injected dependencies.
type TrainerOptions struct {
	// Now is the wall clock (snapshot creation time, feature-store TTLs).
	Now func() time.Time
}

// Trainer is the point-in-time training loop shared by learn, run and
// replay: for each event it reads the user, item and global features as
// they were just before it from its own in-memory feature store, scores the
// event with every model (prequential metrics), lets the models learn, and
// only then applies the event to the store.
type Trainer struct {
	cfg    Config
	log    zerolog.Logger
	now    func() time.Time
	models []*modelState
	store  *features.Memory

	user      features.User
	item      features.Item
	global    features.Global
	maxRecent int

	events  int64
	skipped int64
	offsets map[partKey]int64 // next offset per source partition
	items   []string          // every item seen, first-seen order
	itemSet map[string]struct{}

	eligible int64 // positives eligible for HR (before sampling)
	shadow   *shadowState
	recBuf   []streamrec.Scored
	seen     map[string]struct{}
	one      []string
}

// NewTrainer builds a trainer over models (at least one).
func NewTrainer(cfg Config, models []Model, log zerolog.Logger) (*Trainer, error) {
	return NewTrainerWith(cfg, models, log, TrainerOptions{})
}

// NewTrainerWith is NewTrainer with injected options.
func NewTrainerWith(cfg Config, models []Model, log zerolog.Logger, opt TrainerOptions) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(models) == 0 {
		return nil, fmt.Errorf("trainer: no models")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	fc := features.DefaultConfig()
	fc.RecentCap = cfg.RecentCap
	fc.HalfLife = cfg.Pop.HalfLife.Std()
	fc.Now = opt.Now
	store, err := features.NewMemory(fc)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	t := &Trainer{cfg: cfg, log: log, now: opt.Now, store: store, offsets: map[partKey]int64{},
		itemSet: map[string]struct{}{}, seen: map[string]struct{}{}, one: make([]string, 1)}
	names := map[string]bool{}
	for _, m := range models {
		if names[m.Name()] {
			return nil, fmt.Errorf("trainer: model %s given twice", m.Name())
		}
		names[m.Name()] = true
		st := &modelState{m: m, se: newWindow(cfg.Window), hit: newWindow(cfg.Window)}
		st.rec, _ = m.(Recommender)
		t.models = append(t.models, st)
	}
	// Copy only as many recent items as the models read (copying 50 ids per
	// event would dominate MF's cost).
	all := false
	for _, m := range models {
		switch m.(type) {
		case *TwoStage:
			t.maxRecent = max(t.maxRecent, cfg.KNN.Window, cfg.TwoStage.Recent, cfg.Ranker.HistoryLen)
		case *ItemKNN:
			t.maxRecent = max(t.maxRecent, cfg.KNN.Window)
		case *Ranker:
			t.maxRecent = max(t.maxRecent, cfg.Ranker.HistoryLen)
		case *MF, *Mean, *Bias, *Popularity:
		default:
			all = true // unknown models get the whole list
		}
	}
	if all {
		t.maxRecent = -1
	}
	return t, nil
}

// Store is the trainer's point-in-time feature store (read it only between
// Process calls).
func (t *Trainer) Store() *features.Memory { return t.store }

// Models returns the trained models.
func (t *Trainer) Models() []Model {
	out := make([]Model, len(t.models))
	for i, st := range t.models {
		out[i] = st.m
	}
	return out
}

// Events counts the events trained on; Skipped those already covered.
func (t *Trainer) Events() int64 { return t.events }

// Skipped counts redelivered events skipped because their offset was
// already trained on.
func (t *Trainer) Skipped() int64 { return t.skipped }

// Offsets returns "topic/partition" -> next offset to consume.
func (t *Trainer) Offsets() map[string]int64 {
	out := make(map[string]int64, len(t.offsets))
	for k, v := range t.offsets {
		out[k.topic+"/"+strconv.Itoa(int(k.part))] = v
	}
	return out
}

// positive reports whether an event counts as a positive interaction for
// HR@K: any implicit event, or a rating at or above PositiveMin.
func (t *Trainer) positive(ev *streamrec.Event) bool {
	return ev.Kind == streamrec.Implicit || ev.Value >= t.cfg.PositiveMin
}

// Process trains on one event. Events at or below an offset already trained
// on (same topic and partition) are skipped, so a redelivery never trains twice.
func (t *Trainer) Process(ev *streamrec.Event) {
	var pk partKey
	if ev.Pos.Topic != "" {
		pk = partKey{ev.Pos.Topic, ev.Pos.Partition}
		if next, ok := t.offsets[pk]; ok && ev.Pos.Offset < next {
			t.skipped++
			return
		}
	}
	t.store.UserFeaturesInto(ev.User, &t.user, t.maxRecent)
	itemKnown := t.store.ItemInto(ev.Item, &t.item)
	t.global = t.store.GlobalNow()
	ex := Example{Event: ev, User: &t.user, Item: &t.item, Global: &t.global}

	if ev.Kind == streamrec.Explicit {
		primary := 0.0
		for i, st := range t.models {
			d := st.m.Predict(&ex) - ev.Value
			st.se.add(d * d)
			st.seAll += d * d
			st.nExp++
			if i == 0 {
				primary = d * d
			}
		}
		if sh := t.shadow; sh != nil {
			d := sh.m.Predict(&ex) - ev.Value
			sh.liveSE.add(primary)
			sh.shadowSE.add(d * d)
			sh.nExp++
		}
	}
	if itemKnown && t.item.Events > 0 && t.positive(ev) && t.hasRecommender() {
		t.evalHR(ev)
	}
	for _, st := range t.models {
		st.m.Learn(&ex)
	}
	t.store.ApplyEvent(ev)
	t.events++
	if ev.Pos.Topic != "" {
		t.offsets[pk] = ev.Pos.Offset + 1
	}
	if _, ok := t.itemSet[ev.Item]; !ok {
		t.itemSet[ev.Item] = struct{}{}
		t.items = append(t.items, ev.Item)
	}
}

func (t *Trainer) hasRecommender() bool {
	for _, st := range t.models {
		if st.rec != nil {
			return true
		}
	}
	return false
}

// evalHR scores HR@K for a positive event whose item was seen before and
// whose (user, item) pair is new, on every HREvery-th such event.
func (t *Trainer) evalHR(ev *streamrec.Event) {
	ctx := context.Background()
	t.one[0] = ev.Item
	seen, _ := t.store.Seen(ctx, ev.User, t.one)
	if len(seen) == 1 && seen[0] {
		return
	}
	t.eligible++
	if (t.eligible-1)%int64(t.cfg.HREvery) != 0 {
		return
	}
	clear(t.seen)
	if t.user.Events > 0 {
		_, items, _, _ := t.store.UserSeen(ctx, ev.User)
		for _, it := range items {
			t.seen[it] = struct{}{}
		}
	}
	q := Query{User: &t.user, TS: ev.TS, Exclude: func(it string) bool { _, ok := t.seen[it]; return ok }}
	primary := 0.0
	for i, st := range t.models {
		if st.rec == nil {
			continue
		}
		hit := t.hitAt(st.rec, &q, ev.Item)
		st.hit.add(hit)
		st.hits += int64(hit)
		st.nHR++
		if i == 0 {
			primary = hit
		}
	}
	// The serving model is judged on exactly the evaluations the primary
	// model's windowed HR@K samples (every HREvery-th eligible positive).
	if sh := t.shadow; sh != nil && sh.rec != nil && t.models[0].rec != nil {
		sh.liveHit.add(primary)
		sh.shadowHit.add(t.hitAt(sh.rec, &q, ev.Item))
		sh.nHR++
	}
}

// hitAt reports 1 when item is in rec's top K for q, else 0.
func (t *Trainer) hitAt(rec Recommender, q *Query, item string) float64 {
	t.recBuf = rec.Recommend(q, t.cfg.K, t.recBuf[:0])
	for _, s := range t.recBuf {
		if s.Item == item {
			return 1
		}
	}
	return 0
}

// Metrics returns every model's prequential metrics.
func (t *Trainer) Metrics() []ModelMetrics {
	out := make([]ModelMetrics, 0, len(t.models))
	for _, st := range t.models {
		mm := ModelMetrics{Model: st.m.Name(), RMSE: math.Sqrt(st.se.mean()), HR: st.hit.mean(),
			RMSEAll: math.NaN(), HRAll: math.NaN(), Explicit: st.nExp, HREvaluated: st.nHR}
		if st.nExp > 0 {
			mm.RMSEAll = math.Sqrt(st.seAll / float64(st.nExp))
		}
		if st.nHR > 0 {
			mm.HRAll = float64(st.hits) / float64(st.nHR)
		}
		out = append(out, mm)
	}
	return out
}

// OnlineMetrics are the primary (first) model's windowed metrics as a
// snapshot records them: "rmse" and "hr@K" (absent before any evaluation).
func (t *Trainer) OnlineMetrics() map[string]float64 {
	out := map[string]float64{}
	mm := t.Metrics()[0]
	if !math.IsNaN(mm.RMSE) {
		out["rmse"] = mm.RMSE
	}
	if !math.IsNaN(mm.HR) {
		out["hr@"+strconv.Itoa(t.cfg.K)] = mm.HR
	}
	return out
}

// shadowState is a frozen copy of the serving snapshot's primary model. It
// predicts (never learns) on every event the trainer processes after the
// snapshot was published or restored, and keeps windowed metrics paired with
// the live primary model's over exactly the same evaluations, so the
// guardrail compares candidate and serving model on the same events instead
// of against a figure from an older stretch of the stream.
//
// Cost: one extra Predict per explicit event and one extra Recommend per
// sampled HR evaluation (every Config.HREvery-th eligible positive, the same
// sample the live HR@K uses), i.e. roughly twice the prediction cost of the
// primary model; the copy also doubles the primary model's memory. Measured
// on ML-100K with the two-stage model (BenchmarkTrainerTwoStage*Guard, 2
// shared cores): about +20% CPU per event without HR@10, about +40% with
// HR@10 on every 10th positive. Raise Config.HREvery to sample fewer.
type shadowState struct {
	m                  Model
	rec                Recommender // nil when m cannot recommend
	version            int64
	liveSE, shadowSE   window
	liveHit, shadowHit window
	nExp, nHR          int64
}

// GuardMetrics are the live primary model's and the frozen serving model's
// windowed metrics over the same events since the serving snapshot.
type GuardMetrics struct {
	// Version is the serving snapshot the frozen model comes from (0: none).
	Version int64 `json:"version"`
	// Live and Serving hold "rmse" and "hr@K" (absent before an evaluation).
	Live    map[string]float64 `json:"live"`
	Serving map[string]float64 `json:"serving"`
	// Explicit and HREvaluated count the paired evaluations (all of them,
	// not only the last Config.Window in the windows).
	Explicit    int64 `json:"explicit"`
	HREvaluated int64 `json:"hr_evaluated"`
}

// FreezeServing makes the primary model as stored in blob (a snapshot this
// trainer's configuration wrote) the frozen serving model the guardrail
// compares against, and restarts the paired windows. A blob without a
// section for the primary model clears the frozen model.
func (t *Trainer) FreezeServing(version int64, blob []byte) error {
	payload, err := VerifySnapshot(blob)
	if err != nil {
		return fmt.Errorf("freeze serving model: %w", err)
	}
	secs, err := modelSections(payload)
	if err != nil {
		return fmt.Errorf("freeze serving model: %w", err)
	}
	name := t.models[0].m.Name()
	b, ok := secs["model:"+name]
	if !ok {
		t.shadow = nil
		return nil
	}
	sh := t.shadow
	if sh == nil || sh.m.Name() != name {
		m, err := New(name, t.cfg)
		if err != nil {
			return fmt.Errorf("freeze serving model: %w", err)
		}
		sh = &shadowState{m: m, liveSE: newWindow(t.cfg.Window), shadowSE: newWindow(t.cfg.Window),
			liveHit: newWindow(t.cfg.Window), shadowHit: newWindow(t.cfg.Window)}
		sh.rec, _ = m.(Recommender)
	}
	if err := sh.m.UnmarshalBinary(b); err != nil {
		t.shadow = nil
		return fmt.Errorf("freeze serving model %s: %w", name, err)
	}
	sh.version = version
	sh.liveSE.reset()
	sh.shadowSE.reset()
	sh.liveHit.reset()
	sh.shadowHit.reset()
	sh.nExp, sh.nHR = 0, 0
	t.shadow = sh
	return nil
}

// GuardMetrics returns the paired metrics of the live and the frozen serving
// model (zero GuardMetrics when there is no frozen model).
func (t *Trainer) GuardMetrics() GuardMetrics {
	sh := t.shadow
	if sh == nil {
		return GuardMetrics{}
	}
	g := GuardMetrics{Version: sh.version, Live: map[string]float64{}, Serving: map[string]float64{},
		Explicit: sh.nExp, HREvaluated: sh.nHR}
	hr := "hr@" + strconv.Itoa(t.cfg.K)
	if sh.nExp > 0 {
		g.Live["rmse"] = math.Sqrt(sh.liveSE.mean())
		g.Serving["rmse"] = math.Sqrt(sh.shadowSE.mean())
	}
	if sh.nHR > 0 {
		g.Live[hr] = sh.liveHit.mean()
		g.Serving[hr] = sh.shadowHit.mean()
	}
	return g
}

// vectorSource is a model whose user vectors go to the feature store.
type vectorSource interface {
	DrainUserVectors(fn func(user string, vec []float32))
}

// DrainUserVectors collects the user vectors changed since the last call
// (from the first model that has them: MF, or the two-stage model's MF).
func (t *Trainer) DrainUserVectors() map[string][]float32 {
	out := map[string][]float32{}
	for _, st := range t.models {
		var src vectorSource
		switch m := st.m.(type) {
		case *TwoStage:
			src = m.MF
		case vectorSource:
			src = m
		}
		if src == nil {
			continue
		}
		src.DrainUserVectors(func(u string, v []float32) { out[u] = slices.Clone(v) })
		return out
	}
	return out
}

// PutItems records item metadata in the trainer's feature store.
func (t *Trainer) PutItems(items []streamrec.ItemMeta) error {
	return t.store.PutItems(context.Background(), items)
}

// Snapshot encodes the models, the item table and the feature-store state as
// version. offsets nil means the trainer's own.
func (t *Trainer) Snapshot(version int64, offsets map[string]int64, now time.Time) ([]byte, SnapshotInfo, error) {
	if offsets == nil {
		offsets = t.Offsets()
	}
	var st bytes.Buffer
	if _, err := t.store.WriteTo(&st); err != nil {
		return nil, SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	items := make([]features.Item, 0, len(t.items))
	for _, id := range t.items {
		var it features.Item
		t.store.ItemInto(id, &it)
		items = append(items, it)
	}
	g := t.store.GlobalNow()
	info := SnapshotInfo{Version: version, Created: now.UTC(), EventsTrained: t.events, Offsets: offsets,
		ConfigHash: t.cfg.Hash(), Metrics: t.OnlineMetrics(), Items: len(items), Users: int(g.Users)}
	blob, err := encodeSnapshot(&snapshotContent{info: info, cfg: t.cfg, models: t.Models(), items: items, store: st.Bytes()})
	if err != nil {
		return nil, SnapshotInfo{}, err
	}
	info.Size = len(blob)
	return blob, info, nil
}

// Restore replaces the models' weights, the feature-store state, the offsets
// and the event count with a snapshot's. Models absent from the snapshot
// keep their state (and are logged).
func (t *Trainer) Restore(blob []byte) (SnapshotInfo, error) {
	s, err := DecodeSnapshot(blob)
	if err != nil {
		return SnapshotInfo{}, err
	}
	for _, st := range t.models {
		if _, ok := s.models[st.m.Name()]; !ok {
			t.log.Warn().Str("model", st.m.Name()).Msg("snapshot has no section for model; it starts fresh")
		}
	}
	// Decode again into our own models, so they stay the trainer's instances.
	payload, _ := VerifySnapshot(blob)
	secs, err := modelSections(payload)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	for _, st := range t.models {
		if b, ok := secs["model:"+st.m.Name()]; ok {
			if err := st.m.UnmarshalBinary(b); err != nil {
				return SnapshotInfo{}, fmt.Errorf("restore model %s: %w", st.m.Name(), err)
			}
		}
	}
	if len(s.store) > 0 {
		if _, err := t.store.ReadFrom(bytes.NewReader(s.store)); err != nil {
			return SnapshotInfo{}, fmt.Errorf("restore feature store: %w", err)
		}
	}
	t.events = s.info.EventsTrained
	t.offsets = map[partKey]int64{}
	for k, v := range s.info.Offsets {
		topic, part, ok := splitOffsetKey(k)
		if !ok {
			return SnapshotInfo{}, fmt.Errorf("restore: bad offset key %q", k)
		}
		t.offsets[partKey{topic, part}] = v
	}
	t.items = t.items[:0]
	clear(t.itemSet)
	for i := range s.items {
		t.items = append(t.items, s.items[i].ID)
		t.itemSet[s.items[i].ID] = struct{}{}
	}
	return s.Info(), nil
}

// splitOffsetKey splits "topic/partition" at the last slash.
func splitOffsetKey(k string) (string, int32, bool) {
	i := lastSlash(k)
	if i < 0 {
		return "", 0, false
	}
	p, err := strconv.ParseInt(k[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return k[:i], int32(p), true
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// modelSections returns the raw model sections of a verified payload.
func modelSections(payload []byte) (map[string][]byte, error) {
	d := rbuf{b: payload}
	d.i64()
	d.i64()
	d.i64()
	for range d.u32() {
		d.str()
		d.i64()
	}
	d.str()
	for range d.u32() {
		d.str()
		d.f64()
	}
	d.i64()
	d.i64()
	out := map[string][]byte{}
	n := d.u32()
	for range n {
		if d.err != nil {
			break
		}
		name := d.str()
		out[name] = d.bytes()
	}
	return out, d.done("snapshot")
}
