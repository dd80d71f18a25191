package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// learnConfig returns the defaults, or --config FILE over them, with
// --seed applied when given (seed >= 0).
func learnConfig(path string, seed int64) (learner.Config, error) {
	cfg := learner.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = learner.LoadConfig(path); err != nil {
			return cfg, usagef("%v", err)
		}
	}
	if seed >= 0 {
		cfg.Seed = seed
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// runLearn is `streamrec learn`: the incremental learner.
func runLearn(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("learn", env)
	sc := learner.DefaultStreamConfig()
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	redisAddr := fs.String("redis", "", "Redis address for snapshots and user vectors (empty: in memory, for development)")
	redisTLS := registerRedisTLS(fs)
	kafkaSec := registerKafkaFlags(fs)
	fs.StringVar(&sc.Topic, "topic", sc.Topic, "events topic")
	fs.StringVar(&sc.ItemsTopic, "items-topic", sc.ItemsTopic, "item metadata topic (empty: none)")
	fs.StringVar(&sc.Group, "group", sc.Group, "consumer group")
	every := fs.String("snapshot-every", "5s,10000", "publish a snapshot so that no trained event waits longer than DURATION to be served (the checkpoint starts early by its last duration and 5%), or once COUNT events wait (DURATION,COUNT, DURATION or COUNT)")
	configPath := fs.String("config", "", "learner config file (JSON, as written by streamrec tune)")
	seed := fs.Int64("seed", -1, "random seed (overrides the config's; -1: keep)")
	models := fs.String("models", strings.Join(sc.Models, ","), "models to train; the first is served and guarded ("+strings.Join(learner.Names(), ", ")+")")
	margin := fs.Float64("guardrail-margin", -1, "hold back a snapshot whose windowed RMSE (HR@10) is worse than the serving one by more than this (-1: the config's)")
	keep := fs.Int("snapshot-keep", 0, "snapshots kept for rollback (0: the config's, default 5)")
	sc.Decoder = streamrec.NewDecoder()
	fs.Func("event-type", "extra event type NAME=implicit:WEIGHT or NAME=explicit (repeatable)", sc.Decoder.Types.Set)
	metricsAddr := fs.String("metrics-addr", ":9102", "admin HTTP address: /metrics, /status, /healthz, /readyz, pprof (empty: off)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	var err error
	if sc.SnapshotInterval, sc.SnapshotEvents, err = learner.ParseSnapshotEvery(*every); err != nil {
		return usagef("%v", err)
	}
	if sc.Learner, err = learnConfig(*configPath, *seed); err != nil {
		return err
	}
	if *margin >= 0 {
		sc.Learner.GuardrailMargin = *margin
	}
	if *keep > 0 {
		sc.Learner.SnapshotKeep = *keep
	}
	if sc.Models, err = learner.ParseModels(*models); err != nil {
		return usagef("%v", err)
	}
	sc.Brokers = splitList(*brokers)
	if err := sc.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := validateAll(kafkaSec, redisTLS); err != nil {
		return err
	}
	log, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	kc, err := kafkaSec.clients(log)
	if err != nil {
		return err
	}
	defer kc.Close()
	sc.Dialer = kc.Dialer
	kafkaSec.warnProbe(ctx, sc.Brokers, log)
	return runLearner(ctx, sc, *redisAddr, *redisTLS, *metricsAddr, env, log)
}

// runLearner wires the stream learner to its stores and admin server.
func runLearner(ctx context.Context, sc learner.StreamConfig, redisAddr string, rt redisTLS, metricsAddr string, env Env, log zerolog.Logger) error {
	var (
		snaps   learner.SnapshotStore
		vectors learner.VectorWriter
	)
	if strings.TrimSpace(redisAddr) != "" {
		client, err := openRedisClient(redisAddr, rt)
		if err != nil {
			return err
		}
		defer client.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = client.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("redis %s: %w", redactRedisAddr(redisAddr), err)
		}
		snaps = learner.NewRedisSnapshots(client, sc.Learner.SnapshotKeep, log)
		fcfg := features.DefaultConfig()
		fcfg.RecentCap = sc.Learner.RecentCap
		store, err := features.NewRedis(ctx, client, fcfg, log)
		if err != nil {
			return err
		}
		vectors = store
	} else {
		log.Warn().Msg("no --redis: snapshots stay in this process (development only)")
		snaps = learner.NewMemorySnapshots(sc.Learner.SnapshotKeep)
	}
	reg := newRegistry()
	l, err := learner.NewStreamLearner(sc, vectors, snaps, reg, log)
	if err != nil {
		return usagef("%v", err)
	}
	mux := adminMux(reg, nil)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l.Status())
	})
	return runWithAdmin(ctx, metricsAddr, mux, env, log, l.Run)
}
