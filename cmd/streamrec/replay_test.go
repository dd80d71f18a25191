package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/streamrec/streamrec/ingest/dataset"
)

// mustMain runs Main and fails unless it exits with status 0.
func mustMain(t *testing.T, args ...string) string {
	t.Helper()
	env, out, errb := testEnv(nil)
	if code := Main(context.Background(), args, env); code != 0 {
		t.Fatalf("streamrec %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errb)
	}
	return out.String()
}

type replayJSON struct {
	Dataset  string           `json:"dataset"`
	Protocol string           `json:"protocol"`
	Events   int              `json:"events"`
	K        int              `json:"k"`
	Results  []map[string]any `json:"results"`
}

func mustReplayJSON(t *testing.T, out string) replayJSON {
	t.Helper()
	var r replayJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("stdout is not the replay JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON value:\n%s", out)
	}
	return r
}

// directMeanRMSE is the global-mean model's prequential RMSE computed
// straight from (ts, value) pairs: events sorted by time (stable), each
// predicted by the mean of the explicit values before it — 0 before the
// first, clipped to the value range [lo, hi].
func directMeanRMSE(ts []int64, vals []float64, lo, hi float64) float64 {
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return ts[idx[a]] < ts[idx[b]] })
	var n, sum, sq float64
	for _, i := range idx {
		p := 0.0
		if n > 0 {
			p = sum / n
		}
		p = math.Min(math.Max(p, lo), hi)
		sq += (p - vals[i]) * (p - vals[i])
		n++
		sum += vals[i]
	}
	return math.Sqrt(sq / n)
}

func TestReplayCSVColumnMappingAndCustomTypes(t *testing.T) {
	// Columns in an unusual order, ';' separated, a header, a skipped column,
	// out-of-order timestamps and event type names that only exist through
	// --event-type.
	rows := []string{
		"when;who;action;what;stars;note",
		"1700000300;alice;gave_stars;m1;4;x",
		"1700000100;bob;gave_stars;m1;2;x",
		"1700000200;alice;peeked;m2;;x",
		"1700000400;carol;peeked;m1;;x",
		"1700000500;carol;gave_stars;m2;5;x",
		"1700000600;bob;peeked;m2;;x",
		"1700000700;dave;gave_stars;m2;3;x",
		"1700000800;dave;peeked;m1;;x",
	}
	path := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(path, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustMain(t, "replay", "--data", "csv:"+path, "--columns", "ts,user,type,item,value,-", "--sep", ";", "--header",
		"--event-type", "gave_stars=explicit", "--event-type", "peeked=implicit:2",
		"--protocol", "prequential", "--models", "mean,pop", "--json")
	r := mustReplayJSON(t, out)
	if r.Events != 8 || r.Protocol != "prequential" || r.K != 10 || len(r.Results) != 2 {
		t.Fatalf("replay JSON %+v", r)
	}
	// Ratings in time order: bob 2 (t100), alice 4 (t300), carol 5 (t500), dave 3 (t700).
	want := directMeanRMSE([]int64{100, 300, 500, 700}, []float64{2, 4, 5, 3}, 0.5, 5)
	mean := r.Results[0]
	if mean["model"] != "mean" || math.Abs(mean["rmse"].(float64)-want) > 1e-9 || mean["evaluated"].(float64) != 4 {
		t.Fatalf("mean result %v, want rmse %v over 4 ratings", mean, want)
	}
	// pop ranks: eligible positives (implicit, or rating >= 4) on a new pair
	// of a seen item: alice m1 (t300, 4 stars), carol m1 (t400), carol m2
	// (t500, 5 stars), bob m2 (t600), dave m1 (t800) = 5.
	pop := r.Results[1]
	if pop["model"] != "pop" || pop["evaluated"].(float64) != 5 || pop["hr@10"] == nil || pop["rmse"] != nil {
		t.Fatalf("pop result %v, want 5 ranking queries and no RMSE", pop)
	}
}

func TestReplayGlobalMeanMatchesDirectOnMovieLens(t *testing.T) {
	dir := sharedDataDir(t)
	f, err := os.Open(filepath.Join(dir, "ml-100k", "u.data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []int64
	var vals []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		v, _ := strconv.ParseFloat(fields[2], 64)
		s, _ := strconv.ParseInt(fields[3], 10, 64)
		ts, vals = append(ts, s), append(vals, v)
	}
	if len(ts) != 100000 {
		t.Fatalf("read %d ratings from u.data", len(ts))
	}
	want := directMeanRMSE(ts, vals, 0.5, 5)
	out := mustMain(t, "replay", "--data", "movielens:"+filepath.Join(dir, "ml-100k"), "--models", "mean", "--json")
	r := mustReplayJSON(t, out)
	got := r.Results[0]["rmse"].(float64)
	if math.Abs(got-want) > 1e-9 || r.Events != 100000 {
		t.Fatalf("replay mean RMSE %v over %d events, direct %v", got, r.Events, want)
	}
}

// sharedDataDir returns ../shared/data, skipping when it is absent outside CI.
func sharedDataDir(t *testing.T) string {
	t.Helper()
	dir := dataset.SharedDataDir()
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("shared data (../shared/data or $STREAMREC_TEST_DATA) is missing in CI")
		}
		t.Skip("shared data not found")
	}
	return dir
}

func stripTimingJSON(t *testing.T, out string) replayJSON {
	t.Helper()
	r := mustReplayJSON(t, out)
	for _, res := range r.Results {
		if _, ok := res["seconds"]; !ok {
			t.Fatalf("result without seconds: %v", res)
		}
		delete(res, "seconds")
		delete(res, "events_per_sec")
	}
	return r
}

func TestReplaySameSeedSameJSON(t *testing.T) {
	const data = "synthetic:users=40,items=60,events=1200,seed=3"
	// Every model in the stream protocol; the costlier protocols with the
	// models whose code paths they add (snapshot restore, folds).
	tests := []struct{ protocol, models string }{
		{"prequential", "mean,bias,pop,itemknn,mf,ranker,twostage"},
		{"timesplit", "bias,mf,ranker"},
		{"kfold", "bias,pop,itemknn,mf"},
	}
	for _, tc := range tests {
		t.Run(tc.protocol, func(t *testing.T) {
			args := []string{"replay", "--data", data, "--protocol", tc.protocol, "--models", tc.models, "--seed", "7", "--json"}
			a, b := stripTimingJSON(t, mustMain(t, args...)), stripTimingJSON(t, mustMain(t, args...))
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("same seed, different JSON:\n%v\n%v", a, b)
			}
			if len(a.Results) != len(strings.Split(tc.models, ",")) || a.Events == 0 {
				t.Fatalf("results %v", a)
			}
		})
	}
}

func TestReplayReportAndTable(t *testing.T) {
	dir := t.TempDir()
	out := mustMain(t, "replay", "--data", "synthetic:users=40,items=50,events=1500,seed=1", "--models", "mean,pop",
		"--report", dir, "--k", "5")
	if !strings.Contains(out, "hr@5") || !strings.Contains(out, "mean") {
		t.Fatalf("table lacks columns:\n%s", out)
	}
	for _, name := range []string{"report.md", "report.json", "stream_rmse.svg", "compare_hr_at_5.svg"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestReplayUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no data", []string{"replay", "--models", "mean"}},
		{"bad protocol", []string{"replay", "--data", "synthetic:events=100", "--protocol", "holdout"}},
		{"unknown model", []string{"replay", "--data", "synthetic:events=100", "--models", "svd"}},
		{"bad spec", []string{"replay", "--data", "nosuch:thing"}},
		{"bad time", []string{"replay", "--data", "synthetic:events=100", "--from", "yesterday"}},
		{"tune mean", []string{"tune", "--data", "synthetic:events=100", "--model", "mean"}},
		{"tune kfold", []string{"tune", "--data", "synthetic:events=100", "--protocol", "kfold"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, _, errb := testEnv(nil)
			if code := Main(context.Background(), tc.args, env); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errb)
			}
		})
	}
}

func TestTuneWritesConfigThatReplayAccepts(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tuned.json")
	const data = "synthetic:users=50,items=60,events=2500,seed=2"
	out := mustMain(t, "tune", "--data", data, "--model", "bias", "--trials", "6", "--parallel", "2", "--json", "--out", cfgPath)
	var res struct {
		Model      string             `json:"model"`
		Metric     string             `json:"metric"`
		Trials     int                `json:"trials"`
		Best       map[string]any     `json:"best"`
		Base       map[string]any     `json:"base"`
		ConfigFile string             `json:"config_file"`
		Config     map[string]any     `json:"config"`
		All        []map[string]any   `json:"all"`
		Extra      map[string]float64 `json:"-"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("tune JSON: %v\n%s", err, out)
	}
	if res.Model != "bias" || res.Trials != 6 || len(res.All) != 6 || res.ConfigFile != cfgPath {
		t.Fatalf("tune JSON %s", out)
	}
	val := func(m map[string]any) float64 { return m["validation"].(map[string]any)["rmse"].(float64) }
	if res.Best["test"] == nil || val(res.Best) > val(res.Base) {
		t.Fatalf("best %v is worse on validation than the start %v", res.Best, res.Base)
	}
	out = mustMain(t, "replay", "--data", data, "--models", "bias", "--config", cfgPath, "--json")
	if r := mustReplayJSON(t, out); len(r.Results) != 1 {
		t.Fatalf("replay with the tuned config: %s", out)
	}
}
