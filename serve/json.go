package serve

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/streamrec/streamrec"
)

// Codes the HTTP layer adds to streamrec's.
const (
	codeTooLarge         = "too_large"
	codeMethodNotAllowed = "method_not_allowed"
	codeTimeout          = "timeout"
)

// httpStatus maps an error code to its HTTP status: the one place that does.
func httpStatus(code string) int {
	switch code {
	case streamrec.EINVALID:
		return http.StatusBadRequest
	case streamrec.ENOTFOUND:
		return http.StatusNotFound
	case streamrec.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case streamrec.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case streamrec.ECONFLICT:
		return http.StatusConflict
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case codeTimeout:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// errorCode is streamrec.ErrorCode, also knowing body-limit errors.
func errorCode(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return codeTooLarge
	}
	return streamrec.ErrorCode(err)
}

func errorMessage(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return "request body over " + strconv.FormatInt(mbe.Limit, 10) + " bytes"
	}
	return streamrec.ErrorMessage(err)
}

var (
	jsonContentType = []string{"application/json"}
	nosniff         = []string{"nosniff"}
)

// bufPool holds response buffers of the hot path.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // do not keep rare huge buffers
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// writeJSON writes b as a JSON body with the status and returns the status.
func writeJSON(w http.ResponseWriter, status int, b []byte) int {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = w.Write(b) // a client gone away is not our error
	return status
}

// writeValue marshals v (off the hot path).
func writeValue(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return writeJSON(w, http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`+"\n"))
	}
	return writeJSON(w, status, append(b, '\n'))
}

// appendError appends {"error":{"code","message"}} without the closing brace,
// so callers can add fields.
func appendErrorObject(b []byte, code, msg string) []byte {
	b = append(b, `{"error":{"code":`...)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	b = appendString(b, msg)
	return append(b, '}')
}

// writeErr answers err as JSON with its status.
func writeErr(w http.ResponseWriter, err error) int {
	code := errorCode(err)
	return writeErrCode(w, code, errorMessage(err))
}

func writeErrCode(w http.ResponseWriter, code, msg string) int {
	bp := getBuf()
	defer putBuf(bp)
	b := appendErrorObject(*bp, code, msg)
	b = append(b, "}\n"...)
	*bp = b
	return writeJSON(w, httpStatus(code), b)
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat appends a finite float compactly; NaN and ±Inf become 0.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, f, 'g', 7, 64)
}
