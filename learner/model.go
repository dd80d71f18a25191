// Package learner holds the online models — classical baselines, biased
// matrix factorisation, item co-occurrence, a DLRM-style deep ranker and the
// two-stage recommender built from them — the incremental training loop that
// feeds them point-in-time features, and the versioned, checksummed snapshots
// that serve loads.
package learner

import (
	"encoding"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// Example is one event together with the features as they were just before
// it (no leakage): the trainer reads the features, predicts, learns, and only
// then applies the event to its feature store.
type Example struct {
	Event *streamrec.Event
	// User and Item are never nil; an unknown user or item has zero counters.
	User   *features.User
	Item   *features.Item
	Global *features.Global
}

// Model is the contract every model meets.
type Model interface {
	// Name is the model's name on the command line (pop, bias, mf, …).
	Name() string
	// Predict scores the example's (user, item) pair without learning: the
	// predicted value for explicit events, a relevance score for implicit.
	Predict(ex *Example) float64
	// Learn updates the model from one example.
	Learn(ex *Example)
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// Query asks a Recommender for a user's top items.
type Query struct {
	// User holds the user's current features; Recent drives co-occurrence
	// candidates and cold start. An unknown user has only ID set.
	User *features.User
	// Exclude, when set, drops items (typically the user's seen-set).
	Exclude func(item string) bool
	// ExcludeSet, when set, holds the same items as Exclude, resolved by
	// the answering model's ItemSet: the model then tests its own
	// candidates by index instead of hashing their names. A set made by
	// another model is ignored, so a stale one costs speed, not results.
	ExcludeSet *ItemSet
	// Category, when set, keeps only items in that category.
	Category string
	// TS is "now" in event time (Unix ms), for decay and cyclic time features.
	TS int64
}

// Recommender is a Model that can produce a top-K list.
type Recommender interface {
	Model
	// Recommend appends up to k items to dst, best first.
	Recommend(q *Query, k int, dst []streamrec.Scored) []streamrec.Scored
}
