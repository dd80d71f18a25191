package ingest_test

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
)

func lookKcat(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("kcat not found (CI=true, so this fails): %v", err)
		}
		tb.Skipf("kcat not found: %v", err)
	}
	return path
}

// TestKcatToIngestToDLQ has kcat, an independent Kafka client
// (librdkafka), publish 10,000 events (some bad) to the embedded broker;
// the consumer applies the good ones exactly and dead-letters the bad ones,
// and kcat reads the DLQ back with the right headers.
func TestKcatToIngestToDLQ(t *testing.T) {
	kcat := lookKcat(t)
	addr := startBroker(t, 3)
	const total = 10000
	evs := genEvents(total-total/100, 200, 500, 6)
	badValues := []struct{ value, reason string }{
		{`{"type":"view","user":"u1"`, streamrec.ReasonMalformed},
		{`{"type":"view","item":"i1","ts":1700000000}`, streamrec.ReasonMissing},
		{`{"type":"warp","user":"u1","item":"i1","ts":1700000000}`, streamrec.ReasonUnknownType},
		{`{"type":"rating","user":"u1","item":"i1","value":11,"ts":1700000000}`, streamrec.ReasonValueRange},
		{`{"type":"view","user":"u1","item":"i1","ts":"soon"}`, streamrec.ReasonTimestamp},
		{"{\"type\":\"view\",\"user\":\"\xc3\",\"item\":\"i1\",\"ts\":1700000000}", streamrec.ReasonInvalidUTF8},
	}
	var in bytes.Buffer
	wantReasons := map[string]int{}
	nbad := 0
	for i := range evs {
		in.WriteString(evs[i].User)
		in.WriteByte(':')
		in.Write(streamrec.AppendJSON(nil, &evs[i]))
		in.WriteByte('\n')
		if i%99 == 50 && nbad < total/100 {
			b := badValues[nbad%len(badValues)]
			in.WriteString("bad" + strconv.Itoa(nbad) + ":" + b.value + "\n")
			wantReasons[b.reason]++
			nbad++
		}
	}
	if len(evs)+nbad != total {
		t.Fatalf("test input has %d messages, want %d", len(evs)+nbad, total)
	}
	cmd := exec.Command(kcat, "-P", "-b", addr, "-t", streamrec.TopicEvents, "-K", ":")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}

	s := newStore(t)
	c := startConsumer(t, testConfig(addr), s)
	waitFor(t, 60*time.Second, "10,000 messages consumed", func() bool {
		return globalEvents(t, s) == int64(len(evs)) && metric(t, c.reg, "streamrec_ingest_dlq_total") == float64(nbad)
	})
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	checkTruth(t, s, groundTruth(evs))

	out, err := exec.Command(kcat, "-C", "-b", addr, "-t", streamrec.TopicDLQ, "-e", "-q", "-f", "%h %s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != nbad {
		t.Fatalf("kcat read %d DLQ records, want %d:\n%s", len(lines), nbad, out)
	}
	gotReasons := map[string]int{}
	for _, line := range lines {
		hdrs, value, _ := strings.Cut(line, " {")
		value = "{" + value
		reason := ""
		for _, b := range badValues {
			if b.value == value {
				reason = b.reason
			}
		}
		if reason == "" {
			t.Fatalf("DLQ record with unexpected value: %q", line)
		}
		gotReasons[reason]++
		for _, want := range []string{"error=" + reason + ":", "source.topic=" + streamrec.TopicEvents, "source.partition=", "source.offset="} {
			if !strings.Contains(hdrs, want) {
				t.Errorf("DLQ headers %q lack %q", hdrs, want)
			}
		}
	}
	for r, n := range wantReasons {
		if gotReasons[r] != n {
			t.Errorf("DLQ has %d records for %s, want %d", gotReasons[r], r, n)
		}
	}
}
