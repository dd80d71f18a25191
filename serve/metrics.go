package serve

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	degraded  *prometheus.CounterVec
	swaps     prometheus.Counter
	swapFails *prometheus.CounterVec
	version   prometheus.Gauge
	decode    prometheus.Histogram
	accepted  prometheus.Counter
	rejected  *prometheus.CounterVec
	breaker   prometheus.Gauge
	cache     *prometheus.CounterVec
	cacheHit  prometheus.Counter
	cacheMiss prometheus.Counter
	// cacheRefresh counts hits that started a background renewal.
	cacheRefresh prometheus.Counter
	// cacheStale counts hits answered by the previous model after a swap.
	cacheStale prometheus.Counter
	userState  *prometheus.CounterVec
	stateSame  prometheus.Counter
	stateNew   prometheus.Counter

	// Observers are resolved once per (route, status) so the hot path does
	// no label hashing.
	mu        sync.RWMutex
	observers map[routeStatus]routeObs
}

type routeStatus struct {
	route  string
	status int
}

type routeObs struct {
	count prometheus.Counter
	lat   prometheus.Observer
}

func newMetrics(reg *prometheus.Registry, age func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "streamrec_serve_request_duration_seconds", Help: "HTTP request latency by route and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "code"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_degraded_total", Help: "Answers served degraded (popularity instead of the personalised model), by route and reason.",
		}, []string{"route", "reason"}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_serve_snapshot_swaps_total", Help: "Snapshots loaded and swapped in.",
		}),
		swapFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_snapshot_swap_failures_total", Help: "Snapshots that could not be fetched or were rejected, by reason.",
		}, []string{"reason"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamrec_serve_snapshot_version", Help: "Version of the serving snapshot (0 when none).",
		}),
		decode: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamrec_serve_snapshot_decode_seconds", Help: "Time to verify and decode a snapshot before it is swapped in (wall clock, beside the requests).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 10),
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_serve_events_accepted_total", Help: "Events accepted by POST /v1/events and written to Kafka.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_events_rejected_total", Help: "Events rejected by POST /v1/events, by reason.",
		}, []string{"reason"}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamrec_serve_feature_breaker_open", Help: "1 while the feature-store breaker is open (answers degraded without trying Redis).",
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_cache_requests_total", Help: "Recommendation cache lookups by result (hit, miss; refresh: a hit that started its renewal in the background, in the answer's last quarter of TTL or after a swap; stale: a hit answered by the previous model within the swap grace).",
		}, []string{"result"}),
		userState: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_serve_user_state_reads_total", Help: "Feature-store reads of a user's state by result: current (the kept view was up to date, known without a read or from a stamp check) or changed (the whole state was read).",
		}, []string{"result"}),
		observers: map[routeStatus]routeObs{},
	}
	m.cacheHit, m.cacheMiss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	m.cacheRefresh, m.cacheStale = m.cache.WithLabelValues("refresh"), m.cache.WithLabelValues("stale")
	m.stateSame, m.stateNew = m.userState.WithLabelValues("current"), m.userState.WithLabelValues("changed")
	age1 := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamrec_serve_snapshot_age_seconds", Help: "Age of the serving snapshot since the learner created it (0 when none).",
	}, age)
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.degraded, m.swaps, m.swapFails, m.version, m.decode, m.accepted, m.rejected, m.breaker, m.cache, m.userState, age1} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"decode", "fetch"} {
		m.swapFails.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) obs(route string, status int) routeObs {
	k := routeStatus{route, status}
	m.mu.RLock()
	o, ok := m.observers[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	code := strconv.Itoa(status)
	o = routeObs{m.requests.WithLabelValues(route, code), m.latency.WithLabelValues(route, code)}
	m.mu.Lock()
	m.observers[k] = o
	m.mu.Unlock()
	return o
}
