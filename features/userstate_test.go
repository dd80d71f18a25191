package features

import (
	"strings"
	"testing"
)

// TestDecodeUserStateRejectsMalformed: a reply of the wrong shape is an
// error naming what was wrong, never a panic or a silently empty user.
func TestDecodeUserStateRejectsMalformed(t *testing.T) {
	stats := string(make([]byte, 8*sUserLen))
	tests := []struct {
		name  string
		reply any
		want  string
	}{
		{"unknown code", int64(7), "replied 7"},
		{"short array", []any{stats, ""}, "2 elements"},
		{"short counters", []any{"abc", "", []any{}, nil, []any{}}, "counters field of 3 bytes"},
		{"recent not array", []any{stats, "", "x", nil, []any{}}, "recent"},
		{"seen element not string", []any{stats, "", []any{}, nil, []any{int64(1)}}, "seen"},
		{"bad vector", []any{stats, "", []any{}, "abc", []any{}}, "vector of 3 bytes"},
		{"other type", "OK", "replied string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeUserState("u", "", tc.reply)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	st, changed, err := decodeUserState("u", "", []any{stats, "", []any{"a"}, nil, []any{"a", "b"}})
	if err != nil || !changed || !st.Known || st.User.Recent[0] != "a" || len(st.Seen) != 2 || st.Stamp != Stamp(stats) {
		t.Errorf("well-formed reply: %+v, %v, %v", st, changed, err)
	}
}
