package learner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// wbuf appends little-endian primitives to a buffer.
type wbuf struct{ b []byte }

func (e *wbuf) u8(v uint8)   { e.b = append(e.b, v) }
func (e *wbuf) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *wbuf) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *wbuf) i64(v int64)  { e.u64(uint64(v)) }
func (e *wbuf) f64(v float64) {
	e.u64(math.Float64bits(v))
}
func (e *wbuf) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}
func (e *wbuf) bytes(p []byte) {
	e.u64(uint64(len(p)))
	e.b = append(e.b, p...)
}
func (e *wbuf) strs(ss []string) {
	e.u32(uint32(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *wbuf) f32s(v []float32) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.u32(math.Float32bits(x))
	}
}
func (e *wbuf) f64s(v []float64) {
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.f64(x)
	}
}

// rbuf reads what wbuf wrote. The first error sticks; reads after it return
// zero values, so callers check err once at the end.
type rbuf struct {
	b   []byte
	off int
	err error
}

func (d *rbuf) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed %s at byte %d", what, d.off)
	}
}

func (d *rbuf) need(n uint64, what string) bool {
	if d.err != nil {
		return false
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail(what)
		return false
	}
	return true
}

func (d *rbuf) u8() uint8 {
	if !d.need(1, "byte") {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *rbuf) u32() uint32 {
	if !d.need(4, "uint32") {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *rbuf) u64() uint64 {
	if !d.need(8, "uint64") {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

// uvarint reads an unsigned varint (encoding/binary's).
func (d *rbuf) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.fail(what)
		return 0
	}
	d.off += k
	return v
}

func (d *rbuf) i64() int64   { return int64(d.u64()) }
func (d *rbuf) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *rbuf) str() string {
	n := d.u32()
	if !d.need(uint64(n), "string") {
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

func (d *rbuf) bytes() []byte {
	n := d.u64()
	if !d.need(n, "bytes") {
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

// count reads a length and checks that at least n*minSize bytes remain, so a
// corrupt length cannot make us allocate gigabytes.
func (d *rbuf) count(minSize uint64, what string) int {
	n := d.u64()
	if d.err != nil {
		return 0
	}
	if minSize > 0 && n > uint64(len(d.b)-d.off)/minSize {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *rbuf) strs() []string {
	n := d.u32()
	if d.err != nil || uint64(n) > uint64(len(d.b)-d.off)/4 {
		d.fail("string list")
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *rbuf) f32s() []float32 {
	n := d.count(4, "float32 slice")
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off:]))
		d.off += 4
	}
	return v
}

func (d *rbuf) f64s() []float64 {
	n := d.count(8, "float64 slice")
	v := make([]float64, n)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
	}
	return v
}

// header writes and checks a model section's name and version.
func (e *wbuf) header(name string, version uint8) {
	e.str(name)
	e.u8(version)
}

func (d *rbuf) header(name string, version uint8) error {
	got := d.str()
	v := d.u8()
	if d.err != nil {
		return d.err
	}
	if got != name {
		return fmt.Errorf("section is %q, want %q", got, name)
	}
	if v != version {
		return fmt.Errorf("%s: encoding version %d, want %d", name, v, version)
	}
	return nil
}

// headerUpTo reads a section header of any version from 1 to latest and
// returns the version.
func (d *rbuf) headerUpTo(name string, latest uint8) (uint8, error) {
	got := d.str()
	v := d.u8()
	if d.err != nil {
		return 0, d.err
	}
	if got != name {
		return 0, fmt.Errorf("section is %q, want %q", got, name)
	}
	if v < 1 || v > latest {
		return 0, fmt.Errorf("%s: encoding version %d, want 1 to %d", name, v, latest)
	}
	return v, nil
}

func (d *rbuf) done(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	if d.off != len(d.b) {
		return fmt.Errorf("%s: %d trailing bytes", what, len(d.b)-d.off)
	}
	return nil
}
