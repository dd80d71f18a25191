// Package dataset loads interaction data sets into time-ordered event logs:
// MovieLens (100K, latest-small, 1M), YooChoose clicks, JSONL in the event
// contract, CSV with a column mapping, a Kafka topic range, and a synthetic
// generator with planted taste clusters. `streamrec produce` publishes what
// it loads; `streamrec replay` and `tune` replay it.
//
// A data set is named by a spec, SCHEME:ARGUMENT (product.md §6):
//
//	movielens:DIR                      u.data+u.item, ratings.csv+movies.csv or ratings.dat+movies.dat
//	yoochoose:FILE                     tab-separated SessionId, ItemId, Time (sessions stand in for users)
//	jsonl:FILE                         one event of the contract per line
//	csv:FILE                           with Options.Columns, Header, Sep, TypeDefault
//	synthetic:users=1000,items=2000,events=200000,seed=1
//	kafka:BROKER[,BROKER…]/TOPIC       every partition up to its high-water mark, within [From, To)
//
// Loaders stream their files and never stop at a bad line: it is counted in
// Data.Rejected and the first few errors are kept with their line numbers.
package dataset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
)

// ErrSpec marks a data spec that cannot be used as written: unknown scheme,
// bad syntax, bad options, or a path that does not exist. The CLI maps it to
// a usage error (exit status 2).
var ErrSpec = errors.New("bad data spec")

// MaxErrors is how many rejection errors Data keeps.
const MaxErrors = 10

// ReplayTopic is the Position topic of loaded events.
const ReplayTopic = "replay"

// Options tune how a spec is read. The zero value reads every format with
// its defaults.
type Options struct {
	// Columns maps CSV columns, e.g. "user,item,type,value,ts,category,-":
	// '-' skips a column; "title" names the item's title.
	Columns string
	// Header says the CSV's first line is a header.
	Header bool
	// Sep is the CSV separator: "," by default; "\t", "tab", "::" or any
	// other string are allowed.
	Sep string
	// TypeDefault is the event type when there is no type column: "rating"
	// when there is a value column, otherwise "view". For MovieLens and
	// YooChoose it replaces "rating" and "view".
	TypeDefault string
	// Types are the configured event types; nil means
	// streamrec.DefaultEventTypes().
	Types streamrec.EventTypes
	// From and To, when set, keep only events with From <= ts < To.
	From, To time.Time
	// MinValue and MaxValue bound explicit values; zero means the contract's
	// defaults (0.5 and 5).
	MinValue, MaxValue float64
	// KafkaDialer connects a kafka: spec to its brokers, with their TLS and
	// SASL settings (kafkasec.Config builds one); nil is plain TCP.
	KafkaDialer *kafka.Dialer
}

func (o *Options) normalise() error {
	if o.Types == nil {
		o.Types = streamrec.DefaultEventTypes()
	}
	if o.MinValue == 0 {
		o.MinValue = streamrec.DefaultMinValue
	}
	if o.MaxValue == 0 {
		o.MaxValue = streamrec.DefaultMaxValue
	}
	if !(o.MinValue <= o.MaxValue) || math.IsInf(o.MinValue, 0) || math.IsInf(o.MaxValue, 0) {
		return fmt.Errorf("%w: value range [%g, %g] is not a finite interval", ErrSpec, o.MinValue, o.MaxValue)
	}
	if o.TypeDefault != "" {
		if _, ok := o.Types[o.TypeDefault]; !ok {
			return fmt.Errorf("%w: default event type %q is not a configured type (%s)", ErrSpec, o.TypeDefault, o.Types)
		}
	}
	if !o.From.IsZero() && !o.To.IsZero() && !o.From.Before(o.To) {
		return fmt.Errorf("%w: time range [%s, %s) is empty", ErrSpec, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
	}
	return nil
}

// decoder returns a contract decoder with the options' types and range.
func (o *Options) decoder() *streamrec.Decoder {
	d := streamrec.NewDecoder()
	d.Types, d.MinValue, d.MaxValue = o.Types, o.MinValue, o.MaxValue
	return d
}

// Data is a loaded data set.
type Data struct {
	// Name identifies the source, e.g. "movielens:ml-100k".
	Name string
	// Events are sorted by TS, stable for ties (file order is kept). Each
	// Pos is {Topic: "replay", Partition: 0, Offset: index}.
	Events []streamrec.Event
	// Items is the catalogue when the source has one, in source order.
	Items []streamrec.ItemMeta
	// Rejected counts lines (or messages) that were not valid events.
	Rejected int
	// Errors holds the first MaxErrors rejection errors, with line numbers.
	Errors []error
}

// Users counts the distinct users of the events.
func (d *Data) Users() int {
	seen := make(map[string]struct{}, 1024)
	for i := range d.Events {
		seen[d.Events[i].User] = struct{}{}
	}
	return len(seen)
}

// EventItems counts the distinct items of the events.
func (d *Data) EventItems() int {
	seen := make(map[string]struct{}, 1024)
	for i := range d.Events {
		seen[d.Events[i].Item] = struct{}{}
	}
	return len(seen)
}

// Span returns the first and last event times (zero times when empty).
func (d *Data) Span() (first, last time.Time) {
	if len(d.Events) == 0 {
		return time.Time{}, time.Time{}
	}
	return d.Events[0].Time(), d.Events[len(d.Events)-1].Time()
}

// reject counts one rejected line and keeps its error if there is room.
func (d *Data) reject(err error) {
	d.Rejected++
	if len(d.Errors) < MaxErrors {
		d.Errors = append(d.Errors, err)
	}
}

// finish filters the events to [From, To), sorts them by time (stable) and
// numbers their replay positions.
func (d *Data) finish(o *Options) {
	if !o.From.IsZero() || !o.To.IsZero() {
		from, to := int64(math.MinInt64), int64(math.MaxInt64)
		if !o.From.IsZero() {
			from = o.From.UnixMilli()
		}
		if !o.To.IsZero() {
			to = o.To.UnixMilli()
		}
		d.Events = slices.DeleteFunc(d.Events, func(e streamrec.Event) bool { return e.TS < from || e.TS >= to })
	}
	d.Events = sortEvents(d.Events)
	for i := range d.Events {
		d.Events[i].Pos = streamrec.Position{Topic: ReplayTopic, Offset: int64(i)}
	}
}

// sortEvents sorts by time, stable for ties. It sorts small (ts, index)
// keys and permutes once, which beats a stable sort of the large structs.
func sortEvents(evs []streamrec.Event) []streamrec.Event {
	sorted := true
	for i := 1; i < len(evs); i++ {
		if evs[i].TS < evs[i-1].TS {
			sorted = false
			break
		}
	}
	if sorted {
		return evs
	}
	type key struct {
		ts int64
		i  int
	}
	keys := make([]key, len(evs))
	for i := range evs {
		keys[i] = key{evs[i].TS, i}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.ts, b.ts); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	out := make([]streamrec.Event, len(evs))
	for j, k := range keys {
		out[j] = evs[k.i]
	}
	return out
}

// Load reads the data set named by spec. Lines that are not valid events
// are counted in Data.Rejected, never fatal; a spec that cannot be used
// returns an error wrapping ErrSpec.
func Load(ctx context.Context, spec string, opts Options) (*Data, error) {
	if err := opts.normalise(); err != nil {
		return nil, err
	}
	scheme, arg, ok := strings.Cut(spec, ":")
	if !ok || (arg == "" && scheme != "synthetic") {
		return nil, fmt.Errorf("%w %q: want SCHEME:ARGUMENT (movielens, yoochoose, jsonl, csv, synthetic, kafka)", ErrSpec, spec)
	}
	var (
		d   *Data
		err error
	)
	switch scheme {
	case "movielens":
		d, err = loadMovieLens(ctx, arg, &opts)
	case "yoochoose":
		d, err = loadYooChoose(ctx, arg, &opts)
	case "jsonl":
		d, err = loadJSONL(ctx, arg, &opts)
	case "csv":
		d, err = loadCSV(ctx, arg, &opts)
	case "synthetic":
		var cfg SyntheticConfig
		if cfg, err = ParseSynthetic(arg); err == nil {
			d, _ = Synthetic(cfg)
			d.applyTypes(&opts)
		}
	case "kafka":
		d, err = loadKafka(ctx, arg, &opts)
	default:
		return nil, fmt.Errorf("%w %q: unknown scheme %q (want movielens, yoochoose, jsonl, csv, synthetic or kafka)", ErrSpec, spec, scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", spec, err)
	}
	d.finish(&opts)
	return d, nil
}

// applyTypes gives generated events the kinds and weights of the
// configured types and drops those whose type is not configured.
func (d *Data) applyTypes(o *Options) {
	d.Events = slices.DeleteFunc(d.Events, func(e streamrec.Event) bool {
		_, ok := o.Types[e.Type]
		return !ok
	})
	for i := range d.Events {
		e := &d.Events[i]
		et := o.Types[e.Type]
		e.Kind, e.Weight = et.Kind, et.Weight
		if et.Kind == streamrec.Explicit {
			e.Weight = 1
		} else {
			e.Value = 0
		}
	}
}

// openFile opens a data file, turning a missing file into a spec error.
func openFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrSpec, err)
		}
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is a directory, want a file", ErrSpec, path)
	}
	return f, nil
}

func baseName(path string) string { return filepath.Base(filepath.Clean(path)) }

// SharedDataDir returns the project's shared data folder (ml-100k/,
// ml-latest-small/, yoochoose-rsc15-100k/): $STREAMREC_TEST_DATA when set,
// otherwise ../shared/data beside the repository that holds the working
// directory. It returns "" when there is none. Tests skip on "" unless
// CI=true.
func SharedDataDir() string {
	if dir := os.Getenv("STREAMREC_TEST_DATA"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			cand := filepath.Join(dir, "..", "shared", "data")
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				return cand
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
