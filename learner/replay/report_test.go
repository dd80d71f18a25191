package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamrec/streamrec/learner/replay"
)

// mustParseSVG fails unless path is well-formed XML with an <svg> root.
func mustParseSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", path, root)
	}
}

func TestWriteReport(t *testing.T) {
	events := smallLog(1500)
	for _, proto := range replay.Protocols {
		t.Run(proto, func(t *testing.T) {
			cfg := replay.DefaultConfig()
			cfg.Protocol, cfg.Models = proto, []string{"mean", "pop"}
			// A name that turns the MovieLens 100K anchors on.
			rep, err := replay.Run(context.Background(), "movielens:ml-100k", events, nil, cfg, fakeFactory())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := replay.WriteReport(dir, rep); err != nil {
				t.Fatal(err)
			}
			md, err := os.ReadFile(filepath.Join(dir, "report.md"))
			if err != nil {
				t.Fatal(err)
			}
			var js map[string]any
			b, err := os.ReadFile(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &js); err != nil {
				t.Fatalf("report.json: %v", err)
			}
			if js["protocol"] != proto || js["settings"] == nil {
				t.Fatalf("report.json: protocol %v, settings %v", js["protocol"], js["settings"])
			}
			svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
			if len(svgs) < 2 {
				t.Fatalf("want at least a stream plot and a bar chart, got %v", svgs)
			}
			sawBar, sawStream := false, proto == replay.KFold // kfold has no stream
			for _, s := range svgs {
				mustParseSVG(t, s)
				base := filepath.Base(s)
				sawBar = sawBar || strings.HasPrefix(base, "compare_")
				sawStream = sawStream || strings.HasPrefix(base, "stream_")
				if !strings.Contains(string(md), "("+base+")") {
					t.Fatalf("report.md does not link %s", base)
				}
			}
			if !sawBar || !sawStream {
				t.Fatalf("plots %v", svgs)
			}
			if !strings.Contains(string(md), "| mean |") {
				t.Fatalf("report.md has no results table:\n%s", md)
			}
			if proto == replay.Prequential && !strings.Contains(string(md), "River BiasedMF") {
				t.Fatalf("report.md lacks the River anchor:\n%s", md)
			}
		})
	}
}
