package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
)

var fixedNow = func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// smallData is a synthetic data set small enough for -race unit tests.
func smallData(tb testing.TB) *dataset.Data {
	tb.Helper()
	cfg := dataset.DefaultSyntheticConfig()
	cfg.Users, cfg.Items, cfg.Events = 80, 200, 1500
	d, _ := dataset.Synthetic(cfg)
	return d
}

var (
	snapOnce  sync.Once
	snapData  *dataset.Data
	snapBlobs [][]byte
)

// sharedSnapshots trains once per test binary: smallData and two snapshots
// (after half and after all of the events).
func sharedSnapshots(tb testing.TB) (*dataset.Data, [][]byte) {
	snapOnce.Do(func() {
		snapData = smallData(tb)
		snapBlobs = trainSnapshots(tb, snapData, 2)
	})
	if snapBlobs == nil {
		tb.Fatal("training the shared snapshots failed")
	}
	return snapData, snapBlobs
}

// trainSnapshots trains the two-stage model on d and returns snapshot blobs
// taken after each of parts equal slices of the events (versions 1..parts).
func trainSnapshots(tb testing.TB, d *dataset.Data, parts int) [][]byte {
	tb.Helper()
	cfg := learner.DefaultConfig()
	cfg.HREvery = 1 << 30 // no prequential HR@K evaluation: not what these tests are about
	m, err := learner.New("twostage", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tr, err := learner.NewTrainerWith(cfg, []learner.Model{m}, zerolog.Nop(), learner.TrainerOptions{Now: fixedNow})
	if err != nil {
		tb.Fatal(err)
	}
	if err := tr.PutItems(d.Items); err != nil {
		tb.Fatal(err)
	}
	var blobs [][]byte
	for p := 1; p <= parts; p++ {
		for i := (p - 1) * len(d.Events) / parts; i < p*len(d.Events)/parts; i++ {
			tr.Process(&d.Events[i])
		}
		blob, _, err := tr.Snapshot(int64(p), nil, fixedNow())
		if err != nil {
			tb.Fatal(err)
		}
		blobs = append(blobs, blob)
	}
	return blobs
}

// loadStore applies d to a feature store as ingest would.
func loadStore(tb testing.TB, st features.Store, d *dataset.Data) {
	tb.Helper()
	ctx := context.Background()
	if err := st.PutItems(ctx, d.Items); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < len(d.Events); i += 2000 {
		if _, err := st.Apply(ctx, d.Events[i:min(i+2000, len(d.Events))]); err != nil {
			tb.Fatal(err)
		}
	}
}

func getJSON[T any](t *testing.T, url string) (int, T) {
	t.Helper()
	var v T
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v: %s", url, err, b)
	}
	return resp.StatusCode, v
}

// TestRealSnapshotsMemoryStore serves real learner snapshots from the
// in-memory snapshot store over the in-memory feature store: seen items are
// excluded, categories honoured, titles filled, and a corrupted blob (one
// flipped byte) keeps the previous snapshot.
func TestRealSnapshotsMemoryStore(t *testing.T) {
	d, blobs := sharedSnapshots(t)
	fcfg := features.DefaultConfig()
	store, err := features.NewMemory(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	loadStore(t, store, d)
	snaps := learner.NewMemorySnapshots(5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := DefaultConfig()
	cfg.PollInterval = 20 * time.Millisecond
	srv, err := New(cfg, Deps{Features: store, Snapshots: snaps, Registry: prometheus.NewRegistry(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.RunSnapshots(ctx)
	info1 := learner.SnapshotInfo{Version: 1, Created: fixedNow()}
	if err := snaps.Publish(ctx, info1, blobs[0]); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, srv, 1)
	ts := newTestServer(t, srv)

	user := d.Events[len(d.Events)-1].User
	_, seen, _, err := store.UserSeen(ctx, user)
	if err != nil || len(seen) == 0 {
		t.Fatalf("user %s seen %v: %v", user, seen, err)
	}
	status, r := getJSON[recResp](t, ts+"/v1/users/"+user+"/recommendations?n=20")
	if status != 200 || r.Degraded || r.ModelVersion != 1 || len(r.Items) != 20 {
		t.Fatalf("recommendations: %d %+v", status, r)
	}
	for _, it := range r.Items {
		if slices.Contains(seen, it.Item) {
			t.Errorf("seen item %s recommended", it.Item)
		}
		if it.Title == "" || len(it.Categories) == 0 {
			t.Errorf("item %s lacks title or categories", it.Item)
		}
	}
	cat := r.Items[0].Categories[0]
	_, rc := getJSON[recResp](t, ts+"/v1/users/"+user+"/recommendations?n=5&category="+cat)
	for _, it := range rc.Items {
		if !slices.Contains(it.Categories, cat) {
			t.Errorf("item %s not in category %s: %v", it.Item, cat, it.Categories)
		}
	}
	if len(rc.Items) == 0 {
		t.Errorf("no items in category %s", cat)
	}
	if status, r := getJSON[recResp](t, ts+"/v1/users/never-seen/recommendations?n=5"); status != 200 || len(r.Items) != 5 {
		t.Fatalf("cold start: %d %+v", status, r)
	}
	if status, r := getJSON[recResp](t, ts+"/v1/items/"+r.Items[0].Item+"/similar?n=5"); status != 200 || len(r.Items) == 0 {
		t.Fatalf("similar: %d %+v", status, r)
	}

	// A flipped byte is rejected; version 1 keeps serving; version 2 loads.
	bad := slices.Clone(blobs[1])
	bad[len(bad)/2] ^= 0xff
	if err := snaps.Publish(ctx, learner.SnapshotInfo{Version: 2, Created: fixedNow()}, bad); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if v := srv.ModelVersion(); v != 1 {
		t.Fatalf("serving %d after a corrupt snapshot", v)
	}
	if err := snaps.Publish(ctx, learner.SnapshotInfo{Version: 3, Created: fixedNow()}, blobs[1]); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, srv, 2) // the blob's own version is 2
}

func newTestServer(t *testing.T, srv *Server) string {
	t.Helper()
	ts := httptestServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestRedisDownDuringLoad runs clients against real Redis (features and
// snapshots), stops Redis mid-load and restarts it: every answer is 200,
// answers turn degraded while Redis is down, and personalised answers
// come back after.
// With the client-side cache (serve's default) the same must hold: an
// outage drops the cached entries with their connections.
func TestRedisDownDuringLoad(t *testing.T) {
	t.Run("plain-client", func(t *testing.T) { redisDownDuringLoad(t, false) })
	t.Run("client-cache", func(t *testing.T) { redisDownDuringLoad(t, true) })
}

func redisDownDuringLoad(t *testing.T, clientCache bool) {
	rs := redistest.Start(t)
	client := rs.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, blobs := sharedSnapshots(t)
	storeClient := client
	if clientCache {
		storeClient = rs.Client(t, features.ClientCache(1<<16))
	}
	store, err := features.NewRedis(ctx, storeClient, features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	loadStore(t, store, d)
	snaps := learner.NewRedisSnapshots(client, 5, zerolog.Nop())
	snaps.Poll = 100 * time.Millisecond
	if err := snaps.Publish(ctx, learner.SnapshotInfo{Version: 2, Created: fixedNow()}, blobs[1]); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PollInterval = 100 * time.Millisecond
	cfg.BreakerCooldown = 100 * time.Millisecond
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Features: store, Snapshots: snaps, Registry: reg, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.RunSnapshots(ctx)
	waitVersionWithin(t, srv, 2, 5*time.Second)
	url := newTestServer(t, srv)

	users := []string{d.Events[0].User, d.Events[1].User, d.Events[2].User, "cold-user"}
	var (
		stop                atomic.Bool
		wg                  sync.WaitGroup
		total, degraded     atomic.Int64
		errs                = make(chan string, 8)
		phase               atomic.Int32 // 0 up, 1 down, 2 back
		degradedByPhase     [3]atomic.Int64
		personalisedByPhase [3]atomic.Int64
	)
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second}
			for i := 0; !stop.Load(); i++ {
				p := phase.Load()
				resp, err := cl.Get(fmt.Sprintf("%s/v1/users/%s/recommendations?n=10", url, users[(c+i)%len(users)]))
				if err != nil {
					errs <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var r recResp
				if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || len(r.Items) == 0 {
					errs <- fmt.Sprintf("status %d: %s", resp.StatusCode, b)
					return
				}
				total.Add(1)
				if r.Degraded {
					degraded.Add(1)
					degradedByPhase[p].Add(1)
				} else {
					personalisedByPhase[p].Add(1)
				}
			}
		}(c)
	}
	waitFor := func(n *atomic.Int64, want int64) {
		deadline := time.Now().Add(10 * time.Second)
		for n.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(&personalisedByPhase[0], 10)
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	phase.Store(1)
	waitFor(&degradedByPhase[1], 20)
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	waitFor(&personalisedByPhase[2], 20)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	t.Logf("%d answers, %d degraded; by phase up/down/back: degraded %d/%d/%d personalised %d/%d/%d", total.Load(), degraded.Load(),
		degradedByPhase[0].Load(), degradedByPhase[1].Load(), degradedByPhase[2].Load(),
		personalisedByPhase[0].Load(), personalisedByPhase[1].Load(), personalisedByPhase[2].Load())
	if personalisedByPhase[0].Load() < 10 || degradedByPhase[1].Load() < 20 || personalisedByPhase[2].Load() < 20 {
		t.Fatal("want personalised answers before, degraded during and personalised after the outage")
	}
	if srv.ModelVersion() != 2 {
		t.Fatalf("snapshot lost during the outage: serving %d", srv.ModelVersion())
	}
	_ = streamrec.EUNAVAILABLE
}
