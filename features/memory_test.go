package features_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

func mustMemory(tb testing.TB, cfg features.Config) *features.Memory {
	tb.Helper()
	m, err := features.NewMemory(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestNewMemoryValidates(t *testing.T) {
	cfg := features.DefaultConfig()
	cfg.RecentCap = 0
	if _, err := features.NewMemory(cfg); err == nil {
		t.Fatal("NewMemory accepted RecentCap 0")
	}
}

func TestMemoryStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	cfg := features.DefaultConfig()
	cfg.RecentCap = 3
	m := mustMemory(t, cfg)
	evs := syntheticEvents(500, 20, 30, 2, 1)
	if _, err := m.Apply(ctx, evs[:300]); err != nil {
		t.Fatal(err)
	}
	if err := m.PutItems(ctx, []streamrec.ItemMeta{{Item: "i1", Title: "One", Categories: []string{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.PutUserVectors(ctx, 7, map[string][]float32{"u1": {1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v (buffer %d)", n, err, buf.Len())
	}
	r := mustMemory(t, cfg)
	if _, err := r.ReadFrom(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	// Both continue identically, including exactly-once marks: redeliver an
	// overlapping range.
	for _, s := range []*features.Memory{m, r} {
		if _, err := s.Apply(ctx, evs[250:]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		id := "u" + strconv.Itoa(i)
		a, aok, _ := m.User(ctx, id)
		b, bok, _ := r.User(ctx, id)
		if aok != bok || !reflect.DeepEqual(a, b) {
			t.Fatalf("user %s differs after restore:\n%+v\n%+v", id, a, b)
		}
	}
	for i := 0; i < 30; i++ {
		id := "i" + strconv.Itoa(i)
		a, _, _ := m.Item(ctx, id)
		b, _, _ := r.Item(ctx, id)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("item %s differs after restore:\n%+v\n%+v", id, a, b)
		}
	}
	if a, b := m.GlobalNow(), r.GlobalNow(); a != b {
		t.Fatalf("global differs: %+v vs %+v", a, b)
	}
	if _, err := r.ReadFrom(bytes.NewReader(buf.Bytes()[:buf.Len()/2])); err == nil {
		t.Fatal("ReadFrom accepted a truncated state")
	}
}

func TestMemoryUserFeaturesIntoNoAlloc(t *testing.T) {
	m := mustMemory(t, features.DefaultConfig())
	if _, err := m.Apply(context.Background(), syntheticEvents(2000, 10, 50, 1, 1)); err != nil {
		t.Fatal(err)
	}
	var u features.User
	m.UserInto("u1", &u)
	allocs := testing.AllocsPerRun(100, func() { m.UserInto("u1", &u) })
	if allocs != 0 {
		t.Fatalf("UserInto allocates %.1f times per call", allocs)
	}
	e := syntheticEvents(1, 10, 50, 1, 2)[0]
	e.Pos.Offset = 1 << 40
	allocs = testing.AllocsPerRun(100, func() { e.Pos.Offset++; m.ApplyEvent(&e) })
	if allocs != 0 {
		t.Fatalf("ApplyEvent on a known user and item allocates %.1f times per call", allocs)
	}
}

// syntheticEvents makes n events over users and items spread over parts
// partitions of topic "t" (keyed by user), offsets per partition from 0.
func syntheticEvents(n, users, items, parts int, seed uint64) []streamrec.Event {
	x := seed*0x9E3779B97F4A7C15 + 1
	rnd := func(k int) int {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return int(x % uint64(k))
	}
	offs := make([]int64, parts)
	evs := make([]streamrec.Event, n)
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range evs {
		u := rnd(users)
		p := u % parts
		e := streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1,
			User: "u" + strconv.Itoa(u), Item: "i" + strconv.Itoa(rnd(items)),
			TS: ts + int64(i)*60_000, Pos: streamrec.Position{Topic: "t", Partition: int32(p), Offset: offs[p]}}
		offs[p]++
		if rnd(3) == 0 {
			e.Type, e.Kind, e.Value = "rating", streamrec.Explicit, float64(1+rnd(9))/2
		}
		evs[i] = e
	}
	return evs
}

func BenchmarkMemoryApply(b *testing.B) {
	for _, sz := range []struct{ users, items int }{{1000, 2000}, {100000, 20000}} {
		b.Run(fmt.Sprintf("users=%d/items=%d", sz.users, sz.items), func(b *testing.B) {
			m := mustMemory(b, features.DefaultConfig())
			evs := syntheticEvents(200_000, sz.users, sz.items, 4, 1)
			ctx := context.Background()
			if _, err := m.Apply(ctx, evs); err != nil { // warm: users and items exist
				b.Fatal(err)
			}
			base := int64(len(evs))
			b.ReportAllocs()
			b.ResetTimer()
			const batch = 1000
			done := 0
			for done < b.N {
				k := min(batch, b.N-done)
				start := done % len(evs) // a multiple of batch; len(evs) is too
				chunk := evs[start : start+k]
				for i := range chunk {
					chunk[i].Pos.Offset += base // fresh offsets: every event applies
				}
				if _, err := m.Apply(ctx, chunk); err != nil {
					b.Fatal(err)
				}
				done += k
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func TestMemorySweep(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := features.DefaultConfig()
	cfg.Now = func() time.Time { return now }
	m := mustMemory(t, cfg)
	if _, err := m.Apply(ctx, syntheticEvents(100, 10, 10, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if n := m.Sweep(); n != 0 {
		t.Fatalf("Sweep freed %d live users", n)
	}
	now = now.Add(cfg.UserTTL + time.Second)
	if n := m.Sweep(); n != 10 {
		t.Fatalf("Sweep freed %d users, want 10", n)
	}
	if g := m.GlobalNow(); g.Users != 10 {
		t.Fatalf("Global.Users = %d after sweep, want 10 (users ever seen)", g.Users)
	}
	// A returning user starts afresh and is not counted twice.
	evs := syntheticEvents(100, 10, 10, 1, 1)
	if _, err := m.Apply(ctx, evs[:1]); err != nil {
		t.Fatal(err)
	}
	if u, ok, _ := m.User(ctx, evs[0].User); !ok || u.Events != 1 || len(u.Recent) != 1 {
		t.Fatalf("returning user = %+v, %v", u, ok)
	}
	if g := m.GlobalNow(); g.Users != 10 {
		t.Fatalf("Global.Users = %d, want 10", g.Users)
	}
}

func TestMemoryStateDeterministic(t *testing.T) {
	ctx := context.Background()
	var out [2][]byte
	cfg := features.DefaultConfig()
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return fixed } // the state records write times
	for k := range out {
		m := mustMemory(t, cfg)
		if _, err := m.Apply(ctx, syntheticEvents(2000, 50, 40, 3, 5)); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		out[k] = buf.Bytes()
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Fatal("the same events gave different state bytes")
	}
}

// TestMemoryUserCurrent: the stamp just read is current, for free.
func TestMemoryUserCurrent(t *testing.T) {
	ctx := context.Background()
	m := mustMemory(t, features.DefaultConfig())
	ev := streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: "i", TS: 1700000000000,
		Pos: streamrec.Position{Topic: "t", Offset: 0}}
	if _, err := m.Apply(ctx, []streamrec.Event{ev}); err != nil {
		t.Fatal(err)
	}
	st, _, err := m.UserStateSince(ctx, "u", "")
	if err != nil || !m.UserCurrent("u", st.Stamp) || !m.UserCurrent("nobody", "") {
		t.Fatalf("UserCurrent after a read: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { m.UserCurrent("u", st.Stamp) }); n != 0 {
		t.Errorf("UserCurrent allocates %v times", n)
	}
}
