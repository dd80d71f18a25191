package serve

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/learner"
)

// Degraded reasons (label values of streamrec_serve_degraded_total).
const (
	degradedFeatures   = "feature_store_error"
	degradedBreaker    = "feature_store_breaker_open"
	degradedNoSnapshot = "no_snapshot"
)

var errBreakerOpen = errors.New("feature store breaker open")

// reqState is the pooled per-request scratch of the hot path.
type reqState struct {
	user   features.User
	q      learner.Query
	scored []streamrec.Scored
}

var statePool = sync.Pool{New: func() any {
	return &reqState{scored: make([]streamrec.Scored, 0, 64)}
}}

func getState() *reqState { return statePool.Get().(*reqState) }

func putState(st *reqState) {
	if cap(st.scored) > 1<<14 {
		return
	}
	st.user = features.User{}
	st.q = learner.Query{}
	clear(st.scored[:cap(st.scored)])
	st.scored = st.scored[:0]
	statePool.Put(st)
}

// checkID validates a user or item id as the event contract does.
func checkID(name, id string) error {
	if id == "" || len(id) > streamrec.MaxIDBytes || !utf8.ValidString(id) {
		return streamrec.Errorf(streamrec.EINVALID, "%s must be 1–%d bytes of UTF-8", name, streamrec.MaxIDBytes)
	}
	return nil
}

// queryValue returns the first value of key in a raw query string without
// building url.Values (the hot path stays allocation-free).
func queryValue(raw, key string) (string, bool, error) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if strings.ContainsAny(k, "%+") {
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
		}
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return "", true, streamrec.Errorf(streamrec.EINVALID, "query parameter %s is badly escaped", key)
			}
			v = uv
		}
		return v, true, nil
	}
	return "", false, nil
}

func (s *Server) parseN(raw string) (int, error) {
	v, ok, err := queryValue(raw, "n")
	if err != nil {
		return 0, err
	}
	if !ok || v == "" {
		return s.cfg.DefaultN, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > s.cfg.MaxN {
		return 0, streamrec.Errorf(streamrec.EINVALID, "n must be an integer in 1..%d", s.cfg.MaxN)
	}
	return n, nil
}

func parseCategory(raw string) (string, error) {
	v, _, err := queryValue(raw, "category")
	if err != nil {
		return "", err
	}
	if len(v) > 256 || !utf8.ValidString(v) {
		return "", streamrec.Errorf(streamrec.EINVALID, "category must be at most 256 bytes of UTF-8")
	}
	return v, nil
}

// userView returns the user's features and seen-set, read within the
// feature budget: the kept view when the store says it is current, else a
// new one (kept for the next request).
func (s *Server) userView(ctx context.Context, id string) (*userView, error) {
	if !s.breaker.allow() {
		return nil, errBreakerOpen
	}
	var old *userView
	var since features.Stamp
	if s.views != nil {
		if old = s.views.get(id); old != nil {
			since = old.stamp
			if s.current != nil && s.current.UserCurrent(id, since) {
				s.metrics.stateSame.Inc()
				return old, nil
			}
		}
	}
	st, changed, err := s.readState(ctx, id, since)
	s.featureResult(ctx, err)
	if err != nil {
		return nil, err
	}
	if !changed {
		s.metrics.stateSame.Inc()
		if old != nil {
			return old, nil
		}
		return newUserView(id, features.UserState{}), nil // unknown, and nothing kept
	}
	s.metrics.stateNew.Inc()
	v := newUserView(id, st)
	if s.views != nil {
		s.views.put(id, v)
	}
	return v, nil
}

// readState reads one user's state within the feature budget, in a shared
// round trip when the coalescer is on.
func (s *Server) readState(ctx context.Context, id string, since features.Stamp) (features.UserState, bool, error) {
	if s.batcher == nil {
		fctx, cancel := context.WithTimeout(ctx, s.cfg.FeatureTimeout)
		defer cancel()
		return s.deps.Features.UserStateSince(fctx, id, since)
	}
	rd := stateReadPool.Get().(*stateRead)
	rd.read = features.StateRead{ID: id, Since: since}
	s.batcher.read(rd)
	r := rd.read
	rd.read = features.StateRead{}
	stateReadPool.Put(rd)
	return r.State, r.Changed, r.Err
}

// storePopular is the feature store's popularity (no snapshot loaded).
func (s *Server) storePopular(ctx context.Context, n int, category string, ts int64) ([]streamrec.Scored, error) {
	if !s.breaker.allow() {
		return nil, errBreakerOpen
	}
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FeatureTimeout)
	items, err := s.deps.Features.Popular(fctx, n, category, ts)
	cancel()
	s.featureResult(ctx, err)
	return items, err
}

func (s *Server) featureResult(ctx context.Context, err error) {
	switch {
	case err == nil:
		s.breaker.success()
	case ctx.Err() != nil:
		// The client went away; not the store's fault.
	default:
		s.breaker.failure()
		s.logLimited(err, "feature store read failed; answering degraded")
	}
}

func degradedReason(err error) string {
	if errors.Is(err, errBreakerOpen) {
		return degradedBreaker
	}
	return degradedFeatures
}

func (s *Server) handleRecommendations(w http.ResponseWriter, r *http.Request) int {
	user := r.PathValue("user")
	if err := checkID("user", user); err != nil {
		return writeErr(w, err)
	}
	raw := r.URL.RawQuery
	n, err := s.parseN(raw)
	if err != nil {
		return writeErr(w, err)
	}
	category, err := parseCategory(raw)
	if err != nil {
		return writeErr(w, err)
	}
	excludeSeen := true
	if v, ok, err := queryValue(raw, "exclude_seen"); err != nil {
		return writeErr(w, err)
	} else if ok && v != "" {
		if excludeSeen, err = strconv.ParseBool(v); err != nil {
			return writeErr(w, streamrec.Errorf(streamrec.EINVALID, "exclude_seen must be true or false"))
		}
	}

	ts := s.now().UnixMilli()
	cur := s.cur.Load() // one snapshot for the whole request
	st := getState()
	defer putState(st)
	var (
		items    []streamrec.Scored
		degraded string
		model    Model
		version  int64 // the serving model's
		answered int64 // the model version that computed items
	)
	if cur == nil {
		items, err = s.storePopular(r.Context(), n, category, ts)
		if err != nil {
			return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "no model snapshot loaded yet and the feature store is unavailable"))
		}
		degraded = degradedNoSnapshot
	} else {
		model, version = cur.model, cur.info.Version
		answered = version
		view, err := s.userView(r.Context(), user)
		if err != nil {
			degraded = degradedReason(err)
			items = model.Popular(n, category, ts, st.scored[:0])
		} else {
			u := &view.user // shared and immutable: the model only reads it
			key := recKey{user: user, events: u.Events, lastTS: u.LastTS,
				vecVer: u.VectorVersion, n: n, category: category, exclude: excludeSeen}
			hit, refresh := false, false
			if s.cache != nil {
				var from int64
				if items, from, hit, refresh = s.cache.get(&key, s.now().UnixNano(), version, st.scored[:0]); hit {
					s.metrics.cacheHit.Inc()
					if from != version {
						// Answered by the previous model while the new
						// one's answer is computed (Config.SwapGrace); the
						// answer says which model made it.
						s.metrics.cacheStale.Inc()
						answered = from
					}
				} else {
					s.metrics.cacheMiss.Inc()
				}
				if refresh {
					s.renewAnswer(key, view)
				}
			}
			if !hit {
				st.q = learner.Query{User: u, Category: category, TS: ts}
				if excludeSeen && view.exclude != nil {
					st.q.Exclude = view.exclude
					st.q.ExcludeSet = view.excludeSet(model, version)
				}
				items = model.Recommend(&st.q, n, st.scored[:0])
				if s.cache != nil {
					s.cache.put(&key, s.now().UnixNano(), version, items)
				}
			}
		}
		st.scored = items[:0]
	}
	if degraded != "" {
		s.metrics.degraded.WithLabelValues("recommendations", degraded).Inc()
	}

	bp := getBuf()
	defer putBuf(bp)
	b := append(*bp, `{"user":`...)
	b = appendString(b, user)
	b = append(b, `,"model_version":`...)
	b = strconv.AppendInt(b, answered, 10)
	b = append(b, `,"items":`...)
	b = appendItems(b, model, items)
	b = append(b, `,"degraded":`...)
	b = strconv.AppendBool(b, degraded != "")
	b = append(b, "}\n"...)
	*bp = b
	return writeJSON(w, http.StatusOK, b)
}

// appendItems appends scored items with their titles and categories (empty
// when the model does not know them or there is no model).
func appendItems(b []byte, m Model, items []streamrec.Scored) []byte {
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"item":`...)
		b = appendString(b, items[i].Item)
		b = append(b, `,"score":`...)
		b = appendFloat(b, items[i].Score)
		var title string
		var cats []string
		if m != nil {
			title, cats, _ = m.ItemInfo(items[i].Item)
		}
		b = append(b, `,"title":`...)
		b = appendString(b, title)
		b = append(b, `,"categories":[`...)
		for j, c := range cats {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
		}
		b = append(b, "]}"...)
	}
	return append(b, ']')
}

func (s *Server) handleSimilar(w http.ResponseWriter, r *http.Request) int {
	item := r.PathValue("item")
	if err := checkID("item", item); err != nil {
		return writeErr(w, err)
	}
	n, err := s.parseN(r.URL.RawQuery)
	if err != nil {
		return writeErr(w, err)
	}
	cur := s.cur.Load()
	if cur == nil {
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "no model snapshot loaded yet"))
	}
	st := getState()
	defer putState(st)
	items := cur.model.Similar(item, n, st.scored[:0])
	st.scored = items[:0]
	if len(items) == 0 {
		if _, _, known := cur.model.ItemInfo(item); !known {
			return writeErr(w, streamrec.Errorf(streamrec.ENOTFOUND, "item %q is not in the model", item))
		}
	}
	bp := getBuf()
	defer putBuf(bp)
	b := append(*bp, `{"item":`...)
	b = appendString(b, item)
	b = append(b, `,"model_version":`...)
	b = strconv.AppendInt(b, cur.info.Version, 10)
	b = append(b, `,"items":`...)
	b = appendItems(b, cur.model, items)
	b = append(b, "}\n"...)
	*bp = b
	return writeJSON(w, http.StatusOK, b)
}

type rankRequest struct {
	User  string   `json:"user"`
	Items []string `json:"items"`
}

func (s *Server) handleRank(w http.ResponseWriter, r *http.Request) int {
	var req rankRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return writeErr(w, err)
		}
		return writeErr(w, streamrec.Errorf(streamrec.EINVALID, "body must be {\"user\":ID,\"items\":[ID,...]}: %v", err))
	}
	if err := checkID("user", req.User); err != nil {
		return writeErr(w, err)
	}
	if len(req.Items) == 0 || len(req.Items) > s.cfg.MaxN {
		return writeErr(w, streamrec.Errorf(streamrec.EINVALID, "items must hold 1..%d ids", s.cfg.MaxN))
	}
	for i, it := range req.Items {
		if checkID("item", it) != nil {
			return writeErr(w, streamrec.Errorf(streamrec.EINVALID, "items[%d] must be 1–%d bytes of UTF-8", i, streamrec.MaxIDBytes))
		}
	}
	cur := s.cur.Load()
	if cur == nil {
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "no model snapshot loaded yet"))
	}
	st := getState()
	defer putState(st)
	degraded := ""
	if view, err := s.userView(r.Context(), req.User); err != nil {
		degraded = degradedReason(err)
		st.user = features.User{ID: req.User}
		s.metrics.degraded.WithLabelValues("rank", degraded).Inc()
	} else {
		st.user = view.user
	}
	scores := cur.model.Rank(&st.user, req.Items, s.now().UnixMilli(), st.scored[:0])
	st.scored = scores[:0]
	bp := getBuf()
	defer putBuf(bp)
	b := append(*bp, `{"model_version":`...)
	b = strconv.AppendInt(b, cur.info.Version, 10)
	b = append(b, `,"scores":[`...)
	for i := range scores {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"item":`...)
		b = appendString(b, scores[i].Item)
		b = append(b, `,"score":`...)
		b = appendFloat(b, scores[i].Score)
		b = append(b, '}')
	}
	b = append(b, `],"degraded":`...)
	b = strconv.AppendBool(b, degraded != "")
	b = append(b, "}\n"...)
	*bp = b
	return writeJSON(w, http.StatusOK, b)
}

func (s *Server) handlePopular(w http.ResponseWriter, r *http.Request) int {
	raw := r.URL.RawQuery
	n, err := s.parseN(raw)
	if err != nil {
		return writeErr(w, err)
	}
	category, err := parseCategory(raw)
	if err != nil {
		return writeErr(w, err)
	}
	ts := s.now().UnixMilli()
	cur := s.cur.Load()
	st := getState()
	defer putState(st)
	var (
		items   []streamrec.Scored
		model   Model
		version int64
	)
	if cur != nil {
		model, version = cur.model, cur.info.Version
		items = model.Popular(n, category, ts, st.scored[:0])
		st.scored = items[:0]
	} else if items, err = s.storePopular(r.Context(), n, category, ts); err != nil {
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "no model snapshot loaded yet and the feature store is unavailable"))
	}
	bp := getBuf()
	defer putBuf(bp)
	b := append(*bp, `{"model_version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"items":`...)
	b = appendItems(b, model, items)
	b = append(b, `,"degraded":false}`+"\n"...)
	*bp = b
	return writeJSON(w, http.StatusOK, b)
}

// modelResponse is GET /v1/model.
type modelResponse struct {
	ModelInfo
	LoadedAt   time.Time `json:"loaded_at"`
	AgeSeconds float64   `json:"age_seconds"`
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) int {
	cur := s.cur.Load()
	if cur == nil {
		return writeErr(w, streamrec.Errorf(streamrec.EUNAVAILABLE, "no model snapshot loaded yet"))
	}
	resp := modelResponse{ModelInfo: cur.info, LoadedAt: cur.loadedAt.UTC(), AgeSeconds: s.snapshotAge()}
	if resp.Metrics == nil {
		resp.Metrics = map[string]float64{}
	}
	return writeValue(w, http.StatusOK, resp)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) int {
	return writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) int {
	if err := s.Ready(r.Context()); err != nil {
		return writeValue(w, http.StatusServiceUnavailable, map[string]any{
			"status": "not ready",
			"error":  map[string]string{"code": streamrec.EUNAVAILABLE, "message": err.Error()},
		})
	}
	return writeValue(w, http.StatusOK, map[string]any{"status": "ready", "model_version": s.ModelVersion()})
}
