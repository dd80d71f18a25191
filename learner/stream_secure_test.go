package learner

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/ingest/kafkasec/kafkasectest"
)

// TestStreamLearnerOverTLSAndSASL: with StreamConfig.Dialer, the learner's
// consumer group, partition readers and items-topic reader all reach a
// broker that requires TLS (a private CA) and SASL SCRAM-SHA-512.
func TestStreamLearnerOverTLSAndSASL(t *testing.T) {
	b := kafkasectest.Start(t, 2)
	sec := b.Config(kafkasec.MechanismSCRAMSHA512)
	d := synthetic(t, 30, 50, 400)
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr), Balancer: &kafka.Hash{}, Transport: kafkasectest.Transport(t, sec),
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	msgs := []kafka.Message{{Topic: streamrec.TopicItems, Key: []byte("i-titled"), Value: []byte(`{"item":"i-titled","title":"Over TLS"}`)}}
	for i := range d.Events {
		msgs = append(msgs, kafka.Message{Topic: streamrec.TopicEvents, Key: []byte(d.Events[i].User), Value: streamrec.AppendJSON(nil, &d.Events[i])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	cfg := streamConfig(b.Addr)
	cfg.ItemsTopic = streamrec.TopicItems
	cfg.Dialer = kafkasectest.Dialer(t, sec)
	l, err := NewStreamLearner(cfg, nil, NewMemorySnapshots(5), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(rctx) }()
	waitFor(t, "every event trained", func() bool { return l.Status().Events == int64(len(d.Events)) })
	waitFor(t, "the item's title from the items topic", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		it, ok, err := l.tr.Store().Item(context.Background(), "i-titled")
		return err == nil && ok && it.Title == "Over TLS"
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
