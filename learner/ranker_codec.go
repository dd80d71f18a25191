package learner

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// Ranker binary format (little endian):
//
//	"SRRK" | u32 format version | u32 len + config JSON | counters |
//	u32 len + PCG state | global | user, item and category ids |
//	sparse tables (values and AdaGrad accumulators) | MLP layers (weights,
//	pending gradients, Adam moments) | item feature table | user offsets |
//	user session times | u32 CRC-32 (IEEE) of everything before it.
//
// It holds everything needed to serve (ScoreItems, Predict) and to resume
// training bit-for-bit (optimiser state and RNG included).
const (
	rankerMagic   = "SRRK"
	rankerVersion = 1
)

// ErrRankerBlob is wrapped by every UnmarshalBinary error.
var ErrRankerBlob = errors.New("ranker: bad model blob")

type rkEncoder struct{ b []byte }

func (e *rkEncoder) u32(v uint32)  { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *rkEncoder) i64(v int64)   { e.b = binary.LittleEndian.AppendUint64(e.b, uint64(v)) }
func (e *rkEncoder) f64(v float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *rkEncoder) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}
func (e *rkEncoder) floats(v []float64) {
	e.u32(uint32(len(v)))
	for _, f := range v {
		e.f64(f)
	}
}
func (e *rkEncoder) strs(v []string) {
	e.u32(uint32(len(v)))
	for _, s := range v {
		e.bytes([]byte(s))
	}
}

// MarshalBinary implements encoding.BinaryMarshaler. The output is
// deterministic: the same model state gives the same bytes.
func (r *Ranker) MarshalBinary() ([]byte, error) {
	cfg, err := json.Marshal(r.cfg)
	if err != nil {
		return nil, fmt.Errorf("ranker: marshal config: %w", err)
	}
	rng, err := r.rng.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("ranker: marshal rng: %w", err)
	}
	e := &rkEncoder{b: make([]byte, 0, 1024+8*(len(r.userP.data)+len(r.itemQ.data))*5)}
	e.b = append(e.b, rankerMagic...)
	e.u32(rankerVersion)
	e.bytes(cfg)
	for _, v := range []int64{r.examples, r.pending, r.adamT, r.explicitN, r.implicitN} {
		e.i64(v)
	}
	e.bytes(rng)
	g := &r.global
	e.i64(g.Events)
	e.i64(g.Explicit)
	e.f64(g.ExplicitSum)
	e.i64(g.Users)
	e.i64(g.Items)
	e.i64(g.LastTS)
	e.strs(r.users.ids)
	e.strs(r.items.ids)
	e.strs(r.cats.ids)
	for _, t := range r.tables() {
		e.floats(t.data)
		e.floats(t.acc)
	}
	for _, m := range []*rkMLP{&r.bottom, &r.top, &r.wide} {
		for l := range m.layers {
			for _, v := range m.layers[l].params() {
				e.floats(v)
			}
		}
	}
	for i := range r.itemFeat {
		st := &r.itemFeat[i]
		c := &st.c
		e.i64(c.Events)
		e.i64(c.Explicit)
		e.i64(c.Implicit)
		e.f64(c.ExplicitSum)
		e.f64(c.ImplicitWeight)
		e.i64(c.FirstTS)
		e.i64(c.LastTS)
		e.f64(st.pop)
		e.i64(st.popTS)
		e.f64(st.off)
		e.f64(st.offN)
		e.u32(uint32(len(st.cats)))
		for _, c := range st.cats {
			e.u32(uint32(c))
		}
	}
	e.floats(r.userOff)
	e.floats(r.userOffN)
	for _, ts := range r.sessTS {
		e.i64(ts)
	}
	e.u32(crc32.ChecksumIEEE(e.b))
	return e.b, nil
}

func (r *Ranker) tables() []*rkTable {
	return []*rkTable{&r.userP, &r.userB, &r.userS, &r.itemQ, &r.itemY, &r.itemB, &r.bias0}
}

func (ly *rkLayer) params() [][]float64 {
	return [][]float64{ly.w, ly.b, ly.gw, ly.gb, ly.mw, ly.vw, ly.mb, ly.vb}
}

type rkDecoder struct {
	b   []byte
	err error
}

func (d *rkDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or corrupt at %s", ErrRankerBlob, what)
	}
}

func (d *rkDecoder) take(n int, what string) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail(what)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *rkDecoder) u32(what string) uint32 {
	p := d.take(4, what)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (d *rkDecoder) i64(what string) int64 {
	p := d.take(8, what)
	if p == nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(p))
}

func (d *rkDecoder) f64(what string) float64 {
	p := d.take(8, what)
	if p == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(p))
}

func (d *rkDecoder) bytes(what string) []byte {
	n := d.u32(what)
	return d.take(int(n), what)
}

// floatsInto reads a float slice that must have exactly len(dst) values.
func (d *rkDecoder) floatsInto(dst []float64, what string) {
	n := d.u32(what)
	if d.err == nil && int(n) != len(dst) {
		d.err = fmt.Errorf("%w: %s has %d values, want %d", ErrRankerBlob, what, n, len(dst))
	}
	p := d.take(8*len(dst), what)
	if p == nil {
		return
	}
	for i := range dst {
		dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[8*i:]))
	}
}

func (d *rkDecoder) strs(what string) []string {
	n := int(d.u32(what))
	if d.err != nil || n > len(d.b)/4 {
		d.fail(what)
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = string(d.bytes(what))
	}
	return out
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. It replaces r's
// state (configuration included) only when the whole blob is valid; on error
// r is unchanged.
func (r *Ranker) UnmarshalBinary(data []byte) error {
	if len(data) < len(rankerMagic)+8 || string(data[:len(rankerMagic)]) != rankerMagic {
		return fmt.Errorf("%w: missing magic %q", ErrRankerBlob, rankerMagic)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return fmt.Errorf("%w: checksum mismatch (corrupt or truncated)", ErrRankerBlob)
	}
	d := &rkDecoder{b: body[len(rankerMagic):]}
	if v := d.u32("version"); v != rankerVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrRankerBlob, v, rankerVersion)
	}
	var cfg RankerConfig
	if err := json.Unmarshal(d.bytes("config"), &cfg); err != nil {
		return fmt.Errorf("%w: config: %v", ErrRankerBlob, err)
	}
	nr, err := NewRanker(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRankerBlob, err)
	}
	nr.examples, nr.pending, nr.adamT = d.i64("counters"), d.i64("counters"), d.i64("counters")
	nr.explicitN, nr.implicitN = d.i64("counters"), d.i64("counters")
	rng := d.bytes("rng")
	g := &nr.global
	g.Events, g.Explicit, g.ExplicitSum = d.i64("global"), d.i64("global"), d.f64("global")
	g.Users, g.Items, g.LastTS = d.i64("global"), d.i64("global"), d.i64("global")
	users, items, cats := d.strs("users"), d.strs("items"), d.strs("categories")
	if d.err != nil {
		return d.err
	}
	// Every row is read below, so the rows are made at their final size,
	// without the random embeddings new rows otherwise get.
	for _, t := range []*rkTable{&nr.userP, &nr.userB, &nr.userS} {
		t.reserve(len(users))
	}
	for _, t := range []*rkTable{&nr.itemQ, &nr.itemY, &nr.itemB} {
		t.reserve(len(items))
	}
	nr.itemFeat = slices.Grow(nr.itemFeat, len(items))
	nr.noInit = true
	for _, id := range users {
		nr.userIndex(id)
	}
	for _, id := range items {
		nr.itemIndex(id)
	}
	nr.noInit = false
	for _, id := range cats {
		nr.categoryIndex(id)
	}
	// Restore the RNG only now: creating the rows above drew from it.
	if err := nr.rng.UnmarshalBinary(rng); err != nil {
		return fmt.Errorf("%w: rng: %v", ErrRankerBlob, err)
	}
	if nr.users.len() != len(users) || nr.items.len() != len(items) || nr.cats.len() != len(cats) {
		return fmt.Errorf("%w: duplicate ids", ErrRankerBlob)
	}
	for _, t := range nr.tables() {
		d.floatsInto(t.data, "sparse table")
		d.floatsInto(t.acc, "sparse table")
	}
	for _, m := range []*rkMLP{&nr.bottom, &nr.top, &nr.wide} {
		for l := range m.layers {
			for _, v := range m.layers[l].params() {
				d.floatsInto(v, "mlp layer")
			}
		}
	}
	for i := range nr.itemFeat {
		st := &nr.itemFeat[i]
		c := &st.c
		c.Events, c.Explicit, c.Implicit = d.i64("item"), d.i64("item"), d.i64("item")
		c.ExplicitSum, c.ImplicitWeight = d.f64("item"), d.f64("item")
		c.FirstTS, c.LastTS = d.i64("item"), d.i64("item")
		st.pop, st.popTS = d.f64("item"), d.i64("item")
		st.off, st.offN = d.f64("item"), d.f64("item")
		n := int(d.u32("item categories"))
		if d.err != nil || n > len(d.b)/4 {
			d.fail("item categories")
			return d.err
		}
		st.cats = make([]int32, n)
		for k := range st.cats {
			c := d.u32("item categories")
			if int(c) >= len(cats) {
				d.fail("item categories")
			}
			st.cats[k] = int32(c)
		}
	}
	d.floatsInto(nr.userOff, "user offsets")
	d.floatsInto(nr.userOffN, "user offsets")
	for i := range nr.sessTS {
		nr.sessTS[i] = d.i64("session times")
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrRankerBlob, len(d.b))
	}
	v := r.version
	*r = *nr
	r.version = v + 1
	r.sc = r.NewScorer()
	r.sc.own = true
	return nil
}
