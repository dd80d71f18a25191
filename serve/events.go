package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/streamrec/streamrec"
)

// lineError is one rejected event of POST /v1/events.
type lineError struct {
	Line    int    `json:"line"` // 1-based line (JSONL) or element (array) number
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type eventsError struct {
	Error  errorBody   `json:"error"`
	Errors []lineError `json:"errors"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// splitEvents cuts a body into event documents: one JSON object, a JSON
// array of objects, or JSON lines (blank lines skipped). Line numbers are
// 1-based: the element number for an array, the line number otherwise.
func splitEvents(body []byte) (docs [][]byte, lines []int, err error) {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return nil, nil, streamrec.Errorf(streamrec.EINVALID, "empty body: send one JSON event, a JSON array of events, or JSON lines")
	case trimmed[0] == '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, nil, streamrec.Errorf(streamrec.EINVALID, "malformed JSON array: %v", err)
		}
		for i, raw := range arr {
			docs = append(docs, raw)
			lines = append(lines, i+1)
		}
	case trimmed[0] == '{' && bytes.IndexByte(trimmed, '\n') >= 0 && json.Valid(trimmed):
		// One pretty-printed event spanning several lines.
		docs, lines = [][]byte{trimmed}, []int{1}
	default:
		rest := body
		for n := 1; len(rest) > 0; n++ {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if line = bytes.TrimSpace(line); len(line) > 0 {
				docs = append(docs, line)
				lines = append(lines, n)
			}
		}
	}
	if len(docs) == 0 {
		return nil, nil, streamrec.Errorf(streamrec.EINVALID, "no events in the body")
	}
	return docs, lines, nil
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) int {
	if s.deps.Events == nil {
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "event intake is not configured (no Kafka brokers)"))
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return writeErr(w, err)
		}
		return writeErr(w, streamrec.Errorf(streamrec.EINVALID, "reading body: %v", err))
	}
	docs, lines, err := splitEvents(body)
	if err != nil {
		return writeErr(w, err)
	}
	msgs := make([]Message, 0, len(docs))
	var bad []lineError
	for i, doc := range docs {
		ev, err := s.deps.EventDecoder.Decode(doc)
		if err != nil {
			le := lineError{Line: lines[i], Reason: streamrec.ReasonInvalid, Message: err.Error()}
			var de *streamrec.DecodeError
			if errors.As(err, &de) {
				le.Reason = de.Reason
			}
			bad = append(bad, le)
			s.metrics.rejected.WithLabelValues(le.Reason).Inc()
			continue
		}
		msgs = append(msgs, Message{Key: []byte(ev.User), Value: doc})
	}
	if len(bad) > 0 {
		return writeValue(w, http.StatusBadRequest, eventsError{
			Error:  errorBody{Code: streamrec.EINVALID, Message: strconv.Itoa(len(bad)) + " of " + strconv.Itoa(len(docs)) + " events are invalid; none were written"},
			Errors: bad,
		})
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.deps.Events.WriteEvents(ctx, msgs); err != nil {
		s.log.Error().Err(err).Int("events", len(msgs)).Msg("writing events to Kafka")
		if ctx.Err() != nil && r.Context().Err() == nil {
			return writeErrCode(w, codeTimeout, "Kafka did not acknowledge the events in time; they may or may not have been written")
		}
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "could not write the events to Kafka"))
	}
	s.metrics.accepted.Add(float64(len(msgs)))
	return writeJSON(w, http.StatusAccepted, append(strconv.AppendInt([]byte(`{"accepted":`), int64(len(msgs)), 10), '}', '\n'))
}
