package serve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaEvents writes POST /v1/events batches to the events topic, keyed by
// user (so a user's events stay in order on one partition), and returns once
// every broker in the ISR has acknowledged them.
type KafkaEvents struct {
	w *kafka.Writer
}

var _ EventWriter = (*KafkaEvents)(nil)

// NewKafkaEvents returns a writer to topic on brokers (host:port each),
// over kafka-go's default transport (plain TCP, no SASL).
func NewKafkaEvents(brokers []string, topic string) (*KafkaEvents, error) {
	return NewKafkaEventsTransport(brokers, topic, nil)
}

// NewKafkaEventsTransport is NewKafkaEvents over transport, which carries the
// TLS and SASL settings (kafkasec.Config builds one); nil is kafka-go's
// default transport. The caller owns transport and closes its idle
// connections after Close.
func NewKafkaEventsTransport(brokers []string, topic string, transport kafka.RoundTripper) (*KafkaEvents, error) {
	if len(brokers) == 0 {
		return nil, errors.New("serve: kafka events: no brokers")
	}
	if topic == "" {
		return nil, errors.New("serve: kafka events: empty topic")
	}
	if t, ok := transport.(*kafka.Transport); ok && t == nil {
		transport = nil // a typed nil would not fall back to the default
	}
	return &KafkaEvents{w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    transport,
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		// A request's events go out as one batch per partition: no waiting
		// for more messages to fill it.
		BatchSize:    10000,
		BatchBytes:   16 << 20,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  3,
		WriteTimeout: 5 * time.Second,
		ReadTimeout:  5 * time.Second,
	}}, nil
}

// WriteEvents writes msgs and waits for the acknowledgement.
func (k *KafkaEvents) WriteEvents(ctx context.Context, msgs []Message) error {
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafka.Message{Key: m.Key, Value: m.Value}
	}
	if err := k.w.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("kafka: writing %d events to %s: %w", len(msgs), k.w.Topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (k *KafkaEvents) Close() error { return k.w.Close() }
