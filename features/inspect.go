package features

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// ByKind counts events per kind.
type ByKind struct {
	Explicit int64 `json:"explicit"`
	Implicit int64 `json:"implicit"`
}

// CountersView is the inspect form of Counters (timestamps in Unix ms, with
// RFC 3339 copies for people).
type CountersView struct {
	Events         int64   `json:"events"`
	ByKind         ByKind  `json:"by_kind"`
	ExplicitSum    float64 `json:"explicit_sum"`
	ExplicitMean   float64 `json:"explicit_mean"`
	ImplicitWeight float64 `json:"implicit_weight"`
	FirstTS        int64   `json:"first_ts"`
	LastTS         int64   `json:"last_ts"`
	FirstTime      string  `json:"first_time,omitempty"`
	LastTime       string  `json:"last_time,omitempty"`
}

func countersView(c Counters) CountersView {
	v := CountersView{Events: c.Events, ByKind: ByKind{c.Explicit, c.Implicit}, ExplicitSum: c.ExplicitSum,
		ExplicitMean: c.ExplicitMean(), ImplicitWeight: c.ImplicitWeight, FirstTS: c.FirstTS, LastTS: c.LastTS}
	if c.FirstTS > 0 {
		v.FirstTime = time.UnixMilli(c.FirstTS).UTC().Format(time.RFC3339Nano)
		v.LastTime = time.UnixMilli(c.LastTS).UTC().Format(time.RFC3339Nano)
	}
	return v
}

// UserView is what `streamrec inspect user` and GET /v1/inspect/users/{id}
// print.
type UserView struct {
	User string `json:"user"`
	CountersView
	Recent        []string  `json:"recent"`
	VectorVersion int64     `json:"vector_version,omitempty"`
	Vector        []float32 `json:"vector,omitempty"`
}

// NewUserView is u's inspect form.
func NewUserView(u User) UserView {
	v := UserView{User: u.ID, CountersView: countersView(u.Counters), Recent: u.Recent,
		VectorVersion: u.VectorVersion, Vector: u.Vector}
	if v.Recent == nil {
		v.Recent = []string{}
	}
	return v
}

// ItemView is what `streamrec inspect item` and GET /v1/inspect/items/{id}
// print.
type ItemView struct {
	Item string `json:"item"`
	CountersView
	Popularity   float64  `json:"popularity"`
	PopularityTS int64    `json:"popularity_ts"`
	Title        string   `json:"title,omitempty"`
	Categories   []string `json:"categories,omitempty"`
}

// NewItemView is it's inspect form.
func NewItemView(it Item) ItemView {
	return ItemView{Item: it.ID, CountersView: countersView(it.Counters), Popularity: it.Popularity,
		PopularityTS: it.PopularityTS, Title: it.Title, Categories: it.Categories}
}

// StatsView is what `streamrec inspect stats` and GET /v1/inspect/stats
// print.
type StatsView struct {
	Events       int64   `json:"events"`
	Users        int64   `json:"users"`
	Items        int64   `json:"items"`
	Explicit     int64   `json:"explicit"`
	ExplicitSum  float64 `json:"explicit_sum"`
	ExplicitMean float64 `json:"explicit_mean"`
	LastTS       int64   `json:"last_ts"`
}

// NewStatsView is g's inspect form.
func NewStatsView(g Global) StatsView {
	return StatsView{Events: g.Events, Users: g.Users, Items: g.Items, Explicit: g.Explicit,
		ExplicitSum: g.ExplicitSum, ExplicitMean: g.ExplicitMean(), LastTS: g.LastTS}
}

// NewInspectHandler serves the store's contents as JSON:
//
//	GET /users/{id}   one user (UserView); 404 for an unknown user
//	GET /items/{id}   one item (ItemView); 404 for an unknown item
//	GET /users        every user, one UserView per line (JSON Lines)
//	GET /stats        the global counters (StatsView)
//
// Errors are {"error":{"code","message"}}. serve and run mount it with
// http.StripPrefix("/v1/inspect", …) under /v1/inspect/.
func NewInspectHandler(s Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		u, ok, err := s.User(r.Context(), id)
		switch {
		case err != nil:
			inspectError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		case !ok:
			inspectError(w, http.StatusNotFound, "not_found", "user "+quote(id)+" not found")
		default:
			writeJSON(w, NewUserView(u))
		}
	})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		it, ok, err := s.Item(r.Context(), id)
		switch {
		case err != nil:
			inspectError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		case !ok:
			inspectError(w, http.StatusNotFound, "not_found", "item "+quote(id)+" not found")
		default:
			writeJSON(w, NewItemView(it))
		}
	})
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		bw := bufio.NewWriterSize(w, 32<<10)
		enc := json.NewEncoder(bw)
		started := false
		err := s.EachUser(r.Context(), func(u User) error {
			started = true
			return enc.Encode(NewUserView(u))
		})
		if err != nil && !started && !errors.Is(err, context.Canceled) {
			inspectError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			// Mid-stream the status is sent: the last line is the error.
			_ = enc.Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": err.Error()}})
		}
		_ = bw.Flush()
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		g, err := s.Global(r.Context())
		if err != nil {
			inspectError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		writeJSON(w, NewStatsView(g))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		inspectError(w, http.StatusNotFound, "not_found", "no such inspect resource: "+r.URL.Path)
	})
	return mux
}

func quote(s string) string {
	b, _ := json.Marshal(s) // strings always marshal
	return string(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func inspectError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
