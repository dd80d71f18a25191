package dataset

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
)

// kafkaReadTimeout bounds the wait for one message below the high-water
// mark (it only expires on offset gaps such as transaction markers).
const kafkaReadTimeout = 5 * time.Second

// parseKafkaSpec splits "BROKER[,BROKER…]/TOPIC".
func parseKafkaSpec(arg string) (brokers []string, topic string, err error) {
	i := strings.LastIndexByte(arg, '/')
	if i <= 0 || i == len(arg)-1 {
		return nil, "", fmt.Errorf("%w: kafka spec %q: want kafka:BROKER[,BROKER…]/TOPIC", ErrSpec, arg)
	}
	for _, b := range strings.Split(arg[:i], ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return nil, "", fmt.Errorf("%w: kafka spec %q names no broker", ErrSpec, arg)
	}
	return brokers, arg[i+1:], nil
}

// loadKafka reads every partition of a topic from its first offset up to the
// high-water mark at call time, decoding each record with the contract
// decoder. Events outside [From, To) are dropped later by finish.
func loadKafka(ctx context.Context, arg string, o *Options) (*Data, error) {
	brokers, topic, err := parseKafkaSpec(arg)
	if err != nil {
		return nil, err
	}
	d := &Data{Name: "kafka:" + topic}
	dialer := o.KafkaDialer
	parts, err := lookupPartitions(ctx, dialer, brokers, topic)
	if err != nil {
		return nil, err
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	dec := o.decoder()
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if !o.From.IsZero() {
		from = o.From.UnixMilli()
	}
	if !o.To.IsZero() {
		to = o.To.UnixMilli()
	}
	ranges, err := offsetRanges(ctx, dialer, parts)
	if err != nil {
		return nil, err
	}
	for _, p := range ranges {
		err := readPartition(ctx, dialer, brokers, p, func(m kafka.Message) {
			e, err := dec.Decode(m.Value)
			switch {
			case err != nil:
				d.reject(fmt.Errorf("%s/%d@%d: %w", p.Topic, p.ID, m.Offset, err))
			case e.TS >= from && e.TS < to: // finish filters too; this bounds memory
				d.Events = append(d.Events, e)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if topic == streamrec.TopicEvents {
		if err := loadKafkaItems(ctx, d, dialer, brokers); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// loadKafkaItems reads the catalogue from streamrec.items when that topic
// exists; the latest record of an item wins.
func loadKafkaItems(ctx context.Context, d *Data, dialer *kafka.Dialer, brokers []string) error {
	parts, err := lookupPartitions(ctx, dialer, brokers, streamrec.TopicItems)
	if err != nil {
		return nil // no catalogue topic: events only
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	ranges, err := offsetRanges(ctx, dialer, parts)
	if err != nil {
		return fmt.Errorf("catalogue: %w", err)
	}
	index := map[string]int{}
	for _, p := range ranges {
		err := readPartition(ctx, dialer, brokers, p, func(m kafka.Message) {
			it, err := streamrec.DecodeItem(m.Value, streamrec.DefaultMaxBytes)
			if err != nil {
				return // a bad catalogue record is not an event; ingest dead-letters it
			}
			if i, ok := index[it.Item]; ok {
				d.Items[i] = it
				return
			}
			index[it.Item] = len(d.Items)
			d.Items = append(d.Items, it)
		})
		if err != nil {
			return fmt.Errorf("catalogue: %w", err)
		}
	}
	return nil
}

// lookupPartitions asks the brokers in turn for topic's partitions; a nil
// dialer is plain TCP.
func lookupPartitions(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string) ([]kafka.Partition, error) {
	if dialer == nil {
		dialer = &kafka.Dialer{Timeout: 10 * time.Second}
	}
	var errs []error
	for _, b := range brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		parts, err := dialer.LookupPartitions(dctx, "tcp", b, topic)
		cancel()
		if err == nil {
			if len(parts) == 0 {
				return nil, fmt.Errorf("topic %q has no partitions", topic)
			}
			return parts, nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	return nil, fmt.Errorf("look up partitions of %q: %w", topic, errors.Join(errs...))
}

// partitionRange is a partition with its offsets at call time.
type partitionRange struct {
	kafka.Partition
	first, last int64 // last is the high-water mark (one past the newest)
}

// offsetRanges reads every partition's first offset and high-water mark up
// front, so that the whole read is of the topic as it was at call time.
func offsetRanges(ctx context.Context, dialer *kafka.Dialer, parts []kafka.Partition) ([]partitionRange, error) {
	if dialer == nil {
		dialer = kafka.DefaultDialer
	}
	out := make([]partitionRange, 0, len(parts))
	for _, p := range parts {
		leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := dialer.DialLeader(dctx, "tcp", leader, p.Topic, p.ID)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("partition %d: dial leader %s: %w", p.ID, leader, err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("partition %d: read offsets: %w", p.ID, err)
		}
		out = append(out, partitionRange{p, first, last})
	}
	return out, nil
}

// readPartition hands every record of a partition range to fn.
func readPartition(ctx context.Context, dialer *kafka.Dialer, brokers []string, p partitionRange, fn func(kafka.Message)) error {
	first, last := p.first, p.last
	if last <= first {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   brokers,
		Dialer:    dialer,
		Topic:     p.Topic,
		Partition: p.ID,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return fmt.Errorf("partition %d: seek %d: %w", p.ID, first, err)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, kafkaReadTimeout)
		m, err := r.ReadMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) && r.Offset() >= last {
				return nil
			}
			return fmt.Errorf("partition %d: read at offset %d (high-water mark %d): %w", p.ID, r.Offset(), last, err)
		}
		fn(m)
		if m.Offset >= last-1 {
			return nil
		}
	}
}
