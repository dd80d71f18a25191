package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// Features is what serve reads from the feature store (features.Store meets it).
type Features interface {
	// UserStateSince returns a user's features and seen-set in one round
	// trip when they changed since the stamp the server holds.
	UserStateSince(ctx context.Context, id string, since features.Stamp) (features.UserState, bool, error)
	// Popular is the popularity fallback when no snapshot is loaded.
	Popular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error)
}

// currentChecker is optionally met by Features (both feature stores do):
// it tells without I/O that a kept user state is still current, so such a
// request skips the read, its deadline and the batching.
type currentChecker interface {
	UserCurrent(id string, stamp features.Stamp) bool
}

// Snapshots is where serve finds model snapshots (learner's snapshot stores
// meet it).
type Snapshots interface {
	// Current returns the serving snapshot's version and blob; an error
	// wrapping learner.ErrNoSnapshot when there is none.
	Current(ctx context.Context) (int64, []byte, error)
	// Watch yields versions as they are published or rolled back; it is
	// closed when ctx ends.
	Watch(ctx context.Context) <-chan int64
}

// versionProber is optionally met by a Snapshots: polling then asks for the
// current version only and fetches the blob when it changed.
type versionProber interface {
	CurrentVersion(ctx context.Context) (int64, error)
}

// Model is a loaded, verified snapshot as serve uses it; *learner.Snapshot
// meets it. Every method is safe for concurrent use and never mutates the
// model.
type Model interface {
	Recommend(q *learner.Query, k int, dst []streamrec.Scored) []streamrec.Scored
	Similar(item string, k int, dst []streamrec.Scored) []streamrec.Scored
	Rank(u *features.User, items []string, ts int64, dst []streamrec.Scored) []streamrec.Scored
	Popular(k int, category string, ts int64, dst []streamrec.Scored) []streamrec.Scored
	ItemInfo(item string) (title string, categories []string, ok bool)
}

// ModelInfo describes a loaded snapshot.
type ModelInfo = learner.SnapshotInfo

// DecodeFunc verifies a snapshot blob and builds a ready-to-serve Model. An
// error means the blob is rejected and the serving model stays.
type DecodeFunc func(blob []byte) (Model, ModelInfo, error)

// Message is one Kafka record to write.
type Message struct {
	Key, Value []byte
}

// EventWriter writes accepted events to the events topic; it returns once the
// whole batch is acknowledged (KafkaEvents meets it).
type EventWriter interface {
	WriteEvents(ctx context.Context, msgs []Message) error
}

// Deps are the server's collaborators; Features, Snapshots, Decode, Events
// (or nil to disable POST /v1/events), Registry are set by the caller.
type Deps struct {
	Features  Features
	Snapshots Snapshots
	// Decode verifies snapshot blobs; DecodeSnapshot (learner's) by default.
	Decode DecodeFunc
	// Events writes POST /v1/events; nil answers 503 there.
	Events EventWriter
	// EventDecoder validates posted events; streamrec.NewDecoder() by default.
	EventDecoder *streamrec.Decoder
	// Inspect, when set, is mounted at /v1/inspect/ behind the API key.
	Inspect http.Handler
	// Admin, when set with Config.AdminAddr, is served there (pprof, ...).
	Admin    http.Handler
	Registry *prometheus.Registry
	Log      zerolog.Logger
	// Now is the wall clock; time.Now when nil.
	Now func() time.Time
}

func (d *Deps) validate() error {
	var errs []error
	if d.Features == nil {
		errs = append(errs, errors.New("serve: features reader is nil"))
	}
	if d.Snapshots == nil {
		errs = append(errs, errors.New("serve: snapshot source is nil"))
	}
	if d.Registry == nil {
		errs = append(errs, errors.New("serve: prometheus registry is nil"))
	}
	if d.EventDecoder != nil {
		if err := d.EventDecoder.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	return errors.Join(errs...)
}
