package learner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// rkDataDir finds ../shared/data beside the repository (or
// $STREAMREC_DATA) and returns DIR/sub, skipping the test when it is absent
// outside CI.
func rkDataDir(tb testing.TB, sub string) string {
	tb.Helper()
	var dirs []string
	if d := os.Getenv("STREAMREC_DATA"); d != "" {
		dirs = append(dirs, d)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	dirs = append(dirs, filepath.Join(root, "..", "shared", "data"), filepath.Join(root, "..", "..", "shared", "data"))
	for _, d := range dirs {
		p := filepath.Join(d, sub)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("data set %s not found (looked in %v)", sub, dirs)
	}
	tb.Skipf("data set %s not found (looked in %v)", sub, dirs)
	return ""
}

// rkLoadML100K parses u.data (sorted by time, stable) and the genres of u.item.
func rkLoadML100K(tb testing.TB) ([]streamrec.Event, map[string][]string) {
	tb.Helper()
	dir := rkDataDir(tb, "ml-100k")
	raw, err := os.ReadFile(filepath.Join(dir, "u.data"))
	if err != nil {
		tb.Fatal(err)
	}
	var evs []streamrec.Event
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			tb.Fatalf("u.data: bad line %q", sc.Text())
		}
		v, _ := strconv.ParseFloat(f[2], 64)
		ts, _ := strconv.ParseInt(f[3], 10, 64)
		evs = append(evs, streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1,
			User: f[0], Item: f[1], Value: v, TS: ts * 1000,
			Pos: streamrec.Position{Topic: "replay", Offset: int64(len(evs))}})
	}
	slices.SortStableFunc(evs, func(a, b streamrec.Event) int {
		switch {
		case a.TS < b.TS:
			return -1
		case a.TS > b.TS:
			return 1
		}
		return 0
	})
	genres := []string{"unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
		"Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
		"Sci-Fi", "Thriller", "War", "Western"}
	cats := map[string][]string{}
	rawItems, err := os.ReadFile(filepath.Join(dir, "u.item"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(rawItems), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 5+len(genres) {
			continue
		}
		for g, flag := range f[5 : 5+len(genres)] {
			if flag == "1" {
				cats[f[0]] = append(cats[f[0]], genres[g])
			}
		}
	}
	return evs, cats
}

// rkFeatures is a minimal point-in-time feature maintainer for the
// harness (the same semantics as product.md §3 for the fields the ranker reads).
type rkFeatures struct {
	users    map[string]*features.User
	items    map[string]*features.Item
	global   features.Global
	cats     map[string][]string
	halfLife time.Duration
	cap      int
}

func newRKFeatures(cats map[string][]string) *rkFeatures {
	return &rkFeatures{users: map[string]*features.User{}, items: map[string]*features.Item{},
		cats: cats, halfLife: 7 * 24 * time.Hour, cap: 500}
}

// example returns the features just before ev (pointers into the maps:
// valid until apply).
func (f *rkFeatures) example(ev *streamrec.Event, ex *Example) {
	u := f.users[ev.User]
	if u == nil {
		u = &features.User{ID: ev.User}
		f.users[ev.User] = u
	}
	it := f.items[ev.Item]
	if it == nil {
		it = &features.Item{ID: ev.Item, Categories: f.cats[ev.Item]}
		f.items[ev.Item] = it
	}
	*ex = Example{Event: ev, User: u, Item: it, Global: &f.global}
}

func (f *rkFeatures) apply(ev *streamrec.Event) {
	u, it := f.users[ev.User], f.items[ev.Item]
	if u.Events == 0 {
		f.global.Users++
	}
	if it.Events == 0 {
		f.global.Items++
	}
	rkApplyCounters(&u.Counters, ev)
	rkApplyCounters(&it.Counters, ev)
	if i := slices.Index(u.Recent, ev.Item); i >= 0 {
		u.Recent = slices.Delete(u.Recent, i, i+1)
	}
	u.Recent = slices.Insert(u.Recent, 0, ev.Item)
	if len(u.Recent) > f.cap {
		u.Recent = u.Recent[:f.cap]
	}
	w := ev.Weight
	if ev.Kind == streamrec.Explicit {
		w = 1
	}
	if ev.TS >= it.PopularityTS {
		it.Popularity = it.PopularityAt(ev.TS, f.halfLife) + w
		it.PopularityTS = ev.TS
	} else {
		it.Popularity += features.Decay(w, it.PopularityTS-ev.TS, f.halfLife)
	}
	f.global.Events++
	if ev.Kind == streamrec.Explicit {
		f.global.Explicit++
		f.global.ExplicitSum += ev.Value
	}
	f.global.LastTS = max(f.global.LastTS, ev.TS)
}

// rkPrequentialRMSE runs test-then-train over evs and returns the RMSE of the
// predictions clipped to [lo, hi].
func rkPrequentialRMSE(m Model, evs []streamrec.Event, cats map[string][]string, lo, hi float64) float64 {
	f := newRKFeatures(cats)
	var ex Example
	var se float64
	n := 0
	for i := range evs {
		ev := &evs[i]
		f.example(ev, &ex)
		if ev.Kind == streamrec.Explicit {
			p := math.Max(lo, math.Min(hi, m.Predict(&ex)))
			se += (p - ev.Value) * (p - ev.Value)
			n++
		}
		m.Learn(&ex)
		f.apply(ev)
	}
	return math.Sqrt(se / float64(n))
}

// TestRankerDevML100K is a development hook: with RANKER_DEV set it runs the
// prequential protocol on ML-100K with RANKER_CFG (JSON over the defaults).
func TestRankerDevML100K(t *testing.T) {
	if os.Getenv("RANKER_DEV") == "" {
		t.Skip("set RANKER_DEV=1 to run")
	}
	evs, cats := rkLoadML100K(t)
	cfg := DefaultRankerConfig()
	if s := os.Getenv("RANKER_CFG"); s != "" {
		if err := json.Unmarshal([]byte(s), &cfg); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewRanker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rmse := rkPrequentialRMSE(r, evs, cats, 1, 5)
	t.Logf("rmse %.4f  %.0f events/s  cfg %+v", rmse, float64(len(evs))/time.Since(start).Seconds(), cfg)
}
