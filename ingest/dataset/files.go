package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/streamrec/streamrec"
)

// loadYooChoose reads the RecSys Challenge 2015 click sample: tab-separated
// with the header SessionId, ItemId, Time (Unix seconds, fractional). Each
// session stands in for a user; every click is a "view" (or TypeDefault).
func loadYooChoose(ctx context.Context, path string, o *Options) (*Data, error) {
	file, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	d := &Data{Name: "yoochoose:" + baseName(path)}
	typ := "view"
	if o.TypeDefault != "" {
		typ = o.TypeDefault
	}
	b := newEventBuilder(o)
	lr := newLineReader(file)
	sep := []byte("\t")
	fields := make([][]byte, 0, 4)
	col := [3]int{0, 1, 2} // session, item, time
	name := baseName(path)
	for {
		line, err := lr.next()
		if err == io.EOF {
			return d, nil
		}
		if errors.Is(err, errLineTooLong) {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if lr.line&0xffff == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		fields = splitPlain(fields[:0], line, sep[0])
		if lr.line == 1 {
			if c, ok := yoochooseHeader(fields); ok {
				col = c
				continue
			}
		}
		if len(fields) < 3 {
			d.reject(lineError(name, lr.line, fmt.Errorf("want 3 tab-separated fields (SessionId, ItemId, Time), got %d", len(fields))))
			continue
		}
		ts, err := parseTS(fields[col[2]])
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		e, err := b.event(typ, fields[col[0]], fields[col[1]], nil, ts)
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		d.Events = append(d.Events, e)
	}
}

// yoochooseHeader finds the column order in a header line.
func yoochooseHeader(fields [][]byte) ([3]int, bool) {
	col := [3]int{-1, -1, -1}
	for i, f := range fields {
		switch strings.ToLower(string(bytes.TrimSpace(f))) {
		case "sessionid", "session_id", "session":
			col[0] = i
		case "itemid", "item_id", "item":
			col[1] = i
		case "time", "timestamp", "ts":
			col[2] = i
		}
	}
	return col, col[0] >= 0 && col[1] >= 0 && col[2] >= 0
}

// loadJSONL reads one contract event per line with the contract decoder.
func loadJSONL(ctx context.Context, path string, o *Options) (*Data, error) {
	file, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	d := &Data{Name: "jsonl:" + baseName(path)}
	if err := readJSONL(ctx, d, file, baseName(path), o); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return d, nil
}

// readJSONL appends the events of r to d.
func readJSONL(ctx context.Context, d *Data, r io.Reader, name string, o *Options) error {
	dec := o.decoder()
	lr := newLineReader(r)
	for {
		line, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			d.reject(lineError(name, lr.line, &streamrec.DecodeError{Reason: streamrec.ReasonOversized, Msg: err.Error()}))
			continue
		}
		if err != nil {
			return err
		}
		if lr.line&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := dec.Decode(line)
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		d.Events = append(d.Events, e)
	}
}

// Column roles of the CSV mapping.
const (
	colSkip = iota
	colUser
	colItem
	colType
	colValue
	colTS
	colCategory
	colTitle
)

// csvMapping is a parsed --columns value.
type csvMapping struct {
	roles []int
	index [colTitle + 1]int // role → column, -1 when absent
}

// parseColumns parses "user,item,type,value,ts,category,title,-".
func parseColumns(s string) (csvMapping, error) {
	var m csvMapping
	for i := range m.index {
		m.index[i] = -1
	}
	if strings.TrimSpace(s) == "" {
		s = "user,item,value,ts"
	}
	for i, name := range strings.Split(s, ",") {
		role := colSkip
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "-", "_", "":
		case "user", "user_id", "userid", "session":
			role = colUser
		case "item", "item_id", "itemid":
			role = colItem
		case "type", "event", "event_type":
			role = colType
		case "value", "rating":
			role = colValue
		case "ts", "time", "timestamp":
			role = colTS
		case "category", "categories", "genres":
			role = colCategory
		case "title", "name":
			role = colTitle
		default:
			return m, fmt.Errorf("%w: column %d %q: want user, item, type, value, ts, category, title or -", ErrSpec, i+1, name)
		}
		if role != colSkip {
			if m.index[role] >= 0 {
				return m, fmt.Errorf("%w: column %q appears twice in %q", ErrSpec, name, s)
			}
			m.index[role] = i
		}
		m.roles = append(m.roles, role)
	}
	for _, need := range []struct {
		role int
		name string
	}{{colUser, "user"}, {colItem, "item"}, {colTS, "ts"}} {
		if m.index[need.role] < 0 {
			return m, fmt.Errorf("%w: columns %q: a %s column is required", ErrSpec, s, need.name)
		}
	}
	return m, nil
}

// loadCSV reads a delimited file with the options' column mapping.
func loadCSV(ctx context.Context, path string, o *Options) (*Data, error) {
	m, err := parseColumns(o.Columns)
	if err != nil {
		return nil, err
	}
	sep, err := parseSep(o.Sep)
	if err != nil {
		return nil, err
	}
	defType := o.TypeDefault
	if defType == "" {
		defType = "view"
		if m.index[colValue] >= 0 {
			defType = "rating"
		}
		if _, ok := o.Types[defType]; !ok && m.index[colType] < 0 {
			return nil, fmt.Errorf("%w: no type column and default type %q is not configured; set the default type", ErrSpec, defType)
		}
	}
	file, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	d := &Data{Name: "csv:" + baseName(path)}
	p := &csvParser{m: m, sep: sep, defType: defType, b: newEventBuilder(o)}
	if err := p.read(ctx, d, file, baseName(path), o.Header); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return d, nil
}

// read appends the events (and item metadata) of r to d.
func (p *csvParser) read(ctx context.Context, d *Data, r io.Reader, name string, header bool) error {
	items := map[string]int{} // item → index in d.Items
	lr := newLineReader(r)
	for {
		line, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		if err != nil {
			return err
		}
		if lr.line&0xffff == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if (header && lr.line == 1) || len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, meta, err := p.parse(line)
		if err != nil {
			d.reject(lineError(name, lr.line, err))
			continue
		}
		d.Events = append(d.Events, e)
		if meta.Title != "" || len(meta.Categories) > 0 {
			if i, ok := items[meta.Item]; ok {
				d.Items[i] = meta // the latest line wins
			} else {
				items[meta.Item] = len(d.Items)
				d.Items = append(d.Items, meta)
			}
		}
	}
}

// csvParser parses the lines of a mapped CSV file.
type csvParser struct {
	m       csvMapping
	sep     []byte
	defType string
	b       *eventBuilder
	fields  [][]byte
}

// parse turns one line into an event and, when the mapping has category or
// title columns, the item's metadata.
func (p *csvParser) parse(line []byte) (streamrec.Event, streamrec.ItemMeta, error) {
	var (
		e    streamrec.Event
		meta streamrec.ItemMeta
		err  error
	)
	p.fields, err = splitFields(p.fields[:0], line, p.sep)
	if err != nil {
		return e, meta, &streamrec.DecodeError{Reason: streamrec.ReasonMalformed, Msg: err.Error()}
	}
	if len(p.fields) < len(p.m.roles) {
		return e, meta, &streamrec.DecodeError{Reason: streamrec.ReasonMissing, Msg: fmt.Sprintf("want %d fields, got %d", len(p.m.roles), len(p.fields))}
	}
	get := func(role int) []byte {
		if i := p.m.index[role]; i >= 0 {
			return p.fields[i]
		}
		return nil
	}
	typ := p.defType
	if t := bytes.TrimSpace(get(colType)); len(t) > 0 {
		typ = p.b.strs.get(t)
	}
	ts, err := parseTS(get(colTS))
	if err != nil {
		return e, meta, err
	}
	value := get(colValue)
	if p.m.index[colValue] >= 0 && len(bytes.TrimSpace(value)) == 0 {
		value = nil
	}
	if e, err = p.b.event(typ, get(colUser), get(colItem), value, ts); err != nil {
		return e, meta, err
	}
	meta.Item = e.Item
	if t := bytes.TrimSpace(get(colTitle)); len(t) > 0 {
		meta.Title = string(t)
	}
	if c := bytes.TrimSpace(get(colCategory)); len(c) > 0 && string(c) != "(no genres listed)" {
		for _, name := range bytes.Split(c, []byte("|")) {
			if name = bytes.TrimSpace(name); len(name) > 0 {
				meta.Categories = append(meta.Categories, p.b.strs.get(name))
			}
		}
	}
	return e, meta, nil
}
