package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/dataset"
)

func TestProduceCommand(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t", "items"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	csv := filepath.Join(t.TempDir(), "e.csv")
	if err := os.WriteFile(csv, []byte("who|what|kind|when\nu1|i1|watched|100\nu2|i1|pv|101\nu3|i2|teleport|102\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	env, out, errb := testEnv(nil)
	args := []string{"produce", "--brokers", addr, "--topic", "t", "--items-topic", "items",
		"--data", "csv:" + csv, "--columns", "user,item,type,ts", "--header", "--sep", "|",
		"--event-type", "watched=implicit:3", "--log-level", "error"}
	if code := Main(ctx, args, env); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errb)
	}
	if !strings.Contains(out.String(), "produced 2 events") {
		t.Fatalf("stdout %q", out)
	}
	// STREAMREC_* variables fill the flags too.
	env, out, errb = testEnv(map[string]string{"STREAMREC_BROKERS": addr, "STREAMREC_TOPIC": "t",
		"STREAMREC_ITEMS_TOPIC": "items", "STREAMREC_DATA": "synthetic:users=20,items=10,events=300,seed=3", "STREAMREC_RATE": "100000"})
	if code := Main(ctx, []string{"produce", "--log-level", "error"}, env); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errb)
	}
	if !strings.Contains(out.String(), "produced 300 events and 10 items") {
		t.Fatalf("stdout %q", out)
	}
	types := streamrec.DefaultEventTypes()
	if err := types.Set("watched=implicit:3"); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(ctx, "kafka:"+addr+"/t", dataset.Options{Types: types})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Events) != 302 || d.Rejected != 0 {
		t.Fatalf("topic holds %d events (%d rejected: %v), want 302", len(d.Events), d.Rejected, d.Errors)
	}
	if e := d.Events[0]; e.Type != "watched" || e.Weight != 3 || e.User != "u1" || e.TS != 100_000 {
		t.Fatalf("first event %+v, want u1's watched at 100 s", e)
	}
}

func TestProduceUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"produce"}, "--data is required"},
		{[]string{"produce", "--data", "nope:x"}, "unknown scheme"},
		{[]string{"produce", "--data", "jsonl:/does/not/exist"}, "no such file"},
		{[]string{"produce", "--data", "synthetic:", "--rate", "-3"}, "rate"},
		{[]string{"produce", "--data", "synthetic:", "--rate", "fast"}, "invalid value"},
		{[]string{"produce", "--data", "synthetic:", "--event-type", "x=sideways"}, "kind must be"},
		{[]string{"produce", "--data", "synthetic:", "--brokers", ""}, "--brokers is required"},
		{[]string{"produce", "--data", "synthetic:", "extra"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		env, _, errb := testEnv(nil)
		if code := Main(context.Background(), tc.args, env); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr: %s", tc.args, code, errb)
		}
		if !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errb, tc.msg)
		}
	}
}
