package dataset

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/streamrec/streamrec"
)

// maxLine bounds one line; longer lines are rejected, not fatal.
const maxLine = 1 << 20

var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxLine)

// lineReader streams lines without their "\n" or "\r\n".
type lineReader struct {
	r    *bufio.Reader
	buf  []byte
	line int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next line (valid until the following call; lr.line is
// its 1-based number), without a UTF-8 byte-order mark on the first line,
// and errLineTooLong for an oversized line (which is skipped). It returns
// io.EOF after the last line.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.read()
	if lr.line == 1 && err == nil {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	return line, err
}

func (lr *lineReader) read() ([]byte, error) {
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if len(chunk) > 0 || err == nil {
			if !tooLong && len(lr.buf)+len(chunk) <= maxLine+2 {
				if err == nil && len(lr.buf) == 0 {
					lr.line++
					return trimEOL(chunk), nil // fast path: the whole line is in the buffer
				}
				lr.buf = append(lr.buf, chunk...)
			} else {
				tooLong = true
				lr.buf = lr.buf[:0]
			}
		}
		switch {
		case err == nil:
			lr.line++
			if tooLong {
				return nil, errLineTooLong
			}
			return trimEOL(lr.buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(lr.buf) == 0 && !tooLong {
				return nil, io.EOF
			}
			lr.line++
			if tooLong {
				return nil, errLineTooLong
			}
			return trimEOL(lr.buf), nil
		default:
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// splitFields splits one line at sep, appending the fields to dst. With a
// one-byte separator, fields may be double-quoted as in RFC 4180 ("" is a
// quote inside a quoted field); a quoted field with escaped quotes is copied,
// every other field aliases line.
func splitFields(dst [][]byte, line, sep []byte) ([][]byte, error) {
	if len(sep) == 0 {
		return nil, errors.New("empty separator")
	}
	quoting := len(sep) == 1 && sep[0] != '"'
	for {
		if quoting && len(line) > 0 && line[0] == '"' {
			field, rest, err := quotedField(line, sep[0])
			if err != nil {
				return dst, err
			}
			dst = append(dst, field)
			if rest == nil {
				return dst, nil
			}
			line = rest
			continue
		}
		i := bytes.Index(line, sep)
		if i < 0 {
			return append(dst, line), nil
		}
		dst = append(dst, line[:i])
		line = line[i+len(sep):]
	}
}

// quotedField reads a quoted field at the start of line. rest is what
// follows the separator after it, nil at the end of the line.
func quotedField(line []byte, sep byte) (field, rest []byte, err error) {
	var out []byte // only when the field holds escaped quotes
	start := 1
	for i := 1; i < len(line); i++ {
		if line[i] != '"' {
			continue
		}
		if i+1 < len(line) && line[i+1] == '"' {
			out = append(out, line[start:i+1]...)
			start = i + 2
			i++
			continue
		}
		// Closing quote.
		if out != nil {
			field = append(out, line[start:i]...)
		} else {
			field = line[start:i]
		}
		switch {
		case i+1 == len(line):
			return field, nil, nil
		case line[i+1] == sep:
			return field, line[i+2:], nil
		default:
			return nil, nil, fmt.Errorf("unexpected %q after closing quote", line[i+1])
		}
	}
	return nil, nil, errors.New("unterminated quoted field")
}

// parseSep turns the --sep value into separator bytes.
func parseSep(s string) ([]byte, error) {
	switch s {
	case "":
		return []byte(","), nil
	case "\\t", "tab", "\t", "TAB":
		return []byte("\t"), nil
	case "pipe":
		return []byte("|"), nil
	case "space":
		return []byte(" "), nil
	case "semicolon":
		return []byte(";"), nil
	}
	return []byte(s), nil
}

// interner shares one string per distinct id.
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// parseID validates a user or item id as the contract does (1–128 bytes of
// valid UTF-8).
func (in interner) id(field string, b []byte) (string, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > streamrec.MaxIDBytes {
		return "", &streamrec.DecodeError{Reason: streamrec.ReasonInvalid, Field: field, Msg: fmt.Sprintf("must be 1–%d bytes, got %d", streamrec.MaxIDBytes, len(b))}
	}
	if !utf8.Valid(b) {
		return "", &streamrec.DecodeError{Reason: streamrec.ReasonInvalidUTF8, Field: field, Msg: "not valid UTF-8"}
	}
	return in.get(b), nil
}

// parseFloat parses a decimal number, with a fast path for small integers.
func parseFloat(b []byte) (float64, bool) {
	b = bytes.TrimSpace(b)
	if n := len(b); n > 0 && n <= 15 {
		var v int64
		ok := true
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if ok {
			return float64(v), true
		}
	}
	f, err := strconv.ParseFloat(string(b), 64)
	return f, err == nil
}

// parseTS reads a timestamp field: Unix seconds (integer or fractional),
// Unix milliseconds (> 1e12), RFC 3339, or "2006-01-02 15:04:05" in UTC.
func parseTS(b []byte) (int64, error) {
	b = bytes.TrimSpace(b)
	if f, ok := parseFloat(b); ok {
		return streamrec.TimestampMillis(f)
	}
	s := string(b)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.UnixMilli() <= 0 {
				break
			}
			return t.UnixMilli(), nil
		}
	}
	return 0, &streamrec.DecodeError{Reason: streamrec.ReasonTimestamp, Field: "ts", Msg: fmt.Sprintf("%q is not Unix seconds, Unix milliseconds or RFC 3339", truncate(s, 40))}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// latin1 decodes ISO-8859-1 bytes to a UTF-8 string.
func latin1(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return string(out)
}

// eventBuilder turns parsed fields into contract events.
type eventBuilder struct {
	opts *Options
	ids  interner
	strs interner // types and categories
}

func newEventBuilder(o *Options) *eventBuilder {
	return &eventBuilder{opts: o, ids: make(interner, 1<<12), strs: make(interner, 64)}
}

// event validates one event. value is only read for explicit types.
func (b *eventBuilder) event(typ string, user, item []byte, value []byte, ts int64) (streamrec.Event, error) {
	var e streamrec.Event
	et, ok := b.opts.Types[typ]
	if !ok {
		return e, &streamrec.DecodeError{Reason: streamrec.ReasonUnknownType, Field: "type", Msg: fmt.Sprintf("unknown event type %q", truncate(typ, 40))}
	}
	var err error
	if e.User, err = b.ids.id("user", user); err != nil {
		return e, err
	}
	if e.Item, err = b.ids.id("item", item); err != nil {
		return e, err
	}
	e.Type, e.Kind, e.Weight, e.TS = typ, et.Kind, et.Weight, ts
	if et.Kind == streamrec.Explicit {
		e.Weight = 1
		if value == nil {
			return e, &streamrec.DecodeError{Reason: streamrec.ReasonMissing, Field: "value", Msg: "required for explicit events"}
		}
		v, ok := parseFloat(value)
		if !ok || v != v {
			return e, &streamrec.DecodeError{Reason: streamrec.ReasonValueRange, Field: "value", Msg: fmt.Sprintf("%q is not a finite number", truncate(string(value), 40))}
		}
		if v < b.opts.MinValue || v > b.opts.MaxValue {
			return e, &streamrec.DecodeError{Reason: streamrec.ReasonValueRange, Field: "value", Msg: fmt.Sprintf("%g outside [%g, %g]", v, b.opts.MinValue, b.opts.MaxValue)}
		}
		e.Value = v
	}
	return e, nil
}

// lineError wraps a rejection with its file and line number.
func lineError(file string, line int, err error) error {
	return fmt.Errorf("%s:%d: %w", file, line, err)
}
