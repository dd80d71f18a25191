package streamrec_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/streamrec/streamrec"
)

func mustDecodeError(tb testing.TB, err error) *streamrec.DecodeError {
	tb.Helper()
	var de *streamrec.DecodeError
	if !errors.As(err, &de) {
		tb.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	return de
}

func TestDecodeAccepts(t *testing.T) {
	const rfcMillis = 978307960123 // 2001-01-01T00:12:40.123Z
	tests := []struct {
		name string
		in   string
		want streamrec.Event
	}{
		{"rating", `{"id":"e-81f2","type":"rating","user":"42","item":"1193","value":4.5,"ts":978300760,"context":{"device":"ios"}}`,
			streamrec.Event{ID: "e-81f2", Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "42", Item: "1193", Value: 4.5, TS: 978300760000, Context: map[string]string{"device": "ios"}}},
		{"view implicit weight 1", `{"type":"view","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "view", Kind: streamrec.Implicit, Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"click", `{"type":"click","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "click", Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"pv", `{"type":"pv","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "pv", Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"like weight 2", `{"type":"like","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "like", Weight: 2, User: "u", Item: "i", TS: 1000}},
		{"fav", `{"type":"fav","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "fav", Weight: 2, User: "u", Item: "i", TS: 1000}},
		{"cart", `{"type":"cart","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "cart", Weight: 2, User: "u", Item: "i", TS: 1000}},
		{"add_to_cart", `{"type":"add_to_cart","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "add_to_cart", Weight: 2, User: "u", Item: "i", TS: 1000}},
		{"purchase weight 4", `{"type":"purchase","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "purchase", Weight: 4, User: "u", Item: "i", TS: 1000}},
		{"buy", `{"type":"buy","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "buy", Weight: 4, User: "u", Item: "i", TS: 1000}},
		{"numbers as ids", `{"id":7,"type":"view","user":42,"item":1193,"ts":1}`,
			streamrec.Event{ID: "7", Type: "view", Weight: 1, User: "42", Item: "1193", TS: 1000}},
		{"number ids in exponent and fraction form", `{"type":"view","user":1e3,"item":-2.5,"ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: "1000", Item: "-2.5", TS: 1000}},
		{"integral float id", `{"type":"view","user":7.0,"item":0,"ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: "7", Item: "0", TS: 1000}},
		{"fractional seconds", `{"type":"view","user":"u","item":"i","ts":978300760.25}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 978300760250}},
		{"milliseconds above 1e12", `{"type":"view","user":"u","item":"i","ts":1700000000123}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1700000000123}},
		{"seconds at 1e12 boundary are seconds", `{"type":"view","user":"u","item":"i","ts":200000000000}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 200000000000000}},
		{"RFC 3339", `{"type":"view","user":"u","item":"i","ts":"2001-01-01T00:12:40.123Z"}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: rfcMillis}},
		{"RFC 3339 with offset", `{"type":"view","user":"u","item":"i","ts":"2001-01-01T01:12:40.123+01:00"}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: rfcMillis}},
		{"value at range ends", `{"type":"rating","user":"u","item":"i","value":0.5,"ts":1}`,
			streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u", Item: "i", Value: 0.5, TS: 1000}},
		{"value 5", `{"type":"rating","user":"u","item":"i","value":5,"ts":1}`,
			streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u", Item: "i", Value: 5, TS: 1000}},
		{"implicit ignores value", `{"type":"view","user":"u","item":"i","value":"NaN","ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"null id means none", `{"id":null,"type":"view","user":"u","item":"i","ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"empty context dropped", `{"type":"view","user":"u","item":"i","ts":1,"context":{}}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1000}},
		{"16 context pairs", `{"type":"view","user":"u","item":"i","ts":1,"context":` + contextJSON(16) + `}`,
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1000, Context: contextMap(16)}},
		{"unicode ids", `{"type":"view","user":"ünï","item":"\u00e9","ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: "ünï", Item: "é", TS: 1000}},
		{"128-byte id", `{"type":"view","user":"` + strings.Repeat("u", 128) + `","item":"i","ts":1}`,
			streamrec.Event{Type: "view", Weight: 1, User: strings.Repeat("u", 128), Item: "i", TS: 1000}},
		{"unknown fields ignored, whitespace", " {\n\"type\" : \"view\", \"user\":\"u\",\"item\":\"i\",\"ts\":1, \"extra\":[1,2]}\n",
			streamrec.Event{Type: "view", Weight: 1, User: "u", Item: "i", TS: 1000}},
	}
	d := streamrec.NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode(%s)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func contextMap(n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[string(rune('a'+i))] = "v"
	}
	return m
}

func contextJSON(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + string(rune('a'+i)) + `":"v"`)
	}
	b.WriteByte('}')
	return b.String()
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string
		field  string
	}{
		{"malformed JSON", `{"type":"view",`, streamrec.ReasonMalformed, ""},
		{"not JSON", `hello`, streamrec.ReasonMalformed, ""},
		{"empty message", ``, streamrec.ReasonMalformed, ""},
		{"array", `[1,2]`, streamrec.ReasonMalformed, ""},
		{"trailing garbage", `{"type":"view","user":"u","item":"i","ts":1}x`, streamrec.ReasonMalformed, ""},
		{"JSON null", `null`, streamrec.ReasonMissing, "type"},
		{"missing type", `{"user":"u","item":"i","ts":1}`, streamrec.ReasonMissing, "type"},
		{"missing user", `{"type":"view","item":"i","ts":1}`, streamrec.ReasonMissing, "user"},
		{"null user", `{"type":"view","user":null,"item":"i","ts":1}`, streamrec.ReasonMissing, "user"},
		{"missing item", `{"type":"view","user":"u","ts":1}`, streamrec.ReasonMissing, "item"},
		{"missing ts", `{"type":"view","user":"u","item":"i"}`, streamrec.ReasonMissing, "ts"},
		{"missing value for rating", `{"type":"rating","user":"u","item":"i","ts":1}`, streamrec.ReasonMissing, "value"},
		{"null value for rating", `{"type":"rating","user":"u","item":"i","value":null,"ts":1}`, streamrec.ReasonMissing, "value"},
		{"unknown type", `{"type":"teleport","user":"u","item":"i","ts":1}`, streamrec.ReasonUnknownType, "type"},
		{"type is case sensitive", `{"type":"View","user":"u","item":"i","ts":1}`, streamrec.ReasonUnknownType, "type"},
		{"numeric type", `{"type":1,"user":"u","item":"i","ts":1}`, streamrec.ReasonInvalid, "type"},
		{"empty user", `{"type":"view","user":"","item":"i","ts":1}`, streamrec.ReasonInvalid, "user"},
		{"129-byte user", `{"type":"view","user":"` + strings.Repeat("u", 129) + `","item":"i","ts":1}`, streamrec.ReasonInvalid, "user"},
		{"bool item", `{"type":"view","user":"u","item":true,"ts":1}`, streamrec.ReasonInvalid, "item"},
		{"object item", `{"type":"view","user":"u","item":{},"ts":1}`, streamrec.ReasonInvalid, "item"},
		{"huge numeric id", `{"type":"view","user":1e300,"item":"i","ts":1}`, streamrec.ReasonInvalid, "user"},
		{"numeric id overflow", `{"type":"view","user":1e400,"item":"i","ts":1}`, streamrec.ReasonInvalid, "user"},
		{"value above range", `{"type":"rating","user":"u","item":"i","value":5.5,"ts":1}`, streamrec.ReasonValueRange, "value"},
		{"value below range", `{"type":"rating","user":"u","item":"i","value":0,"ts":1}`, streamrec.ReasonValueRange, "value"},
		{"negative value", `{"type":"rating","user":"u","item":"i","value":-3,"ts":1}`, streamrec.ReasonValueRange, "value"},
		{"NaN string value", `{"type":"rating","user":"u","item":"i","value":"NaN","ts":1}`, streamrec.ReasonValueRange, "value"},
		{"string value", `{"type":"rating","user":"u","item":"i","value":"4","ts":1}`, streamrec.ReasonValueRange, "value"},
		{"infinite value", `{"type":"rating","user":"u","item":"i","value":1e400,"ts":1}`, streamrec.ReasonValueRange, "value"},
		{"bool value", `{"type":"rating","user":"u","item":"i","value":true,"ts":1}`, streamrec.ReasonValueRange, "value"},
		{"ts zero", `{"type":"view","user":"u","item":"i","ts":0}`, streamrec.ReasonTimestamp, "ts"},
		{"negative ts", `{"type":"view","user":"u","item":"i","ts":-5}`, streamrec.ReasonTimestamp, "ts"},
		{"ts rounds to zero ms", `{"type":"view","user":"u","item":"i","ts":0.0001}`, streamrec.ReasonTimestamp, "ts"},
		{"ts beyond year 9999", `{"type":"view","user":"u","item":"i","ts":300000000000}`, streamrec.ReasonTimestamp, "ts"},
		{"ts ms beyond year 9999", `{"type":"view","user":"u","item":"i","ts":1e18}`, streamrec.ReasonTimestamp, "ts"},
		{"ts not RFC 3339", `{"type":"view","user":"u","item":"i","ts":"yesterday"}`, streamrec.ReasonTimestamp, "ts"},
		{"ts date only", `{"type":"view","user":"u","item":"i","ts":"2001-01-01"}`, streamrec.ReasonTimestamp, "ts"},
		{"ts before epoch", `{"type":"view","user":"u","item":"i","ts":"1960-01-01T00:00:00Z"}`, streamrec.ReasonTimestamp, "ts"},
		{"ts bool", `{"type":"view","user":"u","item":"i","ts":true}`, streamrec.ReasonTimestamp, "ts"},
		{"ts object", `{"type":"view","user":"u","item":"i","ts":{}}`, streamrec.ReasonTimestamp, "ts"},
		{"17 context pairs", `{"type":"view","user":"u","item":"i","ts":1,"context":` + contextJSON(17) + `}`, streamrec.ReasonInvalid, "context"},
		{"non-string context value", `{"type":"view","user":"u","item":"i","ts":1,"context":{"a":1}}`, streamrec.ReasonInvalid, ""},
		{"empty context key", `{"type":"view","user":"u","item":"i","ts":1,"context":{"":"v"}}`, streamrec.ReasonInvalid, "context"},
		{"long context value", `{"type":"view","user":"u","item":"i","ts":1,"context":{"k":"` + strings.Repeat("v", 1025) + `"}}`, streamrec.ReasonInvalid, "context"},
		{"bad UTF-8 in id", "{\"type\":\"view\",\"user\":\"\xff\xfe\",\"item\":\"i\",\"ts\":1}", streamrec.ReasonInvalidUTF8, ""},
		{"truncated UTF-8", "{\"type\":\"view\",\"user\":\"\xc3\",\"item\":\"i\",\"ts\":1}", streamrec.ReasonInvalidUTF8, ""},
		{"oversized", `{"type":"view","user":"u","item":"i","ts":1,"pad":"` + strings.Repeat("x", streamrec.DefaultMaxBytes) + `"}`, streamrec.ReasonOversized, ""},
	}
	d := streamrec.NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%.80s) succeeded, want %s", tt.in, tt.reason)
			}
			de := mustDecodeError(t, err)
			if de.Reason != tt.reason || (tt.field != "" && de.Field != tt.field) {
				t.Fatalf("Decode(%.80s) = %q (field %q), want reason %s field %q", tt.in, de.Reason, de.Field, tt.reason, tt.field)
			}
			if !strings.HasPrefix(de.Error(), tt.reason+":") {
				t.Fatalf("Error() = %q does not start with the reason", de.Error())
			}
		})
	}
}

func TestDecoderConfig(t *testing.T) {
	d := streamrec.NewDecoder()
	if err := d.Types.Set("stream=implicit:3"); err != nil {
		t.Fatal(err)
	}
	if err := d.Types.Set("stars=explicit"); err != nil {
		t.Fatal(err)
	}
	d.MinValue, d.MaxValue, d.MaxBytes = 1, 10, 100
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	e, err := d.Decode([]byte(`{"type":"stream","user":"u","item":"i","ts":1}`))
	if err != nil || e.Kind != streamrec.Implicit || e.Weight != 3 {
		t.Fatalf("custom implicit type: %+v, %v", e, err)
	}
	e, err = d.Decode([]byte(`{"type":"stars","user":"u","item":"i","value":9,"ts":1}`))
	if err != nil || e.Kind != streamrec.Explicit || e.Value != 9 {
		t.Fatalf("custom explicit type with range 1–10: %+v, %v", e, err)
	}
	_, err = d.Decode([]byte(`{"type":"stars","user":"u","item":"i","value":0.5,"ts":1}`))
	if de := mustDecodeError(t, err); de.Reason != streamrec.ReasonValueRange {
		t.Fatalf("0.5 outside 1–10: %v", err)
	}
	_, err = d.Decode([]byte(`{"type":"stars","user":"u","item":"i","value":5,"ts":1,"p":"` + strings.Repeat("x", 60) + `"}`))
	if de := mustDecodeError(t, err); de.Reason != streamrec.ReasonOversized {
		t.Fatalf("over 100 bytes: %v", err)
	}

	bad := []struct {
		name string
		d    streamrec.Decoder
	}{
		{"no types", streamrec.Decoder{MinValue: 0, MaxValue: 1, MaxBytes: 1}},
		{"inverted range", streamrec.Decoder{Types: streamrec.DefaultEventTypes(), MinValue: 5, MaxValue: 1, MaxBytes: 1}},
		{"NaN range", streamrec.Decoder{Types: streamrec.DefaultEventTypes(), MinValue: math.NaN(), MaxValue: 1, MaxBytes: 1}},
		{"infinite range", streamrec.Decoder{Types: streamrec.DefaultEventTypes(), MinValue: 0, MaxValue: math.Inf(1), MaxBytes: 1}},
		{"zero max bytes", streamrec.Decoder{Types: streamrec.DefaultEventTypes(), MinValue: 0, MaxValue: 1}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.d.Validate(); err == nil {
				t.Fatal("Validate accepted a bad decoder")
			}
		})
	}
}

func TestEventTypesSet(t *testing.T) {
	tests := []struct {
		spec string
		ok   bool
		want streamrec.EventType
	}{
		{"stream=implicit:3", true, streamrec.EventType{Kind: streamrec.Implicit, Weight: 3}},
		{"watch=implicit", true, streamrec.EventType{Kind: streamrec.Implicit, Weight: 1}},
		{"stars=explicit", true, streamrec.EventType{Kind: streamrec.Explicit, Weight: 1}},
		{"stars=explicit:2", false, streamrec.EventType{}},
		{"x=implicit:0", false, streamrec.EventType{}},
		{"x=implicit:-1", false, streamrec.EventType{}},
		{"x=implicit:NaN", false, streamrec.EventType{}},
		{"x=sideways", false, streamrec.EventType{}},
		{"=implicit", false, streamrec.EventType{}},
		{"novalue", false, streamrec.EventType{}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			types := streamrec.EventTypes{}
			err := types.Set(tt.spec)
			if (err == nil) != tt.ok {
				t.Fatalf("Set(%q) error %v, want ok=%v", tt.spec, err, tt.ok)
			}
			if tt.ok {
				name, _, _ := strings.Cut(tt.spec, "=")
				if types[name] != tt.want {
					t.Fatalf("Set(%q) = %+v, want %+v", tt.spec, types[name], tt.want)
				}
				back := streamrec.EventTypes{}
				if err := back.Set(types.String()); err != nil || back[name] != tt.want {
					t.Fatalf("String() %q does not parse back: %v", types.String(), err)
				}
			}
		})
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	events := []streamrec.Event{
		{ID: "e-1", Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "42", Item: "1193", Value: 4.5, TS: 978300760000, Context: map[string]string{"device": "ios", "q": `a"b\c<d>`}},
		{Type: "view", Weight: 1, User: "u\n\"quoted\"", Item: "é", TS: 1},
		{Type: "purchase", Weight: 4, User: "u", Item: "i", TS: 1700000000123},
		{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u", Item: "i", Value: 0.5, TS: 253402300799999},
		{Type: "rating", Kind: streamrec.Explicit, Weight: 1, User: "u", Item: "i", Value: 3.333333333333333, TS: 999},
	}
	d := streamrec.NewDecoder()
	for _, e := range events {
		b := streamrec.AppendJSON(nil, &e)
		got, err := d.Decode(b)
		if err != nil {
			t.Fatalf("Decode(AppendJSON(%+v) = %s): %v", e, b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %s\n got %+v\nwant %+v", b, got, e)
		}
	}
	// AppendJSON appends.
	b := streamrec.AppendJSON([]byte("x"), &events[1])
	if !strings.HasPrefix(string(b), `x{"type":"view"`) {
		t.Fatalf("AppendJSON does not append: %s", b)
	}
}

func TestDecodeItem(t *testing.T) {
	ok := []struct {
		in   string
		want streamrec.ItemMeta
	}{
		{`{"item":"1193","title":"Toy Story (1995)","categories":["Animation","Comedy"],"ts":978300760}`,
			streamrec.ItemMeta{Item: "1193", Title: "Toy Story (1995)", Categories: []string{"Animation", "Comedy"}, TS: 978300760000}},
		{`{"item":1}`, streamrec.ItemMeta{Item: "1"}},
		{`{"item":"x","ts":"2001-01-01T00:00:00Z"}`, streamrec.ItemMeta{Item: "x", TS: 978307200000}},
	}
	for _, tt := range ok {
		got, err := streamrec.DecodeItem([]byte(tt.in), streamrec.DefaultMaxBytes)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("DecodeItem(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		b := streamrec.AppendItemJSON(nil, &got)
		back, err := streamrec.DecodeItem(b, streamrec.DefaultMaxBytes)
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip %s = %+v, %v; want %+v", b, back, err, got)
		}
	}
	bad := []struct{ in, reason string }{
		{`{"title":"x"}`, streamrec.ReasonMissing},
		{`{"item":""}`, streamrec.ReasonInvalid},
		{`{"item":"x","ts":"never"}`, streamrec.ReasonTimestamp},
		{`{"item":"x","title":"` + strings.Repeat("t", 1025) + `"}`, streamrec.ReasonInvalid},
		{`{"item":"x"`, streamrec.ReasonMalformed},
		{"{\"item\":\"\xff\"}", streamrec.ReasonInvalidUTF8},
		{`{"item":"x","title":"` + strings.Repeat("t", 200) + `"}`, streamrec.ReasonOversized},
	}
	for _, tt := range bad {
		limit := 100
		if tt.reason != streamrec.ReasonOversized {
			limit = streamrec.DefaultMaxBytes
		}
		_, err := streamrec.DecodeItem([]byte(tt.in), limit)
		if de := mustDecodeError(t, err); de.Reason != tt.reason {
			t.Fatalf("DecodeItem(%.60s) reason %q, want %q", tt.in, de.Reason, tt.reason)
		}
	}
}

// FuzzDecode checks that the decoder never panics and that every event it
// accepts re-encodes (AppendJSON) to a message that decodes to the same
// event.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"id":"e-81f2","type":"rating","user":"42","item":"1193","value":4.5,"ts":978300760,"context":{"device":"ios"}}`,
		`{"type":"view","user":42,"item":1193,"ts":1700000000123}`,
		`{"type":"click","user":"u","item":"i","ts":"2001-01-01T00:12:40.123+01:00"}`,
		`{"type":"rating","user":"u","item":"i","value":"NaN","ts":1}`,
		`{"type":"purchase","user":"\u00e9\n","item":"<a&b>","ts":0.5}`,
		`{"type":"view","user":1e3,"item":-2.5,"ts":978300760.125}`,
		`{"type":"view","user":"u","item":"i","ts":253402300799.999}`,
		`[1,2,3]`,
		` { "type" : "view" , "user" : "u" , "item" : "i" , "ts" : 1e9 , "context" : { "a" : "b" } } `,
		`{"type":"view","USER":"u","item":"i","ts":1}`,
		`{"type":"view","user":"u","user":"v","item":"i","ts":1}`,
		`{"type":"view","user":"u","item":"i","ts":1,"context":{"a":"b"},"context":{"c":"d"}}`,
		`{"type":"view","user":"u","item":"i","ts":1,"context":{"a":"b","a":"c"}}`,
		`{"type":"view","user":"u\u0041","item":"i","ts":"2001-01-01T00:00:00Z"}`,
		`{"type":"view","user":01,"item":"i","ts":1}`,
		`{"type":"view","user":1.,"item":-,"ts":1}`,
		`{"type":"rating","user":"u","item":"i","value":4.5e0,"ts":1.5E+9}`,
		`{"type":"view","user":"u","item":"i","ts":1,"context":null}`,
		`{"type":"view","user":"u","item":"i","ts":1,"context":{}}`,
		`{"type":"view","user":"u","item":"i","ts":1,"context":{"a":1}}`,
		`{"type":"view","user":"u","item":"i","ts":1}{}`,
		`{"type":"view","user":true,"item":null,"ts":false}`,
		`{}`,
		`{"type":"view","user":"u","item":"i","ts":1,}`,
		"{\"type\":\"view\",\"user\":\"\xff\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	d := streamrec.NewDecoder()
	// Re-encoding may escape characters (<, >, &, U+2028) and spell
	// numeric ids as strings, so the second decode allows longer messages.
	d2 := streamrec.NewDecoder()
	d2.MaxBytes = 8 * streamrec.DefaultMaxBytes
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := streamrec.DecodeItem(b, streamrec.DefaultMaxBytes); err == nil {
			enc := streamrec.AppendItemJSON(nil, &m)
			back, err := streamrec.DecodeItem(enc, 8*streamrec.DefaultMaxBytes)
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Fatalf("item round trip\ninput %q\nre-encoded %s\n got %+v, %v\nwant %+v", b, enc, back, err, m)
			}
		} else {
			mustDecodeError(t, err)
		}
		e, err := d.Decode(b)
		// The fast path must agree with encoding/json on every input.
		if len(b) <= d.MaxBytes && utf8.Valid(b) {
			se, serr := streamrec.DecodeSlow(d, b)
			if fmt.Sprint(err) != fmt.Sprint(serr) || !reflect.DeepEqual(e, se) {
				t.Fatalf("fast and encoding/json paths disagree on %q\nfast %+v, %v\nslow %+v, %v", b, e, err, se, serr)
			}
		}
		if err != nil {
			mustDecodeError(t, err)
			return
		}
		enc := streamrec.AppendJSON(nil, &e)
		back, err := d2.Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\ninput %q\nre-encoded %s", err, b, enc)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("round trip changed the event\ninput %q\nre-encoded %s\n got %+v\nwant %+v", b, enc, back, e)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	msg := []byte(`{"id":"e-81f2","type":"rating","user":"42","item":"1193","value":4.5,"ts":978300760,"context":{"device":"ios"}}`)
	plain := []byte(`{"type":"rating","user":"196","item":"242","value":3,"ts":881250949}`)
	d := streamrec.NewDecoder()
	for _, bc := range []struct {
		name string
		msg  []byte
		fn   func([]byte) (streamrec.Event, error)
	}{
		{"fast/context", msg, d.Decode},
		{"fast/plain", plain, d.Decode},
		{"encoding-json/context", msg, func(m []byte) (streamrec.Event, error) { return streamrec.DecodeSlow(d, m) }},
		{"encoding-json/plain", plain, func(m []byte) (streamrec.Event, error) { return streamrec.DecodeSlow(d, m) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.msg)))
			for i := 0; i < b.N; i++ {
				if _, err := bc.fn(bc.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
