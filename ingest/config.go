package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
)

// Config configures a Consumer. Start from DefaultConfig.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// Topic carries events (product.md §2); ItemsTopic item metadata;
	// DLQTopic receives what fails to decode.
	Topic      string
	ItemsTopic string // empty: do not consume item metadata
	DLQTopic   string
	// Group is the Kafka consumer group.
	Group string
	// Dialer connects the consumer (group and fetches) and Transport the
	// dead-letter writer to the brokers; they carry the TLS and SASL
	// settings (kafkasec.Config builds both). Nil is kafka-go's default:
	// plain TCP, no SASL. The caller owns Transport and closes its idle
	// connections after Run.
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper

	// BatchSize caps the messages written to the store in one batch.
	BatchSize int
	// BatchWait is the longest a message waits in a batch; IdleWait flushes a
	// batch as soon as no message arrived for that long. Together they keep
	// event → store latency low at low rates and batches full at high ones.
	BatchWait time.Duration
	IdleWait  time.Duration

	// Decoder settings (product.md §2).
	Types    streamrec.EventTypes
	MinValue float64
	MaxValue float64
	MaxBytes int

	// Back-off between retries while the store or Kafka is down: capped
	// exponential with jitter.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// DrainTimeout bounds the final write and commit after ctx ends.
	DrainTimeout time.Duration

	// Group session settings (kafka-go).
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	HeartbeatInterval time.Duration
	// QueueCapacity is the reader's internal message queue.
	QueueCapacity int

	// AfterWrite, when set, runs after a batch is durable in the store and
	// before its offsets are committed. A non-nil error stops Run at once,
	// without committing: tests use it to simulate a crash at that point.
	AfterWrite func(ctx context.Context, events []streamrec.Event) error

	// Now is the clock used for latency metrics.
	Now func() time.Time
}

// DefaultConfig returns the contract defaults (product.md §1, §2, §8).
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		Topic:             streamrec.TopicEvents,
		ItemsTopic:        streamrec.TopicItems,
		DLQTopic:          streamrec.TopicDLQ,
		Group:             "streamrec-ingest",
		BatchSize:         1000,
		BatchWait:         20 * time.Millisecond,
		IdleWait:          5 * time.Millisecond,
		Types:             streamrec.DefaultEventTypes(),
		MinValue:          streamrec.DefaultMinValue,
		MaxValue:          streamrec.DefaultMaxValue,
		MaxBytes:          streamrec.DefaultMaxBytes,
		MinBackoff:        50 * time.Millisecond,
		MaxBackoff:        5 * time.Second,
		DrainTimeout:      10 * time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		HeartbeatInterval: time.Second,
		QueueCapacity:     4096,
		Now:               time.Now,
	}
}

// Validate checks c field by field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ingest: "+format, args...)) }
	if len(c.Brokers) == 0 {
		bad("no brokers")
	}
	for _, b := range c.Brokers {
		if b == "" {
			bad("empty broker address")
		}
	}
	if c.Topic == "" || c.DLQTopic == "" || c.Group == "" {
		bad("topic, DLQ topic and group are required")
	}
	if c.Topic == c.DLQTopic || c.ItemsTopic == c.DLQTopic || c.Topic == c.ItemsTopic {
		bad("topic %q, items topic %q and DLQ topic %q must differ", c.Topic, c.ItemsTopic, c.DLQTopic)
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		bad("batch size must be 1–100000, got %d", c.BatchSize)
	}
	if c.BatchWait <= 0 || c.IdleWait <= 0 {
		bad("batch wait and idle wait must be positive")
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		bad("back-off bounds [%s, %s] are not a positive interval", c.MinBackoff, c.MaxBackoff)
	}
	if c.DrainTimeout <= 0 {
		bad("drain timeout must be positive")
	}
	if c.SessionTimeout <= 0 || c.RebalanceTimeout <= 0 || c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout {
		bad("session timeout, rebalance timeout and heartbeat interval must be positive, heartbeat below session")
	}
	if c.QueueCapacity < 1 {
		bad("queue capacity must be positive")
	}
	if c.Now == nil {
		bad("clock (Now) is nil")
	}
	if err := c.decoder().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("ingest: %w", err))
	}
	if math.IsNaN(c.MinValue) || math.IsNaN(c.MaxValue) {
		bad("value range is NaN")
	}
	return errors.Join(errs...)
}

func (c *Config) decoder() *streamrec.Decoder {
	return &streamrec.Decoder{Types: c.Types, MinValue: c.MinValue, MaxValue: c.MaxValue, MaxBytes: c.MaxBytes}
}
