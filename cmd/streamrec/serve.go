package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/serve"
)

// runServe is `streamrec serve`: the HTTP API over the feature store and the
// newest learner snapshot.
func runServe(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("serve", env)
	cfg := serve.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "HTTP API address (also /metrics, /healthz, /readyz, /openapi.json)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "", "admin HTTP address for pprof, /metrics, /healthz, /readyz (empty: off)")
	redisAddr := fs.String("redis", "", "Redis address (host:port, redis://…, rediss://…, or a comma-separated cluster list) for features and snapshots; empty: in-memory (nothing to serve until something publishes)")
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers for POST /v1/events, comma-separated (empty: intake off, 503)")
	redisTLS := registerRedisTLS(fs)
	kafkaSec := registerKafkaFlags(fs)
	topic := fs.String("topic", streamrec.TopicEvents, "topic POST /v1/events writes to")
	fs.StringVar(&cfg.APIKey, "api-key", "", "API key required as 'Authorization: Bearer KEY' by POST /v1/events and /v1/inspect/ (empty: none)")
	fs.DurationVar(&cfg.PollInterval, "snapshot-poll", cfg.PollInterval, "snapshot polling interval beside pub/sub notifications")
	clientCache := fs.Int("redis-client-cache", 1<<18, "users whose state the Redis client tracks through server-assisted client-side caching (RESP3; single-node Redis): an unchanged user costs no round trip (0: off)")
	keep := fs.Int("snapshot-keep", learner.DefaultConfig().SnapshotKeep, "snapshots kept for rollback (in-memory store only)")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "largest request body")
	fs.IntVar(&cfg.MaxN, "max-n", cfg.MaxN, "largest n and rank list")
	fs.IntVar(&cfg.DefaultN, "default-n", cfg.DefaultN, "n when a request gives none")
	fs.DurationVar(&cfg.FeatureTimeout, "feature-timeout", cfg.FeatureTimeout, "budget of the per-request feature read; past it answers are degraded")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "budget of Kafka writes and admin requests")
	fs.DurationVar(&cfg.CacheTTL, "cache-ttl", cfg.CacheTTL, "reuse a recommendation while the user's features are unchanged, at most this long; a new model renews it in the background (0: off)")
	fs.IntVar(&cfg.CacheSize, "cache-size", cfg.CacheSize, "cached recommendation answers kept")
	fs.DurationVar(&cfg.SwapGrace, "cache-swap-grace", cfg.SwapGrace, "after a new snapshot, answer from the previous model's cached answers for at most this long while the new model's are computed in the background (0: recompute on the request)")
	fs.IntVar(&cfg.UserCacheItems, "user-cache-items", cfg.UserCacheItems, "items (seen-sets and recent lists) of user states kept between requests, so an unchanged user costs a stamp check (0: read the whole state every time)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", cfg.ReadTimeout, "HTTP read timeout")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "HTTP write timeout")
	dec := streamrec.NewDecoder()
	fs.Func("event-type", "extra event type NAME=implicit:WEIGHT or NAME=explicit (repeatable)", dec.Types.Set)
	fs.Float64Var(&dec.MinValue, "min-value", dec.MinValue, "lowest explicit value accepted")
	fs.Float64Var(&dec.MaxValue, "max-value", dec.MaxValue, "highest explicit value accepted")
	fs.IntVar(&dec.MaxBytes, "max-bytes", dec.MaxBytes, "largest event accepted (bytes)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := dec.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := validateAll(kafkaSec, redisTLS); err != nil {
		return err
	}
	log, err := newLogger(env, *level)
	if err != nil {
		return err
	}

	store, err := openStore(ctx, *redisAddr, *redisTLS, *clientCache, features.DefaultConfig(), log)
	if err != nil {
		return err
	}
	defer store.Close()
	snaps, closeSnaps, err := openServeSnapshots(*redisAddr, *redisTLS, *keep, log)
	if err != nil {
		return err
	}
	defer closeSnaps()
	var events serve.EventWriter
	if bl := splitList(*brokers); len(bl) > 0 {
		kc, err := kafkaSec.clients(log)
		if err != nil {
			return err
		}
		defer kc.Close() // after kw.Close, deferred below
		kw, err := serve.NewKafkaEventsTransport(bl, *topic, kc.Transport)
		if err != nil {
			return usagef("%v", err)
		}
		defer kw.Close()
		events = kw
		kafkaSec.warnProbe(ctx, bl, log)
	} else {
		log.Warn().Msg("no --brokers: POST /v1/events answers 503")
	}

	reg := newRegistry()
	srv, err := serve.New(cfg, serve.Deps{
		Features: store, Snapshots: snaps, Events: events, EventDecoder: dec,
		Inspect:  http.StripPrefix("/v1/inspect", features.NewInspectHandler(store)),
		Registry: reg, Log: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	addrs := map[string]string{"http": ln.Addr().String()}
	var admin net.Listener
	if cfg.AdminAddr != "" {
		if admin, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen admin %s: %w", cfg.AdminAddr, err)
		}
		addrs["admin"] = admin.Addr().String()
	}
	// The admin mux is built here because it needs srv's readiness.
	deps := adminMux(reg, func() error { return srv.Ready(ctx) })
	if env.Ready != nil {
		env.Ready(addrs)
	}
	return srv.ServeWithAdmin(ctx, ln, admin, deps)
}

// openServeSnapshots is the snapshot source: Redis (with a cheap version
// probe for polling) or an in-process store.
func openServeSnapshots(redisAddr string, rt redisTLS, keep int, log zerolog.Logger) (serve.Snapshots, func(), error) {
	if strings.TrimSpace(redisAddr) == "" {
		return learner.NewMemorySnapshots(keep), func() {}, nil
	}
	client, err := openRedisClient(redisAddr, rt)
	if err != nil {
		return nil, nil, err
	}
	rs := learner.NewRedisSnapshots(client, keep, log)
	// sr:model:current is the snapshot store's pointer key (snapshot API).
	probe := func(ctx context.Context) (int64, error) {
		v, err := client.Get(ctx, "sr:model:current").Int64()
		if errors.Is(err, redis.Nil) {
			return 0, learner.ErrNoSnapshot
		}
		return v, err
	}
	return serve.WithVersionProbe(rs, probe), func() { client.Close() }, nil
}
