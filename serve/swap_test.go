package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHotSwapUnderLoad swaps snapshots (good and corrupt) while many
// goroutines request recommendations: every answer comes from one whole
// model (every score equals model_version), versions never go backwards for
// a client, corrupt snapshots are counted and never served.
func TestHotSwapUnderLoad(t *testing.T) {
	t.Run("swap grace", func(t *testing.T) { hotSwapUnderLoad(t, time.Second) })
	t.Run("no grace", func(t *testing.T) { hotSwapUnderLoad(t, 0) })
}

// hotSwapUnderLoad runs TestHotSwapUnderLoad with the given swap grace.
// Without one, a client never sees the version go back. With one, a
// recommendation may still come from the model the last swap replaced (see
// Config.SwapGrace) and says so, but never from an older one, and each path
// on its own never goes back.
func hotSwapUnderLoad(t *testing.T, grace time.Duration) {
	f := newFixture(t, func(c *Config, d *Deps) { c.PollInterval, c.SwapGrace = 5*time.Millisecond, grace })
	f.snaps.publish(1, fakeBlob(1, 50))
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan error, 1)
	go func() { loopDone <- f.srv.RunSnapshots(ctx) }()
	waitVersion(t, f.srv, 1)

	const clients = 16
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		requests atomic.Int64
		failures = make(chan string, clients)
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64               // the newest version this client saw
			lastOn := map[string]int64{} // per path
			for !stop.Load() {
				path := "/v1/users/u1/recommendations?n=20"
				if requests.Load()%3 == 0 {
					path = "/v1/popular?n=20"
				}
				resp, err := f.ts.Client().Get(f.ts.URL + path)
				if err != nil {
					failures <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				requests.Add(1)
				var r recResp
				if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
					failures <- fmt.Sprintf("%d %s", resp.StatusCode, b)
					return
				}
				floor := last
				if grace > 0 && path != "/v1/popular?n=20" {
					floor = previousGood(last)
				}
				if r.ModelVersion < floor || r.ModelVersion < lastOn[path] || r.ModelVersion%10 == 0 {
					failures <- fmt.Sprintf("%s: version %d after %d (%d on this path; multiples of 10 are corrupt)",
						path, r.ModelVersion, last, lastOn[path])
					return
				}
				last, lastOn[path] = max(last, r.ModelVersion), r.ModelVersion
				for _, it := range r.Items {
					if int64(it.Score) != r.ModelVersion {
						failures <- fmt.Sprintf("mixed versions: item %s scored by %v in model %d", it.Item, it.Score, r.ModelVersion)
						return
					}
				}
			}
		}()
	}
	var want int64
	for v := int64(2); v <= 40; v++ {
		if v%10 == 0 {
			f.snaps.publish(v, []byte("corrupt!")) // rejected; the old one stays
			want := float64(v / 10)
			deadline := time.Now().Add(5 * time.Second)
			for testutil.ToFloat64(f.srv.metrics.swapFails.WithLabelValues("decode")) < want {
				if time.Now().After(deadline) {
					t.Fatalf("corrupt version %d never tried", v)
				}
				time.Sleep(time.Millisecond)
			}
			continue
		}
		f.snaps.publish(v, fakeBlob(v, 30+int(v)))
		want = v
		waitVersionWithin(t, f.srv, v, 5*time.Second) // generous: the CPU is shared under -race
	}
	stop.Store(true)
	wg.Wait()
	close(failures)
	for msg := range failures {
		t.Error(msg)
	}
	cancel()
	if err := <-loopDone; err != nil {
		t.Fatal(err)
	}
	if got := f.srv.ModelVersion(); got != want {
		t.Fatalf("serving %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(f.srv.metrics.swapFails.WithLabelValues("decode")); got != 4 {
		t.Errorf("decode failures %v, want 4 (each corrupt version counted once)", got)
	}
	if requests.Load() < clients {
		t.Fatalf("only %d requests ran", requests.Load())
	}
	t.Logf("%d requests across %d swaps", requests.Load(), want)
}

// previousGood is the version served before v in hotSwapUnderLoad, where
// multiples of 10 are corrupt and never served.
func previousGood(v int64) int64 {
	p := v - 1
	if p%10 == 0 {
		p--
	}
	return max(p, 0)
}

// TestCorruptSnapshotKeepsOld: a corrupt current snapshot never replaces the
// serving one and is not re-decoded on every poll.
func TestCorruptSnapshotKeepsOld(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { c.PollInterval = 2 * time.Millisecond })
	f.snaps.publish(1, fakeBlob(1, 5))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.srv.RunSnapshots(ctx)
	waitVersion(t, f.srv, 1)
	f.snaps.publish(2, []byte("\x00garbage"))
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.srv.metrics.swapFails.WithLabelValues("decode")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("corrupt snapshot never tried")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(30 * time.Millisecond) // ~15 polls
	if got := testutil.ToFloat64(f.srv.metrics.swapFails.WithLabelValues("decode")); got != 1 {
		t.Errorf("corrupt snapshot decoded %v times, want once", got)
	}
	status, body := f.do(t, "GET", "/v1/model", "")
	if status != http.StatusOK || f.srv.ModelVersion() != 1 {
		t.Fatalf("serving %d after a corrupt snapshot: %s", f.srv.ModelVersion(), body)
	}
	f.snaps.publish(3, fakeBlob(3, 5))
	waitVersion(t, f.srv, 3)
}

// TestSnapshotDiscovery: a notification makes the swap prompt; without
// notifications, polling finds the new version within the poll interval.
func TestSnapshotDiscovery(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprintf("notify=%v", notify), func(t *testing.T) {
			poll := time.Hour // notifications alone
			if !notify {
				poll = 20 * time.Millisecond
			}
			f := newFixture(t, func(c *Config, d *Deps) { c.PollInterval = poll })
			f.snaps.notify = notify
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go f.srv.RunSnapshots(ctx)
			time.Sleep(10 * time.Millisecond)
			f.snaps.publish(4, fakeBlob(4, 3))
			waitVersion(t, f.srv, 4)
		})
	}
}

// waitVersion waits (at most 1 s, the freshness contract) for the server to
// serve version v.
func waitVersion(t *testing.T, s *Server, v int64) {
	t.Helper()
	waitVersionWithin(t, s, v, time.Second)
}

func waitVersionWithin(t *testing.T, s *Server, v int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for s.ModelVersion() != v {
		if time.Now().After(deadline) {
			t.Fatalf("version %d not served within %s (serving %d)", v, d, s.ModelVersion())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestVersionProbe: with a probe, polling fetches a blob only when the
// version changed.
func TestVersionProbe(t *testing.T) {
	src := &fakeSnapshots{}
	src.publish(1, fakeBlob(1, 3))
	probe := WithVersionProbe(src, func(ctx context.Context) (int64, error) {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.version, nil
	})
	f := newFixture(t, func(c *Config, d *Deps) { c.PollInterval = 2 * time.Millisecond; d.Snapshots = probe })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.srv.RunSnapshots(ctx)
	waitVersion(t, f.srv, 1)
	time.Sleep(40 * time.Millisecond) // ~20 polls
	if n := src.fetches.Load(); n != 1 {
		t.Fatalf("%d blob fetches for one version, want 1", n)
	}
	src.publish(2, fakeBlob(2, 3))
	waitVersion(t, f.srv, 2)
	if n := src.fetches.Load(); n != 2 {
		t.Fatalf("%d blob fetches for two versions, want 2", n)
	}
}
