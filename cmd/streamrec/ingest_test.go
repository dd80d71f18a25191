package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
)

// startMain runs Main(args) in the background and returns the addresses it
// reports as ready, and a func that stops it and returns its exit status.
func startMain(t *testing.T, args ...string) (map[string]string, func() int) {
	t.Helper()
	env, _, errb := testEnv(nil)
	var mu sync.Mutex
	env.Stderr = lockedWriter{&mu, errb}
	ready := make(chan map[string]string, 1)
	env.Ready = func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, env) }()
	var once sync.Once
	code := -1
	stop := func() int {
		once.Do(func() { code = wait(t, args[0], cancel, done, &mu, errb) })
		return code
	}
	select {
	case a := <-ready:
		t.Cleanup(func() { stop() })
		return a, stop
	case code := <-done:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%v exited with %d before serving: %s", args, code, errb)
	case <-time.After(30 * time.Second):
		t.Fatalf("%v never became ready", args)
	}
	return nil, nil
}

// wait cancels a Main and returns its exit status.
func wait(t *testing.T, name string, cancel context.CancelFunc, done <-chan int, mu *sync.Mutex, errb fmt.Stringer) int {
	cancel()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Errorf("%s did not stop; stderr:\n%s", name, errb)
		return -1
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestBrokerIngestCommands runs `streamrec broker` and `streamrec ingest`
// against a real redis-server: events published to the broker reach Redis,
// /metrics counts them, and both commands stop cleanly.
func TestBrokerIngestCommands(t *testing.T) {
	srv := redistest.Start(t)
	kafkaAddrs, stopBroker := startMain(t, "broker", "--addr", "127.0.0.1:0", "--partitions", "2", "--data-dir", t.TempDir(), "--log-level", "warn")
	addr := kafkaAddrs["kafka"]

	const n = 300
	msgs := make([]kafka.Message, 0, n+1)
	for i := 0; i < n; i++ {
		e := streamrec.Event{Type: "stream", Kind: streamrec.Implicit, Weight: 3, User: "u" + strconv.Itoa(i%7), Item: "i" + strconv.Itoa(i%11), TS: int64(1_700_000_000_000 + i)}
		msgs = append(msgs, kafka.Message{Key: []byte(e.User), Value: streamrec.AppendJSON(nil, &e)})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("x"), Value: []byte(`{"type":"teleport"}`)})
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: streamrec.TopicEvents, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	admin, stopIngest := startMain(t, "ingest", "--brokers", addr, "--redis", srv.Addr(), "--metrics-addr", "127.0.0.1:0",
		"--event-type", "stream=implicit:3", "--batch-size", "50", "--log-level", "warn")
	deadline := time.Now().Add(30 * time.Second)
	for metricValue(t, admin["metrics"], "streamrec_ingest_events_applied_total") != n ||
		metricValue(t, admin["metrics"], `streamrec_ingest_dlq_total{reason="unknown_type"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("ingest applied %v events, want %d", metricValue(t, admin["metrics"], "streamrec_ingest_events_applied_total"), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + admin["metrics"] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d while Redis and Kafka are up", resp.StatusCode)
	}
	if code := stopIngest(); code != 0 {
		t.Fatalf("ingest exit %d", code)
	}
	if code := stopBroker(); code != 0 {
		t.Fatalf("broker exit %d", code)
	}

	s, err := features.NewRedis(context.Background(), redis.NewClient(&redis.Options{Addr: srv.Addr()}), features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := s.Global(context.Background())
	if err != nil || g.Events != n || g.Users != 7 || g.Items != 11 {
		t.Fatalf("redis global %+v, %v; want %d events, 7 users, 11 items", g, err, n)
	}
	u, ok, err := s.User(context.Background(), "u0")
	if err != nil || !ok || u.ImplicitWeight != 3*float64(u.Implicit) {
		t.Fatalf("user u0 %+v: the custom event type's weight 3 was not applied", u)
	}
}

func TestBrokerIngestUsage(t *testing.T) {
	tests := [][]string{
		{"broker", "--partitions", "0"},
		{"broker", "--addr", "nohost"},
		{"broker", "extra"},
		{"ingest", "--batch-size", "0"},
		{"ingest", "--event-type", "x=sideways"},
		{"ingest", "--brokers", ""},
		{"ingest", "--topic", "same", "--dlq-topic", "same"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			env, _, errb := testEnv(nil)
			if code := Main(context.Background(), args, env); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errb)
			}
		})
	}
	for _, cmd := range []string{"broker", "ingest"} {
		env, _, errb := testEnv(nil)
		if code := Main(context.Background(), []string{cmd, "--help"}, env); code != 0 || !strings.Contains(errb.String(), "-brokers") && cmd == "ingest" {
			t.Fatalf("%s --help: exit %d, %s", cmd, code, errb)
		}
	}
}
