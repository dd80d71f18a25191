package replay

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Anchor is a published figure our results are read against (product.md §7).
type Anchor struct {
	Protocol string  // prequential, timesplit or kfold
	Metric   string  // rmse, rmse_frozen, rmse_online, ndcg@10, …
	Name     string  // who and what
	Value    float64 // the figure
	// Target marks our own target rather than a peer's figure.
	Target bool
}

// Anchors are the figures of product.md §7, all on MovieLens 100K.
var Anchors = []Anchor{
	{Prequential, "rmse", "River BiasedMF (same protocol)", 0.948, false},
	{Prequential, "rmse", "target", 0.935, true},
	{TimeSplit, "rmse_frozen", "TFRS tutorial, tuned", 1.04, false},
	{TimeSplit, "rmse_frozen", "TFRS tutorial, basic", 1.12, false},
	{TimeSplit, "rmse_frozen", "target (frozen)", 1.00, true},
	{TimeSplit, "rmse_online", "TFRS tutorial, tuned", 1.04, false},
	{TimeSplit, "rmse_online", "target (online)", 0.94, true},
	{KFold, "rmse", "Surprise SVD++", 0.919, false},
	{KFold, "rmse", "Gorse SVD++", 0.904, false},
	{KFold, "rmse", "target", 0.900, true},
	{KFold, "ndcg@10", "Gorse WRMF", 0.416, false},
	{KFold, "ndcg@10", "Gorse BPR", 0.376, false},
	{KFold, "ndcg@10", "Gorse ItemPop", 0.218, false},
	{KFold, "ndcg@10", "target", 0.42, true},
}

// AnchorsFor returns the anchors of a protocol and metric, for a data set
// they apply to (MovieLens 100K); none for other data sets.
func AnchorsFor(dataset, protocol, metric string) []Anchor {
	if !IsML100K(dataset) {
		return nil
	}
	var out []Anchor
	for _, a := range Anchors {
		if a.Protocol == protocol && a.Metric == metric {
			out = append(out, a)
		}
	}
	return out
}

// IsML100K reports whether a data set name is MovieLens 100K.
func IsML100K(dataset string) bool {
	return strings.Contains(dataset, "ml-100k") || strings.Contains(dataset, "100k") && strings.Contains(dataset, "movielens")
}

// WriteReport writes report.md, report.json and the SVG plots to dir
// (created if needed).
func WriteReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	js, err := rep.DetailJSON()
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var pretty bytes.Buffer
	if err := jsonIndent(&pretty, js); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), pretty.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	plots, err := writePlots(dir, rep)
	if err != nil {
		return err
	}
	var md bytes.Buffer
	rep.writeMarkdown(&md, plots)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// writeMarkdown writes the report as Markdown, linking the plots.
func (rep *Report) writeMarkdown(b *bytes.Buffer, plots []string) {
	fmt.Fprintf(b, "# Replay report: %s, %s\n\n", rep.Dataset, rep.Protocol)
	fmt.Fprintf(b, "%d events, k = %d, seed %d", rep.Events, rep.K, rep.Settings.Seed)
	if len(rep.Settings.Splits) == 3 {
		fmt.Fprintf(b, ", train / validation / test = %d / %d / %d events", rep.Settings.Splits[0], rep.Settings.Splits[1], rep.Settings.Splits[2])
	}
	if rep.Protocol == Prequential {
		fmt.Fprintf(b, ", ranking every %d eligible positive(s)", rep.Settings.EvalEvery)
	}
	if rep.Protocol != Prequential {
		fmt.Fprintf(b, ", %d training epoch(s)", rep.Settings.Epochs)
	}
	b.WriteString(". Definitions: docs/evaluation.md.\n\n")
	b.WriteString(rep.MarkdownTable())
	var anchors []Anchor
	for _, c := range rep.columns() {
		anchors = append(anchors, AnchorsFor(rep.Dataset, rep.Protocol, c.name)...)
	}
	if len(anchors) > 0 {
		b.WriteString("\nAnchors (product.md §7):\n\n| metric | figure | value |\n| --- | --- | ---: |\n")
		for _, a := range anchors {
			fmt.Fprintf(b, "| %s | %s | %.3f |\n", a.Metric, a.Name, a.Value)
		}
	}
	if rep.Protocol == TimeSplit {
		b.WriteString("\nValidation period (frozen / online RMSE):\n\n| model | val rmse frozen | val rmse online |\n| --- | ---: | ---: |\n")
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Detail.Val != nil {
				fmt.Fprintf(b, "| %s | %s | %s |\n", r.Model, fmtMetric(r.Detail.Val.RMSE), fmtMetric(r.Detail.ValOnline.RMSE))
			}
		}
	}
	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".svg"), p)
		}
	}
}

// MarkdownTable is the results as a Markdown table.
func (rep *Report) MarkdownTable() string {
	var b strings.Builder
	cols := rep.columns()
	b.WriteString("| model |")
	for _, c := range cols {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	b.WriteString(" evaluated | events/s | seconds |\n| --- |")
	for range cols {
		b.WriteString(" ---: |")
	}
	b.WriteString(" ---: | ---: | ---: |\n")
	for i := range rep.Results {
		r := &rep.Results[i]
		fmt.Fprintf(&b, "| %s |", r.Model)
		for _, c := range cols {
			fmt.Fprintf(&b, " %s |", fmtMetric(c.get(r)))
		}
		fmt.Fprintf(&b, " %d | %s | %.2f |\n", r.Evaluated, strconv.FormatFloat(math.Round(r.EventsPerSec), 'f', 0, 64), r.Seconds)
	}
	return b.String()
}

// writePlots writes the metric-over-stream plots and the comparison bar
// charts, returning their file names.
func writePlots(dir string, rep *Report) ([]string, error) {
	var files []string
	// Group series by metric.
	byMetric := map[string][]namedSeries{}
	var metrics []string
	for i := range rep.Results {
		r := &rep.Results[i]
		for _, s := range r.Detail.Series {
			if _, ok := byMetric[s.Metric]; !ok {
				metrics = append(metrics, s.Metric)
			}
			byMetric[s.Metric] = append(byMetric[s.Metric], namedSeries{r.Model + s.Name, s})
		}
	}
	for _, m := range metrics {
		name := "stream_" + m + ".svg"
		if err := streamPlot(filepath.Join(dir, name), rep, m, byMetric[m]); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	for _, c := range rep.columns() {
		name := "compare_" + strings.ReplaceAll(c.name, "@", "_at_") + ".svg"
		if err := barPlot(filepath.Join(dir, name), rep, c); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}

type namedSeries struct {
	name string
	s    Series
}

func metricLabel(m string, k int) string {
	switch m {
	case "hr", "ndcg", "mrr":
		return fmt.Sprintf("%s@%d", strings.ToUpper(m), k)
	}
	return strings.ToUpper(m)
}

func streamPlot(path string, rep *Report, metric string, series []namedSeries) error {
	p := plot.New()
	label := metricLabel(metric, rep.K)
	p.Title.Text = fmt.Sprintf("%s over the stream (%s, window of %d%% of the scored events)", label, rep.Protocol, Window*100/200)
	p.X.Label.Text = "events"
	if rep.Protocol == TimeSplit {
		p.X.Label.Text = "events after the training period"
	}
	p.Y.Label.Text = label
	styleLegend(p)
	p.X.Tick.Marker = thousands{}
	for i, ns := range series {
		xys := make(plotter.XYs, len(ns.s.X))
		for j := range ns.s.X {
			xys[j].X, xys[j].Y = ns.s.X[j], ns.s.Y[j]
		}
		if len(xys) == 0 {
			continue
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("report: plot %s: %w", metric, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(ns.name, l)
	}
	if metric == "rmse" {
		addAnchorLines(p, rep, "rmse", 0)
	}
	// Room on the right for the last tick label.
	p.X.Max += 0.04 * (p.X.Max - p.X.Min)
	p.Add(plotter.NewGrid())
	if err := p.Save(9*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// addAnchorLines draws each anchor of metric as a dashed horizontal line.
func addAnchorLines(p *plot.Plot, rep *Report, metric string, first int) {
	metrics := []string{metric}
	if rep.Protocol == TimeSplit && metric == "rmse" {
		metrics = []string{"rmse_frozen", "rmse_online"}
	}
	seen := map[string]bool{}
	i := first
	for _, m := range metrics {
		for _, a := range AnchorsFor(rep.Dataset, rep.Protocol, m) {
			key := fmt.Sprintf("%s %.3f", a.Name, a.Value)
			if seen[key] {
				continue
			}
			seen[key] = true
			v := a.Value
			f := plotter.NewFunction(func(float64) float64 { return v })
			f.Color = color.RGBA{R: 200, G: 30, B: 30, A: 255}
			if a.Target {
				f.Color = color.RGBA{R: 20, G: 130, B: 20, A: 255}
			}
			f.Dashes = []vg.Length{vg.Points(4), vg.Points(2 + float64(i%3)*2)}
			f.Width = vg.Points(1)
			p.Add(f)
			p.Legend.Add(fmt.Sprintf("%s %.3f", a.Name, a.Value), f)
			i++
		}
	}
}

func barPlot(path string, rep *Report, c column) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s by model (%s, %s)", c.name, rep.Protocol, rep.Dataset)
	p.Y.Label.Text = c.name
	var vals plotter.Values
	var names []string
	for i := range rep.Results {
		v := c.get(&rep.Results[i])
		if math.IsNaN(v) {
			continue
		}
		vals = append(vals, v)
		names = append(names, rep.Results[i].Model)
	}
	if len(vals) == 0 {
		return nil
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return fmt.Errorf("report: bar chart %s: %w", c.name, err)
	}
	bars.Color = plotutil.Color(0)
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(vals))-0.4
	lo, hi := minMax(vals)
	anchors := AnchorsFor(rep.Dataset, rep.Protocol, c.name)
	for _, a := range anchors {
		lo, hi = math.Min(lo, a.Value), math.Max(hi, a.Value)
	}
	// Error metrics differ in the second decimal: zoom in on them.
	if strings.HasPrefix(c.name, "rmse") || c.name == "mae" {
		p.Y.Min = math.Max(0, lo-0.1*(hi-lo)-0.05)
	} else {
		p.Y.Min = 0
	}
	p.Y.Max = hi + 0.1*(hi-p.Y.Min) + 0.01
	if len(anchors) > 0 {
		sort.Slice(anchors, func(i, j int) bool { return anchors[i].Value < anchors[j].Value })
		addAnchorLines(p, rep, c.name, 0)
		styleLegend(p)
	}
	p.Add(plotter.NewGrid())
	w := vg.Length(max(5, 1.2*float64(len(vals))+2)) * vg.Inch
	if err := p.Save(w, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}

// styleLegend puts the legend at the top right, inset so that its line
// samples are not clipped, with a smaller font.
func styleLegend(p *plot.Plot) {
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(14)
	p.Legend.YOffs = -vg.Points(4)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(24)
	p.Legend.Padding = vg.Points(3)
}

// thousands labels event counts as 20k, 1.5M, … so the last label fits.
type thousands struct{}

func (thousands) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label == "" {
			continue
		}
		v := ticks[i].Value
		switch {
		case math.Abs(v) >= 1e6:
			ticks[i].Label = strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
		case math.Abs(v) >= 1e3:
			ticks[i].Label = strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
		}
	}
	return ticks
}
