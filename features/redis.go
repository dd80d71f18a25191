package features

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
)

// Redis is the production Store. Key layout (product.md §3); every key
// carries a hash tag, so a script call that carries one key group touches ONE
// slot and the store works on Redis Cluster:
//
//	sr:{u:<id>}          hash  s: user counters packed as 8 float64s, little
//	                           endian: n (events), ne / ni (explicit /
//	                           implicit), es (explicit sum), iw (implicit
//	                           weight), f / l (first / last ts, Unix ms),
//	                           x (TTL refresh stamp, writer's Unix ms); and
//	                           o:<topic>/<partition> (highest applied offset)
//	sr:{u:<id>}:recent   list  recent items, newest first, capped, each once
//	sr:{u:<id>}:seen     set   every item the user interacted with
//	sr:{u:<id>}:vec      string user vector: int64 version + float32s, little endian
//	sr:{i:<id>}          hash  item metadata: t (title), c (categories
//	                           joined by \x1f)
//	sr:{g}               hash  global: n, ne, es, l, o:<topic>/<partition>
//	sr:{g}:users         set   every user id ever applied (Global.Users)
//	sr:{pop}             zset  item -> Σ w·2^((ts−t0)/halfLife): ZREVRANGE is
//	                           the decayed order; Global.Items is its ZCARD
//	sr:{pop}:off         hash  t0 (epoch, Unix ms), hl (half-life, ms), lt (last
//	                           ts), o:<topic>/<partition>
//	sr:{pop}:cat         hash  item -> categories (for Popular by category)
//	sr:{pop}:item        hash  item -> the item's counters packed as 9
//	                           float64s, little endian (as users, with p /
//	                           pt in place of x: popularity decayed to pt,
//	                           Unix ms); guarded by the marks of sr:{pop}:off
//
// Counters are packed into one field (users' s, an item's field of
// sr:{pop}:item) because every argument and reply
// element of a script's redis.call costs Redis about as much CPU as a small
// command: one packed field instead of nine makes the per-key read and write
// of the apply script short. redis-cli shows it as bytes; Item and User
// decode it.
//
// Ids are escaped inside keys ('%' → %25, '{' → %7B, '}' → %7D) so an id
// never ends a hash tag early; members (items in sets, lists) are raw ids.
//
// Writes (redis_apply.go): lua/apply.lua applies key groups (one user's
// hash+recent+seen; the popularity slot: ranking, marks and item counters;
// the global pair), each exactly once per source partition via its
// o:<partition> marks. Item counters live in the popularity slot, which
// every event writes anyway, so a batch updates all its items with one
// HMGET and one HSET instead of two commands per item (on Redis Cluster
// that slot's node takes all item writes, as it took the ranking's). Apply
// pipelines all calls of a batch in one round trip. Over a *redis.Client
// (one node) a call carries all groups of up to 256 events (short, so reads
// interleave); over a cluster client each call carries one group (one
// slot). The script's arguments after the first four are one MessagePack
// array (see packArgs).
//
// Per-user keys (hash, recent, seen) get their TTL (Config.UserTTL, default
// 90 days) on creation and refreshed on a write once the last refresh is
// older than 1% of the TTL (so a user expires 89–90 days after the last
// write); the vector key on every vector write. Item, global and popularity
// keys do not expire.
//
// Popularity range: scores are w·2^((ts−t0)/halfLife) with t0 the first
// event's time. When an event would pass 700 half-lives after t0 (about 13
// years at the default 7 days) the script rescales every score to a new t0
// first (one O(items) pass), so doubles (max 2^1023) never overflow; an event
// more than ~1000 half-lives before t0 adds 0, which is its decayed value.
type Redis struct {
	c        redis.UniversalClient
	cfg      Config
	log      zerolog.Logger
	hlMillis float64
	ttlArg   string
	hlArg    string
	capArg   string
	perGroup bool
	// tracker, when the client's client-side cache is a Tracker, tells
	// which users are unchanged since their last read without a round trip.
	tracker *Tracker
}

var _ Store = (*Redis)(nil)

var (
	//go:embed lua/apply.lua
	luaApply string
	//go:embed lua/popular.lua
	luaPopular string
	//go:embed lua/user.lua
	luaUser string
)

type script struct {
	src, sha string
}

func newScript(src string) script {
	h := sha1.Sum([]byte(src))
	return script{src, hex.EncodeToString(h[:])}
}

var (
	scriptApply   = newScript(luaApply)
	scriptPopular = newScript(luaPopular)
	scriptUser    = newScript(luaUser)
	allScripts    = []script{scriptApply, scriptPopular, scriptUser}
)

// Keys of the layout above.
const (
	keyGlobal  = "sr:{g}"
	keyUsers   = "sr:{g}:users"
	keyPop     = "sr:{pop}"
	keyPopMeta = "sr:{pop}:off"
	keyPopCats = "sr:{pop}:cat"
	// keyPopItems holds the item counters (item -> field s of an item).
	keyPopItems = "sr:{pop}:item"
	catSep      = "\x1f"
	maxPerCall  = 1000 // events per script call (Lua unpack limits)
	// eventsPerBatchCall is the chunk a single-node call applies at once.
	eventsPerBatchCall = 256
	popularScan        = 50000 // most ranking members Popular scans for a category
)

// escapeID makes id safe inside a hash tag.
func escapeID(id string) string {
	if !strings.ContainsAny(id, "%{}") {
		return id
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UserKey is the hash key of user id; the user's other keys add a suffix.
func UserKey(id string) string { return "sr:{u:" + escapeID(id) + "}" }

// ItemKey is the hash key of item id.
func ItemKey(id string) string { return "sr:{i:" + escapeID(id) + "}" }

// NewRedis returns a store over client (a plain, failover or cluster
// client) and loads its scripts. Close closes the client.
func NewRedis(ctx context.Context, client redis.UniversalClient, cfg Config, log zerolog.Logger) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Redis{c: client, cfg: cfg, log: log,
		hlMillis: float64(cfg.HalfLife.Milliseconds()),
		ttlArg:   strconv.FormatInt(cfg.UserTTL.Milliseconds(), 10),
		hlArg:    strconv.FormatInt(cfg.HalfLife.Milliseconds(), 10),
		capArg:   strconv.Itoa(cfg.RecentCap),
	}
	if c, ok := client.(*redis.Client); ok {
		if t, ok := c.Options().ClientSideCache.(*Tracker); ok && c.Options().Protocol == 3 {
			r.tracker = t
		}
	}
	if err := r.loadScripts(ctx); err != nil {
		return nil, err
	}
	if hl, err := client.HGet(ctx, keyPopMeta, "hl").Result(); err == nil && hl != r.hlArg {
		log.Warn().Str("stored_ms", hl).Str("configured_ms", r.hlArg).
			Msg("popularity half-life differs from the one the ranking was built with; new events use the configured one")
	}
	return r, nil
}

func (r *Redis) loadScripts(ctx context.Context) error {
	for _, s := range allScripts {
		sha, err := r.c.ScriptLoad(ctx, s.src).Result()
		if err != nil {
			return fmt.Errorf("features: redis: load scripts: %w", err)
		}
		if sha != s.sha {
			return fmt.Errorf("features: redis: script digest %s, expected %s", sha, s.sha)
		}
	}
	return nil
}

// Client is the store's Redis client.
func (r *Redis) Client() redis.UniversalClient { return r.c }

// Close closes the client.
func (r *Redis) Close() error { return r.c.Close() }

// PutItems stores item metadata in the item hashes and the categories beside
// the popularity ranking.
func (r *Redis) PutItems(ctx context.Context, items []streamrec.ItemMeta) error {
	if len(items) == 0 {
		return nil
	}
	p := r.c.Pipeline()
	for i := range items {
		m := &items[i]
		cats := strings.Join(m.Categories, catSep)
		p.HSet(ctx, ItemKey(m.Item), "t", m.Title, "c", cats)
		if cats == "" {
			p.HDel(ctx, keyPopCats, m.Item)
		} else {
			p.HSet(ctx, keyPopCats, m.Item, cats)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("features: redis: put %d items: %w", len(items), err)
	}
	return nil
}

func encodeVector(version int64, v []float32) []byte {
	b := make([]byte, 8+4*len(v))
	binary.LittleEndian.PutUint64(b, uint64(version))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[8+4*i:], math.Float32bits(x))
	}
	return b
}

func decodeVector(b []byte) ([]float32, int64, error) {
	if len(b) < 8 || (len(b)-8)%4 != 0 {
		return nil, 0, fmt.Errorf("vector of %d bytes", len(b))
	}
	version := int64(binary.LittleEndian.Uint64(b))
	v := make([]float32, (len(b)-8)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[8+4*i:]))
	}
	return v, version, nil
}

// PutUserVectors stores user embeddings, each with the user TTL.
func (r *Redis) PutUserVectors(ctx context.Context, version int64, vectors map[string][]float32) error {
	if len(vectors) == 0 {
		return nil
	}
	p := r.c.Pipeline()
	for id, v := range vectors {
		p.Set(ctx, UserKey(id)+":vec", encodeVector(version, v), r.cfg.UserTTL)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("features: redis: put %d user vectors: %w", len(vectors), err)
	}
	return nil
}

// Packed counters (field s): float64 positions.
const (
	sEvents = iota
	sExplicit
	sImplicit
	sExplicitSum
	sImplicitWeight
	sFirst
	sLast
	sUserLen   = 8 // then x (TTL refresh stamp)
	sPop       = 7
	sPopTS     = 8
	sItemLen   = 9
	fieldStats = "s"
)

// unpackStats decodes field s of a user or item hash into want float64s.
func unpackStats(s string, want int) ([]float64, error) {
	if len(s) != 8*want {
		return nil, fmt.Errorf("counters field of %d bytes, expected %d", len(s), 8*want)
	}
	v := make([]float64, want)
	for i := range v {
		v[i] = math.Float64frombits(binary.LittleEndian.Uint64([]byte(s[8*i : 8*i+8])))
	}
	return v, nil
}

// parseCounters reads the counters of a user or item hash's field s.
func parseCounters(v []float64) Counters {
	return Counters{Events: int64(v[sEvents]), Explicit: int64(v[sExplicit]), Implicit: int64(v[sImplicit]),
		ExplicitSum: v[sExplicitSum], ImplicitWeight: v[sImplicitWeight],
		FirstTS: int64(v[sFirst]), LastTS: int64(v[sLast])}
}

type userCmds struct {
	hash   *redis.MapStringStringCmd
	recent *redis.StringSliceCmd
	vec    *redis.StringCmd
}

func (r *Redis) queueUser(ctx context.Context, p redis.Pipeliner, id string) userCmds {
	k := UserKey(id)
	return userCmds{
		hash:   p.HGetAll(ctx, k),
		recent: p.LRange(ctx, k+":recent", 0, -1),
		vec:    p.Get(ctx, k+":vec"),
	}
}

func (c userCmds) user(id string) (User, bool, error) {
	h, err := c.hash.Result()
	if err != nil {
		return User{}, false, err
	}
	s, ok := h[fieldStats]
	if !ok {
		return User{}, false, nil
	}
	v, err := unpackStats(s, sUserLen)
	if err != nil {
		return User{}, false, fmt.Errorf("user %q: %w", id, err)
	}
	u := User{ID: id, Counters: parseCounters(v)}
	if u.Recent, err = c.recent.Result(); err != nil {
		return User{}, false, err
	}
	if len(u.Recent) == 0 {
		u.Recent = nil
	}
	b, err := c.vec.Bytes()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return User{}, false, err
	default:
		if u.Vector, u.VectorVersion, err = decodeVector(b); err != nil {
			return User{}, false, fmt.Errorf("user %q: %w", id, err)
		}
	}
	return u, true, nil
}

// ignoreNil drops redis.Nil from a pipeline's error (a missing vector).
func ignoreNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// User returns a user's features in one pipelined round trip.
func (r *Redis) User(ctx context.Context, id string) (User, bool, error) {
	p := r.c.Pipeline()
	c := r.queueUser(ctx, p, id)
	if _, err := p.Exec(ctx); ignoreNil(err) != nil {
		return User{}, false, fmt.Errorf("features: redis: user %q: %w", id, err)
	}
	u, ok, err := c.user(id)
	if err != nil {
		return User{}, false, fmt.Errorf("features: redis: user %q: %w", id, err)
	}
	return u, ok, nil
}

// UserSeen returns a user's features and seen-set in one round trip: the
// serving read (lua/user.lua) for a caller that holds no earlier state.
func (r *Redis) UserSeen(ctx context.Context, id string) (User, []string, bool, error) {
	st, _, err := r.UserStateSince(ctx, id, "")
	return st.User, st.Seen, st.Known, err
}

// UserStateSince reads the user's state with lua/user.lua in one round
// trip; when since is current the reply is a single integer.
func (r *Redis) UserStateSince(ctx context.Context, id string, since Stamp) (UserState, bool, error) {
	reads := [1]StateRead{{ID: id, Since: since}}
	err := r.ReadUserStates(ctx, reads[:])
	if err == nil {
		err = reads[0].Err
	}
	return reads[0].State, reads[0].Changed, err
}

// ReadUserStates runs lua/user.lua for every read in one pipeline (on a
// cluster client, go-redis sends each node its share), so concurrent
// requests can share the round trip and Redis reads them with one syscall.
// Over a client with a Tracker, the reads of users it knows current are
// answered at once and the others go out as single calls side by side.
func (r *Redis) ReadUserStates(ctx context.Context, reads []StateRead) error {
	err := r.readUserStates(ctx, reads)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted or flushed its script cache.
		if err = r.loadScripts(ctx); err == nil {
			err = r.readUserStates(ctx, reads)
		}
	}
	if err != nil {
		err = fmt.Errorf("features: redis: user states: %w", err)
		for i := range reads {
			reads[i].Err = err
		}
	}
	return err
}

func (r *Redis) readUserStates(ctx context.Context, reads []StateRead) error {
	if r.tracker != nil {
		return r.readUserStatesTracked(ctx, reads)
	}
	return r.readUserStatesScript(ctx, reads)
}

// UserCurrent reports, without I/O, whether the user's state is known to be
// the one with stamp still: over a client with a Tracker, when Redis has
// not invalidated the user since the read that found it. False means "ask
// UserStateSince", not "changed".
func (r *Redis) UserCurrent(id string, stamp Stamp) bool {
	return r.tracker != nil && r.tracker.current(escapeID(id), stamp)
}

// readUserStatesTracked answers the reads of users the tracker knows
// current without Redis, and the others with the script, telling the
// tracker what each read found.
func (r *Redis) readUserStatesTracked(ctx context.Context, reads []StateRead) error {
	type staleRead struct {
		i    int
		key  string // escaped id
		mark readMark
	}
	var stale []staleRead
	for i := range reads {
		rd := &reads[i]
		esc := escapeID(rd.ID)
		if r.tracker.current(esc, rd.Since) { // "" is current for a user still unknown
			rd.State, rd.Changed, rd.Err = UserState{}, false, nil
			continue
		}
		stale = append(stale, staleRead{i, esc, r.tracker.readStarted(esc)})
	}
	if len(stale) == 0 {
		return nil
	}
	// Single commands, not a pipeline: go-redis turns tracking on for its
	// main pool only, and only what a tracked connection reads is
	// invalidated. Several stale reads go out side by side.
	errs := make([]error, len(stale))
	var wg sync.WaitGroup
	for j, sr := range stale {
		read := func() {
			rd, k := &reads[sr.i], "sr:{u:"+sr.key+"}"
			cmd := evalUser(ctx, r.c, k, rd.Since)
			if errs[j] = cmd.Err(); errs[j] != nil {
				return
			}
			if rd.decode(cmd.Val()); rd.Err != nil {
				return
			}
			stamp := rd.Since // the script answered "unchanged"
			if rd.Changed {
				stamp = rd.State.Stamp
			}
			r.tracker.readDone(sr.key, stamp, sr.mark)
		}
		if len(stale) == 1 {
			read()
		} else {
			wg.Go(read)
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err // a redis.Error as it is, so NOSCRIPT is recognised
		}
	}
	return nil
}

func (r *Redis) readUserStatesScript(ctx context.Context, reads []StateRead) error {
	p := r.c.Pipeline()
	cmds := make([]*redis.Cmd, len(reads))
	for i := range reads {
		k := UserKey(reads[i].ID)
		cmds[i] = evalUser(ctx, p, k, reads[i].Since)
	}
	if _, err := p.Exec(ctx); err != nil {
		// Exec returns the first failed command's error; a reply that is
		// an error for one user only (none is expected) fails the batch too.
		return err
	}
	for i := range reads {
		rd := &reads[i]
		rd.decode(cmds[i].Val())
	}
	return nil
}

// evalUser calls lua/user.lua for the user of hash key k on c (the client,
// or a pipeline).
func evalUser(ctx context.Context, c redis.Scripter, k string, since Stamp) *redis.Cmd {
	return c.EvalSha(ctx, scriptUser.sha, []string{k, k + ":recent", k + ":vec", k + ":seen"}, string(since))
}

// decode fills rd's outputs from lua/user.lua's reply.
func (rd *StateRead) decode(reply any) {
	rd.State, rd.Changed, rd.Err = decodeUserState(rd.ID, rd.Since, reply)
	if rd.Err != nil {
		rd.Err = fmt.Errorf("features: redis: user %q: %w", rd.ID, rd.Err)
	}
}

// decodeUserState reads lua/user.lua's reply.
func decodeUserState(id string, since Stamp, reply any) (UserState, bool, error) {
	switch v := reply.(type) {
	case int64:
		switch v {
		case 0: // unknown user
			return UserState{}, since != "", nil
		case 1:
			return UserState{}, false, nil
		}
		return UserState{}, false, fmt.Errorf("user script replied %d", v)
	case []any:
		if len(v) != 5 {
			return UserState{}, false, fmt.Errorf("user script replied %d elements, expected 5", len(v))
		}
		stats, _ := v[0].(string)
		vh, _ := v[1].(string)
		vals, err := unpackStats(stats, sUserLen)
		if err != nil {
			return UserState{}, false, err
		}
		st := UserState{User: User{ID: id, Counters: parseCounters(vals)}, Stamp: Stamp(stats + vh), Known: true}
		if st.User.Recent, err = stringsOf(v[2]); err != nil {
			return UserState{}, false, fmt.Errorf("recent: %w", err)
		}
		if len(st.User.Recent) == 0 {
			st.User.Recent = nil
		}
		if vec, ok := v[3].(string); ok {
			if st.User.Vector, st.User.VectorVersion, err = decodeVector([]byte(vec)); err != nil {
				return UserState{}, false, err
			}
		}
		if st.Seen, err = stringsOf(v[4]); err != nil {
			return UserState{}, false, fmt.Errorf("seen: %w", err)
		}
		return st, st.Stamp != since, nil
	}
	return UserState{}, false, fmt.Errorf("user script replied %T", reply)
}

func stringsOf(v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("got %T, expected an array", v)
	}
	out := make([]string, len(a))
	for i, x := range a {
		if out[i], ok = x.(string); !ok {
			return nil, fmt.Errorf("element %d is %T, expected a string", i, x)
		}
	}
	return out, nil
}

// Seen reports whether user has interacted with each of items.
func (r *Redis) Seen(ctx context.Context, user string, items []string) ([]bool, error) {
	if len(items) == 0 {
		return []bool{}, nil
	}
	out, err := r.c.SMIsMember(ctx, UserKey(user)+":seen", toAny(items)...).Result()
	if err != nil {
		return nil, fmt.Errorf("features: redis: seen of user %q: %w", user, err)
	}
	return out, nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// Item returns an item's features: metadata from its hash, counters from
// the popularity slot, in one pipelined round trip.
func (r *Redis) Item(ctx context.Context, id string) (Item, bool, error) {
	p := r.c.Pipeline()
	hc := p.HGetAll(ctx, ItemKey(id))
	sc := p.HGet(ctx, keyPopItems, id)
	if _, err := p.Exec(ctx); ignoreNil(err) != nil {
		return Item{}, false, fmt.Errorf("features: redis: item %q: %w", id, err)
	}
	h, err := hc.Result()
	if err != nil {
		return Item{}, false, fmt.Errorf("features: redis: item %q: %w", id, err)
	}
	s, err := sc.Result()
	if ignoreNil(err) != nil {
		return Item{}, false, fmt.Errorf("features: redis: item %q counters: %w", id, err)
	}
	if len(h) == 0 && err != nil {
		return Item{}, false, nil
	}
	it := Item{ID: id, Title: h["t"]}
	if err == nil {
		v, err := unpackStats(s, sItemLen)
		if err != nil {
			return Item{}, false, fmt.Errorf("features: redis: item %q: %w", id, err)
		}
		it.Counters = parseCounters(v)
		it.Popularity, it.PopularityTS = v[sPop], int64(v[sPopTS])
	}
	if c := h["c"]; c != "" {
		it.Categories = strings.Split(c, catSep)
	}
	return it, true, nil
}

// Popular returns up to n items by popularity decayed to ts (Unix ms; ts <=
// 0 means the last event time), optionally only those in category (scanning
// at most the top 50,000 of the ranking).
func (r *Redis) Popular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error) {
	if n <= 0 {
		return nil, nil
	}
	p := r.c.Pipeline()
	meta := p.HMGet(ctx, keyPopMeta, "t0", "hl", "lt")
	var top *redis.ZSliceCmd
	var cat *redis.Cmd
	if category == "" {
		top = p.ZRevRangeWithScores(ctx, keyPop, 0, int64(n-1))
	} else {
		cat = p.EvalSha(ctx, scriptPopular.sha, []string{keyPop, keyPopCats}, n, category, popularScan)
	}
	if _, err := p.Exec(ctx); err != nil {
		if cat != nil && redis.HasErrorPrefix(cat.Err(), "NOSCRIPT") {
			if lerr := r.loadScripts(ctx); lerr != nil {
				return nil, lerr
			}
			return r.Popular(ctx, n, category, ts)
		}
		return nil, fmt.Errorf("features: redis: popular: %w", err)
	}
	mv := meta.Val()
	num := func(i int) float64 {
		if s, ok := mv[i].(string); ok {
			f, _ := strconv.ParseFloat(s, 64)
			return f
		}
		return 0
	}
	t0, hl, lt := num(0), num(1), num(2)
	if hl <= 0 {
		hl = r.hlMillis
	}
	if ts <= 0 {
		ts = int64(lt)
	}
	scale := math.Exp2((t0 - float64(ts)) / hl)
	var out []streamrec.Scored
	if top != nil {
		for _, z := range top.Val() {
			id, _ := z.Member.(string)
			out = append(out, streamrec.Scored{Item: id, Score: z.Score * scale})
		}
		return out, nil
	}
	vals, err := cat.Slice()
	if err != nil {
		return nil, fmt.Errorf("features: redis: popular in %q: %w", category, err)
	}
	for i := 0; i+1 < len(vals); i += 2 {
		id, _ := vals[i].(string)
		s, _ := vals[i+1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("features: redis: popular score %q: %w", s, err)
		}
		out = append(out, streamrec.Scored{Item: id, Score: f * scale})
	}
	return out, nil
}

// Global returns the store-wide counters.
func (r *Redis) Global(ctx context.Context) (Global, error) {
	p := r.c.Pipeline()
	h := p.HMGet(ctx, keyGlobal, "n", "ne", "es", "l")
	users := p.SCard(ctx, keyUsers)
	items := p.ZCard(ctx, keyPop)
	if _, err := p.Exec(ctx); err != nil {
		return Global{}, fmt.Errorf("features: redis: global: %w", err)
	}
	v := h.Val()
	num := func(i int) float64 {
		if s, ok := v[i].(string); ok {
			f, _ := strconv.ParseFloat(s, 64)
			return f
		}
		return 0
	}
	return Global{Events: int64(num(0)), Explicit: int64(num(1)), ExplicitSum: num(2), LastTS: int64(num(3)),
		Users: users.Val(), Items: items.Val()}, nil
}

// EachUser calls fn for every live user, walking the global user set in
// pages of 256 users read with one pipelined round trip each.
func (r *Redis) EachUser(ctx context.Context, fn func(User) error) error {
	var cursor uint64
	done := map[string]bool{} // SSCAN may return an id more than once
	for {
		all, next, err := r.c.SScan(ctx, keyUsers, cursor, "", 256).Result()
		if err != nil {
			return fmt.Errorf("features: redis: scan users: %w", err)
		}
		ids := all[:0]
		for _, id := range all {
			if !done[id] {
				done[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			p := r.c.Pipeline()
			cmds := make([]userCmds, len(ids))
			for i, id := range ids {
				cmds[i] = r.queueUser(ctx, p, id)
			}
			if _, err := p.Exec(ctx); ignoreNil(err) != nil {
				return fmt.Errorf("features: redis: read users: %w", err)
			}
			for i, id := range ids {
				u, ok, err := cmds[i].user(id)
				if err != nil {
					return fmt.Errorf("features: redis: %w", err)
				}
				if !ok {
					continue // expired
				}
				if err := fn(u); err != nil {
					return err
				}
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// UserTTL is how long user id's keys have left before they expire (0 for an
// unknown user), by the Redis server's clock.
func (r *Redis) UserTTL(ctx context.Context, id string) (time.Duration, error) {
	d, err := r.c.PTTL(ctx, UserKey(id)).Result()
	if err != nil {
		return 0, fmt.Errorf("features: redis: ttl of user %q: %w", id, err)
	}
	if d < 0 {
		return 0, nil
	}
	return d, nil
}

// ServerClockTTL reports that TTLs follow the Redis server's clock, not
// Config.Now.
func (r *Redis) ServerClockTTL() bool { return true }
