// Command results regenerates docs/results.md: it runs `streamrec replay
// --json` for the configured protocols on the shared data (MovieLens 100K,
// YooChoose clicks) and writes our figures beside the anchors of
// product.md §7. `make results` runs it; it takes minutes and is not part
// of `make test`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/streamrec/streamrec/ingest/dataset"
)

// run is one replay of the results page.
type run struct {
	id, title string
	args      []string
	// cols are the result fields shown, in order.
	cols []string
	note string
}

type result map[string]any

type output struct {
	Dataset  string   `json:"dataset"`
	Protocol string   `json:"protocol"`
	Events   int      `json:"events"`
	K        int      `json:"k"`
	Results  []result `json:"results"`
}

func runs(data string) []run {
	ml := "movielens:" + filepath.Join(data, "ml-100k")
	yc := "yoochoose:" + filepath.Join(data, "yoochoose-rsc15-100k", "yoochoose-clicks-100k_train_full.txt")
	return []run{
		{"preq", "MovieLens 100K — prequential (test-then-train, time order)",
			[]string{"--data", ml, "--protocol", "prequential", "--models", "mean,bias,pop,itemknn,mf,ranker,twostage"},
			[]string{"rmse", "mae", "hr@10", "ndcg@10", "mrr@10", "evaluated", "events_per_sec"}, ""},
		{"split", "MovieLens 100K — timesplit (train < 60% of the time span, validation < 80%, test the rest)",
			[]string{"--data", ml, "--protocol", "timesplit", "--models", "mean,bias,mf,ranker,twostage"},
			[]string{"rmse_frozen", "rmse_online", "mae", "evaluated"}, ""},
		{"kfold", "MovieLens 100K — 5-fold cross-validation (seed 42)",
			[]string{"--data", ml, "--protocol", "kfold", "--models", "mean,bias,pop,itemknn,mf,ranker,twostage"},
			[]string{"rmse", "mae", "p@10", "r@10", "ndcg@10", "evaluated"}, ""},
		{"yoochoose", "YooChoose clicks (train_full, 70,278 clicks, sessions as users) — prequential",
			[]string{"--data", yc, "--protocol", "prequential", "--models", "pop,itemknn,mf,twostage"},
			[]string{"hr@10", "ndcg@10", "mrr@10", "evaluated", "events_per_sec"}, ""},
		{"speed-mf", "Replay speed — MF, prequential, one model at a time, no ranking queries (mean: the harness and feature store alone, for the ratio)",
			[]string{"--data", ml, "--protocol", "prequential", "--models", "mean,mf", "--parallel", "1", "--eval-every", "0"},
			[]string{"rmse", "events_per_sec", "seconds"}, ""},
		{"speed-twostage", "Replay speed — two-stage model, prequential, one model at a time, no ranking queries (mean: the harness and feature store alone)",
			[]string{"--data", ml, "--protocol", "prequential", "--models", "mean,twostage", "--parallel", "1", "--eval-every", "0"},
			[]string{"rmse", "events_per_sec", "seconds"}, ""},
		{"speed-twostage-rank", "Replay speed — two-stage model alone, prequential, one goroutine, every eligible positive ranked",
			[]string{"--data", ml, "--protocol", "prequential", "--models", "twostage", "--parallel", "1"},
			[]string{"rmse", "hr@10", "events_per_sec", "seconds"}, ""},
	}
}

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("results", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/streamrec", "the streamrec binary")
	data := fs.String("data", dataset.SharedDataDir(), "the shared data folder")
	out := fs.String("out", "docs/results.md", "the Markdown file to write")
	only := fs.String("only", "", "comma-separated run ids to execute (others are left out of the page)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return errors.New("no shared data folder: pass -data or set STREAMREC_TEST_DATA")
	}
	outs := map[string]*output{}
	cmds := map[string]string{}
	var todo []run
	for _, r := range runs(*data) {
		if *only == "" || strings.Contains(","+*only+",", ","+r.id+",") {
			todo = append(todo, r)
		}
	}
	for _, r := range todo {
		args := append([]string{"replay"}, r.args...)
		args = append(args, "--json")
		cmds[r.id] = "streamrec " + strings.Join(shorten(args, *data), " ")
		fmt.Fprintf(stderr, "results: %s\n", cmds[r.id])
		start := time.Now()
		cmd := exec.CommandContext(ctx, *bin, args...)
		var so bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", cmds[r.id], err)
		}
		var o output
		if err := json.Unmarshal(so.Bytes(), &o); err != nil {
			return fmt.Errorf("%s: output is not the replay JSON: %w", cmds[r.id], err)
		}
		outs[r.id] = &o
		fmt.Fprintf(stderr, "results: %s done in %s\n", r.id, time.Since(start).Round(time.Second))
	}
	var b bytes.Buffer
	write(&b, todo, outs, cmds)
	if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}

// shorten prints the data folder as ../shared/data in commands.
func shorten(args []string, data string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, data, "../shared/data")
	}
	return out
}

func num(r result, key string) float64 {
	if v, ok := r[key].(float64); ok {
		return v
	}
	return math.NaN()
}

func cell(r result, key string) string {
	v := num(r, key)
	switch {
	case math.IsNaN(v):
		return "–"
	case key == "evaluated" || key == "events_per_sec":
		return commas(int64(math.Round(v)))
	case key == "seconds":
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.4f", v)
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// anchor is a row of published figures beside ours.
type anchor struct {
	run, name string
	vals      map[string]float64
}

var anchors = []anchor{
	{"preq", "River BiasedMF (same protocol; anchor)", map[string]float64{"rmse": 0.948}},
	{"preq", "**target**", map[string]float64{"rmse": 0.935}},
	{"split", "TFRS tutorial, tuned (anchor)", map[string]float64{"rmse_frozen": 1.04}},
	{"split", "TFRS tutorial, basic (anchor)", map[string]float64{"rmse_frozen": 1.12}},
	{"split", "**target**", map[string]float64{"rmse_frozen": 1.00, "rmse_online": 0.94}},
	{"kfold", "Surprise SVD++ (anchor)", map[string]float64{"rmse": 0.919}},
	{"kfold", "Gorse SVD++ (anchor)", map[string]float64{"rmse": 0.904}},
	{"kfold", "Gorse WRMF (anchor)", map[string]float64{"ndcg@10": 0.416}},
	{"kfold", "Gorse BPR (anchor)", map[string]float64{"ndcg@10": 0.376}},
	{"kfold", "Gorse ItemPop (anchor)", map[string]float64{"ndcg@10": 0.218}},
	{"kfold", "**target**", map[string]float64{"rmse": 0.900, "ndcg@10": 0.42}},
	{"speed-mf", "**target**", map[string]float64{"events_per_sec": 1e6}},
	{"speed-mf", "River (~13,000 events/s; anchor)", map[string]float64{"events_per_sec": 13000}},
	{"speed-twostage", "**target**", map[string]float64{"events_per_sec": 1e5}},
}

// target is a line of the summary.
type target struct {
	run, metric, what string
	bound             float64
	lower             bool // lower is better
	models            []string
	anchor            string
}

var targets = []target{
	{"preq", "rmse", "prequential RMSE, MovieLens 100K", 0.935, true, nil, "River 0.948"},
	{"split", "rmse_frozen", "timesplit test RMSE, frozen", 1.00, true, nil, "TFRS 1.04"},
	{"split", "rmse_online", "timesplit test RMSE, online", 0.94, true, nil, "TFRS 1.04"},
	{"kfold", "rmse", "5-fold RMSE", 0.900, true, nil, "Gorse SVD++ 0.904, Surprise SVD++ 0.919"},
	{"kfold", "ndcg@10", "5-fold NDCG@10", 0.42, false, nil, "Gorse WRMF 0.416"},
	{"speed-mf", "events_per_sec", "replay speed, MF", 1e6, false, []string{"mf"}, "River ~13,000/s"},
	{"speed-twostage", "events_per_sec", "replay speed, two-stage", 1e5, false, []string{"twostage"}, "River ~13,000/s"},
}

func write(b *bytes.Buffer, todo []run, outs map[string]*output, cmds map[string]string) {
	b.WriteString("# Results\n\n")
	b.WriteString("Generated by `make results` (`go run ./learner/replay/cmd/results`), which runs the\n")
	b.WriteString("`streamrec replay --json` commands below on ../shared/data. Definitions of every\n")
	b.WriteString("protocol and metric: [evaluation.md](evaluation.md). Anchors and targets: product.md §7.\n\n")
	fmt.Fprintf(b, "Machine: %d CPUs visible (%s/%s, %s), shared with other work while measuring — speed\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(b, "figures are single runs, not medians. Generated %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))

	// Summary against targets.
	b.WriteString("## Targets\n\n| what | target | ours (best model) | anchor | met |\n| --- | ---: | ---: | --- | :---: |\n")
	for _, t := range targets {
		o := outs[t.run]
		if o == nil {
			continue
		}
		bestModel, best := "", math.NaN()
		for _, r := range o.Results {
			m, _ := r["model"].(string)
			if len(t.models) > 0 && !contains(t.models, m) {
				continue
			}
			v := num(r, t.metric)
			if math.IsNaN(v) {
				continue
			}
			if math.IsNaN(best) || (t.lower && v < best) || (!t.lower && v > best) {
				best, bestModel = v, m
			}
		}
		met := "✗"
		if !math.IsNaN(best) && ((t.lower && best <= t.bound) || (!t.lower && best >= t.bound)) {
			met = "✓"
		}
		op := "≤"
		if !t.lower {
			op = "≥"
		}
		fmt.Fprintf(b, "| %s | %s %s | %s (%s) | %s | %s |\n", t.what, op, fmtVal(t.metric, t.bound), fmtVal(t.metric, best), bestModel, t.anchor, met)
	}
	b.WriteString("\n")
	b.WriteString(notes)
	for _, r := range todo {
		o := outs[r.id]
		if o == nil {
			continue
		}
		fmt.Fprintf(b, "## %s\n\n```\n%s\n```\n\n", r.title, cmds[r.id])
		fmt.Fprintf(b, "%d events, k = %d.\n\n", o.Events, o.K)
		b.WriteString("| model |")
		for _, c := range r.cols {
			fmt.Fprintf(b, " %s |", c)
		}
		b.WriteString("\n| --- |")
		for range r.cols {
			b.WriteString(" ---: |")
		}
		b.WriteString("\n")
		for _, res := range o.Results {
			fmt.Fprintf(b, "| %v |", res["model"])
			for _, c := range r.cols {
				fmt.Fprintf(b, " %s |", cell(res, c))
			}
			b.WriteString("\n")
		}
		for _, a := range anchors {
			if a.run != r.id {
				continue
			}
			fmt.Fprintf(b, "| %s |", a.name)
			for _, c := range r.cols {
				if v, ok := a.vals[c]; ok {
					fmt.Fprintf(b, " %s |", fmtVal(c, v))
				} else {
					b.WriteString(" |")
				}
			}
			b.WriteString("\n")
		}
		if r.note != "" {
			fmt.Fprintf(b, "\n%s\n", r.note)
		}
		b.WriteString("\n")
	}
}

func fmtVal(metric string, v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if metric == "events_per_sec" {
		return commas(int64(math.Round(v))) + "/s"
	}
	return fmt.Sprintf("%.3f", v)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// notes explain how to read the tables; they hold no measured figures, so
// they stay true when the page is regenerated.
const notes = `How to read these tables:

- Every model replays through the production feature store (features.Memory) and the
  learner's models, one model per goroutine with its own store; ` + "`events_per_sec`" + ` is event
  passes through the model divided by that model's own wall time, so it includes the
  feature reads and writes of every event. The ` + "`mean`" + ` rows of the speed runs isolate that
  harness and store cost (the global mean itself is two additions).
- ` + "`pop`" + ` and ` + "`itemknn`" + ` only rank, ` + "`mean`" + `, ` + "`bias`" + ` and ` + "`ranker`" + ` only predict values; a dash means
  the metric does not apply. In the k-fold table ` + "`evaluated`" + ` counts rated test events, or
  for the rank-only models the (user, fold) ranking queries.
- ` + "`pop`" + ` is time-decayed popularity (half-life 7 days of event time, taken at the last
  training timestamp), not Gorse's all-time ItemPop, so its k-fold NDCG@10 is not the same
  model as that anchor's.
- Timesplit: about 90% of the MovieLens 100K test events (17,096 of 18,886) come from users
  with no training event at all, so a frozen model knows nothing of them but what the feature
  store has gathered since; learning on (` + "`rmse_online`" + `) is what closes that gap.
- The k-fold protocol trains the online learners the way they run in production: one pass
  over the training folds in time order (` + "`--epochs N`" + ` makes N passes).
- The two-stage model's ranking queries (every eligible positive) dominate its prequential
  time: each ranks a few hundred candidates with the deep ranker.

`
