// Package produce publishes a loaded data set to Kafka: the item catalogue
// to streamrec.items, then the events to streamrec.events keyed by user, in
// time order and in batches, optionally paced by a rate or by event time,
// re-timed to the wall clock and looped (the live demo). It backs
// `streamrec produce` and the demo producer of `streamrec run`.
package produce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/dataset"
)

// MessageWriter is what Run writes to; *kafka.Writer meets it. Messages
// carry their topic.
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Options configure a producer run.
type Options struct {
	Brokers []string
	// Topic receives the events (default streamrec.events); ItemsTopic the
	// catalogue (default streamrec.items; "-" skips the catalogue).
	Topic, ItemsTopic string
	// Rate caps the events per second; 0 sends as fast as possible.
	Rate float64
	// Speedup replays event time N times faster than it happened; 0 is off.
	// With both Rate and Speedup, each event waits for the later of the two.
	Speedup float64
	// Retime shifts each event's ts to the wall clock at send time (the live
	// demo does this so that event time is now).
	Retime bool
	// Loop starts again from the first event after the last (until ctx ends).
	Loop bool
	// Progress receives a progress bar when it is a terminal, otherwise a
	// line every ProgressEvery; nil shows none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// BatchSize is the most events per write (default 1000).
	BatchSize int
	// MaxRetries bounds the retries of one failed write (default 8), with
	// capped exponential back-off from RetryBackoff (default 100 ms) to
	// MaxBackoff (default 5 s).
	MaxRetries   int
	RetryBackoff time.Duration
	MaxBackoff   time.Duration
	// FlushTimeout bounds the final flush after ctx ends (default 10 s).
	FlushTimeout time.Duration
	// Writer, when set, is used instead of a kafka-go writer on Brokers.
	Writer MessageWriter
	// Transport carries the kafka-go writer's TLS and SASL settings
	// (kafkasec.Config builds one); nil is kafka-go's default transport,
	// plain TCP without SASL. The caller owns it and closes its idle
	// connections after Run. Unused with Writer.
	Transport kafka.RoundTripper
	// Now and Sleep are the clock (defaults: time.Now and a timer that
	// stops with ctx).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultOptions publishes to the contract's topics on a local broker.
func DefaultOptions() Options {
	return Options{
		Brokers:       []string{"127.0.0.1:9092"},
		Topic:         streamrec.TopicEvents,
		ItemsTopic:    streamrec.TopicItems,
		ProgressEvery: 5 * time.Second,
		BatchSize:     1000,
		MaxRetries:    8,
		RetryBackoff:  100 * time.Millisecond,
		MaxBackoff:    5 * time.Second,
		FlushTimeout:  10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if len(o.Brokers) == 0 {
		o.Brokers = d.Brokers
	}
	if o.Topic == "" {
		o.Topic = d.Topic
	}
	if o.ItemsTopic == "" {
		o.ItemsTopic = d.ItemsTopic
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = d.ProgressEvery
	}
	if o.BatchSize <= 0 {
		o.BatchSize = d.BatchSize
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = d.MaxRetries
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = d.RetryBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = d.MaxBackoff
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = d.FlushTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o
}

// Validate reports every bad field at once.
func (o Options) Validate() error {
	var errs []error
	if o.Writer == nil {
		for _, b := range o.Brokers {
			if strings.TrimSpace(b) == "" {
				errs = append(errs, errors.New("brokers: empty address"))
			}
		}
	}
	if o.Rate < 0 || o.Rate != o.Rate || o.Rate > 1e9 {
		errs = append(errs, fmt.Errorf("rate: must be 0 (unlimited) or a positive number of events/s, got %g", o.Rate))
	}
	if o.Speedup < 0 || o.Speedup != o.Speedup || o.Speedup > 1e12 {
		errs = append(errs, fmt.Errorf("speedup: must be 0 (off) or positive, got %g", o.Speedup))
	}
	if o.BatchSize < 0 || o.BatchSize > 1_000_000 {
		errs = append(errs, fmt.Errorf("batch size: must be 1–1000000, got %d", o.BatchSize))
	}
	if o.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries: must not be negative, got %d", o.MaxRetries))
	}
	if o.Topic == o.ItemsTopic && o.Topic != "" {
		errs = append(errs, fmt.Errorf("topics: events and items both go to %q", o.Topic))
	}
	return errors.Join(errs...)
}

// Stats sum up a run.
type Stats struct {
	Events  int64 // events acknowledged by the broker
	Items   int64 // catalogue entries acknowledged
	Batches int64 // successful writes
	Retries int64 // failed writes that were retried
	Loops   int   // completed passes over the data
	Elapsed time.Duration
}

// EventsPerSec is the event throughput of the run.
func (s Stats) EventsPerSec() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

// NewWriter returns the kafka-go writer Run uses by default: messages carry
// their topic, keys are hashed to partitions as the rest of streamrec does,
// and writes are synchronous so that a user's events stay in order.
func NewWriter(brokers []string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Hash{},
		BatchSize:              10000,
		BatchBytes:             64 << 20,
		BatchTimeout:           time.Millisecond,
		RequiredAcks:           kafka.RequireAll,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		AllowAutoTopicCreation: true,
	}
}

// Run publishes d: the catalogue first, then the events in time order. It
// returns when the data is sent (and ctx has not ended, unless Loop), or
// when ctx ends, after flushing what it had buffered; then the error is
// ctx's. A write that still fails after MaxRetries ends the run.
func Run(ctx context.Context, d *dataset.Data, opts Options, log zerolog.Logger) (Stats, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return Stats{}, fmt.Errorf("produce: %w", err)
	}
	p := &producer{opts: opts, log: log, start: opts.Now()}
	p.w = opts.Writer
	if p.w == nil {
		kw := NewWriter(opts.Brokers)
		if t, ok := opts.Transport.(*kafka.Transport); !ok || t != nil { // a typed nil keeps the default
			kw.Transport = opts.Transport
		}
		defer kw.Close()
		p.w = kw
	}
	err := p.run(ctx, d)
	p.stats.Elapsed = opts.Now().Sub(p.start)
	p.progress.done(p.stats)
	ev := log.Info()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		ev = log.Error().Err(err)
	}
	ev.Str("data", d.Name).Int64("events", p.stats.Events).Int64("items", p.stats.Items).
		Int64("batches", p.stats.Batches).Int64("retries", p.stats.Retries).Int("loops", p.stats.Loops).
		Dur("elapsed", p.stats.Elapsed).Float64("events_per_sec", p.stats.EventsPerSec()).Msg("produce finished")
	return p.stats, err
}

type producer struct {
	opts     Options
	log      zerolog.Logger
	w        MessageWriter
	start    time.Time
	stats    Stats
	buf      []kafka.Message
	arena    []byte
	progress progress
}

func (p *producer) run(ctx context.Context, d *dataset.Data) error {
	o := &p.opts
	p.log.Info().Str("data", d.Name).Int("events", len(d.Events)).Int("items", len(d.Items)).
		Str("topic", o.Topic).Float64("rate", o.Rate).Float64("speedup", o.Speedup).
		Bool("retime", o.Retime).Bool("loop", o.Loop).Msg("produce starting")
	if o.ItemsTopic != "-" && len(d.Items) > 0 {
		if err := p.sendItems(ctx, d.Items); err != nil {
			return err
		}
	}
	total := int64(len(d.Events))
	if o.Loop {
		total = -1
	}
	p.progress = newProgress(o.Progress, total, o.ProgressEvery, o.Now)
	if len(d.Events) == 0 {
		return ctx.Err()
	}
	for {
		if err := p.pass(ctx, d.Events); err != nil {
			return err
		}
		p.stats.Loops++
		if !o.Loop {
			return nil
		}
	}
}

// sendItems publishes the catalogue keyed by item.
func (p *producer) sendItems(ctx context.Context, items []streamrec.ItemMeta) error {
	now := p.opts.Now().UnixMilli()
	for i := 0; i < len(items); {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.buf = p.buf[:0]
		for ; i < len(items) && len(p.buf) < p.opts.BatchSize; i++ {
			m := items[i]
			if p.opts.Retime || m.TS == 0 {
				m.TS = now
			}
			val := streamrec.AppendItemJSON(nil, &m)
			p.buf = append(p.buf, kafka.Message{Topic: p.opts.ItemsTopic, Key: []byte(m.Item), Value: val})
		}
		n := int64(len(p.buf))
		if err := p.write(ctx); err != nil {
			return fmt.Errorf("publish items: %w", err)
		}
		p.stats.Items += n
	}
	return nil
}

// pass sends the events once, paced by Rate and Speedup.
func (p *producer) pass(ctx context.Context, evs []streamrec.Event) error {
	o := &p.opts
	base := o.Now()
	t0 := evs[0].TS
	p.buf = p.buf[:0]
	for i := range evs {
		if err := ctx.Err(); err != nil {
			return p.stop(ctx, err)
		}
		if o.Rate > 0 || o.Speedup > 0 {
			var dueSec float64
			if o.Rate > 0 {
				dueSec = float64(i) / o.Rate
			}
			if o.Speedup > 0 {
				dueSec = max(dueSec, float64(evs[i].TS-t0)/1000/o.Speedup)
			}
			due := time.Duration(min(dueSec, maxDue.Seconds()) * float64(time.Second))
			if wait := due - o.Now().Sub(base); wait > 0 {
				// Send what is due before sleeping, so pacing is not
				// delayed by batching.
				if err := p.flush(ctx); err != nil {
					return err
				}
				if err := o.Sleep(ctx, wait); err != nil {
					return p.stop(ctx, err)
				}
			}
		}
		e := evs[i]
		if o.Retime {
			e.TS = o.Now().UnixMilli()
		}
		// Keys and values live in one arena per batch: no allocation per
		// event once the arena has grown (old arrays stay valid when it
		// grows, as earlier messages still point into them).
		k0 := len(p.arena)
		p.arena = append(p.arena, e.User...)
		v0 := len(p.arena)
		p.arena = streamrec.AppendJSON(p.arena, &e)
		p.buf = append(p.buf, kafka.Message{Topic: o.Topic, Key: p.arena[k0:v0:v0], Value: p.arena[v0:len(p.arena):len(p.arena)]})
		if len(p.buf) >= o.BatchSize {
			if err := p.flush(ctx); err != nil {
				return err
			}
		}
	}
	return p.flush(ctx)
}

// stop flushes what is buffered after ctx ended and returns cause.
func (p *producer) stop(ctx context.Context, cause error) error {
	if len(p.buf) > 0 {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.FlushTimeout)
		defer cancel()
		if err := p.flushWith(fctx); err != nil {
			return errors.Join(cause, fmt.Errorf("final flush: %w", err))
		}
	}
	return cause
}

func (p *producer) flush(ctx context.Context) error {
	if len(p.buf) == 0 {
		return nil
	}
	if err := p.flushWith(ctx); err != nil {
		if ctx.Err() != nil {
			return p.stop(ctx, ctx.Err())
		}
		return err
	}
	return nil
}

func (p *producer) flushWith(ctx context.Context) error {
	n := int64(len(p.buf))
	if err := p.write(ctx); err != nil {
		return err
	}
	p.stats.Events += n
	p.progress.add(n, p.stats)
	return nil
}

// write sends p.buf, retrying failed messages with capped exponential
// back-off, and empties p.buf on success. A write is never interrupted by
// ctx; ctx only stops the waiting between retries.
func (p *producer) write(ctx context.Context) error {
	backoff := p.opts.RetryBackoff
	msgs := p.buf
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := p.w.WriteMessages(wctx, msgs...)
		cancel()
		if err == nil {
			p.stats.Batches++
			p.buf = p.buf[:0]
			p.arena = p.arena[:0] // the writer is done with the bytes
			return nil
		}
		// A timed-out write may still read its bytes: start a new arena.
		p.arena = nil
		// Retry only the messages that failed, in their order.
		var werr kafka.WriteErrors
		if errors.As(err, &werr) && len(werr) == len(msgs) {
			failed := msgs[:0:0]
			for i, e := range werr {
				if e != nil {
					failed = append(failed, msgs[i])
				}
			}
			if len(failed) > 0 {
				msgs = failed
			}
		}
		if attempt >= p.opts.MaxRetries {
			return fmt.Errorf("write %d messages: giving up after %d attempts: %w", len(msgs), attempt+1, err)
		}
		p.stats.Retries++
		p.log.Warn().Err(err).Int("attempt", attempt+1).Int("messages", len(msgs)).Dur("backoff", backoff).Msg("produce: write failed, retrying")
		if serr := p.opts.Sleep(ctx, backoff); serr != nil {
			return fmt.Errorf("write %d messages: %w (stopped while retrying: %w)", len(msgs), err, serr)
		}
		backoff = min(2*backoff, p.opts.MaxBackoff)
	}
}

// maxDue caps how far ahead an event is scheduled (a tiny speedup over a
// long span would otherwise overflow a Duration).
const maxDue = 100_000 * time.Hour

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// progress shows a bar on a terminal, or a line every interval elsewhere.
type progress struct {
	bar      *progressbar.ProgressBar
	w        io.Writer
	total    int64
	every    time.Duration
	now      func() time.Time
	start    time.Time
	last     time.Time
	lastSent int64
}

func newProgress(w io.Writer, total int64, every time.Duration, now func() time.Time) progress {
	p := progress{w: w, total: total, every: every, now: now, start: now()}
	p.last = p.start
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("produce"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
		)
	}
	return p
}

func (p *progress) add(n int64, s Stats) {
	switch {
	case p.bar != nil:
		_ = p.bar.Add64(n)
	case p.w != nil:
		if now := p.now(); now.Sub(p.last) >= p.every {
			rate := float64(s.Events-p.lastSent) / now.Sub(p.last).Seconds()
			p.line(s, rate)
			p.last, p.lastSent = now, s.Events
		}
	}
}

func (p *progress) line(s Stats, rate float64) {
	if p.total > 0 {
		fmt.Fprintf(p.w, "produce: %d/%d events (%.1f%%), %.0f events/s\n", s.Events, p.total, 100*float64(s.Events)/float64(p.total), rate)
	} else {
		fmt.Fprintf(p.w, "produce: %d events (%d loops), %.0f events/s\n", s.Events, s.Loops, rate)
	}
}

func (p *progress) done(s Stats) {
	switch {
	case p.bar != nil:
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	case p.w != nil:
		p.line(s, s.EventsPerSec())
	}
}
