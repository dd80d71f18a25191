package ingest_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/broker"
)

// TestKafkaDownMidStream stops the broker while the consumer runs and
// starts it again (same address, same data directory): the consumer
// reconnects, rejoins its group and finishes with exact counters.
func TestKafkaDownMidStream(t *testing.T) {
	dir := t.TempDir()
	cfg := broker.DefaultConfig()
	cfg.Addr, cfg.Partitions, cfg.DataDir = "127.0.0.1:0", 2, dir
	b, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addrs()[0]
	evs := genEvents(2000, 40, 80, 9)
	msgs := encode(evs)
	produce(t, addr, streamrec.TopicEvents, msgs[:1000])

	s := newStore(t)
	ccfg := testConfig(addr)
	ccfg.BatchSize = 100
	c := startConsumer(t, ccfg, s)
	waitFor(t, 30*time.Second, "the first 1000 events applied", func() bool { return globalEvents(t, s) == 1000 })

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the consumer sees the broker gone
	cfg.Addr = addr
	for attempt := 0; ; attempt++ { // the port is briefly in TIME_WAIT or taken
		if b, err = broker.Start(cfg, zerolog.Nop()); err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("restart the broker on %s: %v", addr, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer b.Close()
	produce(t, addr, streamrec.TopicEvents, msgs[1000:])
	waitFor(t, 60*time.Second, "all events applied after the broker came back", func() bool { return globalEvents(t, s) >= int64(len(evs)) })
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, s, groundTruth(evs))
}
