package learner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// SnapshotStore keeps published snapshots for serving and rollback.
type SnapshotStore interface {
	// Publish stores blob as version info.Version, makes it current, drops
	// versions beyond the keep limit and notifies watchers.
	Publish(ctx context.Context, info SnapshotInfo, blob []byte) error
	// Current returns the current version and its blob; ErrNoSnapshot when none.
	Current(ctx context.Context) (version int64, blob []byte, err error)
	// Get returns a kept version's blob; ErrNoSnapshot when it is not kept.
	Get(ctx context.Context, version int64) ([]byte, error)
	// List describes the kept snapshots, newest first.
	List(ctx context.Context) ([]SnapshotInfo, error)
	// Rollback points current at a kept version and notifies watchers.
	Rollback(ctx context.Context, version int64) error
	// Watch yields versions as they are published or rolled back; it is
	// closed when ctx ends.
	Watch(ctx context.Context) <-chan int64
}

var (
	_ SnapshotStore = (*MemorySnapshots)(nil)
	_ SnapshotStore = (*RedisSnapshots)(nil)
)

// MemorySnapshots is the in-process snapshot store of the embedded default.
type MemorySnapshots struct {
	keep     int
	mu       sync.Mutex
	blobs    map[int64][]byte
	infos    map[int64]SnapshotInfo
	current  int64
	watchers map[chan int64]struct{}
}

// NewMemorySnapshots keeps the last keep snapshots (at least 1).
func NewMemorySnapshots(keep int) *MemorySnapshots {
	return &MemorySnapshots{keep: max(keep, 1), blobs: map[int64][]byte{}, infos: map[int64]SnapshotInfo{},
		watchers: map[chan int64]struct{}{}}
}

// Publish implements SnapshotStore.
func (m *MemorySnapshots) Publish(ctx context.Context, info SnapshotInfo, blob []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info.Size = len(blob)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blobs[info.Version] = slices.Clone(blob)
	m.infos[info.Version] = info
	m.current = info.Version
	vs := m.versionsLocked()
	for _, v := range vs[min(m.keep, len(vs)):] {
		if v != m.current {
			delete(m.blobs, v)
			delete(m.infos, v)
		}
	}
	m.notifyLocked(info.Version)
	return nil
}

// versionsLocked lists kept versions, newest first.
func (m *MemorySnapshots) versionsLocked() []int64 {
	vs := make([]int64, 0, len(m.blobs))
	for v := range m.blobs {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	slices.Reverse(vs)
	return vs
}

func (m *MemorySnapshots) notifyLocked(v int64) {
	for ch := range m.watchers {
		select { // keep only the newest pending notification
		case <-ch:
		default:
		}
		ch <- v
	}
}

// Current implements SnapshotStore.
func (m *MemorySnapshots) Current(ctx context.Context) (int64, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[m.current]
	if !ok {
		return 0, nil, ErrNoSnapshot
	}
	return m.current, b, nil
}

// CurrentVersion returns the current version without the blob.
func (m *MemorySnapshots) CurrentVersion(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[m.current]; !ok {
		return 0, ErrNoSnapshot
	}
	return m.current, nil
}

// Get implements SnapshotStore.
func (m *MemorySnapshots) Get(ctx context.Context, version int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[version]
	if !ok {
		return nil, fmt.Errorf("snapshot version %d: %w", version, ErrNoSnapshot)
	}
	return b, nil
}

// List implements SnapshotStore.
func (m *MemorySnapshots) List(ctx context.Context) ([]SnapshotInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SnapshotInfo
	for _, v := range m.versionsLocked() {
		out = append(out, m.infos[v])
	}
	return out, nil
}

// Rollback implements SnapshotStore.
func (m *MemorySnapshots) Rollback(ctx context.Context, version int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[version]; !ok {
		return fmt.Errorf("rollback to version %d: %w", version, ErrNoSnapshot)
	}
	m.current = version
	m.notifyLocked(version)
	return nil
}

// Watch implements SnapshotStore.
func (m *MemorySnapshots) Watch(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 1)
	m.mu.Lock()
	m.watchers[ch] = struct{}{}
	m.mu.Unlock()
	out := make(chan int64)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.watchers, ch)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case v := <-ch:
				select {
				case out <- v:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Redis keys of the snapshot store (product.md §4).
const (
	redisModelPrefix   = "sr:model:"
	redisModelCurrent  = "sr:model:current"
	redisModelNotify   = "sr:model:notify"
	redisModelVersions = "sr:model:versions" // sorted set of kept versions
	redisModelInfo     = "sr:model:info:"    // + version: SnapshotInfo JSON
)

// RedisSnapshots stores snapshots in Redis: sr:model:<v> holds the blob,
// sr:model:current the current version; the last keep versions are kept and
// every change is published on sr:model:notify. Every command touches one
// key, so it works on Redis Cluster.
type RedisSnapshots struct {
	rdb  redis.UniversalClient
	keep int
	log  zerolog.Logger
	// Poll is the Watch polling fallback interval (pub/sub can miss messages
	// across reconnects).
	Poll time.Duration
}

// NewRedisSnapshots returns a Redis snapshot store keeping keep versions.
func NewRedisSnapshots(client redis.UniversalClient, keep int, log zerolog.Logger) *RedisSnapshots {
	return &RedisSnapshots{rdb: client, keep: max(keep, 1), log: log, Poll: time.Second}
}

func modelKey(v int64) string { return redisModelPrefix + strconv.FormatInt(v, 10) }

// Publish implements SnapshotStore. The blob and its info are written before
// the current pointer moves, so readers never see a pointer to a missing blob.
func (r *RedisSnapshots) Publish(ctx context.Context, info SnapshotInfo, blob []byte) error {
	info.Size = len(blob)
	ij, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("publish snapshot %d: %w", info.Version, err)
	}
	v := info.Version
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, modelKey(v), blob, 0)
		p.Set(ctx, redisModelInfo+strconv.FormatInt(v, 10), ij, 0)
		p.ZAdd(ctx, redisModelVersions, redis.Z{Score: float64(v), Member: strconv.FormatInt(v, 10)})
		return nil
	}); err != nil {
		return fmt.Errorf("publish snapshot %d: %w", v, err)
	}
	if err := r.rdb.Set(ctx, redisModelCurrent, v, 0).Err(); err != nil {
		return fmt.Errorf("publish snapshot %d: set current: %w", v, err)
	}
	if err := r.trim(ctx, v); err != nil {
		r.log.Warn().Err(err).Int64("version", v).Msg("snapshot trim failed")
	}
	if err := r.rdb.Publish(ctx, redisModelNotify, v).Err(); err != nil {
		r.log.Warn().Err(err).Int64("version", v).Msg("snapshot notify failed (pollers will see it)")
	}
	return nil
}

// trim deletes versions beyond the keep limit (never the current one).
func (r *RedisSnapshots) trim(ctx context.Context, current int64) error {
	old, err := r.rdb.ZRevRange(ctx, redisModelVersions, int64(r.keep), -1).Result()
	if err != nil || len(old) == 0 {
		return err
	}
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range old {
			if s == strconv.FormatInt(current, 10) {
				continue
			}
			// UNLINK frees the blob (tens of MB) in Redis's background
			// thread: DEL would free it on the thread that serves every
			// feature read.
			p.Unlink(ctx, redisModelPrefix+s)
			p.Del(ctx, redisModelInfo+s)
			p.ZRem(ctx, redisModelVersions, s)
		}
		return nil
	})
	return err
}

// Current implements SnapshotStore.
func (r *RedisSnapshots) Current(ctx context.Context) (int64, []byte, error) {
	v, err := r.CurrentVersion(ctx)
	if err != nil {
		return 0, nil, err
	}
	b, err := r.Get(ctx, v)
	return v, b, err
}

// CurrentVersion returns the current version without the blob.
func (r *RedisSnapshots) CurrentVersion(ctx context.Context) (int64, error) {
	v, err := r.rdb.Get(ctx, redisModelCurrent).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNoSnapshot
	}
	if err != nil {
		return 0, fmt.Errorf("current snapshot: %w", err)
	}
	return v, nil
}

// Get implements SnapshotStore.
func (r *RedisSnapshots) Get(ctx context.Context, version int64) ([]byte, error) {
	b, err := r.rdb.Get(ctx, modelKey(version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("snapshot version %d: %w", version, ErrNoSnapshot)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot version %d: %w", version, err)
	}
	return b, nil
}

// List implements SnapshotStore.
func (r *RedisSnapshots) List(ctx context.Context) ([]SnapshotInfo, error) {
	vs, err := r.rdb.ZRevRange(ctx, redisModelVersions, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []SnapshotInfo
	for _, s := range vs {
		b, err := r.rdb.Get(ctx, redisModelInfo+s).Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		var in SnapshotInfo
		if err := json.Unmarshal(b, &in); err != nil {
			return nil, fmt.Errorf("list snapshots: version %s: %w", s, err)
		}
		out = append(out, in)
	}
	return out, nil
}

// Rollback implements SnapshotStore.
func (r *RedisSnapshots) Rollback(ctx context.Context, version int64) error {
	n, err := r.rdb.Exists(ctx, modelKey(version)).Result()
	if err != nil {
		return fmt.Errorf("rollback to %d: %w", version, err)
	}
	if n == 0 {
		return fmt.Errorf("rollback to version %d: %w", version, ErrNoSnapshot)
	}
	if err := r.rdb.Set(ctx, redisModelCurrent, version, 0).Err(); err != nil {
		return fmt.Errorf("rollback to %d: %w", version, err)
	}
	if err := r.rdb.Publish(ctx, redisModelNotify, version).Err(); err != nil {
		r.log.Warn().Err(err).Int64("version", version).Msg("rollback notify failed (pollers will see it)")
	}
	return nil
}

// Watch implements SnapshotStore: pub/sub notifications, with polling of
// sr:model:current every Poll as a fallback. Each change is reported once.
func (r *RedisSnapshots) Watch(ctx context.Context) <-chan int64 {
	out := make(chan int64)
	sub := r.rdb.Subscribe(ctx, redisModelNotify)
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		tick := time.NewTicker(r.Poll)
		defer tick.Stop()
		last := int64(-1)
		if v, err := r.CurrentVersion(ctx); err == nil {
			last = v
		}
		emit := func(v int64) bool {
			if v == last {
				return true
			}
			last = v
			select {
			case out <- v:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					msgs = nil
					continue
				}
				v, err := strconv.ParseInt(m.Payload, 10, 64)
				if err != nil {
					continue
				}
				if !emit(v) {
					return
				}
			case <-tick.C:
				v, err := r.CurrentVersion(ctx)
				if err != nil {
					continue
				}
				if !emit(v) {
					return
				}
			}
		}
	}()
	return out
}

// Loader keeps the newest good snapshot of a store: a blob that fails to
// decode is rejected (and counted) and the previous snapshot stays in use.
type Loader struct {
	store   SnapshotStore
	log     zerolog.Logger
	mu      sync.RWMutex
	cur     *Snapshot
	version int64
	// Rejected counts blobs that failed to decode.
	rejected int64
}

// NewLoader returns a loader over store.
func NewLoader(store SnapshotStore, log zerolog.Logger) *Loader {
	return &Loader{store: store, log: log}
}

// Snapshot returns the snapshot in use (nil before the first good load).
func (l *Loader) Snapshot() *Snapshot {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cur
}

// Rejected counts the blobs rejected so far.
func (l *Loader) Rejected() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.rejected
}

// Refresh loads the store's current snapshot when its version differs from
// the one in use. On a decode error the previous snapshot stays in use and
// the error (wrapping ErrCorruptSnapshot) is returned.
func (l *Loader) Refresh(ctx context.Context) error {
	v, blob, err := l.store.Current(ctx)
	if err != nil {
		return err
	}
	l.mu.RLock()
	same := l.cur != nil && v == l.version
	l.mu.RUnlock()
	if same {
		return nil
	}
	s, err := DecodeSnapshot(blob)
	if err != nil {
		l.mu.Lock()
		l.rejected++
		l.mu.Unlock()
		l.log.Error().Err(err).Int64("version", v).Msg("snapshot rejected; keeping the previous one")
		return fmt.Errorf("snapshot version %d: %w", v, err)
	}
	l.mu.Lock()
	l.cur, l.version = s, v
	l.mu.Unlock()
	return nil
}
