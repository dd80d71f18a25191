package serve

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config configures the HTTP server. Start from DefaultConfig.
type Config struct {
	// Addr is the API listen address (":8080").
	Addr string
	// AdminAddr, when set, is a second listener for pprof, metrics and health
	// (Deps.Admin serves it).
	AdminAddr string
	// APIKey, when set, is required as "Authorization: Bearer KEY" on write
	// (POST /v1/events) and admin (/v1/inspect/) endpoints.
	APIKey string
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes int64
	// MaxN caps n (list lengths) and the items of a rank request.
	MaxN int
	// DefaultN is n when the query does not give it.
	DefaultN int
	// ReadTimeout and WriteTimeout are the http.Server's.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// RequestTimeout bounds a request's calls to slow dependencies (Kafka,
	// admin handlers).
	RequestTimeout time.Duration
	// FeatureTimeout is the budget of the feature-store read on the hot path;
	// past it the answer is degraded (popularity from the snapshot).
	FeatureTimeout time.Duration
	// BreakerFailures consecutive feature-store failures open the breaker for
	// BreakerCooldown: requests answer degraded without trying the store, then
	// one probe goes through.
	BreakerFailures int
	BreakerCooldown time.Duration
	// PollInterval is the snapshot polling fallback beside notifications.
	PollInterval time.Duration
	// ShutdownTimeout bounds the graceful drain at shutdown.
	ShutdownTimeout time.Duration
	// CacheTTL keeps a recommendation answer for reuse while the user's
	// features (event count, last event, vector) are unchanged, for at most
	// this long; 0 disables the cache. A new model renews answers on their
	// first hit after the swap (SwapGrace), so the TTL only bounds the drift
	// of time-dependent scores: popularity decay (a 7-day half-life by
	// default) and the ranker's time-of-day features, which move over hours.
	// 10 s keeps that drift negligible; a shorter TTL recomputes unchanged
	// answers more often than the learner publishes models. A hit in the
	// TTL's last quarter renews the answer in the background (at most
	// maxRefreshes at once), so a user asked for often does not wait for
	// the model when it expires.
	CacheTTL time.Duration
	// CacheSize bounds the cached answers.
	CacheSize int
	// SwapGrace is how long after a snapshot swap a cached answer of the
	// previous model still answers (saying which model made it) while the
	// new model's answer is computed in the background. Without it every
	// user's next request after a swap runs the model on its path, all at
	// once; 0 drops the answers at the swap.
	SwapGrace time.Duration
	// UserCacheItems bounds the items (seen-sets and recent lists, summed
	// over users) of the user states the server keeps between requests, so
	// that a request for an unchanged user reads only a stamp from the
	// feature store; 0 reads the whole state on every request.
	UserCacheItems int
	// FeatureBatches is how many feature-store reads may be in flight at
	// once; requests arriving while all are busy queue and share the next
	// round trip (up to 256 users in one). 0 gives every request its own
	// round trip.
	FeatureBatches int
}

// maxRefreshes bounds the cached answers renewed in the background at once.
const maxRefreshes = 2

// DefaultConfig returns the defaults of product.md §5.
func DefaultConfig() Config {
	return Config{
		Addr:            ":8080",
		MaxBodyBytes:    4 << 20,
		MaxN:            1000,
		DefaultN:        10,
		ReadTimeout:     10 * time.Second,
		WriteTimeout:    10 * time.Second,
		RequestTimeout:  5 * time.Second,
		FeatureTimeout:  50 * time.Millisecond,
		BreakerFailures: 3,
		BreakerCooldown: 500 * time.Millisecond,
		PollInterval:    time.Second,
		ShutdownTimeout: 10 * time.Second,
		CacheTTL:        10 * time.Second,
		CacheSize:       100000,
		SwapGrace:       time.Second,
		UserCacheItems:  1 << 20,
		FeatureBatches:  4,
	}
}

// Validate checks c field by field and reports every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("serve: "+format, args...)) }
	if c.Addr == "" {
		bad("addr is empty")
	}
	if c.AdminAddr != "" && c.AdminAddr == c.Addr && !strings.HasSuffix(c.Addr, ":0") {
		bad("admin addr %q equals addr", c.AdminAddr)
	}
	if c.MaxBodyBytes <= 0 {
		bad("max body bytes must be positive, got %d", c.MaxBodyBytes)
	}
	if c.MaxN <= 0 {
		bad("max n must be positive, got %d", c.MaxN)
	}
	if c.DefaultN <= 0 || c.DefaultN > c.MaxN {
		bad("default n must be in 1..%d, got %d", c.MaxN, c.DefaultN)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read timeout", c.ReadTimeout}, {"write timeout", c.WriteTimeout},
		{"request timeout", c.RequestTimeout}, {"feature timeout", c.FeatureTimeout},
		{"breaker cooldown", c.BreakerCooldown}, {"poll interval", c.PollInterval},
		{"shutdown timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			bad("%s must be positive, got %s", d.name, d.v)
		}
	}
	if c.CacheTTL < 0 {
		bad("cache TTL must not be negative, got %s", c.CacheTTL)
	}
	if c.SwapGrace < 0 {
		bad("swap grace must not be negative, got %s", c.SwapGrace)
	}
	if c.CacheTTL > 0 && c.CacheSize <= 0 {
		bad("cache size must be positive with a cache TTL, got %d", c.CacheSize)
	}
	if c.FeatureBatches < 0 {
		bad("feature batches must not be negative, got %d", c.FeatureBatches)
	}
	if c.UserCacheItems < 0 {
		bad("user cache items must not be negative, got %d", c.UserCacheItems)
	}
	if c.BreakerFailures <= 0 {
		bad("breaker failures must be positive, got %d", c.BreakerFailures)
	}
	return errors.Join(errs...)
}
