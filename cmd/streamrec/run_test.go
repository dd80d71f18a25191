package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunEmbeddedDefault starts the real `streamrec run` on free ports and
// checks that demo events flow into the store, a model is published and a
// demo user gets recommendations — what a user sees right after `make run`.
func TestRunEmbeddedDefault(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	env, _, errb := testEnv(nil)
	ready := make(chan map[string]string, 1)
	env.Ready = func(a map[string]string) { ready <- a }
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"run", "--addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0",
			"--demo-rate", "2000", "--snapshot-every", "500ms,2000", "--log-level", "warn"}, env)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("run exited %d; stderr:\n%s", code, errb)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not stop within 30 s of cancellation")
		}
	})
	var base string
	select {
	case a := <-ready:
		base = "http://" + a["http"]
	case code := <-done:
		t.Fatalf("run exited %d before serving; stderr:\n%s", code, errb)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not become ready")
	}

	var stats struct{ Events, Users int64 }
	waitFor(t, 60*time.Second, func() bool {
		return getJSON(base+"/v1/inspect/stats", &stats) == nil && stats.Events > 0 && stats.Users > 0
	})
	// The first snapshot may cover a single event (it is due by time), so
	// wait for one that has seen enough of the demo catalogue to fill a list.
	var model struct {
		Version int64 `json:"version"`
		Items   int   `json:"items"`
	}
	waitFor(t, 60*time.Second, func() bool {
		return getJSON(base+"/v1/model", &model) == nil && model.Version > 0 && model.Items >= 50
	})

	var line struct {
		User string `json:"user"`
	}
	body, err := get(base + "/v1/inspect/users")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(strings.NewReader(body)).Decode(&line); err != nil || line.User == "" {
		t.Fatalf("no user in /v1/inspect/users: %v %q", err, body)
	}
	var recs struct {
		ModelVersion int64 `json:"model_version"`
		Items        []struct {
			Item  string `json:"item"`
			Title string `json:"title"`
		} `json:"items"`
		Degraded bool `json:"degraded"`
	}
	if err := getJSON(base+"/v1/users/"+line.User+"/recommendations?n=5", &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs.Items) != 5 || recs.Degraded || recs.ModelVersion == 0 || recs.Items[0].Title == "" {
		t.Fatalf("recommendations for %s: %+v", line.User, recs)
	}
	page, err := get(base + "/")
	if err != nil || !strings.Contains(page, "events in the feature store") {
		t.Fatalf("status page: %v %q", err, page)
	}
}

func waitFor(t *testing.T, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), nil
}

func getJSON(url string, v any) error {
	body, err := get(url)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(body), v)
}
