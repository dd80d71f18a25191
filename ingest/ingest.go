// Package ingest consumes the event stream from Kafka into the feature store,
// exactly once in effect.
//
// A Consumer reads streamrec.events (and item metadata from streamrec.items)
// in one kafka-go consumer group, decodes every message against the event
// contract, and gathers a batch: up to BatchSize messages, flushed early when
// no message arrived for IdleWait or the batch is BatchWait old, so events
// reach the store within milliseconds at low rates and in large batches at
// high ones. A batch is written to the store (Writer.Apply, Writer.PutItems),
// its bad messages to the dead-letter topic with the headers of product.md
// §2, and only when all of that has succeeded are its offsets committed.
// A crash between the write and the commit redelivers the batch; the store
// skips what it has already applied (its per-key, per-partition offset
// marks), so nothing is lost and nothing counts twice.
//
// While the store or Kafka is down, every step retries with capped,
// jittered exponential back-off for as long as ctx lives, logging at most
// every few seconds; no batch is dropped. When ctx ends, the Consumer stops
// fetching, writes and commits the batch in hand (within DrainTimeout) and
// closes its reader and writer.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// Writer is what ingest needs of the feature store (features.Store meets it).
type Writer interface {
	Apply(ctx context.Context, events []streamrec.Event) (features.ApplyResult, error)
	PutItems(ctx context.Context, items []streamrec.ItemMeta) error
}

var _ Writer = features.Store(nil)

// Retry operation labels.
const (
	opApply  = "apply"
	opItems  = "items"
	opDLQ    = "dlq"
	opCommit = "commit"
)

// DLQ record headers (product.md §2).
const (
	HeaderError           = "error"
	HeaderSourceTopic     = "source.topic"
	HeaderSourcePartition = "source.partition"
	HeaderSourceOffset    = "source.offset"
)

// Consumer moves events from Kafka into the store. Create it with New and
// call Run once.
type Consumer struct {
	cfg Config
	w   Writer
	dec *streamrec.Decoder
	m   *metrics
	log zerolog.Logger
	// failing holds the error of a write, DLQ write or commit that is
	// being retried, nil when all is well (see Ready).
	failing atomic.Pointer[error]
}

// Ready reports nil unless a store write, DLQ write or commit is failing
// and being retried; it backs the /readyz of `streamrec ingest`.
func (c *Consumer) Ready() error {
	if p := c.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// New checks cfg and registers the consumer's metrics on reg.
func New(cfg Config, w Writer, reg *prometheus.Registry, log zerolog.Logger) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil || reg == nil {
		return nil, fmt.Errorf("ingest: writer and registry are required")
	}
	if t, ok := cfg.Transport.(*kafka.Transport); ok && t == nil {
		cfg.Transport = nil // a typed nil would not fall back to the default
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, w: w, dec: cfg.decoder(), m: m, log: log.With().Str("component", "ingest").Logger()}, nil
}

var (
	// errStopped marks an AfterWrite stop.
	errStopped = errors.New("ingest: stopped by AfterWrite before commit")
	// errAbandoned marks a batch left uncommitted at shutdown.
	errAbandoned = errors.New("ingest: batch abandoned at shutdown")
)

// Run consumes until ctx ends, then drains and returns nil; it returns an
// error only when it cannot start or AfterWrite stops it.
func (c *Consumer) Run(ctx context.Context) error {
	topics := []string{c.cfg.Topic}
	if c.cfg.ItemsTopic != "" {
		topics = append(topics, c.cfg.ItemsTopic)
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           c.cfg.Brokers,
		GroupID:           c.cfg.Group,
		GroupTopics:       topics,
		Dialer:            c.cfg.Dialer,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           250 * time.Millisecond,
		QueueCapacity:     c.cfg.QueueCapacity,
		CommitInterval:    0, // synchronous commits, after the store write
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    c.cfg.SessionTimeout,
		RebalanceTimeout:  c.cfg.RebalanceTimeout,
		HeartbeatInterval: c.cfg.HeartbeatInterval,
		JoinGroupBackoff:  c.cfg.MinBackoff * 4,
		ReadBackoffMin:    c.cfg.MinBackoff,
		ReadBackoffMax:    c.cfg.MaxBackoff,
		ErrorLogger:       newRateLogger(c.log, "kafka reader", 5*time.Second),
	})
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(c.cfg.Brokers...),
		Transport:    c.cfg.Transport,
		Topic:        c.cfg.DLQTopic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
		ErrorLogger:  newRateLogger(c.log, "kafka dlq writer", 5*time.Second),
	}

	fctx, stopFetch := context.WithCancel(ctx)
	msgs := make(chan decoded, c.cfg.BatchSize)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.fetch(fctx, r, msgs)
	}()

	// The write context outlives ctx by DrainTimeout, so that the batch in
	// hand is written and committed after a shutdown signal.
	wctx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	stopDrainTimer := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.DrainTimeout, cancelWrites) })

	c.log.Info().Strs("brokers", c.cfg.Brokers).Strs("topics", topics).Str("group", c.cfg.Group).
		Int("batch_size", c.cfg.BatchSize).Msg("ingest consuming")
	err := c.loop(ctx, wctx, r, dlq, msgs)

	stopFetch()
	stopDrainTimer()
	cancelWrites()
	if cerr := r.Close(); cerr != nil {
		c.log.Warn().Err(cerr).Msg("close kafka reader")
	}
	if cerr := dlq.Close(); cerr != nil {
		c.log.Warn().Err(cerr).Msg("close dlq writer")
	}
	wg.Wait()
	if err != nil && !errors.Is(err, errAbandoned) {
		return err
	}
	c.log.Info().Msg("ingest stopped")
	return nil
}

// decoded is a fetched message with its decoding: one of an event, an
// item, or the error that sends it to the DLQ.
type decoded struct {
	m    kafka.Message
	e    streamrec.Event
	it   streamrec.ItemMeta
	item bool
	err  error
}

// decode decodes a message of the events or items topic.
func (c *Consumer) decode(m kafka.Message, d *decoded) {
	d.m = m
	if m.Topic == c.cfg.ItemsTopic && c.cfg.ItemsTopic != "" {
		d.item = true
		d.it, d.err = streamrec.DecodeItem(m.Value, c.cfg.MaxBytes)
		return
	}
	d.e, d.err = c.dec.Decode(m.Value)
	d.e.Pos = streamrec.Position{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
}

// fetch fetches and decodes messages into msgs (so that decoding runs
// beside the store writes) until ctx ends or the reader closes.
func (c *Consumer) fetch(ctx context.Context, r *kafka.Reader, msgs chan<- decoded) {
	defer close(msgs)
	backoff := c.newBackoff()
	var lastLog time.Time
	failures := 0
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			failures++
			if now := c.cfg.Now(); now.Sub(lastLog) >= 10*time.Second {
				lastLog = now
				c.log.Warn().Err(err).Int("failures", failures).Msg("kafka fetch failed; retrying with back-off")
			}
			if !backoff.wait(ctx) {
				return
			}
			continue
		}
		backoff.reset()
		failures = 0
		var d decoded
		c.decode(m, &d)
		select {
		case msgs <- d:
		case <-ctx.Done():
			return
		}
	}
}

// loop gathers batches from msgs and flushes them.
func (c *Consumer) loop(ctx, wctx context.Context, r *kafka.Reader, dlq *kafka.Writer, msgs <-chan decoded) error {
	b := newBatch(c.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lastStats time.Time
	flush := func() error {
		if b.n == 0 {
			return nil
		}
		err := c.flush(wctx, r, dlq, b)
		if now := c.cfg.Now(); now.Sub(lastStats) >= time.Second {
			lastStats = now
			c.m.lag.Set(float64(r.Stats().Lag))
		}
		b.reset()
		return err
	}
	for {
		// Take what is already there without waiting.
		for b.n < c.cfg.BatchSize {
			select {
			case d, ok := <-msgs:
				if !ok {
					return flush()
				}
				c.add(b, &d)
				continue
			default:
			}
			break
		}
		if b.n >= c.cfg.BatchSize {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		// Wait for more, but not past the idle or age deadline.
		var wait <-chan time.Time
		if b.n > 0 {
			d := min(c.cfg.IdleWait, c.cfg.BatchWait-c.cfg.Now().Sub(b.first))
			if d <= 0 {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			timer.Reset(d)
			wait = timer.C
		}
		select {
		case d, ok := <-msgs:
			if !ok {
				return flush()
			}
			c.add(b, &d)
		case <-wait:
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return flush()
		}
		if wait != nil && !timer.Stop() {
			select { // drain a fired timer so the next Reset starts clean
			case <-timer.C:
			default:
			}
		}
	}
}

// batch is the messages in hand, decoded.
type batch struct {
	n       int
	first   time.Time
	events  []streamrec.Event
	items   []streamrec.ItemMeta
	dead    []kafka.Message
	reasons []string
	times   []time.Time     // record timestamps, for the latency metric
	commits []kafka.Message // the last message per topic/partition
}

func newBatch(size int) *batch {
	return &batch{events: make([]streamrec.Event, 0, size), times: make([]time.Time, 0, size)}
}

func (b *batch) reset() {
	clear(b.events) // drop references to strings and maps
	b.n, b.events, b.items, b.dead, b.reasons, b.times, b.commits =
		0, b.events[:0], b.items[:0], b.dead[:0], b.reasons[:0], b.times[:0], b.commits[:0]
}

func (c *Consumer) add(b *batch, d *decoded) {
	m := &d.m
	if b.n == 0 {
		b.first = c.cfg.Now()
	}
	b.n++
	c.m.consumed.Inc()
	b.times = append(b.times, m.Time)
	// Remember the newest message per topic/partition for the commit.
	found := false
	for i := range b.commits {
		if b.commits[i].Partition == m.Partition && b.commits[i].Topic == m.Topic {
			if m.Offset > b.commits[i].Offset {
				b.commits[i] = commitOnly(*m)
			}
			found = true
			break
		}
	}
	if !found {
		b.commits = append(b.commits, commitOnly(*m))
	}

	err := d.err
	switch {
	case err == nil && d.item:
		b.items = append(b.items, d.it)
		return
	case err == nil:
		b.events = append(b.events, d.e)
		return
	}
	reason := streamrec.ReasonMalformed
	var de *streamrec.DecodeError
	if errors.As(err, &de) {
		reason = de.Reason
	}
	b.reasons = append(b.reasons, reason)
	b.dead = append(b.dead, kafka.Message{
		Key:   m.Key,
		Value: m.Value,
		Headers: []kafka.Header{
			{Key: HeaderError, Value: []byte(err.Error())},
			{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
			{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
			{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
		},
	})
}

// commitOnly keeps what CommitMessages needs, so the batch holds no payloads.
func commitOnly(m kafka.Message) kafka.Message {
	return kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
}

// flush writes the batch (dead letters, items, events), then commits it.
func (c *Consumer) flush(ctx context.Context, r *kafka.Reader, dlq *kafka.Writer, b *batch) error {
	start := c.cfg.Now()
	if len(b.dead) > 0 {
		if err := c.retry(ctx, opDLQ, func(ctx context.Context) error {
			return dlq.WriteMessages(ctx, b.dead...)
		}); err != nil {
			return c.abandon(b, err)
		}
		for i, reason := range b.reasons {
			c.m.dlq.WithLabelValues(reason).Inc()
			c.log.Debug().Str("reason", reason).Str("topic", string(b.dead[i].Headers[1].Value)).
				Str("offset", string(b.dead[i].Headers[3].Value)).Msg("dead-lettered")
		}
	}
	if len(b.items) > 0 {
		if err := c.retry(ctx, opItems, func(ctx context.Context) error {
			return c.w.PutItems(ctx, b.items)
		}); err != nil {
			return c.abandon(b, err)
		}
		c.m.items.Add(float64(len(b.items)))
	}
	if len(b.events) > 0 {
		var res features.ApplyResult
		if err := c.retry(ctx, opApply, func(ctx context.Context) error {
			var err error
			res, err = c.w.Apply(ctx, b.events)
			return err
		}); err != nil {
			return c.abandon(b, err)
		}
		c.m.applied.Add(float64(res.Applied))
		c.m.duplicates.Add(float64(res.Duplicates))
	}
	done := c.cfg.Now()
	c.m.writeSecs.Observe(done.Sub(start).Seconds())
	c.m.batchSize.Observe(float64(b.n))
	for _, t := range b.times {
		if d := done.Sub(t); d >= 0 && d < time.Hour {
			c.m.latency.Observe(d.Seconds())
		}
	}
	if c.cfg.AfterWrite != nil {
		if err := c.cfg.AfterWrite(ctx, b.events); err != nil {
			return fmt.Errorf("%w: %w", errStopped, err)
		}
	}
	if err := c.retry(ctx, opCommit, func(ctx context.Context) error {
		return r.CommitMessages(ctx, b.commits...)
	}); err != nil {
		return c.abandon(b, err)
	}
	for _, m := range b.commits {
		c.m.committed.WithLabelValues(m.Topic, strconv.Itoa(m.Partition)).Set(float64(m.Offset + 1))
	}
	c.m.batches.Inc()
	return nil
}

// abandon is called when the write context ended (shutdown past
// DrainTimeout) before the batch was written and committed: its messages are
// redelivered to the next consumer, so nothing is lost.
func (c *Consumer) abandon(b *batch, err error) error {
	c.log.Warn().Err(err).Int("messages", b.n).Msg("shutdown before the batch was committed; it will be redelivered")
	return errAbandoned
}

// retry runs fn until it succeeds or ctx ends, with capped exponential
// back-off and jitter between attempts and rate-limited logs.
func (c *Consumer) retry(ctx context.Context, op string, fn func(context.Context) error) error {
	backoff := c.newBackoff()
	var lastLog time.Time
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			c.failing.Store(nil)
			if attempt > 0 {
				c.log.Info().Str("op", op).Int("retries", attempt).Msg("recovered")
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		c.m.retries.WithLabelValues(op).Inc()
		ferr := fmt.Errorf("ingest: %s failing: %w", op, err)
		c.failing.Store(&ferr)
		if now := c.cfg.Now(); attempt == 0 || now.Sub(lastLog) >= 10*time.Second {
			lastLog = now
			c.log.Warn().Err(err).Str("op", op).Int("retries", attempt+1).Dur("backoff", backoff.next).
				Msg("write failed; retrying with back-off")
		}
		if !backoff.wait(ctx) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
}

type backoff struct {
	min, max, next time.Duration
}

func (c *Consumer) newBackoff() *backoff {
	return &backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff, next: c.cfg.MinBackoff}
}

func (b *backoff) reset() { b.next = b.min }

// wait sleeps for the current back-off with jitter (between half and all of
// it), doubles it up to the cap, and reports false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rateLogger adapts kafka-go's error logger to zerolog, at most one line per
// interval (counting the ones it drops).
type rateLogger struct {
	log      zerolog.Logger
	what     string
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
	dropped  int
}

func newRateLogger(log zerolog.Logger, what string, interval time.Duration) *rateLogger {
	return &rateLogger{log: log, what: what, interval: interval}
}

func (l *rateLogger) Printf(format string, args ...any) {
	// An idle long-poll fetch that outlives kafka-go's read deadline ends in
	// "i/o timeout"; the reader reconnects and loses nothing, so it is not
	// worth a warning every few seconds on a quiet topic.
	if strings.Contains(format, "i/o timeout") || strings.Contains(fmt.Sprint(args...), "i/o timeout") {
		l.log.Debug().Str("source", l.what).Msgf(format, args...)
		return
	}
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < l.interval {
		l.dropped++
		l.mu.Unlock()
		return
	}
	dropped := l.dropped
	l.last, l.dropped = now, 0
	l.mu.Unlock()
	l.log.Warn().Str("source", l.what).Int("suppressed", dropped).Msgf(format, args...)
}
