package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name string
		urls []string
		want int
		msg  string
	}{
		{"no urls", nil, 2, "usage"},
		{"healthy", []string{ok.URL + "/readyz"}, 0, ""},
		{"all must pass", []string{ok.URL, bad.URL + "/readyz"}, 1, "status 503"},
		{"refused", []string{closedURL}, 1, "streamrec-healthcheck"},
		{"bad url", []string{"http://[::1"}, 1, "streamrec-healthcheck"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errb bytes.Buffer
			if got := run(tc.urls, &errb); got != tc.want {
				t.Fatalf("exit %d, want %d (stderr %q)", got, tc.want, errb.String())
			}
			if !strings.Contains(errb.String(), tc.msg) {
				t.Fatalf("stderr %q lacks %q", errb.String(), tc.msg)
			}
		})
	}
}
