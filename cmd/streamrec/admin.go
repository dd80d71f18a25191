package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// newRegistry is a component's own Prometheus registry, with the Go and
// process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminMux serves /metrics, /healthz, /readyz and pprof. ready reports
// readiness; nil means ready as soon as the process serves.
func adminMux(reg *prometheus.Registry, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "{\"status\":\"not ready\",\"reason\":%q}\n", err.Error())
				return
			}
		}
		fmt.Fprintln(w, `{"status":"ready"}`)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveHTTP listens on addr and serves h until ctx ends, then shuts down
// gracefully. It returns the bound address (addr may use port 0) and a
// channel that yields the server's final error.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log zerolog.Logger) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn().Err(err).Msg("http shutdown")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("http listening")
	return ln.Addr().String(), done, nil
}

// runWithAdmin runs loop with its admin server on addr (none when addr is
// empty). The server stops when the loop does, whatever the reason, and a
// server failure is reported when the loop itself succeeded.
func runWithAdmin(ctx context.Context, addr string, mux http.Handler, env Env, log zerolog.Logger, loop func(context.Context) error) error {
	hctx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	var httpDone <-chan error
	if addr != "" {
		bound, done, err := serveHTTP(hctx, addr, mux, log)
		if err != nil {
			return err
		}
		httpDone = done
		if env.Ready != nil {
			env.Ready(map[string]string{"metrics": bound})
		}
	}
	runErr := loop(ctx)
	stopHTTP()
	if httpDone != nil {
		if err := <-httpDone; err != nil && runErr == nil {
			runErr = fmt.Errorf("admin http: %w", err)
		}
	}
	return runErr
}
