package serve

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/ingest/kafkasec/kafkasectest"
)

// TestKafkaEventsOverTLSAndSASL: POST /v1/events' writer reaches a broker
// that requires TLS (a private CA) and SASL PLAIN through its transport;
// the events read back over the same security. With a wrong password the
// write fails before the request budget ends.
func TestKafkaEventsOverTLSAndSASL(t *testing.T) {
	b := kafkasectest.Start(t, 1)
	sec := b.Config(kafkasec.MechanismPlain)
	w, err := NewKafkaEventsTransport([]string{b.Addr}, streamrec.TopicEvents, kafkasectest.Transport(t, sec))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []Message
	for i := range 5 {
		msgs = append(msgs, Message{Key: []byte("u1"), Value: fmt.Appendf(nil, `{"type":"view","user":"u1","item":"i%d","ts":%d}`, i, 1700000000+i)})
	}
	if err := w.WriteEvents(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr}, Topic: streamrec.TopicEvents, Partition: 0,
		Dialer: kafkasectest.Dialer(t, sec), MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i, want := range msgs {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read event %d: %v", i, err)
		}
		if string(m.Value) != string(want.Value) || string(m.Key) != "u1" {
			t.Errorf("event %d = %s %s, want %s", i, m.Key, m.Value, want.Value)
		}
	}

	bad := sec
	bad.Password = "wrong"
	wb, err := NewKafkaEventsTransport([]string{b.Addr}, streamrec.TopicEvents, kafkasectest.Transport(t, bad))
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := wb.WriteEvents(wctx, msgs[:1]); err == nil || wctx.Err() != nil {
		t.Fatalf("write with a wrong password: %v (context: %v), want a failure before the timeout", err, wctx.Err())
	}
}
