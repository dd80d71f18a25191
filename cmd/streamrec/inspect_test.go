package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/featurestest"
	"github.com/streamrec/streamrec/features/redistest"
)

func inspectEvents() []streamrec.Event {
	ts := featurestest.T0
	return []streamrec.Event{
		featurestest.Ev("42", "1193", streamrec.Explicit, 4, ts, 0, 0),
		featurestest.Ev("42", "661", streamrec.Implicit, 0, ts+1000, 0, 1),
		featurestest.Ev("42", "1193", streamrec.Explicit, 5, ts+2000, 0, 2),
		featurestest.Ev("7", "661", streamrec.Implicit, 0, ts+3000, 1, 0),
		featurestest.Ev("user/with space", "661", streamrec.Implicit, 0, ts+4000, 1, 1),
	}
}

func TestInspect(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rs, err := features.NewRedis(ctx, srv.Client(t), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	mem, err := features.NewMemory(features.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []features.Store{rs, mem} {
		if _, err := s.Apply(ctx, inspectEvents()); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/inspect/", http.StripPrefix("/v1/inspect", features.NewInspectHandler(mem)))
	web := httptest.NewServer(mux)
	defer web.Close()

	for _, target := range []struct{ name, flag, value string }{
		{"redis", "--redis", srv.Addr()},
		{"redis URL", "--redis", srv.URL()},
		{"url", "--url", web.URL},
	} {
		t.Run(target.name, func(t *testing.T) {
			run := func(args ...string) (int, string, string) {
				env, out, errb := testEnv(nil)
				code := Main(ctx, append([]string{"inspect", target.flag, target.value}, args...), env)
				return code, out.String(), errb.String()
			}
			code, out, errb := run("user", "42")
			if code != 0 {
				t.Fatalf("inspect user 42: exit %d: %s", code, errb)
			}
			var u struct {
				User   string `json:"user"`
				Events int64  `json:"events"`
				ByKind struct {
					Explicit, Implicit int64
				} `json:"by_kind"`
				ExplicitSum  float64  `json:"explicit_sum"`
				ExplicitMean float64  `json:"explicit_mean"`
				FirstTS      int64    `json:"first_ts"`
				LastTS       int64    `json:"last_ts"`
				Recent       []string `json:"recent"`
			}
			if err := json.Unmarshal([]byte(out), &u); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if u.User != "42" || u.Events != 3 || u.ByKind.Explicit != 2 || u.ByKind.Implicit != 1 || u.ExplicitSum != 9 ||
				u.ExplicitMean != 4.5 || u.FirstTS != featurestest.T0 || u.LastTS != featurestest.T0+2000 ||
				strings.Join(u.Recent, ",") != "1193,661" {
				t.Errorf("user 42 = %+v", u)
			}
			if code, out, errb := run("user", "user/with space"); code != 0 || !strings.Contains(out, `"events":1`) {
				t.Errorf("user with a slash: exit %d, %s %s", code, out, errb)
			}
			code, out, errb = run("item", "661")
			if code != 0 || !strings.Contains(out, `"item":"661"`) || !strings.Contains(out, `"events":3`) ||
				!strings.Contains(out, `"by_kind":{"explicit":0,"implicit":3}`) {
				t.Errorf("inspect item 661: exit %d, %s %s", code, out, errb)
			}
			code, out, errb = run("stats")
			var st struct{ Events, Users, Items int64 }
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Events != 5 || st.Users != 3 || st.Items != 2 {
				t.Errorf("inspect stats: exit %d, %s %s", code, out, errb)
			}
			code, out, errb = run("users")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if code != 0 || len(lines) != 3 {
				t.Errorf("inspect users: exit %d, %d lines: %s %s", code, len(lines), out, errb)
			}
			for _, l := range lines {
				var v map[string]any
				if err := json.Unmarshal([]byte(l), &v); err != nil || v["user"] == nil || v["recent"] == nil {
					t.Errorf("users line %q: %v", l, err)
				}
			}
			code, out, errb = run("user", "nobody")
			if code != 1 || out != "" || strings.Count(errb, "\n") != 1 || !strings.Contains(errb, `user "nobody" not found`) {
				t.Errorf("unknown user: exit %d, stdout %q, stderr %q", code, out, errb)
			}
			if code, _, errb := run("item", "nothing"); code != 1 || !strings.Contains(errb, `item "nothing" not found`) {
				t.Errorf("unknown item: exit %d, %q", code, errb)
			}
		})
	}
	// Flags after the positional arguments work too.
	env, out, errb := testEnv(nil)
	if code := Main(ctx, []string{"inspect", "stats", "--redis", srv.Addr()}, env); code != 0 || !strings.Contains(out.String(), `"events":5`) {
		t.Errorf("flags after args: exit %d, %s %s", code, out, errb)
	}
	// STREAMREC_REDIS is read.
	env, out, errb = testEnv(map[string]string{"STREAMREC_REDIS": srv.Addr()})
	if code := Main(ctx, []string{"inspect", "stats"}, env); code != 0 || !strings.Contains(out.String(), `"users":3`) {
		t.Errorf("STREAMREC_REDIS: exit %d, %s %s", code, out, errb)
	}
}

func TestInspectUsage(t *testing.T) {
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "user"},
		{"inspect", "user", "a", "b"},
		{"inspect", "item"},
		{"inspect", "users", "x"},
		{"inspect", "frob"},
		{"inspect", "--redis", "127.0.0.1:1", "--url", "http://x", "stats"},
		{"inspect", "--url", "ftp://x", "stats"},
		{"inspect", "--nope", "stats"},
	} {
		env, _, errb := testEnv(nil)
		if code := Main(context.Background(), args, env); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb)
		}
	}
}

func TestInspectUnreachable(t *testing.T) {
	env, _, errb := testEnv(nil)
	code := Main(context.Background(), []string{"inspect", "--timeout", "2s", "--url", "http://127.0.0.1:1", "stats"}, env)
	if code != 1 || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("unreachable server: exit %d, stderr %q", code, errb)
	}
}
