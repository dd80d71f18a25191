package main

import (
	"context"
	"strings"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest"
)

// runIngest is `streamrec ingest`: Kafka → feature store, exactly once.
func runIngest(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("ingest", env)
	cfg := ingest.DefaultConfig()
	brokers := fs.String("brokers", strings.Join(cfg.Brokers, ","), "Kafka bootstrap brokers, comma-separated")
	redisAddr := fs.String("redis", "", "Redis address (host:port, redis://…, rediss://…, or a comma-separated cluster list); empty: in-memory store")
	redisTLS := registerRedisTLS(fs)
	kafkaSec := registerKafkaFlags(fs)
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "events topic")
	fs.StringVar(&cfg.ItemsTopic, "items-topic", cfg.ItemsTopic, "item metadata topic (empty: none)")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", cfg.DLQTopic, "dead-letter topic")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer group")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "messages per store write")
	fs.DurationVar(&cfg.BatchWait, "batch-wait", cfg.BatchWait, "longest a message waits in a batch")
	fs.DurationVar(&cfg.IdleWait, "idle-wait", cfg.IdleWait, "flush a batch when no message arrived for this long")
	fs.Func("event-type", "extra event type NAME=implicit:WEIGHT or NAME=explicit (repeatable)", cfg.Types.Set)
	fs.Float64Var(&cfg.MinValue, "min-value", cfg.MinValue, "lowest explicit value accepted")
	fs.Float64Var(&cfg.MaxValue, "max-value", cfg.MaxValue, "highest explicit value accepted")
	fs.IntVar(&cfg.MaxBytes, "max-bytes", cfg.MaxBytes, "largest message accepted (bytes)")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", cfg.MaxBackoff, "longest back-off between retries while Redis or Kafka is down")
	metricsAddr := fs.String("metrics-addr", ":9101", "admin HTTP address: /metrics, /healthz, /readyz, pprof (empty: off)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	cfg.Brokers = splitList(*brokers)
	if err := cfg.Validate(); err != nil {
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
	cfg.Dialer, cfg.Transport = kc.Dialer, kc.Transport
	store, err := openStore(ctx, *redisAddr, *redisTLS, 0, features.DefaultConfig(), log)
	if err != nil {
		return err
	}
	defer store.Close()
	kafkaSec.warnProbe(ctx, cfg.Brokers, log)
	reg := newRegistry()
	c, err := ingest.New(cfg, store, reg, log)
	if err != nil {
		return err
	}
	return runWithAdmin(ctx, *metricsAddr, adminMux(reg, c.Ready), env, log, c.Run)
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
