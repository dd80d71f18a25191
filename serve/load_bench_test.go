package serve

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/serve/loadgen"
)

// mlLatestSmall finds ../shared/data/ml-latest-small (or $STREAMREC_TEST_DATA);
// absent data skips, except in CI where it fails.
func mlLatestSmall(tb testing.TB) string {
	tb.Helper()
	dir := dataset.SharedDataDir()
	if dir != "" {
		dir = filepath.Join(dir, "ml-latest-small")
		if _, err := os.Stat(filepath.Join(dir, "ratings.csv")); err == nil {
			return dir
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("ml-latest-small not found under ../shared/data or $STREAMREC_TEST_DATA (CI=true, so this fails)")
	}
	tb.Skip("ml-latest-small not found under ../shared/data or $STREAMREC_TEST_DATA")
	return ""
}

// envRounds is SERVE_LOAD_ROUNDS (default 1).
func envRounds() int {
	if v, err := strconv.Atoi(os.Getenv("SERVE_LOAD_ROUNDS")); err == nil && v > 1 {
		return v
	}
	return 1
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkServeLoad is the serving load benchmark of issue 4 (not a timed
// test; it runs once whatever -benchtime says):
//
//	go test -run '^$' -bench BenchmarkServeLoad -benchtime 1x -timeout 30m ./serve
//
// It loads MovieLens latest-small (9,742 items) into a real redis-server,
// trains the two-stage model on it, publishes the snapshot, serves it over
// loopback, and measures GET /v1/users/{user}/recommendations?n=10 for
// random users (10% unknown): latency at a fixed 2,000 req/s with the
// open-loop generator (serve/loadgen), peak req/s closed-loop (loadgen, and
// wrk when installed), and the same against a trivial handler on the same
// machine for the ratio. SERVE_LOAD_DURATION (default 10s) sets each run's
// length; SERVE_LOAD_CACHE_TTL (default the server's, 2s) the answer cache's
// TTL of the cached server, to see how much of the tail the misses make;
// SERVE_LOAD_ROUNDS (default 1) repeats the serve and trivial open-loop runs
// alternately and reports the median p99, since one 10-second run on a
// shared machine is at the mercy of whatever else runs then;
// SERVE_LOAD_CHURN (e.g. 5s) publishes a new snapshot that often during the
// serve runs, as the learner does in production.
//
// The open-loop and wrk targets are processes of their own (loadproc_test.go):
// the streamrec binary, built here and run as `streamrec serve` against the
// same Redis, and this test binary as the trivial handler. SERVE_LOAD_INPROC=1
// serves both from this process instead, beside the load generator, as the
// benchmark did before; SERVE_LOAD_TRACE (a file) then writes a runtime
// execution trace of the first serve round (go tool trace -pprof=sched FILE).
// The in-process server also gives the allocation and CPU figures per
// request either way.
func BenchmarkServeLoad(b *testing.B) {
	dir := mlLatestSmall(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDur := envDuration("SERVE_LOAD_DURATION", 10*time.Second)

	t0 := time.Now()
	d, err := dataset.Load(ctx, "movielens:"+dir, dataset.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("data: %d events, %d catalogue items, %d users (%v)", len(d.Events), len(d.Items), d.Users(), time.Since(t0).Round(time.Millisecond))

	rs := redistest.Start(b)
	client := rs.Client(b)
	// The serving store's client has the client-side cache as `streamrec
	// serve` gives it by default (--redis-client-cache); SERVE_LOAD_CLIENT_CACHE=0
	// measures without it (every stamp check a round trip).
	storeClient := client
	if os.Getenv("SERVE_LOAD_CLIENT_CACHE") != "0" {
		storeClient = rs.Client(b, features.ClientCache(1<<20))
	}
	b.Logf("redis client-side cache: %v", storeClient != client)
	store, err := features.NewRedis(ctx, storeClient, features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	t0 = time.Now()
	loadStore(b, store, d)
	b.Logf("feature store: %d events applied to Redis in %v", len(d.Events), time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	lc := learner.DefaultConfig()
	lc.HREvery = 1 << 30 // training speed is not measured here
	// SERVE_LOAD_CHURN (a duration, default off) publishes a new snapshot
	// that often during the serve open-loop runs, as a learner does: every
	// swap costs the server a decode and empties its answer cache.
	churn := envDuration("SERVE_LOAD_CHURN", 0)
	nsnaps := 1
	if churn > 0 {
		nsnaps = 1 + int(time.Duration(envRounds())*(runDur+3*time.Second)/churn) + 1
	}
	blobs, infos := trainTwoStageSnapshots(ctx, b, lc, d, store, nsnaps)
	blob, info := blobs[0], infos[0]
	b.Logf("snapshot: trained in %v, %d bytes, %d items, %d users", time.Since(t0).Round(time.Millisecond), len(blob), info.Items, info.Users)
	snaps := learner.NewRedisSnapshots(client, 5, zerolog.Nop())
	if err := snaps.Publish(ctx, info, blob); err != nil {
		b.Fatal(err)
	}
	// SERVE_LOAD_CHURN_ELSEWHERE=1 publishes the churn snapshots into another
	// Redis database, which the servers do not serve from: the same work for
	// the publisher and Redis, no swap in the servers. A control, to tell
	// the cost of publishing (on these shared cores) from that of swapping.
	churnDB := 0
	if os.Getenv("SERVE_LOAD_CHURN_ELSEWHERE") == "1" {
		churnDB = 1
	}
	inproc := os.Getenv("SERVE_LOAD_INPROC") == "1"
	var churnSnaps interface {
		Publish(ctx context.Context, info learner.SnapshotInfo, blob []byte) error
	}
	switch {
	case churn == 0:
	case inproc || os.Getenv("SERVE_LOAD_PUBLISH_INPROC") == "1":
		churnSnaps = learner.NewRedisSnapshots(rs.Client(b, func(o *redis.Options) *redis.Options { o.DB = churnDB; return o }), 5, zerolog.Nop())
		b.Logf("churn: published from the benchmark's process")
	default:
		churnSnaps = startPublisherChild(b, rs.Addr(), churnDB, blobs[1:], infos[1:])
		b.Logf("churn: published from a process of its own")
	}
	// The cache-off server keeps version 1: churn is measured on the default
	// one. So does the in-process server when the targets are processes.
	fixed := learner.NewMemorySnapshots(1)
	if err := fixed.Publish(ctx, info, blob); err != nil {
		b.Fatal(err)
	}

	// Two servers over the same store and snapshot: the default (with the
	// answer cache) and one with the cache off (every request runs the
	// model).
	startServer := func(cacheTTL time.Duration, snaps Snapshots) (*Server, string) {
		cfg := DefaultConfig()
		cfg.CacheTTL = cacheTTL
		srv, err := New(cfg, Deps{Features: store, Snapshots: snaps, Registry: prometheus.NewRegistry(), Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(ctx, ln, nil)
		deadline := time.Now().Add(30 * time.Second)
		for srv.ModelVersion() < 1 {
			if time.Now().After(deadline) {
				b.Fatal("snapshot not loaded")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return srv, "http://" + ln.Addr().String()
	}
	cacheTTL := envDuration("SERVE_LOAD_CACHE_TTL", DefaultConfig().CacheTTL)
	var (
		srv                *Server
		base, baseNoCache  string
		serveProc, nocache *childProc
		bin                string
	)
	if inproc {
		srv, base = startServer(cacheTTL, snaps)
		_, baseNoCache = startServer(0, fixed)
	} else {
		srv, _ = startServer(cacheTTL, fixed)
		bin = buildStreamrec(b, b.TempDir())
		flags := []string{"--cache-ttl", cacheTTL.String()}
		if storeClient == client {
			flags = append(flags, "--redis-client-cache", "0")
		}
		serveProc = startServeChild(b, bin, "serve", rs.Addr(), flags...)
		base = serveProc.base
	}
	b.Logf("targets: %s", map[bool]string{true: "in this process, beside the load generator", false: "processes of their own (streamrec serve, trivial handler)"}[inproc])

	// Users: every known user, plus 10% unknown ones (cold start).
	seenUser := map[string]bool{}
	var users []string
	for i := range d.Events {
		if u := d.Events[i].User; !seenUser[u] {
			seenUser[u] = true
			users = append(users, u)
		}
	}
	for i := 0; i < len(users)/10; i++ {
		users = append(users, "new-"+strconv.Itoa(i))
	}
	paths := make([]string, len(users))
	for i, u := range users {
		paths[i] = "/v1/users/" + u + "/recommendations?n=10"
	}
	// A fixed pseudo-random order of users.
	order := make([]int, 1<<16)
	x := uint32(1)
	for i := range order {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		order[i] = int(x % uint32(len(paths)))
	}
	serveURL := func(i int) string { return base + paths[order[i%len(order)]] }

	// Allocations of one in-process request on the real path (Redis read
	// included, go-redis's own allocations too), cache hit and model run.
	h := srv.Handler()
	req, _ := http.NewRequest("GET", paths[0], nil)
	w := &discard{h: http.Header{}}
	allocs := testing.AllocsPerRun(500, func() { h.ServeHTTP(w, req) })
	b.Logf("allocs per recommendation request in-process, cache hit (real Redis read included): %.0f", allocs)
	srv.cache.reset()
	c0 := cpuTime()
	for i := 0; i < 300; i++ {
		srv.cache.reset()
		h.ServeHTTP(w, req)
	}
	b.Logf("CPU per recommendation request in-process, cache miss (model runs): %.3f ms", float64(cpuTime()-c0)/1e6/300)
	c0 = cpuTime()
	for i := 0; i < 3000; i++ {
		h.ServeHTTP(w, req)
	}
	b.Logf("CPU per recommendation request in-process, cache hit (Redis read + encode): %.3f ms", float64(cpuTime()-c0)/1e6/3000)

	// Trivial handler: a fixed body of the same size.
	sample, _ := http.Get(serveURL(0))
	var body []byte
	if sample != nil {
		body = make([]byte, 0, 2048)
		buf := make([]byte, 4096)
		for {
			n, err := sample.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		sample.Body.Close()
	}
	b.Logf("sample answer (%d bytes): %.300s", len(body), body)
	var trivialBase string
	var trivialProc *childProc
	if inproc {
		tln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		trivial := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})}
		go trivial.Serve(tln)
		defer trivial.Close()
		trivialBase = "http://" + tln.Addr().String()
	} else {
		trivialProc = startTrivialChild(b, body)
		trivialBase = trivialProc.base
	}
	trivialURL := func(i int) string { return trivialBase + paths[order[i%len(order)]] }

	b.Logf("machine: %d CPUs (GOMAXPROCS %d), load average %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), loadAvg())
	open := loadgen.Config{Rate: 2000, Duration: runDur, Warmup: 2 * time.Second, MaxInFlight: 4000, Timeout: 5 * time.Second}
	// SERVE_LOAD_TIMELINE=1 logs, per serve round, the 100 ms windows whose
	// p99 passes 5 ms, with the snapshot publications, to see what a slow
	// window lines up with.
	tl := newTimeline(os.Getenv("SERVE_LOAD_TIMELINE") == "1")
	openRun := func(name string, url func(int) string) *loadgen.Result {
		cfg := open
		if name == "serve" {
			cfg.Observe = tl.observe
		}
		cpu0 := readMachineCPU()
		res, err := loadgen.Run(ctx, cfg, url)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%-16s @2000/s open loop: %s; %s", name, res, readMachineCPU().since(cpu0))
		if name == "serve" {
			tl.report(b)
		}
		if res.FirstErr != "" {
			b.Logf("%-16s first error: %s", name, res.FirstErr)
		}
		return res
	}
	// SERVE_LOAD_ROUNDS alternates the serve and trivial open-loop runs that
	// many times, so that both see the same machine; the metrics report the
	// median round's p99.
	rounds := envRounds()
	var res, tres *loadgen.Result
	var serveP99, trivialP99 []time.Duration
	next := 1 // index of the next snapshot to publish under churn
	for range rounds {
		runtime.GC() // start each run from a collected heap (the set-up above leaves garbage)
		stopChurn := func() {}
		if churn > 0 {
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(churn)
				defer tick.Stop()
				for next < len(blobs) {
					select {
					case <-cctx.Done():
						return
					case <-tick.C:
						tl.mark(fmt.Sprintf("publish v%d", infos[next].Version))
						if err := churnSnaps.Publish(cctx, infos[next], blobs[next]); err != nil && cctx.Err() == nil {
							b.Errorf("churn: publish %d: %v", infos[next].Version, err)
							return
						}
						next++
					}
				}
			}()
			stopChurn = func() { cancel(); <-done }
		}
		stopTrace := startTrace(b, inproc && next == 1)
		var profiled <-chan struct{}
		if next == 1 && !inproc {
			// SERVE_LOAD_PPROF (a file): a CPU profile of the serve process
			// over the first round.
			profiled = serveProc.profile(b, runDur)
		}
		res = openRun("serve", serveURL)
		stopTrace()
		if profiled != nil {
			<-profiled
		}
		stopChurn()
		runtime.GC()
		tres = openRun("trivial", trivialURL)
		serveP99 = append(serveP99, res.Latency.Quantile(0.99))
		trivialP99 = append(trivialP99, tres.Latency.Quantile(0.99))
	}
	slices.Sort(serveP99)
	slices.Sort(trivialP99)
	b.Logf("open loop p99 over %d round(s): serve %v, trivial %v", rounds, serveP99, trivialP99)
	// The serving target's own counters.
	metric := func(name string) float64 {
		if !inproc {
			return serveProc.metric(name)
		}
		m, err := srv.deps.Registry.Gather()
		if err != nil {
			return 0
		}
		for _, f := range m {
			for _, x := range f.GetMetric() {
				id := f.GetName()
				for _, l := range x.GetLabel() {
					id += `{` + l.GetName() + `="` + l.GetValue() + `"}`
				}
				if id == name {
					if c := x.GetCounter(); c != nil {
						return c.GetValue()
					}
					return x.GetGauge().GetValue()
				}
			}
		}
		return 0
	}
	if churn > 0 {
		b.Logf("churn: a new snapshot every %v during the serve runs; serving version %.0f, %.0f swaps", churn,
			metric("streamrec_serve_snapshot_version"), metric("streamrec_serve_snapshot_swaps_total"))
	}
	cacheCount := func(result string) float64 {
		return metric(`streamrec_serve_cache_requests_total{result="` + result + `"}`)
	}
	b.Logf("serve cache: %.0f hits (%.0f of them answered by the previous model after a swap), %.0f misses, %.0f background renewals so far",
		cacheCount("hit"), cacheCount("stale"), cacheCount("miss"), cacheCount("refresh"))
	runtime.GC()
	if !inproc {
		nocache = startServeChild(b, bin, "serve, no cache", rs.Addr(), "--cache-ttl", "0")
		baseNoCache = nocache.base
	}
	noCacheURL := func(i int) string { return baseNoCache + paths[order[i%len(order)]] }
	nres := openRun("serve, no cache", noCacheURL)

	peak, _ := loadgen.Closed(ctx, 32, runDur/2, serveURL)
	b.Logf("serve   peak closed loop (Go client, 32 conns): %s", peak)
	tpeak, _ := loadgen.Closed(ctx, 32, runDur/2, trivialURL)
	b.Logf("trivial peak closed loop (Go client, 32 conns): %s", tpeak)

	wrkPaths := paths[:min(len(paths), 700)]
	redisCPU := func() time.Duration { return redisCPUTime(ctx, client) }
	serveCPU, trivialCPU, noCacheCPU := cpuTime, cpuTime, cpuTime
	if !inproc {
		serveCPU, trivialCPU, noCacheCPU = serveProc.cpu, trivialProc.cpu, nocache.cpu
	}
	wrkServe := runWrk(b, "serve", base, wrkPaths, runDur/2, serveCPU, redisCPU)
	wrkTrivial := runWrk(b, "trivial", trivialBase, wrkPaths, runDur/2, trivialCPU, nil)
	wrkNoCache := runWrk(b, "serve, no cache", baseNoCache, wrkPaths, runDur/2, noCacheCPU, redisCPU)
	if !inproc {
		// A degraded answer (popularity, the feature store too slow or the
		// breaker open) is cheap: the figures above count only if these are 0.
		b.Logf("degraded answers: serve %s; no cache %s", serveProc.metricSum("streamrec_serve_degraded_total"), nocache.metricSum("streamrec_serve_degraded_total"))
	}

	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(res.Latency.Quantile(0.5)), "p50_ms")
	b.ReportMetric(ms(serveP99[len(serveP99)/2]), "p99_ms")
	b.ReportMetric(ms(res.Latency.Quantile(0.999)), "p999_ms")
	b.ReportMetric(ms(trivialP99[len(trivialP99)/2]), "trivial_p99_ms")
	b.ReportMetric(ms(nres.Latency.Quantile(0.99)), "nocache_p99_ms")
	b.ReportMetric(peak.Throughput(), "peak_go_rps")
	b.ReportMetric(tpeak.Throughput(), "trivial_peak_go_rps")
	if wrkServe > 0 {
		b.ReportMetric(wrkServe, "peak_wrk_rps")
		b.ReportMetric(wrkTrivial, "trivial_peak_wrk_rps")
		b.ReportMetric(wrkNoCache, "nocache_peak_wrk_rps")
	}
	b.ReportMetric(allocs, "allocs/request")
	b.ReportMetric(0, "ns/op") // one run; ns/op means nothing here
}

// timeline buckets request latencies into 100 ms windows by scheduled
// start, and marks events (snapshot publications) among them.
type timeline struct {
	on    bool
	mu    sync.Mutex
	lat   map[int64][]time.Duration
	marks map[int64][]string
}

func newTimeline(on bool) *timeline {
	return &timeline{on: on, lat: map[int64][]time.Duration{}, marks: map[int64][]string{}}
}

const timelineWindow = int64(100 * time.Millisecond)

func (t *timeline) observe(at time.Time, lat time.Duration) {
	if !t.on {
		return
	}
	t.mu.Lock()
	w := at.UnixNano() / timelineWindow
	t.lat[w] = append(t.lat[w], lat)
	t.mu.Unlock()
}

func (t *timeline) mark(what string) {
	if !t.on {
		return
	}
	t.mu.Lock()
	w := time.Now().UnixNano() / timelineWindow
	t.marks[w] = append(t.marks[w], what)
	t.mu.Unlock()
}

// report logs the slow windows and the marks, in time order, and resets.
func (t *timeline) report(b *testing.B) {
	if !t.on {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var ws []int64
	for w := range t.lat {
		ws = append(ws, w)
	}
	for w := range t.marks {
		if _, ok := t.lat[w]; !ok {
			ws = append(ws, w)
		}
	}
	slices.Sort(ws)
	var sb strings.Builder
	var first int64
	if len(ws) > 0 {
		first = ws[0]
	}
	for _, w := range ws {
		l := t.lat[w]
		slices.Sort(l)
		var p99, mx time.Duration
		if len(l) > 0 {
			p99, mx = l[len(l)*99/100], l[len(l)-1]
		}
		if p99 > 5*time.Millisecond || len(t.marks[w]) > 0 {
			fmt.Fprintf(&sb, "  +%5.1fs  n %4d  p99 %6.2fms  max %6.2fms  %s\n", float64(w-first)*float64(timelineWindow)/1e9,
				len(l), float64(p99)/1e6, float64(mx)/1e6, strings.Join(t.marks[w], ", "))
		}
	}
	b.Logf("timeline (100 ms windows with p99 > 5 ms, and publications):\n%s", sb.String())
	clear(t.lat)
	clear(t.marks)
}

// startTrace starts a runtime trace into $SERVE_LOAD_TRACE when first is
// true and the variable is set; the returned func stops it.
func startTrace(b *testing.B, first bool) func() {
	path := os.Getenv("SERVE_LOAD_TRACE")
	if !first || path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		trace.Stop()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
		b.Logf("trace of the first serve round: %s", path)
	}
}

var (
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal = regexp.MustCompile(`(\d+) requests in`)
)

// redisCPUTime is redis-server's used CPU (user + system) from INFO cpu.
func redisCPUTime(ctx context.Context, c interface {
	Info(ctx context.Context, section ...string) *redis.StringCmd
}) time.Duration {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// runWrk measures peak req/s with wrk (2 threads, 64 connections) cycling
// through paths; 0 when wrk is not installed. It also reports the CPU the
// server (serverCPU: its process's CPU time) and Redis spent per request,
// which does not depend on what else runs on the machine: 2 cores / that is
// the capacity of a dedicated 2-core machine.
func runWrk(b *testing.B, name, base string, paths []string, d time.Duration, serverCPU, redisCPU func() time.Duration) float64 {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		b.Logf("wrk not installed; peak from the Go client only")
		return 0
	}
	var sb strings.Builder
	sb.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&sb, "%q,\n", p)
	}
	sb.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n")
	script := filepath.Join(b.TempDir(), "paths.lua")
	if err := os.WriteFile(script, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	secs := max(1, int(d.Seconds()))
	var r0 time.Duration
	if redisCPU != nil {
		r0 = redisCPU()
	}
	c0 := serverCPU()
	out, err := exec.Command(bin, "-t2", "-c64", "-d"+strconv.Itoa(secs)+"s", "--latency", "-s", script, base).CombinedOutput()
	srvCPU := serverCPU() - c0
	var rCPU time.Duration
	if redisCPU != nil {
		rCPU = redisCPU() - r0
	}
	if err != nil {
		b.Logf("wrk failed: %v: %s", err, out)
		return 0
	}
	b.Logf("%s: wrk -t2 -c64 -d%ds --latency %s:\n%s", name, secs, base, out)
	if m := wrkTotal.FindSubmatch(out); m != nil {
		n, _ := strconv.ParseFloat(string(m[1]), 64)
		per := (srvCPU + rCPU).Seconds() / n
		b.Logf("%s: CPU per request: server %.3f ms + redis %.3f ms = %.3f ms → %.0f req/s on 2 dedicated cores (CPU-time bound, load generator excluded)",
			name, srvCPU.Seconds()*1e3/n, rCPU.Seconds()*1e3/n, per*1e3, 2/per)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// machineCPU is the machine's CPU time from /proc/stat's "cpu" line, in
// clock ticks: all of it, idle (with I/O wait) and stolen by the hypervisor.
type machineCPU struct{ total, idle, steal int64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}
	}
	var c machineCPU
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i >= 8 {
			break // guest time is already in user time
		}
		c.total += v
		switch i {
		case 3, 4: // idle, iowait
			c.idle += v
		case 7:
			c.steal += v
		}
	}
	return c
}

// since describes the machine's CPU use between two readings: how busy
// its cores were and how much time the hypervisor gave to other guests,
// so that a slow round on a shared machine can be told from a slow server.
func (c machineCPU) since(before machineCPU) string {
	total := c.total - before.total
	if total <= 0 {
		return "machine CPU unknown"
	}
	pct := func(v int64) float64 { return 100 * float64(v) / float64(total) }
	return fmt.Sprintf("machine CPU busy %.0f%%, stolen %.1f%%", pct(total-(c.idle-before.idle)), pct(c.steal-before.steal))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// trainTwoStageSnapshot trains the two-stage model over d with the
// production trainer, writes its user vectors to store and returns the
// snapshot blob (version 1) the benchmarks serve.
func trainTwoStageSnapshot(ctx context.Context, b *testing.B, lc learner.Config, d *dataset.Data, store interface {
	PutUserVectors(context.Context, int64, map[string][]float32) error
}) ([]byte, learner.SnapshotInfo) {
	b.Helper()
	blobs, infos := trainTwoStageSnapshots(ctx, b, lc, d, store, 1)
	return blobs[0], infos[0]
}

// trainTwoStageSnapshots trains once and takes n snapshots of the result,
// versions 1..n (the later ones stand for a learner that moved on a little).
func trainTwoStageSnapshots(ctx context.Context, b *testing.B, lc learner.Config, d *dataset.Data, store interface {
	PutUserVectors(context.Context, int64, map[string][]float32) error
}, n int) ([][]byte, []learner.SnapshotInfo) {
	b.Helper()
	m, err := learner.New("twostage", lc)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := learner.NewTrainer(lc, []learner.Model{m}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	if err := tr.PutItems(d.Items); err != nil {
		b.Fatal(err)
	}
	for i := range d.Events {
		tr.Process(&d.Events[i])
	}
	var blobs [][]byte
	var infos []learner.SnapshotInfo
	for v := int64(1); v <= int64(n); v++ {
		blob, info, err := tr.Snapshot(v, nil, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		blobs, infos = append(blobs, blob), append(infos, info)
	}
	if err := store.PutUserVectors(ctx, 1, tr.DrainUserVectors()); err != nil {
		b.Fatal(err)
	}
	return blobs, infos
}
