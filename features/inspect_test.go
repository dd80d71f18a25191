package features_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/featurestest"
)

func TestInspectHandler(t *testing.T) {
	ctx := context.Background()
	m := mustMemory(t, features.DefaultConfig())
	ts := featurestest.T0
	if _, err := m.Apply(ctx, []streamrec.Event{
		featurestest.Ev("u1", "a", streamrec.Explicit, 4, ts, 0, 0),
		featurestest.Ev("u1", "b", streamrec.Implicit, 0, ts+1, 0, 1),
		featurestest.Ev("u2", "a", streamrec.Explicit, 3, ts+2, 0, 2),
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.PutItems(ctx, []streamrec.ItemMeta{{Item: "a", Title: "Alpha", Categories: []string{"X"}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/v1/inspect", features.NewInspectHandler(m)))
	defer srv.Close()
	tests := []struct {
		path   string
		status int
		want   []string
	}{
		{"/v1/inspect/users/u1", 200, []string{`"user":"u1"`, `"events":2`, `"by_kind":{"explicit":1,"implicit":1}`,
			`"explicit_sum":4`, `"explicit_mean":4`, `"recent":["b","a"]`, `"first_ts":1740830400000`, `"last_ts":1740830400001`}},
		{"/v1/inspect/items/a", 200, []string{`"item":"a"`, `"events":2`, `"explicit_mean":3.5`, `"title":"Alpha"`, `"categories":["X"]`, `"popularity":1.99`}},
		{"/v1/inspect/stats", 200, []string{`"events":3`, `"users":2`, `"items":2`, `"explicit_mean":3.5`}},
		{"/v1/inspect/users/nobody", 404, []string{`"code":"not_found"`, `user \"nobody\" not found`}},
		{"/v1/inspect/items/nothing", 404, []string{`"code":"not_found"`}},
		{"/v1/inspect/frob", 404, []string{`"error"`}},
	}
	for _, tc := range tests {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s, want %d JSON", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: %s lacks %s", tc.path, b, w)
			}
		}
	}
	resp, err := http.Get(srv.URL + "/v1/inspect/users")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if resp.StatusCode != 200 || len(lines) != 2 {
		t.Fatalf("/users: %d, %q", resp.StatusCode, b)
	}
	for _, l := range lines {
		var v features.UserView
		if err := json.Unmarshal([]byte(l), &v); err != nil || (v.User != "u1" && v.User != "u2") {
			t.Errorf("/users line %q: %v", l, err)
		}
	}
}
