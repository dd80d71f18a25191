package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// fakeModel scores every item with its version, so a response that mixes
// versions is visible: every score must equal model_version.
type fakeModel struct {
	version int64
	items   []string // popularity order
	cats    map[string][]string
	titles  map[string]string
	calls   atomic.Int64 // Recommend calls
}

func newFakeModel(version int64, n int) *fakeModel {
	m := &fakeModel{version: version, cats: map[string][]string{}, titles: map[string]string{}}
	for i := 1; i <= n; i++ {
		id := "i" + strconv.Itoa(i)
		m.items = append(m.items, id)
		m.titles[id] = "Title \"" + id + "\""
		if i%2 == 0 {
			m.cats[id] = []string{"Even"}
		} else {
			m.cats[id] = []string{"Odd", "Drama"}
		}
	}
	return m
}

func (m *fakeModel) top(k int, category string, exclude func(string) bool, skip string, dst []streamrec.Scored) []streamrec.Scored {
	for _, it := range m.items {
		if len(dst) >= k {
			break
		}
		if it == skip || (exclude != nil && exclude(it)) || (category != "" && !slices.Contains(m.cats[it], category)) {
			continue
		}
		dst = append(dst, streamrec.Scored{Item: it, Score: float64(m.version)})
	}
	return dst
}

func (m *fakeModel) Recommend(q *learner.Query, k int, dst []streamrec.Scored) []streamrec.Scored {
	m.calls.Add(1)
	return m.top(k, q.Category, q.Exclude, "", dst)
}

func (m *fakeModel) Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored {
	if _, ok := m.cats[item]; !ok {
		return dst
	}
	return m.top(k, "", nil, item, dst)
}

func (m *fakeModel) Rank(u *features.User, items []string, ts int64, dst []streamrec.Scored) []streamrec.Scored {
	for _, it := range items {
		dst = append(dst, streamrec.Scored{Item: it, Score: float64(m.version)})
	}
	return dst
}

func (m *fakeModel) Popular(k int, category string, ts int64, dst []streamrec.Scored) []streamrec.Scored {
	return m.top(k, category, nil, "", dst)
}

func (m *fakeModel) ItemInfo(item string) (string, []string, bool) {
	c, ok := m.cats[item]
	if !ok {
		return "", nil, false
	}
	return m.titles[item], c, true
}

// Fake blobs: "fake:VERSION:ITEMS"; anything else is corrupt.
func fakeBlob(version int64, items int) []byte {
	return []byte(fmt.Sprintf("fake:%d:%d", version, items))
}

func decodeFake(blob []byte) (Model, ModelInfo, error) {
	var v int64
	var n int
	if _, err := fmt.Sscanf(string(blob), "fake:%d:%d", &v, &n); err != nil {
		return nil, ModelInfo{}, fmt.Errorf("corrupt snapshot: %w", err)
	}
	return newFakeModel(v, n), ModelInfo{Version: v, Created: time.Unix(1700000000, 0).UTC(), EventsTrained: v * 100,
		Metrics: map[string]float64{"rmse": 0.9}, Items: n, Users: 3}, nil
}

// fakeFeatures is a feature store with injectable failures.
type fakeFeatures struct {
	mu      sync.Mutex
	users   map[string]features.User
	seen    map[string][]string
	fail    atomic.Bool
	calls   atomic.Int64
	popular []streamrec.Scored
}

func newFakeFeatures() *fakeFeatures {
	return &fakeFeatures{
		users:   map[string]features.User{"u1": {ID: "u1", Recent: []string{"i1", "i2"}}},
		seen:    map[string][]string{"u1": {"i1", "i2", "i3"}},
		popular: []streamrec.Scored{{Item: "p1", Score: 3}, {Item: "p2", Score: 2}, {Item: "p3", Score: 1}},
	}
}

var errDown = errors.New("redis: connection refused")

// UserStateSince reports every read as changed (a fresh stamp each time),
// which a store may always do; tests of the unchanged path use real stores.
func (f *fakeFeatures) UserStateSince(ctx context.Context, id string, since features.Stamp) (features.UserState, bool, error) {
	n := f.calls.Add(1)
	if f.fail.Load() {
		return features.UserState{}, false, errDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return features.UserState{}, since != "", nil
	}
	return features.UserState{User: u, Seen: slices.Clone(f.seen[id]), Stamp: features.Stamp(strconv.FormatInt(n, 10)), Known: true}, true, nil
}

func (f *fakeFeatures) Popular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return nil, errDown
	}
	return slices.Clone(f.popular[:min(n, len(f.popular))]), nil
}

// fakeSnapshots is a snapshot source; notify=false drops notifications so
// only polling finds new versions.
type fakeSnapshots struct {
	mu      sync.Mutex
	version int64
	blob    []byte
	subs    []chan int64
	notify  bool
	fetches atomic.Int64
}

func (f *fakeSnapshots) Current(ctx context.Context) (int64, []byte, error) {
	f.fetches.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blob == nil {
		return 0, nil, fmt.Errorf("fake: %w", ErrNoSnapshot)
	}
	return f.version, f.blob, nil
}

func (f *fakeSnapshots) Watch(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 16)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, c := range f.subs {
			if c == ch {
				f.subs = append(f.subs[:i], f.subs[i+1:]...)
				close(ch)
				break
			}
		}
	}()
	return ch
}

func (f *fakeSnapshots) publish(version int64, blob []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version, f.blob = version, blob
	if !f.notify {
		return
	}
	for _, c := range f.subs {
		select {
		case c <- version:
		default:
		}
	}
}

type fakeEvents struct {
	mu   sync.Mutex
	msgs []Message
	fail atomic.Bool
}

func (f *fakeEvents) WriteEvents(ctx context.Context, msgs []Message) error {
	if f.fail.Load() {
		return errors.New("kafka: leader not available")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msgs...)
	return nil
}

func (f *fakeEvents) written() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

// fixture is a server over fakes.
type fixture struct {
	srv   *Server
	feat  *fakeFeatures
	snaps *fakeSnapshots
	evs   *fakeEvents
	reg   *prometheus.Registry
	ts    *httptest.Server
}

func newFixture(t testing.TB, mutate func(*Config, *Deps)) *fixture {
	t.Helper()
	f := &fixture{feat: newFakeFeatures(), snaps: &fakeSnapshots{notify: true}, evs: &fakeEvents{}, reg: prometheus.NewRegistry()}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	deps := Deps{Features: f.feat, Snapshots: f.snaps, Decode: decodeFake, Events: f.evs, Registry: f.reg, Log: zerolog.Nop()}
	if mutate != nil {
		mutate(&cfg, &deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fixture) load(t testing.TB, version int64, items int) {
	t.Helper()
	if err := f.srv.Load(version, fakeBlob(version, items)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) do(t testing.TB, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(path, "/metrics") && ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return resp.StatusCode, string(b)
}

func httptestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }
