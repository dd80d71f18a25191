package dataset

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/streamrec/streamrec"
)

// quoteField writes f as an RFC 4180 field for separator sep.
func quoteField(f string, sep byte) string {
	if strings.IndexByte(f, sep) < 0 && !strings.HasPrefix(f, `"`) {
		return f
	}
	return `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
}

// FuzzSplitFields checks that quoted fields round-trip through splitFields
// and that arbitrary lines never panic.
func FuzzSplitFields(f *testing.F) {
	f.Add("1", "Toy Story (1995)", "Adventure|Animation", byte(','))
	f.Add("7789", `11'09"01 - September 11 (2002)`, "Drama", byte(','))
	f.Add("a,b", `"`, "", byte(';'))
	f.Add("", "x\ty", `""`, byte('\t'))
	f.Fuzz(func(t *testing.T, a, b, c string, sep byte) {
		if sep == '"' || sep == '\n' || sep == '\r' {
			sep = ','
		}
		for _, s := range []string{a, b, c} {
			if strings.ContainsAny(s, "\r\n") {
				return // one line per record
			}
		}
		s := string([]byte{sep})
		line := quoteField(a, sep) + s + quoteField(b, sep) + s + quoteField(c, sep)
		got, err := splitFields(nil, []byte(line), []byte(s))
		if err != nil {
			t.Fatalf("split %q: %v", line, err)
		}
		want := []string{a, b, c}
		if len(got) != 3 {
			t.Fatalf("split %q into %d fields %q, want %q", line, len(got), got, want)
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Fatalf("split %q: field %d = %q, want %q", line, i, got[i], want[i])
			}
		}
		// Any bytes: no panic, and fields never exceed the line.
		for _, sep := range []string{",", "::", "\t"} {
			fs, _ := splitFields(nil, []byte(a), []byte(sep))
			n := 0
			for _, f := range fs {
				n += len(f)
			}
			if n > len(a) {
				t.Fatalf("fields of %q are longer than the line", a)
			}
		}
	})
}

// FuzzCSVLine parses arbitrary lines with a mapping: every accepted event
// meets the contract (it survives AppendJSON and the contract decoder).
func FuzzCSVLine(f *testing.F) {
	f.Add("1,10,rating,4.5,978300760,Drama|Comedy,Title")
	f.Add(`2,"x,y",view,,1700000000123,,"A ""quoted"" title"`)
	f.Add("3,4,purchase,,2024-01-01T00:00:00Z,,")
	f.Add("5,6,rating,NaN,1,,")
	f.Add("\xff,6,view,,1,,")
	types := streamrec.DefaultEventTypes()
	_ = types.Set("watched=implicit:3")
	o := &Options{Types: types}
	if err := o.normalise(); err != nil {
		f.Fatal(err)
	}
	m, err := parseColumns("user,item,type,value,ts,category,title")
	if err != nil {
		f.Fatal(err)
	}
	dec := o.decoder()
	f.Fuzz(func(t *testing.T, line string) {
		p := &csvParser{m: m, sep: []byte(","), defType: "view", b: newEventBuilder(o)}
		e, meta, err := p.parse([]byte(line))
		if err != nil {
			return
		}
		if meta.Item != e.Item {
			t.Fatalf("metadata for %q, event for %q", meta.Item, e.Item)
		}
		b := streamrec.AppendJSON(nil, &e)
		back, err := dec.Decode(b)
		if err != nil {
			t.Fatalf("line %q gave event %+v that the contract rejects: %v (%s)", line, e, err, b)
		}
		if back.User != e.User || back.Item != e.Item || back.Type != e.Type || back.Value != e.Value || back.TS != e.TS {
			t.Fatalf("round trip %+v → %+v", e, back)
		}
	})
}

// FuzzJSONL feeds arbitrary files to the JSONL reader: it never fails on
// content, and counts every non-blank line as an event or a rejection.
func FuzzJSONL(f *testing.F) {
	f.Add([]byte(`{"type":"rating","user":"1","item":"10","value":4,"ts":100}` + "\n" + `not json` + "\r\n\n" + `{"type":"view","user":2,"item":"x","ts":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte("{}\n[]\n\"\"\n"))
	f.Add([]byte("\xef\xbb\xbf\n{}"))
	f.Add([]byte("{\"type\":\"view\",\"user\":\"\xff\",\"item\":\"1\",\"ts\":1}"))
	o := &Options{}
	if err := o.normalise(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &Data{}
		if err := readJSONL(context.Background(), d, bytes.NewReader(data), "f", o); err != nil {
			t.Fatalf("read: %v", err)
		}
		lines := 0
		for _, l := range bytes.Split(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), []byte("\n")) {
			if len(bytes.TrimSpace(trimEOL(l))) > 0 {
				lines++
			}
		}
		if got := len(d.Events) + d.Rejected; got != lines {
			t.Fatalf("%d events + %d rejected, want %d lines", len(d.Events), d.Rejected, lines)
		}
		if len(d.Errors) > MaxErrors {
			t.Fatalf("%d errors kept", len(d.Errors))
		}
		for _, e := range d.Events {
			if !utf8.ValidString(e.User) || e.User == "" || e.Item == "" {
				t.Fatalf("bad event %+v", e)
			}
		}
		d.finish(o)
		if !slices.IsSortedFunc(d.Events, func(a, b streamrec.Event) int { return int(a.TS - b.TS) }) {
			t.Fatal("not sorted")
		}
	})
}
