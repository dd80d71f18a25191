package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/learner"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServeMain runs `streamrec serve args…` in-process on :0 ports and
// returns its addresses and a stop function giving the exit status.
func startServeMain(t *testing.T, vars map[string]string, args ...string) (map[string]string, func() int) {
	t.Helper()
	env, _, _ := testEnv(vars)
	errb := &syncBuffer{}
	env.Stderr = errb
	ready := make(chan map[string]string, 1)
	env.Ready = func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Main(ctx, append([]string{"serve"}, args...), env) }()
	var once sync.Once
	code := -1
	stop := func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("serve did not stop")
			}
		})
		return code
	}
	select {
	case a := <-ready:
		t.Cleanup(func() { stop() })
		return a, stop
	case c := <-done:
		cancel()
		t.Fatalf("serve exited with %d before serving: %s", c, errb)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve never became ready")
	}
	return nil, nil
}

func httpDo(t *testing.T, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeCommand runs `streamrec serve` against a real Redis and an
// embedded Kafka-protocol broker: it picks up a snapshot the learner's store
// publishes, answers recommendations, takes events with the API key (from
// STREAMREC_API_KEY), and serves pprof on the admin address.
func TestServeCommand(t *testing.T) {
	rs := redistest.Start(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, streamrec.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	addrs, stop := startServeMain(t, map[string]string{"STREAMREC_API_KEY": "k3y"},
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--redis", rs.Addr(),
		"--brokers", strings.Join(cluster.ListenAddrs(), ","), "--snapshot-poll", "100ms", "--log-level", "warn")
	base := "http://" + addrs["http"]

	// Before any snapshot: ready through the store's popularity, no model.
	if status, body := httpDo(t, "GET", base+"/readyz", ""); status != 200 {
		t.Fatalf("readyz: %d %s", status, body)
	}
	if status, _ := httpDo(t, "GET", base+"/v1/model", ""); status != 503 {
		t.Fatalf("model before a snapshot: %d", status)
	}

	// Publish a snapshot as `streamrec learn` does.
	cfg := dataset.DefaultSyntheticConfig()
	cfg.Users, cfg.Items, cfg.Events = 50, 100, 600
	d, _ := dataset.Synthetic(cfg)
	lc := learner.DefaultConfig()
	lc.HREvery = 1 << 30
	m, err := learner.New("twostage", lc)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := learner.NewTrainer(lc, []learner.Model{m}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.PutItems(d.Items); err != nil {
		t.Fatal(err)
	}
	for i := range d.Events {
		tr.Process(&d.Events[i])
	}
	blob, info, err := tr.Snapshot(7, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	snaps := learner.NewRedisSnapshots(rs.Client(t), 5, zerolog.Nop())
	if err := snaps.Publish(context.Background(), info, blob); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var model struct {
		Version int64 `json:"version"`
	}
	for model.Version != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot 7 not served within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
		if status, body := httpDo(t, "GET", base+"/v1/model", ""); status == 200 {
			_ = json.Unmarshal([]byte(body), &model)
		}
	}
	status, body := httpDo(t, "GET", base+"/v1/users/"+d.Events[0].User+"/recommendations?n=5", "")
	var rec struct {
		ModelVersion int64             `json:"model_version"`
		Items        []json.RawMessage `json:"items"`
		Degraded     bool              `json:"degraded"`
	}
	if err := json.Unmarshal([]byte(body), &rec); err != nil || status != 200 || rec.ModelVersion != 7 || len(rec.Items) != 5 || rec.Degraded {
		t.Fatalf("recommendations: %d %s", status, body)
	}

	ev := `{"type":"view","user":"u1","item":"i1","ts":1700000000}`
	if status, body := httpDo(t, "POST", base+"/v1/events", ev); status != 401 {
		t.Fatalf("events without the key: %d %s", status, body)
	}
	if status, body := httpDo(t, "POST", base+"/v1/events", ev+"\n"+ev, "Authorization", "Bearer k3y"); status != 202 || strings.TrimSpace(body) != `{"accepted":2}` {
		t.Fatalf("events: %d %s", status, body)
	}
	if status, _ := httpDo(t, "GET", base+"/v1/inspect/stats", "", "Authorization", "Bearer k3y"); status != 200 {
		t.Fatalf("inspect: %d", status)
	}
	if status, _ := httpDo(t, "GET", "http://"+addrs["admin"]+"/debug/pprof/", ""); status != 200 {
		t.Fatalf("pprof on the admin address: %d", status)
	}
	if status, _ := httpDo(t, "GET", base+"/debug/pprof/", ""); status != 404 {
		t.Fatalf("pprof must not be on the API address: %d", status)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d after a clean stop", code)
	}
}

func TestServeUsage(t *testing.T) {
	for _, args := range [][]string{{"--max-n", "0"}, {"--bogus"}, {"extra"}, {"--addr", ":1", "--admin-addr", ":1"}} {
		env, _, errb := testEnv(nil)
		if code := Main(context.Background(), append([]string{"serve"}, args...), env); code != 2 {
			t.Errorf("serve %v: exit %d, want 2 (%s)", args, code, errb)
		}
	}
}
