package streamrec

import "time"

// Kind says how an event is learned from.
type Kind uint8

const (
	// Implicit events (views, carts, purchases) are positive feedback with a weight.
	Implicit Kind = iota
	// Explicit events (ratings) carry a value that the models regress on.
	Explicit
)

func (k Kind) String() string {
	if k == Explicit {
		return "explicit"
	}
	return "implicit"
}

// Position is where an event came from: a Kafka topic/partition/offset, or a
// replay position (Topic "replay", Partition 0, Offset = index in the log).
// The feature store uses it for its exactly-once effect.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Event is one validated interaction.
type Event struct {
	// ID is the producer's id; empty when the event's identity is its Position.
	ID   string
	Type string
	Kind Kind
	// Weight is the implicit weight of Type (1 for explicit events).
	Weight float64
	User   string
	Item   string
	// Value is the rating of an explicit event; 0 for implicit ones.
	Value float64
	// TS is the event time in Unix milliseconds.
	TS      int64
	Context map[string]string
	Pos     Position
}

// Time returns the event time.
func (e *Event) Time() time.Time { return time.UnixMilli(e.TS).UTC() }

// ItemMeta is an item's catalogue entry, published on topic streamrec.items.
type ItemMeta struct {
	Item       string   `json:"item"`
	Title      string   `json:"title,omitempty"`
	Categories []string `json:"categories,omitempty"`
	// TS is Unix milliseconds in memory; on the wire it follows the event
	// contract's timestamp rules.
	TS int64 `json:"-"`
}

// Topic names of the contract (product.md §1–§2).
const (
	TopicEvents = "streamrec.events"
	TopicItems  = "streamrec.items"
	TopicDLQ    = "streamrec.events.dlq"
)

// Scored is an item with a score, as recommendation lists carry them.
type Scored struct {
	Item  string  `json:"item"`
	Score float64 `json:"score"`
}
