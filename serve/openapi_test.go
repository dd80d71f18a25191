package serve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks that every route the mux serves is in
// openapi.json with its method, and that every documented operation reaches
// a real route (not the 404/405 fallbacks).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t, func(c *Config, d *Deps) { d.Inspect = http.NotFoundHandler() })
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, rt := range f.srv.routes {
		method, path := rt.method, rt.pattern
		if method == "" { // a mounted subtree: documented as PREFIX{path}
			method, path = "GET", path+"{path}"
		}
		served[method+" "+path] = true
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("routes not documented: %v; documented but not served: %v", missing, extra)
	}

	// Every documented operation resolves in the real mux to its own route.
	mux := f.srv.Handler().(*http.ServeMux)
	param := regexp.MustCompile(`\{[^}]+\}`)
	for k := range documented {
		method, path, _ := strings.Cut(k, " ")
		req := httptest.NewRequest(method, param.ReplaceAllString(path, "x1"), nil)
		_, pattern := mux.Handler(req)
		if pattern == "/" || !strings.Contains(pattern, " ") && !strings.HasSuffix(pattern, "/") {
			t.Errorf("%s resolves to fallback pattern %q", k, pattern)
		}
	}

	// The document is what /openapi.json serves.
	status, body := f.do(t, "GET", "/openapi.json", "")
	if status != 200 || body != string(openAPIDoc) {
		t.Fatalf("/openapi.json: %d", status)
	}
}
