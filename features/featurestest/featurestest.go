// Package featurestest is the one conformance suite every feature store
// passes (product.md §3): counters, recent items and seen-sets, decayed
// popularity, metadata, vectors, TTLs, global counters, and the
// exactly-once effect under redelivery, including a property test of random
// streams with random redelivery against a naive reference model.
package featurestest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// Opener returns an empty store with cfg.
type Opener func(t *testing.T, cfg features.Config) features.Store

// TTLReporter is met by stores that can tell a user's remaining TTL (0 for an
// unknown user).
type TTLReporter interface {
	UserTTL(ctx context.Context, id string) (time.Duration, error)
}

// ServerClock is met by stores whose TTLs follow a server's clock rather
// than Config.Now (Redis); the suite then checks the TTL instead of
// advancing the clock past it.
type ServerClock interface {
	ServerClockTTL() bool
}

// Clock is a settable clock for Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// T0 is the event time the suite's events start at.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()

const hour = int64(time.Hour / time.Millisecond)

type suite struct {
	open  Opener
	clock *Clock
	cfg   features.Config
}

func (s *suite) store(t *testing.T) features.Store {
	t.Helper()
	st := s.open(t, s.cfg)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Run runs the suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	newSuite := func() *suite {
		c := NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		cfg := features.DefaultConfig()
		cfg.RecentCap = 4
		cfg.HalfLife = 24 * time.Hour
		cfg.Now = c.Now
		return &suite{open: open, clock: c, cfg: cfg}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"Counters", testCounters},
		{"Recent", testRecent},
		{"Seen", testSeen},
		{"UserStateSince", testUserStateSince},
		{"Popularity", testPopularity},
		{"PopularCategory", testPopularCategory},
		{"Metadata", testMetadata},
		{"Vectors", testVectors},
		{"TTL", testTTL},
		{"Global", testGlobal},
		{"ExactlyOnce", testExactlyOnce},
		{"NoPosition", testNoPosition},
		{"SpecialIDs", testSpecialIDs},
		{"EachUser", testEachUser},
		{"Property", testProperty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newSuite()) })
	}
}

// Ev builds an event at partition p, offset off of topic "t".
func Ev(user, item string, kind streamrec.Kind, value float64, ts int64, p int32, off int64) streamrec.Event {
	e := streamrec.Event{Type: "view", Kind: kind, Weight: 1, User: user, Item: item, TS: ts,
		Pos: streamrec.Position{Topic: "t", Partition: p, Offset: off}}
	if kind == streamrec.Explicit {
		e.Type, e.Value = "rating", value
	}
	return e
}

func apply(t *testing.T, st features.Store, evs ...streamrec.Event) features.ApplyResult {
	t.Helper()
	res, err := st.Apply(context.Background(), evs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func mustUser(t *testing.T, st features.Store, id string) features.User {
	t.Helper()
	u, ok, err := st.User(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("User(%q) = ok %v, err %v", id, ok, err)
	}
	return u
}

func mustItem(t *testing.T, st features.Store, id string) features.Item {
	t.Helper()
	it, ok, err := st.Item(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("Item(%q) = ok %v, err %v", id, ok, err)
	}
	return it
}

func testCounters(t *testing.T, s *suite) {
	st := s.store(t)
	ex, im := streamrec.Explicit, streamrec.Implicit
	buy := Ev("u1", "i1", im, 0, T0+3*hour, 0, 3)
	buy.Type, buy.Weight = "purchase", 4
	apply(t, st,
		Ev("u1", "i1", ex, 4, T0+hour, 0, 0),
		Ev("u1", "i2", im, 0, T0+2*hour, 0, 1),
		Ev("u1", "i2", ex, 2.5, T0, 0, 2), // older than the rest: first_ts
		buy,
	)
	want := features.Counters{Events: 4, Explicit: 2, Implicit: 2, ExplicitSum: 6.5, ImplicitWeight: 5,
		FirstTS: T0, LastTS: T0 + 3*hour}
	u := mustUser(t, st, "u1")
	if u.Counters != want {
		t.Errorf("user counters = %+v, want %+v", u.Counters, want)
	}
	if got := u.ExplicitMean(); got != 3.25 {
		t.Errorf("explicit mean = %v, want 3.25", got)
	}
	i1 := mustItem(t, st, "i1")
	wantI1 := features.Counters{Events: 2, Explicit: 1, Implicit: 1, ExplicitSum: 4, ImplicitWeight: 4,
		FirstTS: T0 + hour, LastTS: T0 + 3*hour}
	if i1.Counters != wantI1 {
		t.Errorf("item counters = %+v, want %+v", i1.Counters, wantI1)
	}
	if _, ok, err := st.User(context.Background(), "nobody"); ok || err != nil {
		t.Errorf("unknown user: ok %v, err %v", ok, err)
	}
	if _, ok, err := st.Item(context.Background(), "nothing"); ok || err != nil {
		t.Errorf("unknown item: ok %v, err %v", ok, err)
	}
	// Explicit sums keep full float64 precision.
	apply(t, st, Ev("u2", "i1", ex, 0.1, T0, 1, 0), Ev("u2", "i2", ex, 0.2, T0, 1, 1))
	x, y := 0.1, 0.2 // not a constant expression: float64 arithmetic
	if got := mustUser(t, st, "u2").ExplicitSum; got != x+y {
		t.Errorf("explicit sum = %.17g, want %.17g", got, x+y)
	}
}

func testRecent(t *testing.T, s *suite) {
	st := s.store(t) // RecentCap 4
	var evs []streamrec.Event
	for i, it := range []string{"a", "b", "c", "a", "d", "e", "c"} {
		evs = append(evs, Ev("u", it, streamrec.Implicit, 0, T0+int64(i)*hour, 0, int64(i)))
	}
	apply(t, st, evs[:3]...)
	if got, want := mustUser(t, st, "u").Recent, []string{"c", "b", "a"}; !slices.Equal(got, want) {
		t.Errorf("recent = %v, want %v", got, want)
	}
	apply(t, st, evs[3:]...)
	// a b c a d e c → newest first, once each, capped at 4: c e d a
	if got, want := mustUser(t, st, "u").Recent, []string{"c", "e", "d", "a"}; !slices.Equal(got, want) {
		t.Errorf("recent = %v, want %v", got, want)
	}
	// One batch with a repeat inside and an evicted item coming back.
	apply(t, st,
		Ev("u", "b", streamrec.Implicit, 0, T0+10*hour, 0, 10),
		Ev("u", "e", streamrec.Implicit, 0, T0+11*hour, 0, 11),
		Ev("u", "b", streamrec.Implicit, 0, T0+12*hour, 0, 12))
	if got, want := mustUser(t, st, "u").Recent, []string{"b", "e", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("recent = %v, want %v", got, want)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

func testSeen(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t) // cap 4, so seen outgrows recent
	for i, it := range []string{"a", "b", "c", "d", "e", "f"} {
		apply(t, st, Ev("u", it, streamrec.Implicit, 0, T0, 0, int64(i)))
	}
	got, err := st.Seen(ctx, "u", []string{"a", "x", "f", "c"})
	if err != nil || !slices.Equal(got, []bool{true, false, true, true}) {
		t.Errorf("Seen = %v, %v", got, err)
	}
	got, err = st.Seen(ctx, "nobody", []string{"a"})
	if err != nil || !slices.Equal(got, []bool{false}) {
		t.Errorf("Seen(unknown user) = %v, %v", got, err)
	}
	u, seen, ok, err := st.UserSeen(ctx, "u")
	if err != nil || !ok {
		t.Fatalf("UserSeen: ok %v, err %v", ok, err)
	}
	if want := []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(sortedCopy(seen), want) {
		t.Errorf("seen-set = %v, want %v", seen, want)
	}
	if !reflect.DeepEqual(u, mustUser(t, st, "u")) {
		t.Errorf("UserSeen user %+v differs from User", u)
	}
	if _, seen, ok, err := st.UserSeen(ctx, "nobody"); ok || err != nil || len(seen) != 0 {
		t.Errorf("UserSeen(unknown) = %v, %v, %v", seen, ok, err)
	}
}

func testUserStateSince(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	since := func(id string, stamp features.Stamp) (features.UserState, bool) {
		t.Helper()
		us, changed, err := st.UserStateSince(ctx, id, stamp)
		if err != nil {
			t.Fatalf("UserStateSince(%q): %v", id, err)
		}
		return us, changed
	}
	// The full state must be what UserSeen returns.
	check := func(id string, us features.UserState) {
		t.Helper()
		u, seen, ok, err := st.UserSeen(ctx, id)
		if err != nil || !ok || !us.Known || us.Stamp == "" {
			t.Fatalf("state %+v; UserSeen ok %v err %v", us, ok, err)
		}
		if !reflect.DeepEqual(us.User, u) {
			t.Errorf("state user %+v, UserSeen %+v", us.User, u)
		}
		if !slices.Equal(sortedCopy(us.Seen), sortedCopy(seen)) {
			t.Errorf("state seen %v, UserSeen %v", us.Seen, seen)
		}
	}
	if us, changed := since("u", ""); changed || us.Known || us.Stamp != "" {
		t.Errorf("unknown user: %+v changed %v", us, changed)
	}
	apply(t, st, Ev("u", "a", streamrec.Explicit, 4, T0, 0, 0), Ev("u", "b", streamrec.Implicit, 0, T0+1, 0, 1))
	us1, changed := since("u", "")
	if !changed {
		t.Fatal("first read of a known user: not changed")
	}
	check("u", us1)
	if us, changed := since("u", us1.Stamp); changed || us.Known || us.Stamp != "" || us.Seen != nil {
		t.Errorf("current stamp: %+v changed %v, want nothing", us, changed)
	}
	if _, changed := since("u", "not a stamp"); !changed {
		t.Error("a foreign stamp reads as current")
	}
	apply(t, st, Ev("u", "b", streamrec.Implicit, 0, T0+1, 0, 1)) // redelivered
	if _, changed := since("u", us1.Stamp); changed {
		t.Error("a redelivered event changed the state")
	}
	// UserCurrent (optional: a store that can tell without I/O) may say
	// "current" only of the current stamp.
	type currentChecker interface {
		UserCurrent(id string, stamp features.Stamp) bool
	}
	cc, hasCurrent := st.(currentChecker)
	if hasCurrent && (cc.UserCurrent("u", "not a stamp") || cc.UserCurrent("nobody", "x")) {
		t.Error("UserCurrent holds for a stamp that is not the user's")
	}
	apply(t, st, Ev("u", "c", streamrec.Implicit, 0, T0+2, 0, 2))
	if hasCurrent && cc.UserCurrent("u", us1.Stamp) {
		t.Error("UserCurrent holds for the stamp before a new event")
	}
	us2, changed := since("u", us1.Stamp)
	if !changed || us2.Stamp == us1.Stamp || !slices.Contains(us2.Seen, "c") || us2.User.Events != 3 {
		t.Fatalf("after a new event: %+v changed %v", us2, changed)
	}
	check("u", us2)
	if err := st.PutUserVectors(ctx, 5, map[string][]float32{"u": {1, 2}}); err != nil {
		t.Fatal(err)
	}
	us3, changed := since("u", us2.Stamp)
	if !changed || us3.User.VectorVersion != 5 || !slices.Equal(us3.User.Vector, []float32{1, 2}) {
		t.Fatalf("after a vector write: %+v changed %v", us3, changed)
	}
	check("u", us3)
	// Another user's events leave u's stamp alone.
	apply(t, st, Ev("v", "a", streamrec.Implicit, 0, T0+3, 0, 3))
	if _, changed := since("u", us3.Stamp); changed {
		t.Error("another user's event changed u's state")
	}
	// A batch answers each read as UserStateSince does.
	reads := []features.StateRead{{ID: "u", Since: us2.Stamp}, {ID: "u", Since: us3.Stamp}, {ID: "nobody"}, {ID: "v"}}
	if err := st.ReadUserStates(ctx, reads); err != nil {
		t.Fatalf("ReadUserStates: %v", err)
	}
	for _, rd := range reads {
		want, wantChanged := since(rd.ID, rd.Since)
		if rd.Err != nil || rd.Changed != wantChanged || !reflect.DeepEqual(sortedState(rd.State), sortedState(want)) {
			t.Errorf("batch read %s since %q = %+v changed %v err %v; alone %+v changed %v", rd.ID, rd.Since, rd.State, rd.Changed, rd.Err, want, wantChanged)
		}
	}
}

func sortedState(us features.UserState) features.UserState {
	us.Seen = sortedCopy(us.Seen)
	return us
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func testPopularity(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t) // half-life 24 h of event time
	day := 24 * hour
	apply(t, st,
		Ev("u1", "old", streamrec.Implicit, 0, T0, 0, 0),
		Ev("u2", "old", streamrec.Implicit, 0, T0, 0, 1),
		Ev("u3", "old", streamrec.Implicit, 0, T0, 0, 2),
		Ev("u1", "new", streamrec.Implicit, 0, T0+2*day, 0, 3),
		Ev("u2", "new", streamrec.Explicit, 5, T0+2*day, 0, 4),
		Ev("u3", "new", streamrec.Implicit, 0, T0+day, 0, 5), // out of order: decayed to 2 days
	)
	old, nw := mustItem(t, st, "old"), mustItem(t, st, "new")
	if !near(old.Popularity, 3) || old.PopularityTS != T0 {
		t.Errorf("old popularity = %v at %d, want 3 at %d", old.Popularity, old.PopularityTS, T0)
	}
	if !near(nw.Popularity, 2.5) || nw.PopularityTS != T0+2*day {
		t.Errorf("new popularity = %v at %d, want 2.5 at %d", nw.Popularity, nw.PopularityTS, T0+2*day)
	}
	// Decayed to T0+2 days: old 3/4 = 0.75, new 2.5.
	pop, err := st.Popular(ctx, 10, "", T0+2*day)
	if err != nil {
		t.Fatal(err)
	}
	if len(pop) != 2 || pop[0].Item != "new" || pop[1].Item != "old" || !near(pop[0].Score, 2.5) || !near(pop[1].Score, 0.75) {
		t.Errorf("Popular = %v, want [new 2.5, old 0.75]", pop)
	}
	// Decayed one more day; ts <= 0 means the last event time.
	pop, err = st.Popular(ctx, 1, "", T0+3*day)
	if err != nil || len(pop) != 1 || pop[0].Item != "new" || !near(pop[0].Score, 1.25) {
		t.Errorf("Popular(1, +3d) = %v, %v; want [new 1.25]", pop, err)
	}
	pop, err = st.Popular(ctx, 5, "", 0)
	if err != nil || len(pop) != 2 || !near(pop[0].Score, 2.5) {
		t.Errorf("Popular(ts 0) = %v, %v", pop, err)
	}
	if got := nw.PopularityAt(T0+4*day, s.cfg.HalfLife); !near(got, 0.625) {
		t.Errorf("PopularityAt(+4d) = %v, want 0.625", got)
	}
	// Far later events keep the ranking right (the Redis ranking scales
	// scores by 2^(Δt/half-life)).
	late := T0 + 3000*day
	apply(t, st, Ev("u1", "late", streamrec.Implicit, 0, late, 0, 6), Ev("u2", "old", streamrec.Implicit, 0, late-day, 0, 7))
	pop, err = st.Popular(ctx, 2, "", late)
	if err != nil || len(pop) != 2 || pop[0].Item != "late" || pop[1].Item != "old" || !near(pop[0].Score, 1) || !near(pop[1].Score, 0.5) {
		t.Errorf("Popular after 3000 half-lives = %v, %v; want [late 1, old 0.5]", pop, err)
	}
	if pop, err := st.Popular(ctx, 0, "", 0); err != nil || len(pop) != 0 {
		t.Errorf("Popular(0) = %v, %v", pop, err)
	}
}

func testPopularCategory(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	if err := st.PutItems(ctx, []streamrec.ItemMeta{
		{Item: "a", Title: "A", Categories: []string{"Drama", "Comedy"}},
		{Item: "b", Title: "B", Categories: []string{"Comedy"}},
		{Item: "c", Title: "C", Categories: []string{"Horror"}},
		{Item: "d", Title: "D", Categories: []string{"Comedy Drama"}},
	}); err != nil {
		t.Fatal(err)
	}
	var evs []streamrec.Event
	off := int64(0)
	for item, n := range map[string]int{"a": 3, "b": 2, "c": 5, "d": 4, "e": 6} {
		for k := 0; k < n; k++ {
			evs = append(evs, Ev("u"+strconv.Itoa(k), item, streamrec.Implicit, 0, T0, 0, off))
			off++
		}
	}
	apply(t, st, evs...)
	for _, tc := range []struct {
		cat  string
		n    int
		want []string
	}{
		{"Comedy", 10, []string{"a", "b"}},
		{"Comedy", 1, []string{"a"}},
		{"Drama", 10, []string{"a"}},
		{"Horror", 10, []string{"c"}},
		{"Western", 10, nil},
		{"", 3, []string{"e", "c", "d"}},
	} {
		pop, err := st.Popular(ctx, tc.n, tc.cat, T0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pop {
			got = append(got, p.Item)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Popular(%d, %q) = %v, want %v", tc.n, tc.cat, got, tc.want)
		}
	}
}

func testMetadata(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	if err := st.PutItems(ctx, []streamrec.ItemMeta{{Item: "m", Title: "Toy Story (1995)", Categories: []string{"Animation", "Children's"}}}); err != nil {
		t.Fatal(err)
	}
	it := mustItem(t, st, "m") // metadata only: exists, no events
	if it.Title != "Toy Story (1995)" || !slices.Equal(it.Categories, []string{"Animation", "Children's"}) || it.Events != 0 {
		t.Errorf("item = %+v", it)
	}
	apply(t, st, Ev("u", "m", streamrec.Explicit, 4, T0, 0, 0))
	if err := st.PutItems(ctx, []streamrec.ItemMeta{{Item: "m", Title: "Toy Story", Categories: []string{"Animation"}}}); err != nil {
		t.Fatal(err)
	}
	it = mustItem(t, st, "m")
	if it.Title != "Toy Story" || !slices.Equal(it.Categories, []string{"Animation"}) || it.Events != 1 || it.ExplicitSum != 4 {
		t.Errorf("item after update = %+v", it)
	}
	if g, err := st.Global(ctx); err != nil || g.Items != 1 {
		t.Errorf("Global.Items = %d, %v; want 1", g.Items, err)
	}
}

func testVectors(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	apply(t, st, Ev("u", "i", streamrec.Implicit, 0, T0, 0, 0))
	v := []float32{0.5, -1.25, 3e-7}
	if err := st.PutUserVectors(ctx, 7, map[string][]float32{"u": v}); err != nil {
		t.Fatal(err)
	}
	v[0] = 99 // the store keeps its own copy
	u := mustUser(t, st, "u")
	if !slices.Equal(u.Vector, []float32{0.5, -1.25, 3e-7}) || u.VectorVersion != 7 {
		t.Errorf("vector = %v v%d", u.Vector, u.VectorVersion)
	}
	if err := st.PutUserVectors(ctx, 8, map[string][]float32{"u": {1, 2}}); err != nil {
		t.Fatal(err)
	}
	if u := mustUser(t, st, "u"); !slices.Equal(u.Vector, []float32{1, 2}) || u.VectorVersion != 8 {
		t.Errorf("vector = %v v%d", u.Vector, u.VectorVersion)
	}
	// A vector alone does not make a user.
	if err := st.PutUserVectors(ctx, 8, map[string][]float32{"ghost": {1}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.User(ctx, "ghost"); ok || err != nil {
		t.Errorf("user with only a vector: ok %v, err %v", ok, err)
	}
}

func testTTL(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	ttl := s.cfg.UserTTL
	apply(t, st, Ev("u", "a", streamrec.Implicit, 0, T0, 0, 0), Ev("v", "a", streamrec.Implicit, 0, T0, 0, 1))
	vs, _, err := st.UserStateSince(ctx, "v", "")
	if err != nil || !vs.Known {
		t.Fatalf("UserStateSince(v) = %+v, %v", vs, err)
	}
	vStamp := vs.Stamp
	s.clock.Advance(ttl / 2)
	apply(t, st, Ev("u", "b", streamrec.Implicit, 0, T0+hour, 0, 2)) // refreshes u only
	if r, ok := st.(TTLReporter); ok {
		d, err := r.UserTTL(ctx, "u")
		if err != nil || d <= ttl-time.Minute || d > ttl {
			t.Errorf("UserTTL(u) = %v, %v; want about %v", d, err, ttl)
		}
		if d, err := r.UserTTL(ctx, "nobody"); err != nil || d != 0 {
			t.Errorf("UserTTL(unknown) = %v, %v", d, err)
		}
	}
	if sc, ok := st.(ServerClock); ok && sc.ServerClockTTL() {
		if _, ok := st.(TTLReporter); !ok {
			t.Fatal("a store with server-clock TTLs must report them (TTLReporter)")
		}
		return // the clock below is not the server's
	}
	s.clock.Advance(ttl/2 + time.Second) // v expired, u written ttl/2+1s ago
	if _, ok, err := st.User(ctx, "v"); ok || err != nil {
		t.Errorf("expired user v: ok %v, err %v", ok, err)
	}
	if seen, _ := st.Seen(ctx, "v", []string{"a"}); len(seen) != 1 || seen[0] {
		t.Errorf("expired user's seen-set = %v", seen)
	}
	if us, changed, err := st.UserStateSince(ctx, "v", vStamp); err != nil || !changed || us.Known {
		t.Errorf("expired user's state since its last stamp = %+v, changed %v, %v", us, changed, err)
	}
	if u := mustUser(t, st, "u"); u.Events != 2 {
		t.Errorf("refreshed user u: %d events, want 2", u.Events)
	}
	// A returning user starts afresh.
	apply(t, st, Ev("v", "c", streamrec.Implicit, 0, T0+2*hour, 0, 3))
	if u := mustUser(t, st, "v"); u.Events != 1 || !slices.Equal(u.Recent, []string{"c"}) {
		t.Errorf("returning user = %+v", u)
	}
}

func testGlobal(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	if g, err := st.Global(ctx); err != nil || g != (features.Global{}) {
		t.Errorf("empty Global = %+v, %v", g, err)
	}
	apply(t, st,
		Ev("u1", "a", streamrec.Explicit, 4, T0, 0, 0),
		Ev("u2", "a", streamrec.Implicit, 0, T0+hour, 1, 0),
		Ev("u1", "b", streamrec.Explicit, 1, T0+2*hour, 0, 1),
		Ev("u3", "c", streamrec.Explicit, 2.5, T0-hour, 2, 0))
	g, err := st.Global(ctx)
	want := features.Global{Events: 4, Explicit: 3, ExplicitSum: 7.5, Users: 3, Items: 3, LastTS: T0 + 2*hour}
	if err != nil || g != want {
		t.Errorf("Global = %+v, %v; want %+v", g, err, want)
	}
	if g.ExplicitMean() != 2.5 {
		t.Errorf("global explicit mean = %v", g.ExplicitMean())
	}
}

func testExactlyOnce(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	// Partition 0: u1's events, partition 1: u2's.
	p0 := []streamrec.Event{
		Ev("u1", "a", streamrec.Explicit, 5, T0, 0, 100),
		Ev("u1", "b", streamrec.Implicit, 0, T0+1, 0, 101),
		Ev("u1", "a", streamrec.Explicit, 3, T0+2, 0, 102),
		Ev("u1", "c", streamrec.Implicit, 0, T0+3, 0, 103),
	}
	p1 := []streamrec.Event{
		Ev("u2", "a", streamrec.Implicit, 0, T0, 1, 7),
		Ev("u2", "c", streamrec.Explicit, 2, T0+1, 1, 8),
	}
	if res := apply(t, st, p0[0], p0[1], p1[0]); res.Applied != 3 || res.Duplicates != 0 {
		t.Errorf("first batch: %+v", res)
	}
	// Redelivery overlapping the applied range, partitions interleaved
	// differently, a duplicate inside the batch and offsets out of order.
	res := apply(t, st, p1[1], p0[2], p0[0], p1[0], p0[1], p1[1], p0[3], p0[2])
	if res.Applied != 3 || res.Duplicates != 5 {
		t.Errorf("redelivered batch: %+v, want 3 applied, 5 duplicates", res)
	}
	// Everything again: no change.
	all := append(slices.Clone(p0), p1...)
	if res := apply(t, st, all...); res.Applied != 0 || res.Duplicates != len(all) {
		t.Errorf("full redelivery: %+v", res)
	}
	// The same offsets from another topic are other events.
	other := Ev("u1", "d", streamrec.Implicit, 0, T0+4, 0, 100)
	other.Pos.Topic = "t2"
	apply(t, st, other)

	u1 := mustUser(t, st, "u1")
	want := features.Counters{Events: 5, Explicit: 2, Implicit: 3, ExplicitSum: 8, ImplicitWeight: 3, FirstTS: T0, LastTS: T0 + 4}
	if u1.Counters != want {
		t.Errorf("u1 = %+v, want %+v", u1.Counters, want)
	}
	if !slices.Equal(u1.Recent, []string{"d", "c", "a", "b"}) {
		t.Errorf("u1 recent = %v", u1.Recent)
	}
	a := mustItem(t, st, "a")
	if a.Events != 3 || a.Explicit != 2 || a.ExplicitSum != 8 || a.Implicit != 1 {
		t.Errorf("item a = %+v", a.Counters)
	}
	if c := mustItem(t, st, "c"); c.Events != 2 || c.ExplicitSum != 2 {
		t.Errorf("item c = %+v", c.Counters)
	}
	g, err := st.Global(ctx)
	if err != nil || g.Events != 7 || g.Explicit != 3 || g.ExplicitSum != 10 || g.Users != 2 || g.Items != 4 {
		t.Errorf("Global = %+v, %v", g, err)
	}
}

func testNoPosition(t *testing.T, s *suite) {
	st := s.store(t)
	e := Ev("u", "a", streamrec.Implicit, 0, T0, 0, 0)
	e.Pos = streamrec.Position{}
	apply(t, st, e, e)
	apply(t, st, e)
	if u := mustUser(t, st, "u"); u.Events != 3 {
		t.Errorf("events without a position: %d applied, want 3 (no identity, always applied)", u.Events)
	}
}

func testSpecialIDs(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	ids := []string{"{u:x}", "a}b", "%7B", "{", "}", "x:recent", "sr:{g}", "日本語 ✓", strings.Repeat("z", 128)}
	var evs []streamrec.Event
	for i, id := range ids {
		evs = append(evs, Ev(id, id, streamrec.Explicit, float64(i%5)+0.5, T0, 0, int64(i)))
	}
	apply(t, st, evs...)
	for i, id := range ids {
		u := mustUser(t, st, id)
		if u.Events != 1 || u.ExplicitSum != float64(i%5)+0.5 || !slices.Equal(u.Recent, []string{id}) {
			t.Errorf("user %q = %+v", id, u)
		}
		if it := mustItem(t, st, id); it.Events != 1 {
			t.Errorf("item %q = %+v", id, it.Counters)
		}
	}
	if g, err := st.Global(ctx); err != nil || g.Users != int64(len(ids)) || g.Items != int64(len(ids)) {
		t.Errorf("Global = %+v, %v", g, err)
	}
}

func testEachUser(t *testing.T, s *suite) {
	ctx := context.Background()
	st := s.store(t)
	var evs []streamrec.Event
	for i := 0; i < 600; i++ {
		evs = append(evs, Ev("u"+strconv.Itoa(i%300), "i", streamrec.Implicit, 0, T0, 0, int64(i)))
	}
	apply(t, st, evs...)
	got := map[string]int64{}
	if err := st.EachUser(ctx, func(u features.User) error {
		if _, dup := got[u.ID]; dup {
			return fmt.Errorf("user %q twice", u.ID)
		}
		got[u.ID] = u.Events
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 || got["u7"] != 2 {
		t.Errorf("EachUser saw %d users (u7: %d events)", len(got), got["u7"])
	}
	stop := fmt.Errorf("stop")
	n := 0
	if err := st.EachUser(ctx, func(features.User) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("EachUser did not stop at the first error: %v after %d", err, n)
	}
}

// reference is the naive model the property test checks stores against.
type reference struct {
	cap    int
	hw     map[string]int64 // partition -> highest offset applied
	users  map[string]*refUser
	items  map[string]*features.Counters
	global features.Global
}

type refUser struct {
	c      features.Counters
	recent []string
	seen   map[string]bool
}

func newReference(cap int) *reference {
	return &reference{cap: cap, hw: map[string]int64{}, users: map[string]*refUser{}, items: map[string]*features.Counters{}}
}

func countRef(c *features.Counters, e *streamrec.Event) {
	c.Events++
	if e.Kind == streamrec.Explicit {
		c.Explicit++
		c.ExplicitSum += e.Value
	} else {
		c.Implicit++
		c.ImplicitWeight += e.Weight
	}
	if c.FirstTS == 0 || e.TS < c.FirstTS {
		c.FirstTS = e.TS
	}
	c.LastTS = max(c.LastTS, e.TS)
}

func (r *reference) apply(e *streamrec.Event) {
	p := features.PartitionKey(e.Pos)
	if hw, ok := r.hw[p]; ok && e.Pos.Offset <= hw {
		return
	}
	r.hw[p] = e.Pos.Offset
	u := r.users[e.User]
	if u == nil {
		u = &refUser{seen: map[string]bool{}}
		r.users[e.User] = u
		r.global.Users++
	}
	countRef(&u.c, e)
	u.seen[e.Item] = true
	u.recent = slices.DeleteFunc(u.recent, func(s string) bool { return s == e.Item })
	u.recent = append([]string{e.Item}, u.recent...)
	if len(u.recent) > r.cap {
		u.recent = u.recent[:r.cap]
	}
	it := r.items[e.Item]
	if it == nil {
		it = &features.Counters{}
		r.items[e.Item] = it
		r.global.Items++
	}
	countRef(it, e)
	r.global.Events++
	if e.Kind == streamrec.Explicit {
		r.global.Explicit++
		r.global.ExplicitSum += e.Value
	}
	r.global.LastTS = max(r.global.LastTS, e.TS)
}

func countersNear(a, b features.Counters) bool {
	sa, sb := a.ExplicitSum, b.ExplicitSum
	a.ExplicitSum, b.ExplicitSum = 0, 0
	return a == b && near(sa, sb)
}

// testProperty: random streams over several partitions, consumed in random
// batches with random crashes (rewinds to an earlier offset), duplicates
// inside batches and shuffled offsets; every counter must equal the
// reference's, which applies each event once.
func testProperty(t *testing.T, s *suite) {
	ctx := context.Background()
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		st := s.store(t)
		ref := newReference(s.cfg.RecentCap)
		const parts, nUsers, nItems = 3, 25, 15
		logs := make([][]streamrec.Event, parts)
		for i := 0; i < 1500; i++ {
			u := rng.IntN(nUsers)
			p := u % parts
			e := Ev("u"+strconv.Itoa(u), "i"+strconv.Itoa(rng.IntN(nItems)), streamrec.Implicit, 0,
				T0+int64(rng.IntN(1000))*60_000, int32(p), int64(len(logs[p])))
			if rng.IntN(3) == 0 {
				e.Kind, e.Type, e.Value = streamrec.Explicit, "rating", float64(1+rng.IntN(10))/2
			} else {
				e.Weight = float64(1 + rng.IntN(4))
			}
			logs[p] = append(logs[p], e)
		}
		pos := make([]int, parts)       // next offset to read
		committed := make([]int, parts) // committed offset
		for step := 0; ; step++ {
			var batch []streamrec.Event
			for k := rng.IntN(40) + 1; k > 0; k-- {
				p := rng.IntN(parts)
				if pos[p] < len(logs[p]) {
					batch = append(batch, logs[p][pos[p]])
					pos[p]++
				}
			}
			if len(batch) == 0 {
				done := true
				for p := range pos {
					done = done && pos[p] == len(logs[p])
				}
				if done {
					break
				}
				continue
			}
			for i := range batch {
				ref.apply(&batch[i])
			}
			// Perturb: duplicate an event in place, swap two events of
			// one partition.
			if rng.IntN(4) == 0 {
				i := rng.IntN(len(batch))
				batch = slices.Insert(batch, i+1, batch[i])
			}
			if rng.IntN(4) == 0 && len(batch) > 1 {
				i, j := rng.IntN(len(batch)), rng.IntN(len(batch))
				if batch[i].Pos.Partition == batch[j].Pos.Partition {
					batch[i], batch[j] = batch[j], batch[i]
				}
			}
			if _, err := st.Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			switch rng.IntN(5) {
			case 0: // crash before commit: rewind to somewhere after the last commit
				for p := range pos {
					pos[p] = committed[p] + rng.IntN(pos[p]-committed[p]+1)
				}
			default:
				copy(committed, pos)
			}
		}
		for id, ru := range ref.users {
			u, ok, err := st.User(ctx, id)
			if err != nil || !ok {
				t.Fatalf("seed %d: user %s: ok %v, err %v", seed, id, ok, err)
			}
			if !countersNear(u.Counters, ru.c) {
				t.Errorf("seed %d: user %s counters = %+v, want %+v", seed, id, u.Counters, ru.c)
			}
			if !slices.Equal(u.Recent, ru.recent) {
				t.Errorf("seed %d: user %s recent = %v, want %v", seed, id, u.Recent, ru.recent)
			}
			_, seen, _, err := st.UserSeen(ctx, id)
			if err != nil || len(seen) != len(ru.seen) {
				t.Errorf("seed %d: user %s seen = %v, want %v", seed, id, seen, ru.seen)
			}
		}
		for id, rc := range ref.items {
			if it := mustItem(t, st, id); !countersNear(it.Counters, *rc) {
				t.Errorf("seed %d: item %s counters = %+v, want %+v", seed, id, it.Counters, *rc)
			}
		}
		g, err := st.Global(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg := ref.global
		if gs, ws := g.ExplicitSum, wg.ExplicitSum; !near(gs, ws) {
			t.Errorf("seed %d: global explicit sum %v, want %v", seed, gs, ws)
		}
		g.ExplicitSum, wg.ExplicitSum = 0, 0
		if g != wg {
			t.Errorf("seed %d: global = %+v, want %+v", seed, g, wg)
		}
		if t.Failed() {
			return
		}
	}
}
