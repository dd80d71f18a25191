package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/produce"
)

// runProduce publishes a data spec to Kafka: the catalogue to the items
// topic, then the events keyed by user in time order (product.md §8).
func runProduce(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("produce", env)
	var data replayData
	data.register(fs)
	opts := produce.DefaultOptions()
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&opts.Topic, "topic", streamrec.TopicEvents, "events topic")
	fs.StringVar(&opts.ItemsTopic, "items-topic", streamrec.TopicItems, `item metadata topic ("-": do not publish the catalogue)`)
	fs.Float64Var(&opts.Rate, "rate", 0, "events per second (0: as fast as possible)")
	fs.Float64Var(&opts.Speedup, "speedup", 0, "replay event time N times faster (0: off); with --rate, the slower wins")
	fs.BoolVar(&opts.Retime, "retime", false, "stamp each event with the wall-clock time at which it is sent")
	fs.BoolVar(&opts.Loop, "loop", false, "start again from the first event after the last, until stopped")
	fs.IntVar(&opts.BatchSize, "batch-size", opts.BatchSize, "most events per Kafka write")
	fs.IntVar(&opts.MaxRetries, "max-retries", opts.MaxRetries, "retries of a failed write, with capped exponential back-off")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	opts.Brokers = splitList(*brokers)
	if len(opts.Brokers) == 0 {
		return usagef("--brokers is required")
	}
	if err := opts.Validate(); err != nil {
		return usagef("%v", err)
	}
	if err := data.kafka.validate(); err != nil {
		return err
	}
	log, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	kc, err := data.kafka.clients(log)
	if err != nil {
		return err
	}
	defer kc.Close()
	opts.Transport = kc.Transport
	if err := data.kafka.probe(ctx, opts.Brokers); err != nil {
		return err
	}
	d, err := data.load(ctx)
	if err != nil {
		return err
	}
	if d.Rejected > 0 {
		ev := log.Warn().Int("rejected", d.Rejected)
		if len(d.Errors) > 0 {
			ev = ev.AnErr("first", d.Errors[0])
		}
		ev.Msg("produce: some input lines are not valid events; they are skipped")
	}
	opts.Progress = env.Stderr
	st, err := produce.Run(ctx, d, opts, log)
	if err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return fmt.Errorf("produce %s: %w", d.Name, err)
	}
	fmt.Fprintf(env.Stdout, "produced %d events and %d items from %s to %s in %s (%.0f events/s)\n",
		st.Events, st.Items, d.Name, opts.Topic, st.Elapsed.Round(1e6), st.EventsPerSec())
	return err
}
