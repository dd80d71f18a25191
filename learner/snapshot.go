package learner

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// ErrCorruptSnapshot is wrapped by DecodeSnapshot when a blob has a bad
// magic, an unknown format version, a checksum mismatch or is truncated.
var ErrCorruptSnapshot = errors.New("corrupt snapshot")

// ErrNoSnapshot is returned by snapshot stores that hold no snapshot.
var ErrNoSnapshot = errors.New("no snapshot")

// Snapshot blob layout (little endian):
//
//	"SRSNAP" | format u16 | payload length u64 | payload | CRC-32C u32
//
// The checksum covers every byte before it. The payload holds the header
// fields of SnapshotInfo, then named sections: "config" (JSON),
// "model:<name>" (each model's MarshalBinary), "items" (the item features
// and metadata serve needs) and "store" (the trainer's feature-store state).
const (
	snapMagic   = "SRSNAP"
	snapFormat  = 1
	snapHeadLen = len(snapMagic) + 2 + 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotInfo describes a snapshot.
type SnapshotInfo struct {
	Version       int64              `json:"version"`
	Created       time.Time          `json:"created"`
	EventsTrained int64              `json:"events_trained"`
	Offsets       map[string]int64   `json:"offsets"` // "topic/partition" -> next offset to consume (or "replay/0")
	ConfigHash    string             `json:"config_hash"`
	Metrics       map[string]float64 `json:"metrics"` // "rmse", "hr@10" windowed prequential
	Size          int                `json:"size"`    // blob bytes
	Items         int                `json:"items"`
	Users         int                `json:"users"`
}

// snapshotContent is what encodeSnapshot writes.
type snapshotContent struct {
	info   SnapshotInfo
	cfg    Config
	models []Model
	items  []features.Item
	store  []byte
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func encodeSnapshot(c *snapshotContent) ([]byte, error) {
	var p wbuf
	in := &c.info
	p.i64(in.Version)
	p.i64(in.Created.UnixNano())
	p.i64(in.EventsTrained)
	p.u32(uint32(len(in.Offsets)))
	for _, k := range sortedKeys(in.Offsets) {
		p.str(k)
		p.i64(in.Offsets[k])
	}
	p.str(in.ConfigHash)
	p.u32(uint32(len(in.Metrics)))
	for _, k := range sortedKeys(in.Metrics) {
		p.str(k)
		p.f64(in.Metrics[k])
	}
	p.i64(int64(in.Items))
	p.i64(int64(in.Users))

	cfgJSON, err := json.Marshal(&c.cfg)
	if err != nil {
		return nil, fmt.Errorf("snapshot: config: %w", err)
	}
	p.u32(uint32(2 + len(c.models) + 1))
	p.str("config")
	p.bytes(cfgJSON)
	for _, m := range c.models {
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("snapshot: model %s: %w", m.Name(), err)
		}
		p.str("model:" + m.Name())
		p.bytes(b)
	}
	p.str("items")
	p.bytes(encodeItems(c.items))
	p.str("store")
	p.bytes(c.store)

	out := make([]byte, 0, snapHeadLen+len(p.b)+4)
	out = append(out, snapMagic...)
	out = binary.LittleEndian.AppendUint16(out, snapFormat)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(p.b)))
	out = append(out, p.b...)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
	return out, nil
}

func encodeItems(items []features.Item) []byte {
	var e wbuf
	e.u64(uint64(len(items)))
	for i := range items {
		it := &items[i]
		e.str(it.ID)
		e.i64(it.Events)
		e.i64(it.Explicit)
		e.i64(it.Implicit)
		e.f64(it.ExplicitSum)
		e.f64(it.ImplicitWeight)
		e.i64(it.FirstTS)
		e.i64(it.LastTS)
		e.f64(it.Popularity)
		e.i64(it.PopularityTS)
		e.str(it.Title)
		e.strs(it.Categories)
	}
	return e.b
}

func decodeItems(b []byte) ([]features.Item, error) {
	d := rbuf{b: b}
	n := d.count(8*9+8, "items")
	items := make([]features.Item, n)
	for i := range items {
		it := &items[i]
		it.ID = d.str()
		it.Events, it.Explicit, it.Implicit = d.i64(), d.i64(), d.i64()
		it.ExplicitSum, it.ImplicitWeight = d.f64(), d.f64()
		it.FirstTS, it.LastTS = d.i64(), d.i64()
		it.Popularity, it.PopularityTS = d.f64(), d.i64()
		it.Title = d.str()
		it.Categories = d.strs()
		if len(it.Categories) == 0 {
			it.Categories = nil
		}
	}
	return items, d.done("items")
}

// Snapshot is a decoded, ready-to-serve model snapshot. Its read methods
// are safe for concurrent use and never mutate it.
type Snapshot struct {
	info   SnapshotInfo
	cfg    Config
	models map[string]Model
	order  []string // model names in blob order
	store  []byte

	two    *TwoStage
	mf     *MF
	knn    *ItemKNN
	pop    *Popularity
	ranker *sync.Pool // of ItemScorer; nil without a ranker

	items   []features.Item
	itemIdx map[string]int32
}

// corrupt wraps ErrCorruptSnapshot with detail.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
}

// VerifySnapshot checks magic, format version, length and checksum, and
// returns the payload.
func VerifySnapshot(blob []byte) ([]byte, error) {
	if len(blob) < snapHeadLen+4 {
		return nil, corrupt("%d bytes is shorter than the %d-byte frame", len(blob), snapHeadLen+4)
	}
	if string(blob[:len(snapMagic)]) != snapMagic {
		return nil, corrupt("bad magic %q", blob[:len(snapMagic)])
	}
	if v := binary.LittleEndian.Uint16(blob[len(snapMagic):]); v != snapFormat {
		return nil, corrupt("unknown format version %d (want %d)", v, snapFormat)
	}
	n := binary.LittleEndian.Uint64(blob[len(snapMagic)+2:])
	if n != uint64(len(blob)-snapHeadLen-4) {
		return nil, corrupt("payload length %d but %d bytes present (truncated?)", n, len(blob)-snapHeadLen-4)
	}
	body := blob[:len(blob)-4]
	want := binary.LittleEndian.Uint32(blob[len(blob)-4:])
	if got := crc32.Checksum(body, crcTable); got != want {
		return nil, corrupt("checksum mismatch: stored %08x, computed %08x", want, got)
	}
	return blob[snapHeadLen : len(blob)-4], nil
}

// DecodeSnapshot verifies blob (magic, format version, checksum) and builds
// the ready-to-serve indexes. Every integrity failure wraps
// ErrCorruptSnapshot.
func DecodeSnapshot(blob []byte) (*Snapshot, error) {
	payload, err := VerifySnapshot(blob)
	if err != nil {
		return nil, err
	}
	s, err := decodePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	s.info.Size = len(blob)
	return s, nil
}

// yieldRows is how many rows a long decode loop handles between yields.
// Servers decode snapshots beside their requests, and Go preempts a running
// goroutine only after 10 ms: a decode that never yields holds a CPU that
// long at a time while requests wait for it (p99 at 2,000 req/s on 2 cores
// rose by tens of milliseconds at each swap). Yielding every few hundred
// rows, well under a millisecond of work, lets waiting requests run first.
const yieldRows = 256

// yieldAt yields once every yieldRows values of the loop index i.
func yieldAt(i int) {
	if i%yieldRows == yieldRows-1 {
		runtime.Gosched()
	}
}

func decodePayload(payload []byte) (*Snapshot, error) {
	d := rbuf{b: payload}
	s := &Snapshot{models: map[string]Model{}}
	in := &s.info
	in.Version = d.i64()
	in.Created = time.Unix(0, d.i64()).UTC()
	in.EventsTrained = d.i64()
	no := d.u32()
	in.Offsets = map[string]int64{}
	for range no {
		if d.err != nil {
			break
		}
		k := d.str()
		in.Offsets[k] = d.i64()
	}
	in.ConfigHash = d.str()
	nm := d.u32()
	in.Metrics = map[string]float64{}
	for range nm {
		if d.err != nil {
			break
		}
		k := d.str()
		in.Metrics[k] = d.f64()
	}
	in.Items, in.Users = int(d.i64()), int(d.i64())
	ns := d.u32()
	type section struct {
		name string
		b    []byte
	}
	var secs []section
	for range ns {
		if d.err != nil {
			break
		}
		name := d.str()
		secs = append(secs, section{name, d.bytes()})
	}
	if err := d.done("snapshot"); err != nil {
		return nil, err
	}
	if len(secs) == 0 || secs[0].name != "config" {
		return nil, fmt.Errorf("snapshot: first section is not the config")
	}
	s.cfg = DefaultConfig()
	if err := s.cfg.UnmarshalStrict(secs[0].b); err != nil {
		return nil, fmt.Errorf("snapshot config: %w", err)
	}
	for _, sec := range secs[1:] {
		runtime.Gosched() // see yieldAt
		switch {
		case strings.HasPrefix(sec.name, "model:"):
			name := strings.TrimPrefix(sec.name, "model:")
			m, err := New(name, s.cfg)
			if err != nil {
				return nil, fmt.Errorf("snapshot model %s: %w", name, err)
			}
			if err := m.UnmarshalBinary(sec.b); err != nil {
				return nil, fmt.Errorf("snapshot model %s: %w", name, err)
			}
			s.models[name] = m
			s.order = append(s.order, name)
		case sec.name == "items":
			items, err := decodeItems(sec.b)
			if err != nil {
				return nil, fmt.Errorf("snapshot: %w", err)
			}
			s.items = items
		case sec.name == "store":
			s.store = sec.b
		default:
			return nil, fmt.Errorf("snapshot: unknown section %q", sec.name)
		}
	}
	s.index()
	return s, nil
}

// index wires the serving paths to whichever models the snapshot holds.
func (s *Snapshot) index() {
	s.itemIdx = make(map[string]int32, len(s.items))
	for i := range s.items {
		s.itemIdx[s.items[i].ID] = int32(i)
	}
	if m, ok := s.models["twostage"].(*TwoStage); ok {
		s.two = m
		s.mf, s.knn, s.pop = m.MF, m.KNN, m.Pop
		if m.Ranker != nil {
			r := m.Ranker
			s.ranker = &sync.Pool{New: func() any { return r.NewItemScorer() }}
		}
	}
	if m, ok := s.models["mf"].(*MF); ok && s.mf == nil {
		s.mf = m
	}
	if m, ok := s.models["itemknn"].(*ItemKNN); ok && s.knn == nil {
		s.knn = m
	}
	if m, ok := s.models["pop"].(*Popularity); ok && s.pop == nil {
		s.pop = m
	}
	if m, ok := s.models[RankerName].(*Ranker); ok && s.ranker == nil {
		s.ranker = &sync.Pool{New: func() any { return m.NewScorer() }}
	}
	// Serving indexes, built once here: a decoded snapshot never learns.
	if s.knn != nil {
		s.knn.prepare()
	}
	if s.mf != nil {
		s.mf.prepare()
	}
	runtime.Gosched() // see yieldAt
	if s.pop != nil {
		s.pop.prepare()
	}
	if s.mf != nil && s.knn != nil {
		s.knn.linkItems(s.mf.items.names)
	}
	if s.mf != nil && s.pop != nil {
		s.pop.linkItems(s.mf.items.names)
	}
	if s.two != nil && s.two.MF != nil {
		if r, ok := s.two.Ranker.(interface{ linkItems(names []string) }); ok {
			r.linkItems(s.two.MF.items.names)
		}
	}
	if s.two != nil {
		s.two.categoryLists() // the per-category popular lists, off the request path
	}
}

// Info describes the snapshot.
func (s *Snapshot) Info() SnapshotInfo {
	in := s.info
	in.Offsets = cloneMap(in.Offsets)
	in.Metrics = cloneMap(in.Metrics)
	return in
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Config is the learner configuration the snapshot was trained with.
func (s *Snapshot) Config() Config { return s.cfg }

// Model returns the named model section (decoded), if present. Callers must
// not train it.
func (s *Snapshot) Model(name string) (Model, bool) {
	m, ok := s.models[name]
	return m, ok
}

// Recommend is the two-stage recommendation (candidates from MF top-M,
// co-occurrence with q.User.Recent and popularity, ranked by the deep
// ranker), honouring q.Exclude and q.Category. Cold start falls back to
// popularity, so the list is never empty while an item passes the filters.
func (s *Snapshot) Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	n := len(dst)
	switch {
	case s.two != nil:
		dst = s.two.Recommend(q, k, dst)
	case s.mf != nil:
		dst = s.mf.Recommend(q, k, dst)
	}
	if len(dst) == n {
		if s.pop != nil {
			dst = s.pop.Recommend(q, k, dst)
		} else {
			dst = s.popularFromItems(k, q.Category, q.TS, q.Exclude, dst)
		}
	}
	return dst
}

// ItemSet resolves items (a user's seen-set) for Query.ExcludeSet against
// the model that answers Recommend; nil when that model filters by name
// only.
func (s *Snapshot) ItemSet(items []string) *ItemSet {
	switch {
	case s.two != nil && s.two.MF != nil:
		return s.two.MF.ItemSet(items)
	case s.mf != nil:
		return s.mf.ItemSet(items)
	}
	return nil
}

// Similar returns items similar to item by embedding cosine, else by
// co-occurrence; an unknown item gives an empty list.
func (s *Snapshot) Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored {
	n := len(dst)
	if s.mf != nil {
		dst = s.mf.Similar(item, k, dst)
	}
	if len(dst) == n && s.knn != nil {
		dst = s.knn.Similar(item, k, dst)
	}
	return dst
}

// Rank scores items for user u at ts, one score per input item in input
// order: by the deep ranker when the snapshot has one, else by MF; unknown
// items get a popularity-based score.
func (s *Snapshot) Rank(u *features.User, items []string, ts int64, dst []streamrec.Scored) []streamrec.Scored {
	if s.ranker != nil {
		sc := s.ranker.Get().(ItemScorer)
		qs := getQueryScratch()
		qs.vals = sc.ScoreItems(u, items, ts, qs.vals[:0])
		s.ranker.Put(sc)
		for k, it := range items {
			v := 0.0
			if k < len(qs.vals) {
				v = qs.vals[k]
			}
			dst = append(dst, streamrec.Scored{Item: it, Score: v})
		}
		putQueryScratch(qs)
		return dst
	}
	for _, it := range items {
		dst = append(dst, streamrec.Scored{Item: it, Score: s.fallbackScore(u, it, ts)})
	}
	return dst
}

func (s *Snapshot) fallbackScore(u *features.User, item string, ts int64) float64 {
	if s.mf != nil {
		if i, ok := s.mf.items.get(item); ok {
			v := s.mf.bj[i]
			if u != nil {
				if ui, ok := s.mf.users.get(u.ID); ok {
					v += dot32(s.mf.urow(ui), s.mf.irow(i))
				}
			}
			return float64(v)
		}
	}
	if k, ok := s.itemIdx[item]; ok {
		return -1 / (1 + s.items[k].PopularityAt(ts, s.cfg.Pop.HalfLife.Std()))
	}
	return -1
}

// Popular returns the most popular items at ts (Unix ms), optionally only
// those in category.
func (s *Snapshot) Popular(k int, category string, ts int64, dst []streamrec.Scored) []streamrec.Scored {
	if s.pop != nil {
		return s.pop.Recommend(&Query{Category: category, TS: ts}, k, dst)
	}
	return s.popularFromItems(k, category, ts, nil, dst)
}

func (s *Snapshot) popularFromItems(k int, category string, ts int64, exclude func(string) bool, dst []streamrec.Scored) []streamrec.Scored {
	q := getQueryScratch()
	defer putQueryScratch(q)
	q.top.reset(k)
	hl := s.cfg.Pop.HalfLife.Std()
	for i := range s.items {
		it := &s.items[i]
		if category != "" && !slices.Contains(it.Categories, category) {
			continue
		}
		if exclude != nil && exclude(it.ID) {
			continue
		}
		q.top.push(float32(it.PopularityAt(ts, hl)), int32(i))
	}
	for _, c := range q.top.sorted() {
		dst = append(dst, streamrec.Scored{Item: s.items[c.idx].ID, Score: float64(c.score)})
	}
	return dst
}

// ItemInfo returns an item's title and categories. The categories slice is
// shared: callers must not modify it.
func (s *Snapshot) ItemInfo(item string) (title string, categories []string, ok bool) {
	k, ok := s.itemIdx[item]
	if !ok {
		return "", nil, false
	}
	it := &s.items[k]
	return it.Title, it.Categories, true
}

// Item returns the item features recorded in the snapshot.
func (s *Snapshot) Item(item string) (features.Item, bool) {
	k, ok := s.itemIdx[item]
	if !ok {
		return features.Item{ID: item}, false
	}
	it := s.items[k]
	it.Categories = slices.Clone(it.Categories)
	return it, true
}

// Items counts the items in the snapshot's item table.
func (s *Snapshot) Items() int { return len(s.items) }
