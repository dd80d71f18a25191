// Package features is the feature store: per-user, per-item and global
// counters, recent items, seen-sets, time-decayed popularity, item metadata
// and user vectors, kept exactly once under redelivery. Memory backs the
// embedded default and replay; Redis backs production (including Redis
// Cluster). Both meet the Store contract and pass one conformance suite.
package features

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/streamrec/streamrec"
)

// Counters are the per-entity event counters.
type Counters struct {
	Events      int64   `json:"events"`
	Explicit    int64   `json:"explicit"`
	Implicit    int64   `json:"implicit"`
	ExplicitSum float64 `json:"explicit_sum"`
	// ImplicitWeight is the sum of implicit event weights.
	ImplicitWeight float64 `json:"implicit_weight"`
	FirstTS        int64   `json:"first_ts"` // Unix ms, 0 when no events
	LastTS         int64   `json:"last_ts"`
}

// ExplicitMean is the mean explicit value, 0 without explicit events.
func (c *Counters) ExplicitMean() float64 {
	if c.Explicit == 0 {
		return 0
	}
	return c.ExplicitSum / float64(c.Explicit)
}

// User is one user's features.
type User struct {
	ID string `json:"user"`
	Counters
	// Recent holds the user's most recent items, newest first, capped at
	// Config.RecentCap; an item appears once, at its latest position.
	Recent []string `json:"recent"`
	// Vector is the user's embedding as the learner last wrote it (nil if none).
	Vector []float32 `json:"vector,omitempty"`
	// VectorVersion is the model version that wrote Vector.
	VectorVersion int64 `json:"vector_version,omitempty"`
}

// Item is one item's features.
type Item struct {
	ID string `json:"item"`
	Counters
	// Popularity is the sum of event weights decayed with Config.HalfLife of
	// event time, as of PopularityTS (Unix ms).
	Popularity   float64  `json:"popularity"`
	PopularityTS int64    `json:"popularity_ts"`
	Title        string   `json:"title,omitempty"`
	Categories   []string `json:"categories,omitempty"`
}

// PopularityAt is the item's popularity decayed to ts (Unix ms).
func (it *Item) PopularityAt(ts int64, halfLife time.Duration) float64 {
	return Decay(it.Popularity, ts-it.PopularityTS, halfLife)
}

// Decay decays v over dtMillis of event time with the given half-life. A
// negative dt (an out-of-order event) does not grow v.
func Decay(v float64, dtMillis int64, halfLife time.Duration) float64 {
	if dtMillis <= 0 || halfLife <= 0 {
		return v
	}
	return v * math.Exp2(-float64(dtMillis)/float64(halfLife.Milliseconds()))
}

// Global holds the store-wide counters.
type Global struct {
	Events      int64   `json:"events"`
	Explicit    int64   `json:"explicit"`
	ExplicitSum float64 `json:"explicit_sum"`
	Users       int64   `json:"users"`
	Items       int64   `json:"items"`
	LastTS      int64   `json:"last_ts"`
}

// ExplicitMean is the global mean explicit value, 0 without explicit events.
func (g *Global) ExplicitMean() float64 {
	if g.Explicit == 0 {
		return 0
	}
	return g.ExplicitSum / float64(g.Explicit)
}

// ApplyResult says what a batch did.
type ApplyResult struct {
	Applied    int // events that changed state
	Duplicates int // events skipped because their position was already applied
}

// Stamp identifies one state of a user's features (counters, recent
// items, seen-set and vector): equal stamps of a user mean equal states. It
// is opaque, backend-specific, and "" for an unknown user.
type Stamp string

// UserState is a user's features and seen-set as of Stamp.
type UserState struct {
	User  User
	Seen  []string
	Stamp Stamp
	// Known is false for a user the store has no events of (Stamp "").
	Known bool
}

// StateRead is one UserStateSince of a batch: ID and Since in, the rest out.
type StateRead struct {
	ID      string
	Since   Stamp
	State   UserState
	Changed bool
	Err     error
}

// Store is the feature store contract that both backends meet and the
// conformance suite checks. Consumers declare the smaller interfaces they use.
type Store interface {
	// Apply applies a batch of events. An event whose (topic, partition,
	// offset) is not above the mark a key holds for that partition leaves the
	// key unchanged, so redelivered events never count twice. Once Apply
	// returns nil, the batch is durable in the store.
	Apply(ctx context.Context, events []streamrec.Event) (ApplyResult, error)
	// PutItems stores item metadata (title, categories).
	PutItems(ctx context.Context, items []streamrec.ItemMeta) error
	// PutUserVectors stores user embeddings written by the learner.
	PutUserVectors(ctx context.Context, version int64, vectors map[string][]float32) error
	// User returns a user's features; ok is false for an unknown user.
	User(ctx context.Context, id string) (u User, ok bool, err error)
	// UserSeen returns a user's features and whole seen-set in one round
	// trip; ok is false for an unknown user. (The server reads with
	// UserStateSince, which skips what it already holds.)
	UserSeen(ctx context.Context, id string) (u User, seen []string, ok bool, err error)
	// UserStateSince is UserSeen for a caller that keeps the answer: given
	// the Stamp of the state it holds ("" for none), it returns the user's
	// state and changed=true only when that state differs from since;
	// otherwise changed=false and an empty UserState, after a read of a few
	// bytes (the serving hot path, where most reads find nothing new).
	UserStateSince(ctx context.Context, id string, since Stamp) (st UserState, changed bool, err error)
	// ReadUserStates does UserStateSince for every read, in one round trip;
	// an error of the whole batch (store unreachable) is returned and left
	// in every read.
	ReadUserStates(ctx context.Context, reads []StateRead) error
	// Seen reports whether the user has interacted with each of items.
	Seen(ctx context.Context, user string, items []string) ([]bool, error)
	// Item returns an item's features; ok is false for an unknown item.
	Item(ctx context.Context, id string) (it Item, ok bool, err error)
	// Popular returns up to n items by popularity decayed to ts, best first,
	// optionally only those in category.
	Popular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error)
	// Global returns the store-wide counters.
	Global(ctx context.Context) (Global, error)
	// EachUser calls fn for every user, in no particular order, until fn
	// returns an error.
	EachUser(ctx context.Context, fn func(User) error) error
	Close() error
}

// Config is shared by both backends.
type Config struct {
	// RecentCap caps each user's recent-items list.
	RecentCap int
	// HalfLife is the popularity half-life in event time.
	HalfLife time.Duration
	// UserTTL expires per-user keys not written for this long (wall time);
	// refreshed on every write.
	UserTTL time.Duration
	// Now is the wall clock, injected so TTLs are testable.
	Now func() time.Time
}

// DefaultConfig returns the defaults of product.md §3.
func DefaultConfig() Config {
	return Config{RecentCap: 500, HalfLife: 7 * 24 * time.Hour, UserTTL: 90 * 24 * time.Hour, Now: time.Now}
}

// Validate checks c field by field.
func (c *Config) Validate() error {
	switch {
	case c.RecentCap <= 0:
		return fmt.Errorf("features: recent cap must be positive, got %d", c.RecentCap)
	case c.HalfLife <= 0:
		return fmt.Errorf("features: popularity half-life must be positive, got %s", c.HalfLife)
	case c.UserTTL <= 0:
		return fmt.Errorf("features: user TTL must be positive, got %s", c.UserTTL)
	case c.Now == nil:
		return fmt.Errorf("features: clock (Now) is nil")
	}
	return nil
}
