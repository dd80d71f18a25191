package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/twmb/franz-go/pkg/kfake"
)

type modelList struct {
	Current   int64 `json:"current"`
	Snapshots []struct {
		Version       int64              `json:"version"`
		EventsTrained int64              `json:"events_trained"`
		Metrics       map[string]float64 `json:"metrics"`
	} `json:"snapshots"`
}

// TestLearnAndModelCommands runs `streamrec learn` against an embedded
// Kafka-protocol broker and a real redis-server: it trains on the published
// events, publishes snapshots to Redis (with metrics on /metrics), publishes
// a final snapshot covering everything on shutdown, and `streamrec model
// list|rollback` read and move the current pointer.
func TestLearnAndModelCommands(t *testing.T) {
	srv := redistest.Start(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, streamrec.TopicEvents))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()[0]
	cfg := dataset.DefaultSyntheticConfig()
	cfg.Users, cfg.Items, cfg.Events = 50, 80, 1500
	data, _ := dataset.Synthetic(cfg)
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: streamrec.TopicEvents, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	produce := func(evs []streamrec.Event) {
		msgs := make([]kafka.Message, len(evs))
		for i := range evs {
			msgs[i] = kafka.Message{Key: []byte(evs[i].User), Value: streamrec.AppendJSON(nil, &evs[i])}
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	produce(data.Events[:1000])

	addrs, stop := startMain(t, "learn", "--brokers", brokers, "--redis", srv.Addr(), "--items-topic", "",
		"--snapshot-every", "100ms,400", "--models", "mf,pop", "--metrics-addr", "127.0.0.1:0", "--seed", "3")
	list := func() modelList {
		var l modelList
		out := mustMain(t, "model", "list", "--json", "--redis", srv.Addr())
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("model list --json: %v: %s", err, out)
		}
		return l
	}
	waitFor(t, 60*time.Second, func() bool {
		l := list()
		return len(l.Snapshots) > 0 && l.Snapshots[0].EventsTrained == 1000
	})
	produce(data.Events[1000:])
	waitFor(t, 60*time.Second, func() bool { return metricValue(t, addrs["metrics"], "streamrec_learner_events_trained") == 1500 })
	if v := metricValue(t, addrs["metrics"], "streamrec_learner_snapshot_version"); v < 1 {
		t.Fatalf("snapshot_version metric = %v", v)
	}
	if code := stop(); code != 0 {
		t.Fatalf("learn exited with %d", code)
	}
	l := list()
	if len(l.Snapshots) < 2 || l.Current != l.Snapshots[0].Version || l.Snapshots[0].EventsTrained != 1500 {
		t.Fatalf("after shutdown: %+v", l)
	}
	if _, ok := l.Snapshots[0].Metrics["rmse"]; !ok {
		t.Fatalf("newest snapshot has no rmse: %+v", l.Snapshots[0])
	}
	table := mustMain(t, "model", "list", "--redis", srv.Addr())
	if !strings.Contains(table, "VERSION") || !strings.Contains(table, "*  ") {
		t.Fatalf("model list table:\n%s", table)
	}
	older := l.Snapshots[len(l.Snapshots)-1].Version
	out := mustMain(t, "model", "rollback", strconv.FormatInt(older, 10), "--redis", srv.Addr())
	if !strings.Contains(out, strconv.FormatInt(older, 10)) || list().Current != older {
		t.Fatalf("rollback to %d: %s (current %d)", older, out, list().Current)
	}
	// A restarted learner resumes from the current (rolled back) snapshot and
	// trains up to the end of the topic again.
	addrs, stop = startMain(t, "learn", "--brokers", brokers, "--redis", srv.Addr(), "--items-topic", "",
		"--snapshot-every", "100ms", "--models", "mf,pop", "--metrics-addr", "127.0.0.1:0", "--seed", "3")
	waitFor(t, 60*time.Second, func() bool { return metricValue(t, addrs["metrics"], "streamrec_learner_events_trained") == 1500 })
	if code := stop(); code != 0 {
		t.Fatalf("restarted learn exited with %d", code)
	}
}

func TestLearnAndModelUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"bad snapshot-every", []string{"learn", "--snapshot-every", "soon"}, 2, "snapshot-every"},
		{"bad models", []string{"learn", "--models", "pop,svd"}, 2, "svd"},
		{"missing config", []string{"learn", "--config", "/nonexistent.json"}, 2, "nonexistent"},
		{"stray argument", []string{"learn", "extra"}, 2, "unexpected"},
		{"model without subcommand", []string{"model", "--redis", "127.0.0.1:1"}, 2, "subcommand"},
		{"model without redis", []string{"model", "list"}, 2, "--redis"},
		{"model unknown subcommand", []string{"model", "drop", "--redis", "127.0.0.1:1"}, 2, "drop"},
		{"rollback bad version", []string{"model", "rollback", "x", "--redis", "127.0.0.1:1"}, 2, "version"},
		{"redis unreachable", []string{"model", "list", "--redis", "127.0.0.1:1"}, 1, "connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, _, errb := testEnv(nil)
			if got := Main(context.Background(), tc.args, env); got != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s", got, tc.want, errb)
			}
			if !strings.Contains(errb.String(), tc.msg) {
				t.Fatalf("stderr %q lacks %q", errb, tc.msg)
			}
		})
	}
}
