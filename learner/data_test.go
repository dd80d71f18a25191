package learner

import (
	"bufio"
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/streamrec/streamrec"
)

// dataDir finds ../shared/data beside the repository (or $STREAMREC_TEST_DATA).
func dataDir() string {
	if d := os.Getenv("STREAMREC_TEST_DATA"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "data")
}

// loadML100K reads ml-100k/u.data in time order (stable for ties). It skips
// the test when the data is absent, unless CI=true.
func loadML100K(tb testing.TB) []streamrec.Event {
	tb.Helper()
	path := filepath.Join(dataDir(), "ml-100k", "u.data")
	f, err := os.Open(path)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("MovieLens 100K missing in CI: %v", err)
		}
		tb.Skipf("MovieLens 100K not found: %v", err)
	}
	defer f.Close()
	var evs []streamrec.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 4 {
			continue
		}
		v, _ := strconv.ParseFloat(fs[2], 64)
		ts, _ := strconv.ParseInt(fs[3], 10, 64)
		evs = append(evs, streamrec.Event{Type: "rating", Kind: streamrec.Explicit, Weight: 1,
			User: fs[0], Item: fs[1], Value: v, TS: ts * 1000})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.SortStableFunc(evs, func(a, b streamrec.Event) int { return cmp.Compare(a.TS, b.TS) })
	for i := range evs {
		evs[i].Pos = streamrec.Position{Topic: "replay", Offset: int64(i)}
	}
	return evs
}
