package features

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/streamrec/streamrec"
)

func kindArg(k streamrec.Kind) string {
	if k == streamrec.Explicit {
		return "e"
	}
	return "i"
}

// summaryMin is the fewest events for which a group carries a summary:
// below it the summary costs the script more (in arguments to parse) than
// the per-event loop it saves, since the events are sent anyway.
const summaryMin = 16

// group is one key's (or the global/popularity keys') events of a chunk.
type group struct {
	typ  string // u, p, g (see lua/apply.lua)
	keys []string
	idx  []int // 0-based event numbers in the chunk
}

// Apply writes a batch with one pipelined round trip. Events are cut into
// chunks of at most 1000; for each chunk every user, the popularity slot
// (ranking and item counters) and the global counters form a key group. On a single
// node one script call applies a whole chunk; on a cluster (or any client
// that is not a *redis.Client) each group is its own call, touching one slot.
// The script skips events at or below each key's mark for their partition,
// so a retried or redelivered batch is safe. Errors are returned for the
// caller to retry.
func (r *Redis) Apply(ctx context.Context, events []streamrec.Event) (ApplyResult, error) {
	if len(events) == 0 {
		return ApplyResult{}, nil
	}
	events = ordered(events)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var applied int
		applied, err = r.exec(ctx, events)
		if err == nil {
			return ApplyResult{Applied: applied, Duplicates: len(events) - applied}, nil
		}
		if !strings.Contains(err.Error(), "NOSCRIPT") {
			break
		}
		// Redis restarted or failed over without our scripts: load them
		// and run the batch again (idempotent).
		if lerr := r.loadScripts(ctx); lerr != nil {
			return ApplyResult{}, lerr
		}
	}
	return ApplyResult{}, fmt.Errorf("features: redis: apply %d events: %w", len(events), err)
}

// SingleSlotCalls makes every script call carry one key group (one slot), as
// on Redis Cluster, even over a single-node client. Tests use it to run the
// cluster path; it costs throughput.
func (r *Redis) SingleSlotCalls(on bool) { r.perGroup = on }

func (r *Redis) oneSlotPerCall() bool {
	if r.perGroup {
		return true
	}
	_, single := r.c.(*redis.Client)
	return !single
}

// eventArgs appends the 8 script fields of e.
func eventArgs(dst []any, e *streamrec.Event, parts map[partKey]string) []any {
	part, off := "", int64(0) // no identity: always applied (see order.go)
	if e.Pos.Topic != "" {
		k := partKey{e.Pos.Topic, e.Pos.Partition}
		p, ok := parts[k]
		if !ok {
			p = PartitionKey(e.Pos)
			parts[k] = p
		}
		part, off = p, e.Pos.Offset
	}
	v := 0.0
	if e.Kind == streamrec.Explicit {
		v = e.Value
	}
	return append(dst, part, off, kindArg(e.Kind), weight(e), v, e.TS, e.User, e.Item)
}

func (r *Redis) exec(ctx context.Context, events []streamrec.Event) (int, error) {
	p := r.c.Pipeline()
	var cmds []*redis.Cmd
	var globalAt [][]int // per call: result positions of global groups
	perGroup := r.oneSlotPerCall()
	parts := map[partKey]string{}
	head := []any{r.capArg, r.ttlArg, r.hlArg, r.cfg.Now().UnixMilli()}
	local := make([]int, len(events)) // batch index -> call's event number, 0 = not in the call
	var inCall []int                  // batch indexes in the call, in order
	var calls []group                 // the call's groups (idx rewritten later)
	var args []any                    // the call's packed arguments
	var packErr error

	flush := func() {
		if len(calls) == 0 {
			return
		}
		args = append(args[:0], len(inCall))
		for _, i := range inCall {
			args = eventArgs(args, &events[i], parts)
		}
		var keys []string
		var gl []int
		for gi, g := range calls {
			args = append(args, g.typ, len(g.idx))
			for _, i := range g.idx {
				args = append(args, local[i])
			}
			args = r.summaryArgs(args, &g, events, parts)
			keys = append(keys, g.keys...)
			if g.typ == "g" {
				gl = append(gl, gi)
			}
		}
		packed, err := packArgs(nil, args)
		if err != nil {
			packErr = err
		}
		cmds = append(cmds, p.EvalSha(ctx, scriptApply.sha, keys, append(head[:len(head):len(head)], packed)...))
		globalAt = append(globalAt, gl)
		for _, i := range inCall {
			local[i] = 0
		}
		inCall, calls = inCall[:0], calls[:0]
	}
	// A script blocks Redis while it runs: single-node calls carry groups
	// of about eventsPerBatchCall events so serving reads interleave. Groups
	// of one call share its events table (users and items come in event
	// order; each popularity group shares a call with its global group).
	for _, g := range r.groups(events) {
		switch {
		case perGroup, g.typ == "p":
			flush()
		case g.typ == "g":
		case len(inCall) >= eventsPerBatchCall:
			flush()
		}
		for _, i := range g.idx {
			if local[i] == 0 {
				inCall = append(inCall, i)
				local[i] = len(inCall)
			}
		}
		calls = append(calls, g)
	}
	flush()
	if packErr != nil {
		return 0, packErr
	}
	if _, err := p.Exec(ctx); err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return 0, c.Err()
			}
		}
		return 0, err
	}
	applied := 0
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if err != nil {
			return 0, err
		}
		for _, k := range globalAt[i] {
			if k < len(res) {
				applied += int(res[k])
			}
		}
	}
	return applied, nil
}

// summaryArgs appends g's summary (see parse_summary in lua/apply.lua): what
// the group does when none of its events was applied before, so the script
// applies it without looking at each event.
func (r *Redis) summaryArgs(args []any, g *group, events []streamrec.Event, parts map[partKey]string) []any {
	if len(g.idx) < summaryMin {
		return append(args, -1)
	}
	// Partitions with their lowest and highest offsets.
	type span struct {
		k        partKey
		min, max int64
	}
	var spans []span
next:
	for _, i := range g.idx {
		p := &events[i].Pos
		if p.Topic == "" {
			continue
		}
		for j := range spans {
			if spans[j].k.part == p.Partition && spans[j].k.topic == p.Topic {
				if p.Offset <= spans[j].max {
					// A duplicate inside the batch: no summary, the
					// script goes event by event.
					return append(args, -1)
				}
				spans[j].max = p.Offset
				continue next
			}
		}
		spans = append(spans, span{partKey{p.Topic, p.Partition}, p.Offset, p.Offset})
	}
	args = append(args, len(spans))
	for _, sp := range spans {
		name, ok := parts[sp.k]
		if !ok {
			name = PartitionKey(streamrec.Position{Topic: sp.k.topic, Partition: sp.k.part})
			parts[sp.k] = name
		}
		args = append(args, name, sp.min, sp.max)
	}
	var c Counters
	maxTS := int64(math.MinInt64)
	for _, i := range g.idx {
		e := &events[i]
		if g.typ == "u" {
			count(&c, e, weight(e))
		} else {
			c.Events++
			if e.Kind == streamrec.Explicit {
				c.Explicit++
				c.ExplicitSum += e.Value
			}
		}
		maxTS = max(maxTS, e.TS)
	}
	switch g.typ {
	case "u":
		args = append(args, c.Events, c.Explicit, c.Implicit, c.ExplicitSum, c.ImplicitWeight, c.FirstTS, c.LastTS)
		// Distinct items, newest first.
		var list []any
		seen := make(map[string]bool, len(g.idx))
		for k := len(g.idx) - 1; k >= 0; k-- {
			if it := events[g.idx[k]].Item; !seen[it] {
				seen[it] = true
				list = append(list, it)
			}
		}
		return append(append(args, len(list)), list...)
	case "p":
		inc := map[string]float64{}
		var order []string
		for _, i := range g.idx {
			e := &events[i]
			if _, ok := inc[e.Item]; !ok {
				order = append(order, e.Item)
			}
			inc[e.Item] += weight(e) * math.Exp2(float64(e.TS-maxTS)/r.hlMillis)
		}
		args = append(args, maxTS, len(order))
		for _, it := range order {
			args = append(args, it, inc[it])
		}
		return args
	default: // g
		args = append(args, c.Events, c.Explicit, c.ExplicitSum, maxTS)
		var users []any
		seen := make(map[string]bool, len(g.idx))
		for _, i := range g.idx {
			if u := events[i].User; !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
		return append(append(args, len(users)), users...)
	}
}

// groups forms the key groups of a batch: one per user, then the popularity
// and the global groups; a key with more than maxPerCall events gets
// consecutive groups.
func (r *Redis) groups(events []streamrec.Event) []group {
	users := map[string]int{}
	var out []group
	add := func(index map[string]int, id string, typ string, keys func() []string, i int) {
		gi, ok := index[id]
		if !ok || len(out[gi].idx) == maxPerCall {
			gi = len(out)
			index[id] = gi
			out = append(out, group{typ: typ, keys: keys()})
		}
		out[gi].idx = append(out[gi].idx, i)
	}
	for i := range events {
		e := &events[i]
		add(users, e.User, "u", func() []string {
			k := UserKey(e.User)
			return []string{k, k + ":recent", k + ":seen"}
		}, i)
	}
	for start := 0; start < len(events); start += maxPerCall {
		all := make([]int, 0, min(maxPerCall, len(events)-start))
		for i := start; i < min(start+maxPerCall, len(events)); i++ {
			all = append(all, i)
		}
		out = append(out, group{typ: "p", keys: []string{keyPop, keyPopMeta, keyPopItems}, idx: all})
		out = append(out, group{typ: "g", keys: []string{keyGlobal, keyUsers}, idx: all})
	}
	return out
}

// packArgs appends args (strings, ints, int64s, float64s) to dst as one
// MessagePack array, which the apply script unpacks with cmsgpack.unpack:
// integers as int64, floats as float64 (exact), strings as str.
func packArgs(dst []byte, args []any) ([]byte, error) {
	dst = binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(len(args)))
	for _, a := range args {
		switch v := a.(type) {
		case string:
			dst = append(binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(len(v))), v...)
		case int:
			dst = binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(int64(v)))
		case int64:
			dst = binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
		case float64:
			dst = binary.BigEndian.AppendUint64(append(dst, 0xcb), math.Float64bits(v))
		default:
			return nil, fmt.Errorf("pack script argument of type %T", a)
		}
	}
	return dst, nil
}
