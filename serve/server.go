// Package serve is streamrec's HTTP API (product.md §5): recommendations,
// similar items, ranking, popularity, model info and event intake, answered
// from the newest learner snapshot (hot-swapped atomically, loaded off the
// request path) and fresh features read from the feature store in one round
// trip. When the feature store is unreachable it answers degraded from the
// snapshot's popularity instead of failing.
package serve

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
)

// Server is the HTTP API. Create it with New; serve Handler() yourself or
// call Run; keep snapshots current with RunSnapshots (Run does it).
type Server struct {
	cfg     Config
	deps    Deps
	log     zerolog.Logger
	now     func() time.Time
	decode  DecodeFunc
	metrics *metrics
	breaker *breaker
	cache   *recCache // nil when disabled
	// refreshes holds a slot per running renewal worker (renew.go), and
	// renewals the queued renewals of cached answers.
	refreshes chan struct{}
	renewals  chan renewal
	views     *userViews     // nil when disabled
	batcher   *coalescer     // nil when disabled or the store cannot batch
	current   currentChecker // nil when the store cannot tell without I/O
	cur       atomic.Pointer[loaded]
	handler   http.Handler
	routes    []route

	// Owned by the snapshot loop.
	rejected  int64
	fetchErrs int

	logMu     sync.Mutex
	lastLogAt time.Time
}

// route is one entry of the API; the mux is built from the table, and the
// OpenAPI test checks the table against openapi.json.
type route struct {
	method  string // "" for a mounted handler serving every method
	pattern string // ServeMux pattern path
	name    string // metrics label
	auth    bool   // needs the API key when one is configured
	h       func(w http.ResponseWriter, r *http.Request) int
	mounted http.Handler
}

// New checks cfg and deps and builds the server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	if deps.EventDecoder == nil {
		deps.EventDecoder = streamrec.NewDecoder()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log.With().Str("component", "serve").Logger(), now: deps.Now, decode: deps.Decode}
	if s.now == nil {
		s.now = time.Now
	}
	if s.decode == nil {
		s.decode = DecodeSnapshot
	}
	m, err := newMetrics(deps.Registry, s.snapshotAge)
	if err != nil {
		return nil, fmt.Errorf("serve: metrics: %w", err)
	}
	s.metrics = m
	s.breaker = &breaker{failures: int64(cfg.BreakerFailures), cooldown: cfg.BreakerCooldown, now: s.now, onChange: func(open bool) {
		if open {
			m.breaker.Set(1)
			s.log.Warn().Msg("feature store failing; answering degraded from the snapshot")
		} else {
			m.breaker.Set(0)
			s.log.Info().Msg("feature store back; personalised answers resumed")
		}
	}}
	if cfg.CacheTTL > 0 {
		s.cache = newRecCache(cfg.CacheTTL, cfg.CacheSize)
		s.refreshes = make(chan struct{}, maxRefreshes)
		s.renewals = make(chan renewal, renewQueue)
	}
	if cfg.UserCacheItems > 0 {
		s.views = newUserViews(cfg.UserCacheItems)
	}
	if cc, ok := deps.Features.(currentChecker); ok && cfg.UserCacheItems > 0 {
		s.current = cc
	}
	if br, ok := deps.Features.(batchReader); ok && cfg.FeatureBatches > 0 {
		s.batcher = newCoalescer(br, cfg.FeatureTimeout, cfg.FeatureBatches, 256)
	}
	s.routes = s.routeTable()
	s.handler = s.buildMux()
	return s, nil
}

func (s *Server) routeTable() []route {
	rs := []route{
		{method: "GET", pattern: "/v1/users/{user}/recommendations", name: "recommendations", h: s.handleRecommendations},
		{method: "GET", pattern: "/v1/items/{item}/similar", name: "similar", h: s.handleSimilar},
		{method: "POST", pattern: "/v1/rank", name: "rank", h: s.handleRank},
		{method: "GET", pattern: "/v1/popular", name: "popular", h: s.handlePopular},
		{method: "POST", pattern: "/v1/events", name: "events", auth: true, h: s.handleEvents},
		{method: "GET", pattern: "/v1/model", name: "model", h: s.handleModel},
		{method: "GET", pattern: "/healthz", name: "healthz", h: s.handleHealthz},
		{method: "GET", pattern: "/readyz", name: "readyz", h: s.handleReadyz},
		{method: "GET", pattern: "/metrics", name: "metrics", mounted: metricsHandler(s.deps.Registry)},
		{method: "GET", pattern: "/openapi.json", name: "openapi", h: s.handleOpenAPI},
	}
	if s.deps.Inspect != nil {
		rs = append(rs, route{pattern: "/v1/inspect/", name: "inspect", auth: true, mounted: s.deps.Inspect})
	}
	return rs
}

func (s *Server) buildMux() http.Handler {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range s.routes {
		rt := rt
		if rt.method != "" {
			allowed[rt.pattern] = append(allowed[rt.pattern], rt.method)
			mux.Handle(rt.method+" "+rt.pattern, s.instrument(rt))
		} else {
			mux.Handle(rt.pattern, s.instrument(rt))
		}
	}
	// The same paths without a method answer 405 in JSON (a pattern with a
	// method is more specific than one without).
	for p, methods := range allowed {
		allow := strings.Join(methods, ", ")
		if strings.Contains(allow, "GET") {
			allow += ", HEAD"
		}
		mux.Handle(p, s.instrument(route{name: "method_not_allowed", h: func(w http.ResponseWriter, r *http.Request) int {
			w.Header().Set("Allow", allow)
			return writeErrCode(w, codeMethodNotAllowed, r.Method+" is not allowed here; allowed: "+allow)
		}}))
	}
	mux.Handle("/", s.instrument(route{name: "not_found", h: func(w http.ResponseWriter, r *http.Request) int {
		return writeErrCode(w, streamrec.ENOTFOUND, "no route for "+r.Method+" "+r.URL.Path)
	}}))
	return mux
}

// Handler is the API, to serve or to mount in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// instrument adds the API key check, the body limit, the request timeout of
// slow routes and the request metrics.
func (s *Server) instrument(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var status int
		switch {
		case rt.auth && !s.authorized(r):
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamrec"`)
			status = writeErrCode(w, streamrec.EUNAUTHORIZED, "missing or wrong API key (Authorization: Bearer KEY)")
		case rt.mounted != nil:
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			rt.mounted.ServeHTTP(sw, r.WithContext(ctx))
			cancel()
			status = sw.status
		default:
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
			}
			status = rt.h(w, r)
		}
		o := s.metrics.obs(rt.name, status)
		o.count.Inc()
		o.lat.Observe(time.Since(start).Seconds())
	})
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.APIKey)) == 1
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Ready is nil once the server can answer: a snapshot is loaded, or the
// feature store's popularity fallback answers.
func (s *Server) Ready(ctx context.Context) error {
	if s.cur.Load() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FeatureTimeout*4)
	defer cancel()
	if _, err := s.deps.Features.Popular(ctx, 1, "", s.now().UnixMilli()); err != nil {
		return fmt.Errorf("no snapshot loaded and the feature store's popularity is unavailable: %w", err)
	}
	return nil
}

// ModelVersion is the serving snapshot's version, 0 when none.
func (s *Server) ModelVersion() int64 {
	if cur := s.cur.Load(); cur != nil {
		return cur.info.Version
	}
	return 0
}

// Run listens on Config.Addr (and Config.AdminAddr when Deps.Admin is set),
// keeps snapshots current, and serves until ctx ends; then it drains
// gracefully within ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("serve: listen %s: %w", s.cfg.Addr, err)
	}
	var admin net.Listener
	if s.cfg.AdminAddr != "" && s.deps.Admin != nil {
		if admin, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("serve: listen admin %s: %w", s.cfg.AdminAddr, err)
		}
	}
	return s.Serve(ctx, ln, admin)
}

// Serve is Run on listeners the caller opened (admin may be nil; it serves
// Deps.Admin).
func (s *Server) Serve(ctx context.Context, ln, admin net.Listener) error {
	return s.ServeWithAdmin(ctx, ln, admin, s.deps.Admin)
}

// ServeWithAdmin is Serve with the admin handler given here.
func (s *Server) ServeWithAdmin(ctx context.Context, ln, admin net.Listener, adminHandler http.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	servers := []*http.Server{s.httpServer(s.handler)}
	lns := []net.Listener{ln}
	if admin != nil {
		if adminHandler == nil {
			adminHandler = http.NotFoundHandler()
		}
		servers = append(servers, s.httpServer(adminHandler))
		lns = append(lns, admin)
	}
	errc := make(chan error, len(servers)+1)
	go func() { errc <- s.RunSnapshots(ctx) }()
	for i, srv := range servers {
		srv, l := srv, lns[i]
		s.log.Info().Str("addr", l.Addr().String()).Msg("http listening")
		go func() {
			err := srv.Serve(l)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	pending := len(servers) + 1
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		pending--
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer scancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn().Err(err).Msg("http shutdown")
			srv.Close()
		}
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("serve: %w", first)
	}
	return nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
	}
}

// logLimited logs at most once a second (errors on the hot path must not
// flood during an outage).
func (s *Server) logLimited(err error, msg string) {
	now := s.now()
	s.logMu.Lock()
	if now.Sub(s.lastLogAt) < time.Second {
		s.logMu.Unlock()
		return
	}
	s.lastLogAt = now
	s.logMu.Unlock()
	s.log.Warn().Err(err).Msg(msg)
}
