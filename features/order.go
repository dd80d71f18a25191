package features

import (
	"sort"
	"strconv"

	"github.com/streamrec/streamrec"
)

// Exactly-once rules shared by both backends:
//
//   - An event's source partition is "topic/partition" of its Position. Each
//     key (user, item, global, popularity) keeps, per source partition, the
//     highest offset applied to it; an event changes a key only when its
//     offset is above that key's mark, and then raises the mark.
//   - Within one batch, events of the same partition are applied in offset
//     order (a batch that lists them out of order is reordered within that
//     partition, keeping the interleaving with other partitions), so a
//     duplicate inside a batch is skipped like a redelivered one.
//   - An event without a topic (Position zero value) has no identity: it is
//     always applied. Kafka and replay always set one.
//   - An event weight <= 0 counts as 1 (explicit events weigh 1).

// partKey identifies a source partition.
type partKey struct {
	topic string
	part  int32
}

// PartitionKey is the "topic/partition" name of p's source partition, as the
// Redis marks spell it.
func PartitionKey(p streamrec.Position) string {
	return p.Topic + "/" + strconv.FormatInt(int64(p.Partition), 10)
}

// weight is the popularity and implicit weight of e.
func weight(e *streamrec.Event) float64 {
	if e.Kind == streamrec.Explicit || e.Weight <= 0 {
		return 1
	}
	return e.Weight
}

// inOrder reports whether offsets strictly increase within each partition.
func inOrder(events []streamrec.Event) bool {
	type last struct {
		k   partKey
		off int64
	}
	var stack [8]last
	lasts := stack[:0]
next:
	for i := range events {
		p := &events[i].Pos
		if p.Topic == "" {
			continue
		}
		for j := range lasts {
			if lasts[j].k.part == p.Partition && lasts[j].k.topic == p.Topic {
				if p.Offset <= lasts[j].off {
					return false
				}
				lasts[j].off = p.Offset
				continue next
			}
		}
		lasts = append(lasts, last{partKey{p.Topic, p.Partition}, p.Offset})
	}
	return true
}

// ordered returns events with each partition's events in offset order (stable
// for equal offsets), keeping the slots each partition occupies. It returns
// events itself when they are already in order (the common case, no copy).
func ordered(events []streamrec.Event) []streamrec.Event {
	if inOrder(events) {
		return events
	}
	out := make([]streamrec.Event, len(events))
	copy(out, events)
	groups := map[partKey][]int{}
	var keys []partKey
	for i := range events {
		p := events[i].Pos
		if p.Topic == "" {
			continue
		}
		k := partKey{p.Topic, p.Partition}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range keys {
		idx := groups[k]
		evs := make([]streamrec.Event, len(idx))
		for j, i := range idx {
			evs[j] = events[i]
		}
		sort.SliceStable(evs, func(a, b int) bool { return evs[a].Pos.Offset < evs[b].Pos.Offset })
		for j, i := range idx {
			out[i] = evs[j]
		}
	}
	return out
}
