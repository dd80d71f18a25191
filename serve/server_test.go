package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type recResp struct {
	User         string `json:"user"`
	ModelVersion int64  `json:"model_version"`
	Items        []struct {
		Item       string   `json:"item"`
		Score      float64  `json:"score"`
		Title      string   `json:"title"`
		Categories []string `json:"categories"`
	} `json:"items"`
	Degraded bool `json:"degraded"`
}

type errResp struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Errors []lineError `json:"errors"`
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("response is not the expected JSON: %v: %s", err, body)
	}
	return v
}

func itemIDs(r recResp) string {
	var ids []string
	for _, it := range r.Items {
		ids = append(ids, it.Item)
	}
	return strings.Join(ids, ",")
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"default", func(*Config) {}, ""},
		{"no addr", func(c *Config) { c.Addr = "" }, "addr is empty"},
		{"admin same as addr", func(c *Config) { c.AdminAddr = c.Addr }, "admin addr"},
		{"max n", func(c *Config) { c.MaxN = 0 }, "max n"},
		{"default n over max", func(c *Config) { c.DefaultN = 2000 }, "default n"},
		{"body", func(c *Config) { c.MaxBodyBytes = 0 }, "max body bytes"},
		{"poll", func(c *Config) { c.PollInterval = 0 }, "poll interval"},
		{"feature timeout", func(c *Config) { c.FeatureTimeout = -1 }, "feature timeout"},
		{"breaker", func(c *Config) { c.BreakerFailures = 0 }, "breaker failures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestRecommendations(t *testing.T) {
	f := newFixture(t, nil)
	f.load(t, 7, 20)
	tests := []struct {
		name      string
		path      string
		status    int
		items     string // comma-separated ids, "" to skip the check
		degraded  bool
		errorCode string
	}{
		{"known user, seen excluded", "/v1/users/u1/recommendations?n=3", 200, "i4,i5,i6", false, ""},
		{"default n", "/v1/users/u1/recommendations", 200, "i4,i5,i6,i7,i8,i9,i10,i11,i12,i13", false, ""},
		{"seen kept", "/v1/users/u1/recommendations?n=3&exclude_seen=false", 200, "i1,i2,i3", false, ""},
		{"category", "/v1/users/u1/recommendations?n=3&category=Even", 200, "i4,i6,i8", false, ""},
		{"escaped category", "/v1/users/u1/recommendations?n=2&category=%44rama", 200, "i5,i7", false, ""},
		{"unknown user cold start", "/v1/users/nobody/recommendations?n=2", 200, "i1,i2", false, ""},
		{"escaped user id", "/v1/users/a%20b/recommendations?n=1", 200, "i1", false, ""},
		{"n zero", "/v1/users/u1/recommendations?n=0", 400, "", false, "invalid"},
		{"n too big", "/v1/users/u1/recommendations?n=1001", 400, "", false, "invalid"},
		{"n not a number", "/v1/users/u1/recommendations?n=ten", 400, "", false, "invalid"},
		{"exclude_seen not a bool", "/v1/users/u1/recommendations?exclude_seen=maybe", 400, "", false, "invalid"},
		{"user id too long", "/v1/users/" + strings.Repeat("x", 129) + "/recommendations", 400, "", false, "invalid"},
		{"user id bad utf-8", "/v1/users/%ff%fe/recommendations", 400, "", false, "invalid"},
		{"bad escape", "/v1/users/u1/recommendations?category=%zz", 400, "", false, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.do(t, "GET", tt.path, "")
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.errorCode != "" {
				if e := decode[errResp](t, body); e.Error.Code != tt.errorCode || e.Error.Message == "" {
					t.Fatalf("error %+v, want code %q", e.Error, tt.errorCode)
				}
				return
			}
			r := decode[recResp](t, body)
			if r.ModelVersion != 7 || r.Degraded != tt.degraded {
				t.Errorf("version %d degraded %v", r.ModelVersion, r.Degraded)
			}
			if got := itemIDs(r); got != tt.items {
				t.Errorf("items %s, want %s", got, tt.items)
			}
			for _, it := range r.Items {
				if it.Title != `Title "`+it.Item+`"` || len(it.Categories) == 0 || it.Score != 7 {
					t.Errorf("item %+v lacks its title, categories or score", it)
				}
			}
		})
	}
}

func TestRecommendationsDegraded(t *testing.T) {
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	f := newFixture(t, func(c *Config, d *Deps) { d.Now = clock; c.BreakerFailures = 2; c.BreakerCooldown = time.Second })

	// No snapshot yet: popularity from the feature store.
	status, body := f.do(t, "GET", "/v1/users/u1/recommendations?n=2", "")
	r := decode[recResp](t, body)
	if status != 200 || !r.Degraded || r.ModelVersion != 0 || itemIDs(r) != "p1,p2" {
		t.Fatalf("no snapshot: %d %s", status, body)
	}
	// No snapshot and no feature store: 503 JSON.
	f.feat.fail.Store(true)
	status, body = f.do(t, "GET", "/v1/users/u1/recommendations", "")
	if e := decode[errResp](t, body); status != 503 || e.Error.Code != "unavailable" {
		t.Fatalf("nothing available: %d %s", status, body)
	}
	f.feat.fail.Store(false)
	f.srv.breaker.success()

	// Snapshot loaded, feature store down: the snapshot's popularity, degraded.
	f.load(t, 3, 10)
	f.feat.fail.Store(true)
	before := f.feat.calls.Load()
	for i := 0; i < 5; i++ {
		status, body = f.do(t, "GET", "/v1/users/u1/recommendations?n=3", "")
		r = decode[recResp](t, body)
		if status != 200 || !r.Degraded || itemIDs(r) != "i1,i2,i3" || r.ModelVersion != 3 {
			t.Fatalf("store down: %d %s", status, body)
		}
	}
	// The breaker opened after 2 failures: the other 3 did not touch the store.
	if calls := f.feat.calls.Load() - before; calls != 2 {
		t.Errorf("store called %d times while failing, want 2 (breaker)", calls)
	}
	if got := testutil.ToFloat64(f.srv.metrics.degraded.WithLabelValues("recommendations", degradedFeatures)) +
		testutil.ToFloat64(f.srv.metrics.degraded.WithLabelValues("recommendations", degradedBreaker)); got != 5 {
		t.Errorf("degraded counter %v, want 5", got)
	}
	// Store back; after the cooldown one probe closes the breaker.
	f.feat.fail.Store(false)
	_, body = f.do(t, "GET", "/v1/users/u1/recommendations?n=3", "")
	if r = decode[recResp](t, body); !r.Degraded {
		t.Fatalf("breaker should still be open before the cooldown: %s", body)
	}
	now = now.Add(2 * time.Second)
	_, body = f.do(t, "GET", "/v1/users/u1/recommendations?n=3", "")
	if r = decode[recResp](t, body); r.Degraded || itemIDs(r) != "i4,i5,i6" {
		t.Fatalf("after recovery: %s", body)
	}
}

func TestSimilar(t *testing.T) {
	f := newFixture(t, nil)
	status, body := f.do(t, "GET", "/v1/items/i1/similar", "")
	if status != 503 {
		t.Fatalf("no snapshot: %d %s", status, body)
	}
	f.load(t, 2, 5)
	tests := []struct {
		path   string
		status int
		items  string
	}{
		{"/v1/items/i1/similar?n=2", 200, "i2,i3"},
		{"/v1/items/i3/similar", 200, "i1,i2,i4,i5"},
		{"/v1/items/nope/similar", 404, ""},
		{"/v1/items/i1/similar?n=-1", 400, ""},
	}
	for _, tt := range tests {
		status, body := f.do(t, "GET", tt.path, "")
		if status != tt.status {
			t.Fatalf("%s: %d %s", tt.path, status, body)
		}
		if status == 200 {
			if r := decode[recResp](t, body); itemIDs(r) != tt.items || r.ModelVersion != 2 {
				t.Errorf("%s: %s", tt.path, body)
			}
		} else if e := decode[errResp](t, body); e.Error.Code == "" {
			t.Errorf("%s: no error code: %s", tt.path, body)
		}
	}
}

func TestRank(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { c.MaxBodyBytes = 1024; c.MaxN = 5; c.DefaultN = 5 })
	status, _ := f.do(t, "POST", "/v1/rank", `{"user":"u1","items":["i1"]}`)
	if status != 503 {
		t.Fatalf("no snapshot: %d", status)
	}
	f.load(t, 4, 10)
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"ok", `{"user":"u1","items":["i3","zz","i1"]}`, 200, `{"model_version":4,"scores":[{"item":"i3","score":4},{"item":"zz","score":4},{"item":"i1","score":4}],"degraded":false}`},
		{"malformed", `{"user":"u1","items":[`, 400, ""},
		{"unknown field", `{"user":"u1","items":["i1"],"x":1}`, 400, ""},
		{"no user", `{"items":["i1"]}`, 400, ""},
		{"no items", `{"user":"u1","items":[]}`, 400, ""},
		{"too many items", `{"user":"u1","items":["1","2","3","4","5","6"]}`, 400, ""},
		{"empty item", `{"user":"u1","items":[""]}`, 400, ""},
		{"too large", `{"user":"u1","items":["` + strings.Repeat("a", 2000) + `"]}`, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.do(t, "POST", "/v1/rank", tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.want != "" && strings.TrimSpace(body) != tt.want {
				t.Fatalf("body %s, want %s", body, tt.want)
			}
			if status != 200 {
				if e := decode[errResp](t, body); e.Error.Code == "" || e.Error.Message == "" {
					t.Fatalf("not a JSON error: %s", body)
				}
			}
		})
	}
	f.feat.fail.Store(true)
	if status, body := f.do(t, "POST", "/v1/rank", `{"user":"u1","items":["i1"]}`); status != 200 || !strings.Contains(body, `"degraded":true`) {
		t.Fatalf("store down: %d %s", status, body)
	}
}

func TestPopular(t *testing.T) {
	f := newFixture(t, nil)
	status, body := f.do(t, "GET", "/v1/popular?n=2", "")
	if r := decode[recResp](t, body); status != 200 || itemIDs(r) != "p1,p2" || r.ModelVersion != 0 {
		t.Fatalf("from the store: %d %s", status, body)
	}
	f.load(t, 5, 10)
	status, body = f.do(t, "GET", "/v1/popular?n=3&category=Odd", "")
	if r := decode[recResp](t, body); status != 200 || itemIDs(r) != "i1,i3,i5" || r.ModelVersion != 5 || r.Items[0].Title == "" {
		t.Fatalf("from the snapshot: %d %s", status, body)
	}
	if status, _ = f.do(t, "GET", "/v1/popular?n=abc", ""); status != 400 {
		t.Fatalf("bad n: %d", status)
	}
}

func TestModelAndHealth(t *testing.T) {
	f := newFixture(t, nil)
	f.feat.fail.Store(true)
	if status, body := f.do(t, "GET", "/v1/model", ""); status != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("model before a snapshot: %d %s", status, body)
	}
	if status, _ := f.do(t, "GET", "/readyz", ""); status != 503 {
		t.Fatalf("ready with neither snapshot nor store: %d", status)
	}
	f.feat.fail.Store(false)
	if status, _ := f.do(t, "GET", "/readyz", ""); status != 200 {
		t.Fatalf("not ready with the popularity fallback: %d", status)
	}
	f.load(t, 9, 4)
	status, body := f.do(t, "GET", "/v1/model", "")
	var m modelResponse
	if err := json.Unmarshal([]byte(body), &m); err != nil || status != 200 {
		t.Fatalf("model: %d %s", status, body)
	}
	if m.Version != 9 || m.EventsTrained != 900 || m.Metrics["rmse"] != 0.9 || m.Created.IsZero() || m.Items != 4 {
		t.Fatalf("model info %+v", m)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, _ := f.do(t, "GET", p, ""); status != 200 {
			t.Errorf("%s: %d", p, status)
		}
	}
	status, body = f.do(t, "GET", "/metrics", "")
	for _, name := range []string{"streamrec_serve_requests_total", "streamrec_serve_request_duration_seconds_bucket", "streamrec_serve_snapshot_version 9",
		"streamrec_serve_snapshot_age_seconds", "streamrec_serve_snapshot_swap_failures_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if status != 200 {
		t.Errorf("metrics: %d", status)
	}
}

func TestEvents(t *testing.T) {
	const key = "s3cret"
	auth := []string{"Authorization", "Bearer " + key}
	ev := func(user, item string) string {
		return fmt.Sprintf(`{"type":"view","user":%q,"item":%q,"ts":1700000000}`, user, item)
	}
	tests := []struct {
		name     string
		body     string
		hdr      []string
		status   int
		accepted int
		lines    []int // lines reported invalid
	}{
		{"one event", ev("u1", "i1"), auth, 202, 1, nil},
		{"pretty one event", "{\n \"type\": \"rating\", \"user\": 42, \"item\": \"i9\",\n \"value\": 4, \"ts\": 1700000000\n}", auth, 202, 1, nil},
		{"array", "[" + ev("u1", "i1") + "," + ev("u2", "i2") + "]", auth, 202, 2, nil},
		{"jsonl", ev("u1", "i1") + "\n\n" + ev("u2", "i2") + "\n" + ev("u3", "i3") + "\n", auth, 202, 3, nil},
		{"jsonl with bad lines", ev("u1", "i1") + "\n{bad\n" + `{"type":"nope","user":"u","item":"i","ts":1}` + "\n", auth, 400, 0, []int{2, 3}},
		{"array with a bad element", "[" + ev("u1", "i1") + `,{"type":"rating","user":"u","item":"i","value":9,"ts":1}]`, auth, 400, 0, []int{2}},
		{"malformed array", "[" + ev("u1", "i1"), auth, 400, 0, nil},
		{"empty", "  \n", auth, 400, 0, nil},
		{"no key", ev("u1", "i1"), nil, 401, 0, nil},
		{"wrong key", ev("u1", "i1"), []string{"Authorization", "Bearer nope"}, 401, 0, nil},
		{"too large", "[" + strings.Repeat(ev("u1", "i1")+",", 200) + ev("u1", "i1") + "]", auth, 413, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config, d *Deps) { c.APIKey = key; c.MaxBodyBytes = 4096 })
			status, body := f.do(t, "POST", "/v1/events", tt.body, tt.hdr...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			written := f.evs.written()
			if status == 202 {
				if body != fmt.Sprintf("{\"accepted\":%d}\n", tt.accepted) || len(written) != tt.accepted {
					t.Fatalf("accepted body %s, written %d, want %d", body, len(written), tt.accepted)
				}
				for _, m := range written {
					if len(m.Key) == 0 || !json.Valid(m.Value) {
						t.Errorf("bad message %q %q", m.Key, m.Value)
					}
				}
				return
			}
			if len(written) != 0 {
				t.Fatalf("%d events written on a rejected request", len(written))
			}
			e := decode[errResp](t, body)
			if e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("not a JSON error: %s", body)
			}
			var lines []int
			for _, le := range e.Errors {
				if le.Reason == "" || le.Message == "" {
					t.Errorf("line error without reason: %+v", le)
				}
				lines = append(lines, le.Line)
			}
			if fmt.Sprint(lines) != fmt.Sprint(tt.lines) && tt.lines != nil {
				t.Fatalf("invalid lines %v, want %v", lines, tt.lines)
			}
		})
	}
	t.Run("kafka down", func(t *testing.T) {
		f := newFixture(t, nil)
		f.evs.fail.Store(true)
		if status, body := f.do(t, "POST", "/v1/events", ev("u1", "i1")); status != 503 {
			t.Fatalf("status %d: %s", status, body)
		}
	})
	t.Run("user key", func(t *testing.T) {
		f := newFixture(t, nil)
		f.do(t, "POST", "/v1/events", `{"type":"view","user":42,"item":"i","ts":1700000000}`)
		if w := f.evs.written(); len(w) != 1 || string(w[0].Key) != "42" {
			t.Fatalf("written %+v", w)
		}
	})
}

func TestRoutingErrors(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) {
		c.APIKey = "k"
		d.Inspect = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"ok":true}`))
		})
	})
	tests := []struct {
		method, path string
		hdr          []string
		status       int
		code         string
	}{
		{"GET", "/nope", nil, 404, "not_found"},
		{"GET", "/v1/users/u1", nil, 404, "not_found"},
		{"DELETE", "/v1/popular", nil, 405, "method_not_allowed"},
		{"GET", "/v1/events", nil, 405, "method_not_allowed"},
		{"GET", "/v1/inspect/stats", nil, 401, "unauthorized"},
		{"GET", "/v1/inspect/stats", []string{"Authorization", "Bearer k"}, 200, ""},
	}
	for _, tt := range tests {
		status, body := f.do(t, tt.method, tt.path, "", tt.hdr...)
		if status != tt.status {
			t.Errorf("%s %s: %d, want %d: %s", tt.method, tt.path, status, tt.status, body)
			continue
		}
		if tt.code != "" {
			if e := decode[errResp](t, body); e.Error.Code != tt.code {
				t.Errorf("%s %s: code %q, want %q", tt.method, tt.path, e.Error.Code, tt.code)
			}
		}
	}
}
