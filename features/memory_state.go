package features

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// memoryStateMagic starts a saved Memory state; the number is its format.
const memoryStateMagic = "streamrec-features-memory/1"

// The saved form of a Memory: plain exported structs for encoding/gob.
type memoryState struct {
	Magic  string
	Parts  []statePart
	Items  []stateItem
	Users  []stateUser
	Global stateGlobal
}

type statePart struct {
	Topic     string
	Partition int32
}

type stateMark struct {
	Part int32 // index into Parts
	Off  int64
}

type stateItem struct {
	ID         string
	C          Counters
	Marks      []stateMark
	Pop        float64
	PopTS      int64
	Title      string
	Categories []string
}

type stateUser struct {
	ID         string
	C          Counters
	Marks      []stateMark
	Written    int64
	Counted    bool
	Recent     []int32 // item indexes, newest first
	Seen       []int32 // item indexes
	Vec        []float32
	VecVersion int64
	VecWritten int64
}

type stateGlobal struct {
	C     Counters
	Marks []stateMark
	Users int64
	Items int64
}

func saveMarks(ms marks) []stateMark {
	all := ms.all(nil)
	out := make([]stateMark, len(all))
	for i, m := range all {
		out[i] = stateMark{m.part, m.off}
	}
	return out
}

func loadMarks(ms []stateMark, nparts int) (marks, error) {
	var out marks
	for _, m := range ms {
		if m.Part < 0 || int(m.Part) >= nparts {
			return out, fmt.Errorf("mark of unknown partition %d", m.Part)
		}
		out.advance(m.Part, m.Off)
	}
	return out, nil
}

// WriteTo writes the whole store state (features and exactly-once marks) to
// w, so a restarted learner can restore its point-in-time store from its
// snapshot. Writers keep waiting while it runs.
func (m *Memory) WriteTo(w io.Writer) (int64, error) {
	m.mu.RLock()
	st := memoryState{Magic: memoryStateMagic}
	for _, p := range m.partList {
		st.Parts = append(st.Parts, statePart{p.topic, p.part})
	}
	st.Items = make([]stateItem, len(m.itemList))
	for i, it := range m.itemList {
		st.Items[i] = stateItem{ID: it.id, C: it.c, Marks: saveMarks(it.marks), Pop: it.pop, PopTS: it.popTS,
			Title: it.title, Categories: it.categories}
	}
	st.Users = make([]stateUser, 0, len(m.users))
	for _, u := range m.users {
		su := stateUser{ID: u.id, C: u.c, Marks: saveMarks(u.marks), Written: u.written, Counted: u.counted,
			Vec: u.vec, VecVersion: u.vecVersion, VecWritten: u.vecWritten}
		for n := u.recent.head; n >= 0; n = u.recent.nodes[n].next {
			su.Recent = append(su.Recent, u.recent.nodes[n].item)
		}
		su.Seen = make([]int32, 0, len(u.seen))
		for ii := range u.seen {
			su.Seen = append(su.Seen, ii)
		}
		slices.Sort(su.Seen) // deterministic bytes: learner snapshots embed this state
		st.Users = append(st.Users, su)
	}
	slices.SortFunc(st.Users, func(a, b stateUser) int { return strings.Compare(a.ID, b.ID) })
	st.Global = stateGlobal{C: m.global.c, Marks: saveMarks(m.global.marks), Users: m.global.users, Items: m.global.items}
	m.mu.RUnlock()

	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	if err := gob.NewEncoder(bw).Encode(&st); err != nil {
		return cw.n, fmt.Errorf("features: save memory state: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("features: save memory state: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom replaces the store's state with one written by WriteTo. On error
// the store is unchanged.
func (m *Memory) ReadFrom(r io.Reader) (int64, error) {
	cr := &countReader{r: r}
	var st memoryState
	if err := gob.NewDecoder(bufio.NewReaderSize(cr, 64<<10)).Decode(&st); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return cr.n, fmt.Errorf("features: restore memory state: %w", err)
	}
	if st.Magic != memoryStateMagic {
		return cr.n, fmt.Errorf("features: restore memory state: unknown format %q", st.Magic)
	}
	fresh, err := m.fromState(&st)
	if err != nil {
		return cr.n, fmt.Errorf("features: restore memory state: %w", err)
	}
	m.mu.Lock()
	m.parts, m.partList, m.users, m.items, m.itemList, m.global =
		fresh.parts, fresh.partList, fresh.users, fresh.items, fresh.itemList, fresh.global
	m.mu.Unlock()
	return cr.n, nil
}

func (m *Memory) fromState(st *memoryState) (*Memory, error) {
	f := &Memory{parts: map[partKey]int32{}, users: make(map[string]*memUser, len(st.Users)),
		items: make(map[string]int32, len(st.Items))}
	np := len(st.Parts)
	for i, p := range st.Parts {
		k := partKey{p.Topic, p.Partition}
		f.parts[k] = int32(i)
		f.partList = append(f.partList, k)
	}
	f.itemList = make([]*memItem, len(st.Items))
	for i, si := range st.Items {
		ms, err := loadMarks(si.Marks, np)
		if err != nil {
			return nil, fmt.Errorf("item %q: %w", si.ID, err)
		}
		it := &memItem{id: si.ID, c: si.C, marks: ms, pop: si.Pop, popTS: si.PopTS, title: si.Title, categories: si.Categories}
		if it.pop > 0 {
			it.rank = math.Log2(it.pop) + float64(it.popTS)/m.hlMillis
		}
		f.itemList[i] = it
		f.items[si.ID] = int32(i)
	}
	ni := int32(len(f.itemList))
	for _, su := range st.Users {
		ms, err := loadMarks(su.Marks, np)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", su.ID, err)
		}
		u := &memUser{id: su.ID, c: su.C, marks: ms, written: su.Written, counted: su.Counted,
			seen: make(map[int32]int32, len(su.Seen)), recent: newLRU(),
			vec: su.Vec, vecVersion: su.VecVersion, vecWritten: su.VecWritten}
		for _, ii := range su.Seen {
			if ii < 0 || ii >= ni {
				return nil, fmt.Errorf("user %q: seen item index %d out of range", su.ID, ii)
			}
			u.seen[ii] = -1
		}
		// Recent is newest first: push oldest first, keeping the newest cap.
		recent := su.Recent
		if len(recent) > m.cfg.RecentCap {
			recent = recent[:m.cfg.RecentCap]
		}
		for k := len(recent) - 1; k >= 0; k-- {
			ii := recent[k]
			if node, ok := u.seen[ii]; !ok || node >= 0 {
				return nil, fmt.Errorf("user %q: recent item %d not in seen-set or repeated", su.ID, ii)
			}
			node := int32(len(u.recent.nodes))
			u.recent.nodes = append(u.recent.nodes, lnode{item: ii})
			u.recent.n++
			u.recent.pushFront(node)
			u.seen[ii] = node
		}
		f.users[su.ID] = u
	}
	gm, err := loadMarks(st.Global.Marks, np)
	if err != nil {
		return nil, fmt.Errorf("global: %w", err)
	}
	f.global = memGlobal{c: st.Global.C, marks: gm, users: st.Global.Users, items: st.Global.Items}
	return f, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
