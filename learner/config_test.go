package learner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.MF.Dims, cfg.Seed, cfg.Pop.HalfLife = 24, 9, Duration(48*time.Hour)
	cfg.Ranker.Dim = 12
	path := filepath.Join(dir, "best.json")
	if err := cfg.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"half_life": "48h0m0s"`) {
		t.Fatalf("durations should be readable strings:\n%s", b)
	}
	got, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != cfg.Hash() || got.MF.Dims != 24 || got.Ranker.Dim != 12 {
		t.Fatalf("loaded %+v, wrote %+v", got, cfg)
	}
	// A partial file keeps the defaults for what it omits.
	partial := filepath.Join(dir, "partial.json")
	os.WriteFile(partial, []byte(`{"mf":{"dims":8}}`), 0o644)
	if got, err := LoadConfig(partial); err != nil || got.MF.Dims != 8 || got.MF.LR != DefaultConfig().MF.LR {
		t.Fatalf("partial: %+v %v", got.MF, err)
	}
}

func TestConfigRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, body, want string }{
		{"unknown field", `{"mf":{"dimz":8}}`, "dimz"},
		{"bad duration", `{"pop":{"half_life":"soon"}}`, "duration"},
		{"invalid value", `{"mf":{"dims":0}}`, "mf.dims"},
		{"several invalid", `{"k":0,"window":-1}`, "window"},
		{"not json", `dims=8`, "decode"},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.name+".json")
		os.WriteFile(path, []byte(tc.body), 0o644)
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want mention of %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestNewKnowsEveryName(t *testing.T) {
	for _, n := range Names() {
		m, err := New(n, DefaultConfig())
		if err != nil || m.Name() != n {
			t.Fatalf("New(%q) = %v, %v", n, m, err)
		}
	}
	if _, err := New("nope", DefaultConfig()); err == nil {
		t.Fatal("unknown model accepted")
	}
	if got, err := ParseModels(" pop, mf ,twostage"); err != nil || strings.Join(got, ",") != "pop,mf,twostage" {
		t.Fatalf("ParseModels = %v, %v", got, err)
	}
	if _, err := ParseModels("pop,svd"); err == nil {
		t.Fatal("ParseModels accepted svd")
	}
	for _, tc := range []struct {
		in   string
		d    time.Duration
		n    int64
		fail bool
	}{{"5s,10000", 5 * time.Second, 10000, false}, {"2m", 2 * time.Minute, 0, false}, {"500", 0, 500, false},
		{"", 0, 0, true}, {"soon", 0, 0, true}, {"-5", 0, 0, true}} {
		d, n, err := ParseSnapshotEvery(tc.in)
		if (err != nil) != tc.fail || d != tc.d || n != tc.n {
			t.Errorf("ParseSnapshotEvery(%q) = %v, %d, %v", tc.in, d, n, err)
		}
	}
}
