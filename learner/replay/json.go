package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// MarshalJSON writes the §6 object: {"dataset","protocol","events","k",
// "results":[…]} with the result fields in contract order, metric names
// carrying the actual K ("hr@10"), and metrics that do not apply left out.
func (rep *Report) MarshalJSON() ([]byte, error) {
	return rep.appendJSON(nil, false), nil
}

// DetailJSON is the report.json form: the §6 object plus "settings" and,
// per result, "detail".
func (rep *Report) DetailJSON() ([]byte, error) {
	return rep.appendJSON(nil, true), nil
}

func (rep *Report) appendJSON(b []byte, detail bool) []byte {
	b = append(b, `{"dataset":`...)
	b = appendString(b, rep.Dataset)
	b = append(b, `,"protocol":`...)
	b = appendString(b, rep.Protocol)
	b = append(b, `,"events":`...)
	b = strconv.AppendInt(b, int64(rep.Events), 10)
	b = append(b, `,"k":`...)
	b = strconv.AppendInt(b, int64(rep.K), 10)
	b = append(b, `,"results":[`...)
	for i := range rep.Results {
		if i > 0 {
			b = append(b, ',')
		}
		b = rep.Results[i].appendJSON(b, rep.K, detail)
	}
	b = append(b, ']')
	if detail {
		b = append(b, `,"settings":`...)
		s, _ := json.Marshal(rep.Settings) // plain numbers
		b = append(b, s...)
	}
	return append(b, '}')
}

func (r *Result) appendJSON(b []byte, k int, detail bool) []byte {
	ks := strconv.Itoa(k)
	b = append(b, `{"model":`...)
	b = appendString(b, r.Model)
	num := func(name string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	num("rmse", r.RMSE)
	num("mae", r.MAE)
	num("rmse_frozen", r.RMSEFrozen)
	num("rmse_online", r.RMSEOnline)
	num("hr@"+ks, r.HR)
	num("ndcg@"+ks, r.NDCG)
	num("mrr@"+ks, r.MRR)
	num("p@"+ks, r.P)
	num("r@"+ks, r.R)
	b = append(b, `,"evaluated":`...)
	b = strconv.AppendInt(b, r.Evaluated, 10)
	num("events_per_sec", math.Round(r.EventsPerSec))
	num("seconds", math.Round(r.Seconds*1000)/1000)
	if detail {
		b = append(b, `,"detail":`...)
		d, err := json.Marshal(nanToNull(r.Detail))
		if err != nil {
			d = []byte("null")
		}
		b = append(b, d...)
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // strings always marshal
	return append(b, q...)
}

// nanToNull re-encodes v with NaN and ±Inf numbers as null (encoding/json
// refuses them).
func nanToNull(v Detail) any {
	fix := func(f *Figures) *nullFigures {
		if f == nil {
			return nil
		}
		return &nullFigures{RMSE: nf(f.RMSE), MAE: nf(f.MAE), HR: nf(f.HR), NDCG: nf(f.NDCG), MRR: nf(f.MRR),
			P: nf(f.P), R: nf(f.R), Rated: f.Rated, Ranked: f.Ranked}
	}
	out := struct {
		Rated      int64         `json:"rated"`
		Ranked     int64         `json:"ranked"`
		Eligible   int64         `json:"eligible,omitempty"`
		Processed  int64         `json:"processed"`
		Val        *nullFigures  `json:"validation,omitempty"`
		ValOnline  *nullFigures  `json:"validation_online,omitempty"`
		Test       *nullFigures  `json:"test,omitempty"`
		TestOnline *nullFigures  `json:"test_online,omitempty"`
		Folds      []nullFigures `json:"folds,omitempty"`
		Series     []Series      `json:"series,omitempty"`
	}{Rated: v.Rated, Ranked: v.Ranked, Eligible: v.Eligible, Processed: v.Processed,
		Val: fix(v.Val), ValOnline: fix(v.ValOnline), Test: fix(v.Test), TestOnline: fix(v.TestOnline), Series: v.Series}
	for i := range v.Folds {
		out.Folds = append(out.Folds, *fix(&v.Folds[i]))
	}
	return out
}

type nullFigures struct {
	RMSE   *float64 `json:"rmse,omitempty"`
	MAE    *float64 `json:"mae,omitempty"`
	HR     *float64 `json:"hr,omitempty"`
	NDCG   *float64 `json:"ndcg,omitempty"`
	MRR    *float64 `json:"mrr,omitempty"`
	P      *float64 `json:"p,omitempty"`
	R      *float64 `json:"r,omitempty"`
	Rated  int64    `json:"rated"`
	Ranked int64    `json:"ranked"`
}

func nf(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// columns lists the result columns that have a value for some model, in
// contract order, with their headers.
func (rep *Report) columns() []column {
	ks := strconv.Itoa(rep.K)
	all := []column{
		{"rmse", func(r *Result) float64 { return r.RMSE }},
		{"mae", func(r *Result) float64 { return r.MAE }},
		{"rmse_frozen", func(r *Result) float64 { return r.RMSEFrozen }},
		{"rmse_online", func(r *Result) float64 { return r.RMSEOnline }},
		{"hr@" + ks, func(r *Result) float64 { return r.HR }},
		{"ndcg@" + ks, func(r *Result) float64 { return r.NDCG }},
		{"mrr@" + ks, func(r *Result) float64 { return r.MRR }},
		{"p@" + ks, func(r *Result) float64 { return r.P }},
		{"r@" + ks, func(r *Result) float64 { return r.R }},
	}
	var out []column
	for _, c := range all {
		for i := range rep.Results {
			if !math.IsNaN(c.get(&rep.Results[i])) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

type column struct {
	name string
	get  func(*Result) float64
}

func fmtMetric(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// WriteTable writes the report as a readable table.
func (rep *Report) WriteTable(w io.Writer) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "dataset %s, protocol %s, %d events, k=%d", rep.Dataset, rep.Protocol, rep.Events, rep.K)
	if len(rep.Settings.Splits) == 3 {
		fmt.Fprintf(&buf, ", split %d/%d/%d", rep.Settings.Splits[0], rep.Settings.Splits[1], rep.Settings.Splits[2])
	}
	if rep.Protocol == Prequential && rep.Settings.EvalEvery != 1 {
		fmt.Fprintf(&buf, ", ranking every %d eligible positives", rep.Settings.EvalEvery)
	}
	buf.WriteString("\n\n")
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := rep.columns()
	head := []string{"model"}
	for _, c := range cols {
		head = append(head, c.name)
	}
	head = append(head, "evaluated", "events/s", "seconds")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for i := range rep.Results {
		r := &rep.Results[i]
		row := []string{r.Model}
		for _, c := range cols {
			row = append(row, fmtMetric(c.get(r)))
		}
		row = append(row, strconv.FormatInt(r.Evaluated, 10), strconv.FormatFloat(math.Round(r.EventsPerSec), 'f', 0, 64),
			strconv.FormatFloat(r.Seconds, 'f', 2, 64))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func jsonIndent(dst *bytes.Buffer, src []byte) error {
	if err := json.Indent(dst, src, "", "  "); err != nil {
		return err
	}
	dst.WriteByte('\n')
	return nil
}
