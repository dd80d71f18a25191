package streamrec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Reasons an event is rejected. They label the dead-letter counter and the
// "error" header of a dead-letter record, so they are part of the contract.
const (
	ReasonOversized   = "oversized"
	ReasonInvalidUTF8 = "invalid_utf8"
	ReasonMalformed   = "malformed_json"
	ReasonMissing     = "missing_field"
	ReasonInvalid     = "invalid_field"
	ReasonUnknownType = "unknown_type"
	ReasonValueRange  = "value_out_of_range"
	ReasonTimestamp   = "bad_timestamp"
)

// Reasons lists every rejection reason, for pre-registering metric labels.
var Reasons = []string{ReasonOversized, ReasonInvalidUTF8, ReasonMalformed, ReasonMissing,
	ReasonInvalid, ReasonUnknownType, ReasonValueRange, ReasonTimestamp}

// DecodeError says why a message does not meet the event contract.
type DecodeError struct {
	Reason string // one of the Reason constants
	Field  string // the offending field, if any
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Reason, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Msg)
}

// Contract limits.
const (
	DefaultMaxBytes   = 64 << 10
	MaxIDBytes        = 128
	MaxContextPairs   = 16
	DefaultMinValue   = 0.5
	DefaultMaxValue   = 5
	maxContextKeyLen  = 128
	maxContextValLen  = 1024
	msTimestampCutoff = 1e12
)

// Decoder validates messages against the event contract (product.md §2).
// The zero value is not usable; start from NewDecoder.
type Decoder struct {
	Types    EventTypes
	MinValue float64 // inclusive range of explicit values
	MaxValue float64
	MaxBytes int
}

// NewDecoder returns a decoder with the default types, range and size limit.
func NewDecoder() *Decoder {
	return &Decoder{Types: DefaultEventTypes(), MinValue: DefaultMinValue, MaxValue: DefaultMaxValue, MaxBytes: DefaultMaxBytes}
}

// Validate checks the decoder's own configuration.
func (d *Decoder) Validate() error {
	if len(d.Types) == 0 {
		return fmt.Errorf("decoder: no event types configured")
	}
	if !(d.MinValue <= d.MaxValue) || math.IsInf(d.MinValue, 0) || math.IsInf(d.MaxValue, 0) {
		return fmt.Errorf("decoder: value range [%g, %g] is not a finite interval", d.MinValue, d.MaxValue)
	}
	if d.MaxBytes <= 0 {
		return fmt.Errorf("decoder: max bytes must be positive, got %d", d.MaxBytes)
	}
	return nil
}

type wireEvent struct {
	ID      json.RawMessage   `json:"id"`
	Type    json.RawMessage   `json:"type"`
	User    json.RawMessage   `json:"user"`
	Item    json.RawMessage   `json:"item"`
	Value   json.RawMessage   `json:"value"`
	TS      json.RawMessage   `json:"ts"`
	Context map[string]string `json:"context"`
}

// Decode parses and validates one message. Errors are *DecodeError.
func (d *Decoder) Decode(b []byte) (Event, error) {
	var e Event
	if len(b) > d.MaxBytes {
		return e, &DecodeError{Reason: ReasonOversized, Msg: fmt.Sprintf("%d bytes, limit %d", len(b), d.MaxBytes)}
	}
	// encoding/json would silently replace bad UTF-8 with U+FFFD; the
	// contract rejects it instead.
	if !utf8.Valid(b) {
		return e, &DecodeError{Reason: ReasonInvalidUTF8, Msg: "message is not valid UTF-8"}
	}
	var w wireEvent
	if !scanEvent(b, &w) {
		return d.decodeSlow(b)
	}
	return d.validate(&w)
}

// decodeSlow decodes with encoding/json: the reference path, for every
// message the fast scanner does not take.
func (d *Decoder) decodeSlow(b []byte) (Event, error) {
	var e Event
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) && json.Valid(b) {
			// Valid JSON of the wrong shape, e.g. a non-string context value.
			return e, &DecodeError{Reason: ReasonInvalid, Msg: err.Error()}
		}
		return e, &DecodeError{Reason: ReasonMalformed, Msg: err.Error()}
	}
	return d.validate(&w)
}

// validate applies the contract's rules to the split message.
func (d *Decoder) validate(w *wireEvent) (Event, error) {
	var e Event
	var err error
	typ, err := stringField("type", w.Type, false)
	if err != nil {
		return e, err
	}
	et, ok := d.Types[typ]
	if !ok {
		return e, &DecodeError{Reason: ReasonUnknownType, Field: "type", Msg: fmt.Sprintf("unknown event type %q", typ)}
	}
	e.Type, e.Kind, e.Weight = typ, et.Kind, et.Weight
	if e.User, err = stringField("user", w.User, true); err != nil {
		return e, err
	}
	if e.Item, err = stringField("item", w.Item, true); err != nil {
		return e, err
	}
	if len(w.ID) > 0 && !isNull(w.ID) {
		if e.ID, err = stringField("id", w.ID, true); err != nil {
			return e, err
		}
	}
	if e.TS, err = ParseTimestamp(w.TS); err != nil {
		return e, err
	}
	if et.Kind == Explicit {
		e.Weight = 1
		if e.Value, err = d.value(w.Value); err != nil {
			return e, err
		}
	}
	if len(w.Context) > MaxContextPairs {
		return e, &DecodeError{Reason: ReasonInvalid, Field: "context", Msg: fmt.Sprintf("%d pairs, limit %d", len(w.Context), MaxContextPairs)}
	}
	for k, v := range w.Context {
		if k == "" || len(k) > maxContextKeyLen || len(v) > maxContextValLen {
			return e, &DecodeError{Reason: ReasonInvalid, Field: "context", Msg: "context keys must be 1–128 bytes and values at most 1024 bytes"}
		}
	}
	if len(w.Context) > 0 {
		e.Context = w.Context
	}
	return e, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// stringField reads a required string (or, when numbers is set, a JSON number
// turned into its decimal string) of 1–128 bytes.
func stringField(name string, raw json.RawMessage, numbers bool) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", &DecodeError{Reason: ReasonMissing, Field: name, Msg: "required"}
	}
	var s string
	switch c := raw[0]; {
	case c == '"':
		if p, ok := plainString(raw); ok {
			s = p
		} else if err := json.Unmarshal(raw, &s); err != nil {
			return "", &DecodeError{Reason: ReasonInvalid, Field: name, Msg: err.Error()}
		}
	case numbers && (c == '-' || (c >= '0' && c <= '9')):
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) {
			return "", &DecodeError{Reason: ReasonInvalid, Field: name, Msg: "number out of range"}
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			s = strconv.FormatInt(int64(f), 10)
		} else {
			s = strconv.FormatFloat(f, 'f', -1, 64)
		}
	default:
		return "", &DecodeError{Reason: ReasonInvalid, Field: name, Msg: "must be a string"}
	}
	if len(s) == 0 || len(s) > MaxIDBytes {
		return "", &DecodeError{Reason: ReasonInvalid, Field: name, Msg: fmt.Sprintf("must be 1–%d bytes, got %d", MaxIDBytes, len(s))}
	}
	return s, nil
}

func (d *Decoder) value(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || isNull(raw) {
		return 0, &DecodeError{Reason: ReasonMissing, Field: "value", Msg: "required for explicit events"}
	}
	if raw[0] == '"' {
		return 0, &DecodeError{Reason: ReasonValueRange, Field: "value", Msg: "must be a finite number"}
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, &DecodeError{Reason: ReasonValueRange, Field: "value", Msg: "must be a finite number"}
	}
	if v < d.MinValue || v > d.MaxValue {
		return 0, &DecodeError{Reason: ReasonValueRange, Field: "value", Msg: fmt.Sprintf("%g outside [%g, %g]", v, d.MinValue, d.MaxValue)}
	}
	return v, nil
}

// ParseTimestamp reads a contract timestamp — Unix seconds (integer or
// fractional), Unix milliseconds (values > 1e12) or an RFC 3339 string — as
// Unix milliseconds. Errors are *DecodeError with ReasonTimestamp (or
// ReasonMissing when absent).
func ParseTimestamp(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || isNull(raw) {
		return 0, &DecodeError{Reason: ReasonMissing, Field: "ts", Msg: "required"}
	}
	if raw[0] == '"' {
		s, ok := plainString(raw)
		if !ok {
			if err := json.Unmarshal(raw, &s); err != nil {
				return 0, &DecodeError{Reason: ReasonTimestamp, Field: "ts", Msg: err.Error()}
			}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, &DecodeError{Reason: ReasonTimestamp, Field: "ts", Msg: "not RFC 3339: " + err.Error()}
		}
		if t.UnixMilli() <= 0 {
			return 0, &DecodeError{Reason: ReasonTimestamp, Field: "ts", Msg: "must be after 1970-01-01"}
		}
		return t.UnixMilli(), nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &DecodeError{Reason: ReasonTimestamp, Field: "ts", Msg: "must be Unix seconds, Unix milliseconds or RFC 3339"}
	}
	return TimestampMillis(f)
}

// TimestampMillis turns a numeric contract timestamp into Unix milliseconds.
func TimestampMillis(f float64) (int64, error) {
	// Up to year 9999 in milliseconds; anything larger is garbage.
	const maxMillis = 253402300799999
	var ms float64
	if f > msTimestampCutoff {
		ms = f
	} else {
		ms = f * 1000
	}
	// Round before the range check, so that every accepted value is at least
	// 1 ms and re-encodes (AppendJSON) to a timestamp that is accepted again.
	ms = math.Round(ms)
	if !(ms >= 1) || ms > maxMillis {
		return 0, &DecodeError{Reason: ReasonTimestamp, Field: "ts", Msg: fmt.Sprintf("%v is out of range", f)}
	}
	return int64(ms), nil
}

// AppendJSON appends e in the event contract's JSON form (ts in Unix seconds,
// fractional when needed). The Position is not part of the contract.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, '{')
	if e.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendJSONString(dst, e.ID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"type":`...)
	dst = appendJSONString(dst, e.Type)
	dst = append(dst, `,"user":`...)
	dst = appendJSONString(dst, e.User)
	dst = append(dst, `,"item":`...)
	dst = appendJSONString(dst, e.Item)
	if e.Kind == Explicit {
		dst = append(dst, `,"value":`...)
		dst = strconv.AppendFloat(dst, e.Value, 'f', -1, 64)
	}
	dst = append(dst, `,"ts":`...)
	if e.TS%1000 == 0 {
		dst = strconv.AppendInt(dst, e.TS/1000, 10)
	} else {
		dst = strconv.AppendFloat(dst, float64(e.TS)/1000, 'f', 3, 64)
	}
	if len(e.Context) > 0 {
		b, _ := json.Marshal(e.Context) // map[string]string always marshals
		dst = append(dst, `,"context":`...)
		dst = append(dst, b...)
	}
	return append(dst, '}')
}

func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s) // strings always marshal
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

type wireItem struct {
	Item       json.RawMessage `json:"item"`
	Title      string          `json:"title"`
	Categories []string        `json:"categories"`
	TS         json.RawMessage `json:"ts"`
}

// DecodeItem parses and validates one item metadata message (topic
// streamrec.items). A missing ts is allowed for metadata.
func DecodeItem(b []byte, maxBytes int) (ItemMeta, error) {
	var m ItemMeta
	if len(b) > maxBytes {
		return m, &DecodeError{Reason: ReasonOversized, Msg: fmt.Sprintf("%d bytes, limit %d", len(b), maxBytes)}
	}
	if !utf8.Valid(b) {
		return m, &DecodeError{Reason: ReasonInvalidUTF8, Msg: "message is not valid UTF-8"}
	}
	var w wireItem
	if err := json.Unmarshal(b, &w); err != nil {
		return m, &DecodeError{Reason: ReasonMalformed, Msg: err.Error()}
	}
	var err error
	if m.Item, err = stringField("item", w.Item, true); err != nil {
		return m, err
	}
	if len(w.Title) > 1024 || len(w.Categories) > 64 {
		return m, &DecodeError{Reason: ReasonInvalid, Msg: "title over 1024 bytes or more than 64 categories"}
	}
	m.Title = w.Title
	if len(w.Categories) > 0 { // an empty list is no list, as on the wire
		m.Categories = w.Categories
	}
	if len(w.TS) > 0 && !isNull(w.TS) {
		if m.TS, err = ParseTimestamp(w.TS); err != nil {
			return m, err
		}
	}
	return m, nil
}

// AppendItemJSON appends m in the item metadata contract's JSON form.
func AppendItemJSON(dst []byte, m *ItemMeta) []byte {
	type wire struct {
		Item       string   `json:"item"`
		Title      string   `json:"title,omitempty"`
		Categories []string `json:"categories,omitempty"`
		TS         *float64 `json:"ts,omitempty"`
	}
	w := wire{Item: m.Item, Title: m.Title, Categories: m.Categories}
	if m.TS > 0 {
		s := float64(m.TS) / 1000
		w.TS = &s
	}
	b, _ := json.Marshal(w) // plain strings and numbers always marshal
	return append(dst, b...)
}
