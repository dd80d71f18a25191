package serve

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
)

// staticFeatures answers without allocating, so the benchmark measures the
// server's own allocations.
type staticFeatures struct {
	u    features.User
	seen []string
}

// UserStateSince gives the whole state to a caller holding none and
// "current" after, as a store does for a user without new events.
func (s *staticFeatures) UserStateSince(_ context.Context, _ string, since features.Stamp) (features.UserState, bool, error) {
	if since == "static" {
		return features.UserState{}, false, nil
	}
	return features.UserState{User: s.u, Seen: s.seen, Stamp: "static", Known: true}, true, nil
}

// UserCurrent is true of the one stamp it gives, as a store that saw no
// new events says.
func (s *staticFeatures) UserCurrent(_ string, stamp features.Stamp) bool { return stamp == "static" }

func (s *staticFeatures) Popular(context.Context, int, string, int64) ([]streamrec.Scored, error) {
	return nil, nil
}

// discard is a reusable ResponseWriter.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkHandler measures the request path of the server itself (mux,
// parsing, snapshot read, seen-set filter, JSON encoding, metrics) over an
// in-memory model and feature reader; allocs/op is the figure to watch.
func BenchmarkHandler(b *testing.B) {
	seen := make([]string, 50)
	for i := range seen {
		seen[i] = "i" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	srv, err := New(DefaultConfig(), Deps{
		Features:  &staticFeatures{u: features.User{ID: "u1", Recent: seen[:10]}, seen: seen},
		Snapshots: &fakeSnapshots{}, Decode: decodeFake, Registry: prometheus.NewRegistry(), Log: zerolog.Nop(),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Load(1, fakeBlob(1, 2000)); err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	for _, path := range []string{"/v1/users/u1/recommendations?n=10", "/v1/popular?n=10", "/v1/items/i5/similar?n=10"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}
