package streamrec

import "encoding/json"

// scanEvent is the decoder's fast path: it splits the common shape of an
// event message — one flat JSON object whose keys are the contract's field
// names, spelled exactly, each at most once, with strings free of escapes,
// numbers, literals, and a context object of such strings — into w without
// reflection. It reports false for anything else (escapes, unknown or
// repeated keys, nested values, trailing data, invalid syntax), and the
// caller then uses encoding/json, which decides those cases. For the inputs
// it accepts, w holds exactly what json.Unmarshal would put there, so both
// paths validate the same bytes (FuzzDecodeFastPath checks this).
func scanEvent(b []byte, w *wireEvent) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	var seen uint8
	for {
		ks, ke, ok := scanPlainString(b, i)
		if !ok {
			return false
		}
		key := b[ks:ke]
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		var dst *json.RawMessage
		var bit uint8
		switch string(key) {
		case "id":
			dst, bit = &w.ID, 1
		case "type":
			dst, bit = &w.Type, 2
		case "user":
			dst, bit = &w.User, 4
		case "item":
			dst, bit = &w.Item, 8
		case "value":
			dst, bit = &w.Value, 16
		case "ts":
			dst, bit = &w.TS, 32
		case "context":
			bit = 64
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if dst != nil {
			end, ok := scanScalar(b, i)
			if !ok {
				return false
			}
			*dst = b[i:end:end]
			i = end
		} else {
			end, ok := scanContext(b, i, w)
			if !ok {
				return false
			}
			i = end
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return skipWS(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanPlainString scans a string without escapes or control characters
// starting at b[i] == '"'; it returns the content bounds [s, e) with b[e]
// the closing quote.
func scanPlainString(b []byte, i int) (s, e int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// scanScalar scans a plain string, a JSON number or a literal at b[i] and
// returns the index after it.
func scanScalar(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		_, e, ok := scanPlainString(b, i)
		return e + 1, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	}
	return 0, false
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// scanNumber follows the JSON number grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	return i, true
}

// scanContext scans null or an object of plain string pairs with distinct
// keys into w.Context.
func scanContext(b []byte, i int, w *wireEvent) (int, bool) {
	if end, ok := scanLiteral(b, i, "null"); ok {
		return end, true
	}
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		w.Context = map[string]string{}
		return i + 1, true
	}
	m := make(map[string]string, 4)
	for {
		ks, ke, ok := scanPlainString(b, i)
		if !ok {
			return 0, false
		}
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipWS(b, i+1)
		vs, ve, ok := scanPlainString(b, i)
		if !ok {
			return 0, false
		}
		k := string(b[ks:ke])
		if _, dup := m[k]; dup {
			return 0, false
		}
		m[k] = string(b[vs:ve])
		i = skipWS(b, ve+1)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			w.Context = m
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// plainString returns the content of a JSON string without escapes or
// control characters, as json.Unmarshal would decode it.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}
