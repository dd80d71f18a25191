package serve

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamrec/streamrec"
)

// TestKafkaEvents writes a batch over the wire to a Kafka-protocol broker
// (kfake) and reads it back: every event once, keyed by user, a user's
// events on one partition in order.
func TestKafkaEvents(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, streamrec.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	w, err := NewKafkaEvents(cluster.ListenAddrs(), streamrec.TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []Message
	for i := 0; i < 30; i++ {
		user := fmt.Sprintf("u%d", i%4)
		msgs = append(msgs, Message{Key: []byte(user), Value: []byte(fmt.Sprintf(`{"type":"view","user":%q,"item":"i%02d","ts":%d}`, user, i, 1700000000+i))})
	}
	if err := w.WriteEvents(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(streamrec.TopicEvents),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	partitionOf := map[string]int32{}
	lastTS := map[string]string{}
	got := 0
	for got < len(msgs) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d events: %v", got, len(msgs), err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			k := string(r.Key)
			if p, ok := partitionOf[k]; ok && p != r.Partition {
				t.Errorf("user %s on partitions %d and %d", k, p, r.Partition)
			}
			partitionOf[k] = r.Partition
			v := string(r.Value)
			if v <= lastTS[k] { // same-length values, increasing ts and item
				t.Errorf("user %s out of order: %s after %s", k, v, lastTS[k])
			}
			lastTS[k] = v
		})
	}
	if got != len(msgs) {
		t.Fatalf("read %d events, wrote %d", got, len(msgs))
	}
}
