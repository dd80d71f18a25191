package serve_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/produce"
)

// benchData is the benchmark's warm-up stream and, looped with the wall
// clock, its background traffic.
const benchData = "synthetic:users=300,items=600,events=30000,seed=1"

// Freshness probes and background traffic (product.md §7: event → visible
// p99 ≤ 100 ms for features, ≤ 5 s for the model).
const (
	featureProbes  = 200
	modelProbes    = 12
	backgroundRate = 1000 // events/s
)

// BenchmarkFreshness measures event → visible latency over the production
// topology (embedded Kafka-protocol broker, real Redis, separate ingest,
// learner and serve with the learner's production defaults — --snapshot-every
// 5s,10000, HR@10 on every positive, the default guardrail margin) while a
// producer publishes background traffic at backgroundRate:
//
//   - feature freshness, per probe: from the Kafka write of a view
//     returning to the item being in the user's seen-set in Redis
//     (feature-store-ms, polled every 1 ms) and to it being gone from GET
//     /v1/users/{u}/recommendations (feature-http-ms, polled every 2 ms);
//   - model freshness, per probe: from the Kafka write returning to GET
//     /v1/model serving a snapshot whose offsets cover the event
//     (model-ms, polled every 10 ms). Probes are spaced 0.6–1.8 s apart so
//     that they fall at every phase of the snapshot interval.
//
// A probe waits for the next snapshot, so the model figure is about
// U(0, interval) plus the snapshot's build, publish and load time: with the
// 5 s default its p99 is just above 5 s. SERVE_FRESHNESS_SNAPSHOT_EVERY
// (a duration) sets the interval and SERVE_FRESHNESS_MODEL_PROBES the probe
// count.
//
// Run: go test -run '^$' -bench BenchmarkFreshness -benchtime 1x ./serve/
func BenchmarkFreshness(b *testing.B) {
	every := 5 * time.Second
	if v := os.Getenv("SERVE_FRESHNESS_SNAPSHOT_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("SERVE_FRESHNESS_SNAPSHOT_EVERY=%q: want a positive duration", v)
		}
		every = d
	}
	probes := modelProbes
	if v := os.Getenv("SERVE_FRESHNESS_MODEL_PROBES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("SERVE_FRESHNESS_MODEL_PROBES=%q: want a positive count", v)
		}
		probes = n
	}
	b.Logf("learner --snapshot-every %v,10000; %d model probes", every, probes)
	top := startTopology(b, topoConfig{data: benchData, snapshotInterval: every, snapshotEvents: 10000})
	t0 := time.Now()
	top.publishWarmup(b)
	warm := top.waitModelCovers(b, top.lastOffsets(), 3*time.Minute)
	b.Logf("warm-up: %d events in the served model (version %d) after %v", len(top.data.Events), warm.Version, time.Since(t0).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := make(chan error, 1)
	go func() {
		opts := produce.DefaultOptions()
		opts.Brokers, opts.Rate, opts.Retime, opts.Loop, opts.ItemsTopic = top.brokers, backgroundRate, true, true, "-"
		_, err := produce.Run(ctx, top.data, opts, zerolog.Nop())
		bg <- err
	}()
	time.Sleep(2 * time.Second) // let the consumers settle into the background rate

	var store, viaHTTP, model []time.Duration
	b.ResetTimer()
	for range b.N {
		s, h := measureFeatureFreshness(b, top, featureProbes)
		store, viaHTTP = append(store, s...), append(viaHTTP, h...)
		model = append(model, measureModelFreshness(b, top, probes)...)
	}
	b.StopTimer()
	cancel()
	if err := <-bg; err != nil && !errors.Is(err, context.Canceled) {
		b.Errorf("background producer: %v", err)
	}

	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		p50, p99 := quantile(d, 0.50), quantile(d, 0.99)
		b.ReportMetric(ms(p50), name+"-p50-ms")
		b.ReportMetric(ms(p99), name+"-p99-ms")
		b.Logf("%s: %d probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms", name, len(d), ms(p50), ms(p99), ms(d[len(d)-1]))
	}
	report("feature-store", store)
	report("feature-http", viaHTTP)
	report("model", model)
	b.Logf("background %d events/s; load average %s", backgroundRate, loadAverage())
}

// measureFeatureFreshness runs n probes: a probe user views the item at the
// top of their recommendations, and the probe times when the view is in
// their seen-set (Redis) and when the item is gone from the list (HTTP).
func measureFeatureFreshness(b *testing.B, top *topology, n int) (store, viaHTTP []time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const users = 4
	for i := range n {
		user := fmt.Sprintf("fresh-probe-%d", i%users)
		r, err := top.recommendations(ctx, user, 10)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Items) == 0 || r.Degraded {
			b.Fatalf("probe %d: no personalised list for %s: %+v", i, user, r)
		}
		item := r.Items[0].Item
		if _, err := top.writeEvents(ctx, streamrec.Event{User: user, Item: item}); err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		var (
			wg           sync.WaitGroup
			inStore, off time.Duration
			errs         = make(chan error, 2)
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				seen, err := top.store.Seen(ctx, user, []string{item})
				if err != nil {
					errs <- err
					return
				}
				if seen[0] {
					inStore = time.Since(written)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				r, err := top.recommendations(ctx, user, 10)
				if err != nil {
					errs <- err
					return
				}
				if !r.Degraded && !slices.Contains(r.ids(), item) {
					off = time.Since(written)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatalf("probe %d (%s views %s): %v", i, user, item, err)
		}
		store, viaHTTP = append(store, inStore), append(viaHTTP, off)
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond) // desynchronise from batch timers
	}
	return store, viaHTTP
}

// measureModelFreshness writes n probe events, 0.6–1.8 s apart, and times
// each until the served snapshot's offsets cover it.
func measureModelFreshness(b *testing.B, top *topology, n int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type probe struct {
		offsets map[int]int64
		written time.Time
	}
	probes := make(chan probe, n)
	writeErr := make(chan error, 1)
	go func() {
		defer close(probes)
		for i := range n {
			select {
			case <-ctx.Done():
				return
			case <-time.After(600*time.Millisecond + time.Duration(rand.IntN(1200))*time.Millisecond):
			}
			item := top.truth.Items[rand.IntN(len(top.truth.Items))]
			offs, err := top.writeEvents(ctx, streamrec.Event{User: fmt.Sprintf("model-probe-%d", i), Item: item})
			if err != nil {
				writeErr <- err
				return
			}
			probes <- probe{offsets: offs, written: time.Now()}
		}
	}()
	var (
		out     []time.Duration
		waiting []probe
		open    = true
	)
	for open || len(waiting) > 0 {
		for drained := false; open && !drained; {
			select {
			case p, ok := <-probes:
				if !ok {
					open = false
				} else {
					waiting = append(waiting, p)
				}
			default:
				drained = true
			}
		}
		if len(waiting) > 0 {
			m, err := top.model(ctx)
			if err != nil && !errors.Is(err, errNoModel) {
				b.Fatal(err)
			}
			now := time.Now()
			waiting = slices.DeleteFunc(waiting, func(p probe) bool {
				if err == nil && m.covers(p.offsets) {
					out = append(out, now.Sub(p.written))
					return true
				}
				return false
			})
		}
		select {
		case err := <-writeErr:
			b.Fatal(err)
		case <-ctx.Done():
			b.Fatalf("model freshness: %d probes not served within 3 minutes", len(waiting))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return out
}

// quantile is the nearest-rank q-quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	k := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(k, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loadAverage is /proc/loadavg's 1, 5 and 15 minute averages, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
