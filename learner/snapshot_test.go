package learner

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
)

var trained struct {
	once sync.Once
	tr   *Trainer
	blob []byte
	info SnapshotInfo
	err  error
}

// trainSnapshot trains the production model on a small synthetic set and
// returns the trainer and a snapshot blob of it.
func trainSnapshot(t *testing.T, version int64) (*Trainer, []byte, SnapshotInfo) {
	t.Helper()
	return trainSyntheticSnapshot(t, 60, 120, 2000, version)
}

// trainSyntheticSnapshot is trainSnapshot on a synthetic set of the given
// size.
func trainSyntheticSnapshot(tb testing.TB, users, items, events int, version int64) (*Trainer, []byte, SnapshotInfo) {
	tb.Helper()
	d := synthetic(tb, users, items, events)
	tr := newTestTrainer(tb, DefaultConfig(), "twostage")
	train(tb, tr, d)
	blob, info, err := tr.Snapshot(version, nil, fixedNow())
	if err != nil {
		tb.Fatal(err)
	}
	return tr, blob, info
}

// trainedSnapshot is trainSnapshot(version 1), computed once per test
// binary; callers must not modify what it returns.
func trainedSnapshot(t *testing.T) (*Trainer, []byte, SnapshotInfo) {
	t.Helper()
	trained.once.Do(func() { trained.tr, trained.blob, trained.info = trainSnapshot(t, 1) })
	if trained.tr == nil {
		t.Fatal("training the shared snapshot failed")
	}
	return trained.tr, trained.blob, trained.info
}

func TestSnapshotRoundTrip(t *testing.T) {
	tr, blob, info := trainedSnapshot(t)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Info()
	if got.Version != 1 || !got.Created.Equal(fixedNow()) || got.EventsTrained != tr.Events() ||
		got.Size != len(blob) || got.ConfigHash != DefaultConfig().Hash() || got.Items != info.Items || got.Users != info.Users {
		t.Fatalf("info %+v, encoded %+v", got, info)
	}
	if got.Offsets["replay/0"] != tr.Events() {
		t.Fatalf("offsets %v, want replay/0 = %d", got.Offsets, tr.Events())
	}
	if _, ok := got.Metrics["rmse"]; !ok {
		t.Fatalf("metrics %v lack rmse", got.Metrics)
	}
	// The decoded model answers like the trained one.
	var u features.User
	tr.Store().UserInto("1", &u)
	q := &Query{User: &u, TS: 1 << 41}
	want := tr.Models()[0].(Recommender).Recommend(q, 10, nil)
	rec := s.Recommend(q, 10, nil)
	if len(rec) != 10 || len(want) != 10 {
		t.Fatalf("snapshot recommends %v, trained model %v", rec, want)
	}
	for i := range rec {
		// Same items in the same order; scores may differ slightly because
		// the ranker's trained scorer carries state its encoding does not.
		if rec[i].Item != want[i].Item || math.Abs(rec[i].Score-want[i].Score) > 0.02 {
			t.Fatalf("snapshot recommends %v, trained model %v", rec, want)
		}
	}
	// Re-encoding the restored trainer gives the same bytes.
	tr2 := newTestTrainer(t, DefaultConfig(), "twostage")
	if _, err := tr2.Restore(blob); err != nil {
		t.Fatal(err)
	}
	blob2, _, err := tr2.Snapshot(1, nil, fixedNow())
	if err != nil {
		t.Fatal(err)
	}
	// (The header differs: a restored trainer's metric windows start empty.)
	p1, _ := VerifySnapshot(blob)
	p2, _ := VerifySnapshot(blob2)
	s1, err1 := modelSections(p1)
	s2, err2 := modelSections(p2)
	if err1 != nil || err2 != nil || len(s1) != 4 || len(s1) != len(s2) {
		t.Fatalf("sections %d/%d: %v %v", len(s1), len(s2), err1, err2)
	}
	for name, b := range s1 {
		if !bytes.Equal(b, s2[name]) {
			t.Fatalf("section %s re-encodes to different bytes after restore", name)
		}
	}
	title, cats, ok := s.ItemInfo(want[0].Item)
	if !ok || title == "" || len(cats) == 0 {
		t.Fatalf("ItemInfo(%s) = %q %v %v", want[0].Item, title, cats, ok)
	}
}

func TestSnapshotServingPaths(t *testing.T) {
	_, blob, _ := trainedSnapshot(t)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	ts := int64(1 << 41)
	pop := s.Popular(5, "", ts, nil)
	if len(pop) != 5 {
		t.Fatalf("popular: %v", pop)
	}
	cat := "Books"
	for _, p := range s.Popular(5, cat, ts, nil) {
		if _, cs, _ := s.ItemInfo(p.Item); !slices.Contains(cs, cat) {
			t.Fatalf("popular in %s returned %s with %v", cat, p.Item, cs)
		}
	}
	tests := []struct {
		name string
		q    Query
	}{
		{"unknown user, no session", Query{User: &features.User{ID: "nobody"}, TS: ts}},
		{"unknown user, nil features", Query{TS: ts}},
		{"unknown user with a session", Query{User: &features.User{ID: "nobody", Recent: []string{pop[0].Item, pop[1].Item}}, TS: ts}},
		{"known user", Query{User: &features.User{ID: "1"}, TS: ts}},
		{"known user, category", Query{User: &features.User{ID: "1"}, Category: cat, TS: ts}},
		{"unknown user, category", Query{User: &features.User{ID: "nobody"}, Category: cat, TS: ts}},
		{"exclude the popular", Query{User: &features.User{ID: "nobody"}, TS: ts,
			Exclude: func(it string) bool { return it == pop[0].Item || it == pop[1].Item }}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.Recommend(&tc.q, 10, nil)
			if len(rec) != 10 {
				t.Fatalf("got %d items, want 10: %v", len(rec), rec)
			}
			seen := map[string]bool{}
			for _, r := range rec {
				if seen[r.Item] {
					t.Fatalf("duplicate %s in %v", r.Item, rec)
				}
				seen[r.Item] = true
				if tc.q.Exclude != nil && tc.q.Exclude(r.Item) {
					t.Fatalf("excluded item %s recommended", r.Item)
				}
				if tc.q.Category != "" {
					if _, cs, _ := s.ItemInfo(r.Item); !slices.Contains(cs, tc.q.Category) {
						t.Fatalf("item %s (%v) outside category %s", r.Item, cs, tc.q.Category)
					}
				}
			}
		})
	}
	if got := s.Recommend(&Query{Category: "NoSuchCategory", TS: ts}, 10, nil); len(got) != 0 {
		t.Fatalf("unknown category: %v", got)
	}
	sim := s.Similar(pop[0].Item, 5, nil)
	if len(sim) != 5 || slices.ContainsFunc(sim, func(x streamrec.Scored) bool { return x.Item == pop[0].Item }) {
		t.Fatalf("similar(%s) = %v", pop[0].Item, sim)
	}
	if got := s.Similar("no-such-item", 5, nil); len(got) != 0 {
		t.Fatalf("similar(unknown) = %v", got)
	}
	items := []string{pop[0].Item, "brand-new-item", pop[1].Item}
	ranked := s.Rank(&features.User{ID: "1"}, items, ts, nil)
	if len(ranked) != 3 {
		t.Fatalf("rank: %v", ranked)
	}
	for i, r := range ranked {
		if r.Item != items[i] {
			t.Fatalf("rank changed the order: %v", ranked)
		}
	}
}

func TestSnapshotRejectsCorruption(t *testing.T) {
	_, blob, _ := trainedSnapshot(t)
	positions := []int{0, 5, 6, 8, 14, 20, len(blob) / 2, len(blob) - 5, len(blob) - 1}
	for _, p := range positions {
		bad := slices.Clone(blob)
		bad[p] ^= 0x40
		if _, err := DecodeSnapshot(bad); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("byte %d flipped: err %v, want ErrCorruptSnapshot", p, err)
		}
	}
	for _, n := range []int{0, 3, 17, len(blob) / 2, len(blob) - 1} {
		_, err := DecodeSnapshot(blob[:n])
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated to %d: err %v, want ErrCorruptSnapshot", n, err)
		}
	}
	_, err := DecodeSnapshot(blob[:len(blob)-1])
	t.Logf("truncated blob: %v", err)
	bad := slices.Clone(blob)
	bad[len(bad)/2] ^= 1
	_, err = DecodeSnapshot(bad)
	t.Logf("flipped byte: %v", err)
}

func TestLoaderKeepsPreviousSnapshotOnCorruption(t *testing.T) {
	ctx := context.Background()
	store := NewMemorySnapshots(5)
	_, blob, info := trainedSnapshot(t)
	if err := store.Publish(ctx, info, blob); err != nil {
		t.Fatal(err)
	}
	l := NewLoader(store, zerolog.Nop())
	if err := l.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	good := l.Snapshot()
	for i, corrupt := range [][]byte{
		func() []byte { b := slices.Clone(blob); b[len(b)/3] ^= 0xff; return b }(),
		blob[:len(blob)-10],
	} {
		info.Version = int64(2 + i)
		if err := store.Publish(ctx, info, corrupt); err != nil {
			t.Fatal(err)
		}
		err := l.Refresh(ctx)
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("corrupt version %d: err %v", info.Version, err)
		}
		if l.Snapshot() != good || l.Snapshot().Info().Version != 1 {
			t.Fatalf("corrupt version %d replaced the serving snapshot", info.Version)
		}
	}
	if l.Rejected() != 2 {
		t.Fatalf("rejected %d, want 2", l.Rejected())
	}
	// Rolling back to the good version is picked up.
	info.Version = 4
	if err := store.Publish(ctx, info, blob); err != nil {
		t.Fatal(err)
	}
	if err := l.Refresh(ctx); err != nil || l.Snapshot().Info().Version != 1 /* the blob's own */ {
		t.Fatalf("good blob after corrupt ones: %v", err)
	}
}

func TestReproducibleSnapshotBytes(t *testing.T) {
	_, a, _ := trainedSnapshot(t)
	_, b, _ := trainSnapshot(t, 1)
	if !bytes.Equal(a, b) {
		n := 0
		for n < min(len(a), len(b)) && a[n] == b[n] {
			n++
		}
		t.Fatalf("same seed and input gave different snapshots (%d vs %d bytes, first difference at %d)", len(a), len(b), n)
	}
	cfg := DefaultConfig()
	cfg.Seed = 2
	tr := newTestTrainer(t, cfg, "twostage")
	train(t, tr, synthetic(t, 60, 120, 2000))
	c, _, _ := tr.Snapshot(1, nil, fixedNow())
	if bytes.Equal(a, c) {
		t.Fatal("a different seed gave the same snapshot")
	}
}

// snapshotStoreSuite checks a SnapshotStore's contract.
func snapshotStoreSuite(t *testing.T, store SnapshotStore) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := store.Current(ctx); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("empty store: err %v, want ErrNoSnapshot", err)
	}
	watch := store.Watch(ctx)
	time.Sleep(50 * time.Millisecond) // let the subscription start
	for v := int64(1); v <= 7; v++ {
		in := SnapshotInfo{Version: v, Created: fixedNow(), EventsTrained: v * 10, Metrics: map[string]float64{"rmse": 1},
			Offsets: map[string]int64{"streamrec.events/0": v}}
		if err := store.Publish(ctx, in, []byte{byte(v), 1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	waitVersion := func(want int64) {
		t.Helper()
		for {
			select {
			case v, ok := <-watch:
				if !ok {
					t.Fatalf("watch closed before version %d", want)
				}
				if v == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no notification of version %d", want)
			}
		}
	}
	waitVersion(7)
	v, blob, err := store.Current(ctx)
	if err != nil || v != 7 || !bytes.Equal(blob, []byte{7, 1, 2}) {
		t.Fatalf("current = %d %v %v", v, blob, err)
	}
	infos, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var vs []int64
	for _, in := range infos {
		vs = append(vs, in.Version)
	}
	if !slices.Equal(vs, []int64{7, 6, 5, 4, 3}) || infos[0].Size != 3 || infos[0].EventsTrained != 70 {
		t.Fatalf("list = %v (%+v), want the last 5 newest first", vs, infos[0])
	}
	if _, err := store.Get(ctx, 2); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("dropped version 2: err %v", err)
	}
	if err := store.Rollback(ctx, 2); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("rollback to a dropped version: err %v", err)
	}
	if err := store.Rollback(ctx, 4); err != nil {
		t.Fatal(err)
	}
	waitVersion(4)
	if v, blob, _ := store.Current(ctx); v != 4 || blob[0] != 4 {
		t.Fatalf("after rollback current = %d", v)
	}
	// A new publish after a rollback keeps the pointer moving forward.
	if err := store.Publish(ctx, SnapshotInfo{Version: 8}, []byte{8}); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := store.Current(ctx); v != 8 {
		t.Fatalf("current = %d after publishing 8", v)
	}
	cancel()
	for range watch { // closed when ctx ends
	}
}

func TestMemorySnapshots(t *testing.T) { snapshotStoreSuite(t, NewMemorySnapshots(5)) }

func TestRedisSnapshots(t *testing.T) {
	srv := redistest.Start(t)
	store := NewRedisSnapshots(srv.Client(t), 5, zerolog.Nop())
	store.Poll = 100 * time.Millisecond
	snapshotStoreSuite(t, store)
}

// TestSnapshotConcurrentReads runs every read path from several goroutines
// (meaningful under -race) and checks they agree with a sequential answer.
func TestSnapshotConcurrentReads(t *testing.T) {
	_, blob, _ := trainedSnapshot(t)
	s, err := DecodeSnapshot(blob)
	if err != nil {
		t.Fatal(err)
	}
	ts := int64(1 << 41)
	q := &Query{User: &features.User{ID: "2", Recent: []string{"i1", "i2"}}, TS: ts}
	want := s.Recommend(q, 10, nil)
	wantRank := s.Rank(q.User, []string{"i1", "i2", "i3"}, ts, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst []streamrec.Scored
			for i := range 50 {
				dst = s.Recommend(q, 10, dst[:0])
				if !slices.Equal(dst, want) {
					errs <- "recommend differs under concurrency"
					return
				}
				dst = s.Rank(q.User, []string{"i1", "i2", "i3"}, ts, dst[:0])
				if !slices.Equal(dst, wantRank) {
					errs <- "rank differs under concurrency"
					return
				}
				_ = s.Similar("i"+strconv.Itoa((g*50+i)%100), 5, dst[:0])
				_ = s.Popular(5, "", ts, dst[:0])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
