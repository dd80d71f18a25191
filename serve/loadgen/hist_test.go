package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, time.Millisecond}}
	for _, tt := range tests {
		got := h.Quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*1.035 {
			t.Errorf("q%v = %v, want %v within +3.5%%", tt.q, got, tt.want)
		}
	}
	if h.Count() != 1000 || h.Max() != time.Millisecond {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1 << 40, 1<<62 + 12345} {
		if b := bucket(v); upper(b) < v || (b > 0 && upper(b-1) >= v) {
			t.Errorf("value %d in bucket %d with bounds (%d, %d]", v, b, upper(b-1), upper(b))
		}
	}
}

func TestRunOpenLoop(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(500)
		}
	}))
	defer ts.Close()
	res, err := Run(context.Background(), Config{Rate: 500, Duration: 200 * time.Millisecond, Warmup: 20 * time.Millisecond,
		MaxInFlight: 1000, Timeout: 10 * time.Second}, func(i int) string {
		if i%10 == 0 {
			return ts.URL + "/bad"
		}
		return ts.URL + "/ok"
	})
	if err != nil {
		t.Fatal(err)
	}
	// 500/s for 200 ms: 100 requests offered whatever the latency (open
	// loop), every tenth a 500.
	offered := res.Sent + res.Dropped
	if offered < 95 || offered > 101 || res.Non2xx < 1 || res.Latency.Count()+uint64(res.Non2xx+res.Errors) != uint64(res.Sent) {
		t.Fatalf("unexpected result: %s (sent %d)", res, res.Sent)
	}
}
