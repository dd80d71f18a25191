package dataset_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/ingest/dataset"
)

// sharedData returns a path under the shared data folder, skipping the test
// when the folder is absent outside CI (and failing in CI).
func sharedData(t testing.TB, sub string) string {
	t.Helper()
	dir := dataset.SharedDataDir()
	p := filepath.Join(dir, sub)
	if _, err := os.Stat(p); dir == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data %s not found (set STREAMREC_TEST_DATA or place shared/data beside the repository)", sub)
		}
		t.Skipf("shared data %s not found", sub)
	}
	return p
}

func load(t *testing.T, spec string, opts dataset.Options) *dataset.Data {
	t.Helper()
	d, err := dataset.Load(context.Background(), spec, opts)
	if err != nil {
		t.Fatalf("Load(%q): %v", spec, err)
	}
	return d
}

// checkOrder asserts time order and replay positions.
func checkOrder(t *testing.T, d *dataset.Data) {
	t.Helper()
	for i := range d.Events {
		e := &d.Events[i]
		if i > 0 && e.TS < d.Events[i-1].TS {
			t.Fatalf("event %d at %d is before event %d at %d", i, e.TS, i-1, d.Events[i-1].TS)
		}
		if e.Pos != (streamrec.Position{Topic: "replay", Offset: int64(i)}) {
			t.Fatalf("event %d has position %+v", i, e.Pos)
		}
	}
}

func itemByID(d *dataset.Data, id string) *streamrec.ItemMeta {
	for i := range d.Items {
		if d.Items[i].Item == id {
			return &d.Items[i]
		}
	}
	return nil
}

func TestMovieLens100K(t *testing.T) {
	dir := sharedData(t, "ml-100k")
	d := load(t, "movielens:"+dir, dataset.Options{})
	if got, want := len(d.Events), 100000; got != want {
		t.Errorf("events = %d, want %d", got, want)
	}
	if got, want := len(d.Items), 1682; got != want {
		t.Errorf("items = %d, want %d", got, want)
	}
	if got, want := d.Users(), 943; got != want {
		t.Errorf("users = %d, want %d", got, want)
	}
	if d.Rejected != 0 {
		t.Errorf("rejected %d: %v", d.Rejected, d.Errors)
	}
	if d.Name != "movielens:ml-100k" {
		t.Errorf("name = %q", d.Name)
	}
	checkOrder(t, d)
	first, last := d.Span()
	if first.Unix() != 874724710 || last.Unix() != 893286638 {
		t.Errorf("span %d → %d, want 874724710 → 893286638", first.Unix(), last.Unix())
	}
	hist := map[float64]int{}
	for _, e := range d.Events {
		if e.Type != "rating" || e.Kind != streamrec.Explicit || e.Weight != 1 {
			t.Fatalf("event %+v is not an explicit rating", e)
		}
		hist[e.Value]++
	}
	if want := map[float64]int{1: 6110, 2: 11370, 3: 27145, 4: 34174, 5: 21201}; !mapsEqual(hist, want) {
		t.Errorf("rating histogram %v, want %v", hist, want)
	}
	toy := itemByID(d, "1")
	if toy == nil || toy.Title != "Toy Story (1995)" || !slices.Equal(toy.Categories, []string{"Animation", "Children's", "Comedy"}) {
		t.Errorf("item 1 = %+v", toy)
	}
	// u.item is latin-1: é must come out as UTF-8.
	if m := itemByID(d, "543"); m == nil || m.Title != "Misérables, Les (1995)" {
		t.Errorf("item 543 = %+v, want the UTF-8 title Misérables, Les (1995)", m)
	}
	if m := itemByID(d, "1104"); m == nil || m.Title != "C'est arrivé près de chez vous (1992)" {
		t.Errorf("item 1104 = %+v", m)
	}
	// "unknown" is not a category.
	if m := itemByID(d, "267"); m == nil || len(m.Categories) != 0 {
		t.Errorf("item 267 = %+v, want no categories", m)
	}
}

func mapsEqual(a, b map[float64]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestMovieLensLatestSmall(t *testing.T) {
	dir := sharedData(t, "ml-latest-small")
	d := load(t, "movielens:"+dir, dataset.Options{})
	if got, want := len(d.Events), 100836; got != want {
		t.Errorf("events = %d, want %d", got, want)
	}
	if got, want := len(d.Items), 9742; got != want {
		t.Errorf("items = %d, want %d", got, want)
	}
	if got, want := d.Users(), 610; got != want {
		t.Errorf("users = %d, want %d", got, want)
	}
	if got, want := d.EventItems(), 9724; got != want {
		t.Errorf("rated items = %d, want %d", got, want)
	}
	if d.Rejected != 0 {
		t.Errorf("rejected %d: %v", d.Rejected, d.Errors)
	}
	checkOrder(t, d)
	for _, e := range d.Events {
		if e.Value < 0.5 || e.Value > 5 || e.Value*2 != float64(int(e.Value*2)) {
			t.Fatalf("rating %v is not a half star in [0.5, 5]", e.Value)
		}
	}
	tests := []struct {
		id, title string
		cats      []string
	}{
		{"1", "Toy Story (1995)", []string{"Adventure", "Animation", "Children", "Comedy", "Fantasy"}},
		{"11", "American President, The (1995)", []string{"Comedy", "Drama", "Romance"}}, // quoted, comma
		{"7789", `11'09"01 - September 11 (2002)`, []string{"Drama"}},                    // escaped quote
	}
	for _, tc := range tests {
		m := itemByID(d, tc.id)
		if m == nil || m.Title != tc.title || !slices.Equal(m.Categories, tc.cats) {
			t.Errorf("item %s = %+v, want %q %v", tc.id, m, tc.title, tc.cats)
		}
	}
	none := 0
	for _, m := range d.Items {
		if strings.ContainsAny(m.Title, "\r\n") || strings.ContainsAny(strings.Join(m.Categories, ""), "\r\n") {
			t.Fatalf("item %s keeps a line ending: %+v", m.Item, m)
		}
		if len(m.Categories) == 0 {
			none++
		}
		if slices.Contains(m.Categories, "(no genres listed)") {
			t.Fatalf("item %s lists the no-genre marker as a category", m.Item)
		}
	}
	if none == 0 {
		t.Error(`no item without genres; "(no genres listed)" should give none`)
	}
}

func TestYooChoose(t *testing.T) {
	path := sharedData(t, "yoochoose-rsc15-100k/yoochoose-clicks-100k_train_full.txt")
	d := load(t, "yoochoose:"+path, dataset.Options{})
	if got, want := len(d.Events), 70278; got != want {
		t.Errorf("events = %d, want %d", got, want)
	}
	if got, want := d.Users(), 17794; got != want {
		t.Errorf("sessions = %d, want %d", got, want)
	}
	if got, want := d.EventItems(), 2933; got != want {
		t.Errorf("items = %d, want %d", got, want)
	}
	checkOrder(t, d)
	first, last := d.Span()
	if got := first.Format("2006-01-02 15:04:05"); got != "2014-04-01 01:02:21" {
		t.Errorf("first = %s", got)
	}
	if got := last.Format("2006-01-02 15:04:05"); got != "2014-04-07 00:43:12" {
		t.Errorf("last = %s", got)
	}
	var frac bool
	for _, e := range d.Events {
		if e.Type != "view" || e.Kind != streamrec.Implicit || e.Weight != 1 {
			t.Fatalf("event %+v is not a view", e)
		}
		frac = frac || e.TS%1000 != 0
	}
	if !frac {
		t.Error("fractional seconds were lost")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJSONLRejectsBadLines(t *testing.T) {
	p := writeFile(t, "ev.jsonl", strings.Join([]string{
		`{"type":"rating","user":"1","item":"10","value":4,"ts":100}`,
		`{"type":"view","user":2,"item":"11","ts":"1970-01-01T00:01:40Z","context":{"device":"ios"}}`,
		`not json`,
		`{"type":"teleport","user":"1","item":"10","ts":100}`,
		`{"type":"rating","user":"1","item":"10","value":9,"ts":100}`,
		``,
		`{"type":"rating","user":"1","item":"10","ts":100}`,
		"{\"type\":\"view\",\"user\":\"\xff\",\"item\":\"10\",\"ts\":100}",
		`{"id":"e-1","type":"purchase","user":"3","item":"12","ts":99.5}`,
	}, "\n"))
	d := load(t, "jsonl:"+p, dataset.Options{})
	if len(d.Events) != 3 || d.Rejected != 5 || len(d.Errors) != 5 {
		t.Fatalf("events %d rejected %d errors %v; want 3, 5", len(d.Events), d.Rejected, d.Errors)
	}
	if e := d.Events[0]; e.ID != "e-1" || e.TS != 99500 || e.Weight != 4 {
		t.Errorf("first event %+v, want the purchase at 99.5 s", e)
	}
	if e := d.Events[2]; e.User != "2" || e.Context["device"] != "ios" {
		t.Errorf("third event %+v", e)
	}
	if !strings.Contains(d.Errors[0].Error(), "ev.jsonl:3:") {
		t.Errorf("error %q lacks the line number", d.Errors[0])
	}
	var de *streamrec.DecodeError
	if !errors.As(d.Errors[1], &de) || de.Reason != streamrec.ReasonUnknownType {
		t.Errorf("error %v is not an unknown-type DecodeError", d.Errors[1])
	}
}

func TestCSVMapping(t *testing.T) {
	types := streamrec.DefaultEventTypes()
	if err := types.Set("watched=implicit:3"); err != nil {
		t.Fatal(err)
	}
	if err := types.Set("stars=explicit"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		opts    dataset.Options
		want    []streamrec.Event // TS, User, Item, Type, Kind, Weight, Value
		items   []streamrec.ItemMeta
		reject  int
	}{
		{
			name: "semicolon, header, skipped column, custom types",
			content: "when;who;what;kind;junk;score;genres\r\n" +
				"200;alice;m1;watched;x;;Drama|Comedy\r\n" +
				"100;bob;m2;stars;x;4.5;Action\r\n" +
				"150;alice;m2;pv;x;;\r\n" +
				"150;carol;m3;unknown_type;x;;\r\n" + // rejected
				"notatime;carol;m3;pv;x;;\r\n", // rejected
			opts: dataset.Options{Columns: "ts,user,item,type,-,value,category", Header: true, Sep: ";", Types: types},
			want: []streamrec.Event{
				{TS: 100_000, User: "bob", Item: "m2", Type: "stars", Kind: streamrec.Explicit, Weight: 1, Value: 4.5},
				{TS: 150_000, User: "alice", Item: "m2", Type: "pv", Kind: streamrec.Implicit, Weight: 1},
				{TS: 200_000, User: "alice", Item: "m1", Type: "watched", Kind: streamrec.Implicit, Weight: 3},
			},
			items: []streamrec.ItemMeta{
				{Item: "m1", Categories: []string{"Drama", "Comedy"}},
				{Item: "m2", Categories: []string{"Action"}},
			},
			reject: 2,
		},
		{
			name:    "double-colon separator, default type from value column",
			content: "1::10::3::978300760\n2::11::7::978300761\n",
			opts:    dataset.Options{Columns: "user,item,value,ts", Sep: "::"},
			want:    []streamrec.Event{{TS: 978300760_000, User: "1", Item: "10", Type: "rating", Kind: streamrec.Explicit, Weight: 1, Value: 3}},
			reject:  1, // 7 is out of range
		},
		{
			name:    "tab, type default, quoted title, ms timestamps",
			content: "u1\ti1\t\"Hello, \"\"World\"\"\"\t1700000000123\nu2\ti2\tPlain\t2023-11-14T22:13:21Z\n",
			opts:    dataset.Options{Columns: "user,item,title,ts", Sep: "tab", TypeDefault: "watched", Types: types},
			want: []streamrec.Event{
				{TS: 1700000000123, User: "u1", Item: "i1", Type: "watched", Kind: streamrec.Implicit, Weight: 3},
				{TS: 1700000001000, User: "u2", Item: "i2", Type: "watched", Kind: streamrec.Implicit, Weight: 3},
			},
			items: []streamrec.ItemMeta{{Item: "i1", Title: `Hello, "World"`}, {Item: "i2", Title: "Plain"}},
		},
		{
			name:    "no type column and no value column defaults to view",
			content: "u1,i1,5\nu1,i2,5\n",
			opts:    dataset.Options{Columns: "user,item,ts"},
			want: []streamrec.Event{
				{TS: 5000, User: "u1", Item: "i1", Type: "view", Kind: streamrec.Implicit, Weight: 1},
				{TS: 5000, User: "u1", Item: "i2", Type: "view", Kind: streamrec.Implicit, Weight: 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "data.csv", tc.content)
			d := load(t, "csv:"+p, tc.opts)
			if d.Rejected != tc.reject {
				t.Errorf("rejected %d (%v), want %d", d.Rejected, d.Errors, tc.reject)
			}
			if len(d.Events) != len(tc.want) {
				t.Fatalf("got %d events %+v, want %d", len(d.Events), d.Events, len(tc.want))
			}
			for i, w := range tc.want {
				g := d.Events[i]
				g.Pos = streamrec.Position{}
				if g.TS != w.TS || g.User != w.User || g.Item != w.Item || g.Type != w.Type || g.Kind != w.Kind || g.Weight != w.Weight || g.Value != w.Value {
					t.Errorf("event %d = %+v, want %+v", i, g, w)
				}
			}
			if len(d.Items) != len(tc.items) {
				t.Fatalf("items %+v, want %+v", d.Items, tc.items)
			}
			for i, w := range tc.items {
				if g := d.Items[i]; g.Item != w.Item || g.Title != w.Title || !slices.Equal(g.Categories, w.Categories) {
					t.Errorf("item %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestTiesAreStable(t *testing.T) {
	var b strings.Builder
	for i := range 50 {
		// Three timestamps, interleaved; file order must survive within each.
		b.WriteString("u,i" + strconv.Itoa(i) + "," + strconv.Itoa(300-100*(i%3)) + "\n")
	}
	d := load(t, "csv:"+writeFile(t, "ties.csv", b.String()), dataset.Options{Columns: "user,item,ts"})
	checkOrder(t, d)
	last := map[int64]int{}
	for _, e := range d.Events {
		n, _ := strconv.Atoi(strings.TrimPrefix(e.Item, "i"))
		if p, ok := last[e.TS]; ok && n < p {
			t.Fatalf("tie at %d: item i%d after i%d", e.TS, n, p)
		}
		last[e.TS] = n
	}
}

func TestTimeRange(t *testing.T) {
	p := writeFile(t, "r.csv", "u,a,100\nu,b,200\nu,c,300\nu,d,400\n")
	d := load(t, "csv:"+p, dataset.Options{Columns: "user,item,ts", From: time.Unix(200, 0), To: time.Unix(400, 0)})
	if len(d.Events) != 2 || d.Events[0].Item != "b" || d.Events[1].Item != "c" {
		t.Fatalf("events %+v, want b and c ([From, To))", d.Events)
	}
	checkOrder(t, d)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	csvFile := writeFile(t, "x.csv", "u,i,1\n")
	tests := []struct {
		spec string
		opts dataset.Options
		msg  string
	}{
		{"nonsense", dataset.Options{}, "SCHEME:ARGUMENT"},
		{"parquet:x", dataset.Options{}, "unknown scheme"},
		{"jsonl:" + filepath.Join(dir, "missing.jsonl"), dataset.Options{}, "no such file"},
		{"movielens:" + dir, dataset.Options{}, "holds none of"},
		{"movielens:" + filepath.Join(dir, "nope"), dataset.Options{}, "no such file"},
		{"csv:" + csvFile, dataset.Options{Columns: "user,item,colour"}, "colour"},
		{"csv:" + csvFile, dataset.Options{Columns: "user,item"}, "ts column is required"},
		{"csv:" + csvFile, dataset.Options{Columns: "user,item,ts", TypeDefault: "nope"}, "not a configured type"},
		{"synthetic:users=0", dataset.Options{}, "must be positive"},
		{"synthetic:colour=red", dataset.Options{}, "unknown key"},
		{"kafka:nobroker", dataset.Options{}, "BROKER"},
		{"csv:" + csvFile, dataset.Options{From: time.Unix(10, 0), To: time.Unix(5, 0)}, "empty"},
	}
	for _, tc := range tests {
		_, err := dataset.Load(context.Background(), tc.spec, tc.opts)
		if err == nil || !errors.Is(err, dataset.ErrSpec) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Load(%q) = %v, want an ErrSpec mentioning %q", tc.spec, err, tc.msg)
		}
	}
}

func TestLongLineIsRejectedNotFatal(t *testing.T) {
	content := `{"type":"view","user":"1","item":"1","ts":1}` + "\n" +
		`{"type":"view","user":"` + strings.Repeat("x", 2<<20) + `","item":"1","ts":1}` + "\n" +
		`{"type":"view","user":"2","item":"1","ts":2}`
	d := load(t, "jsonl:"+writeFile(t, "long.jsonl", content), dataset.Options{})
	if len(d.Events) != 2 || d.Rejected != 1 {
		t.Fatalf("events %d rejected %d, want 2 and 1", len(d.Events), d.Rejected)
	}
}

func TestMovieLens1MFormat(t *testing.T) {
	// ratings.dat and movies.dat as in MovieLens 1M: "::"-separated, latin-1.
	dir := t.TempDir()
	ratings := "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::9::11::978298414\n"
	movies := "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n" +
		"9::Caf\xe9 au Lait (1993)::Comedy\n"
	if err := os.WriteFile(filepath.Join(dir, "ratings.dat"), []byte(ratings), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "movies.dat"), []byte(movies), 0o644); err != nil {
		t.Fatal(err)
	}
	d := load(t, "movielens:"+dir, dataset.Options{})
	if len(d.Events) != 3 || d.Rejected != 1 {
		t.Fatalf("events %d rejected %d (%v), want 3 and 1 (rating 11 is out of range)", len(d.Events), d.Rejected, d.Errors)
	}
	if e := d.Events[0]; e.User != "2" || e.Item != "1193" || e.Value != 4 || e.TS != 978298413000 {
		t.Errorf("first event %+v", e)
	}
	checkOrder(t, d)
	if m := itemByID(d, "9"); m == nil || m.Title != "Café au Lait (1993)" || !slices.Equal(m.Categories, []string{"Comedy"}) {
		t.Errorf("item 9 = %+v", m)
	}
	if m := itemByID(d, "661"); m == nil || !slices.Equal(m.Categories, []string{"Animation", "Children's", "Musical"}) {
		t.Errorf("item 661 = %+v", m)
	}
}

func TestYooChooseTypeDefaultAndBadLines(t *testing.T) {
	p := writeFile(t, "clicks.txt", "SessionId\tItemId\tTime\n1\t10\t1396437466.94\n1\t11\tnope\n2\t10\n3\t12\t1396437467\n")
	d := load(t, "yoochoose:"+p, dataset.Options{TypeDefault: "click"})
	if len(d.Events) != 2 || d.Rejected != 2 {
		t.Fatalf("events %d rejected %d (%v)", len(d.Events), d.Rejected, d.Errors)
	}
	if e := d.Events[0]; e.Type != "click" || e.TS != 1396437466940 || e.User != "1" {
		t.Errorf("first event %+v", e)
	}
}

func BenchmarkLoadML100K(b *testing.B) {
	dir := sharedData(b, "ml-100k")
	ctx := context.Background()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		d, err := dataset.Load(ctx, "movielens:"+dir, dataset.Options{})
		if err != nil {
			b.Fatal(err)
		}
		n = len(d.Events)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkLoadLatestSmall(b *testing.B) {
	dir := sharedData(b, "ml-latest-small")
	ctx := context.Background()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		d, err := dataset.Load(ctx, "movielens:"+dir, dataset.Options{})
		if err != nil {
			b.Fatal(err)
		}
		n = len(d.Events)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkSynthetic(b *testing.B) {
	b.ReportAllocs()
	cfg := dataset.DefaultSyntheticConfig()
	for b.Loop() {
		dataset.Synthetic(cfg)
	}
	b.ReportMetric(float64(cfg.Events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func TestCSVByteOrderMark(t *testing.T) {
	d := load(t, "csv:"+writeFile(t, "bom.csv", "\xef\xbb\xbfu1,i1,10\r\n"), dataset.Options{Columns: "user,item,ts"})
	if len(d.Events) != 1 || d.Events[0].User != "u1" {
		t.Fatalf("events %+v", d.Events)
	}
}
