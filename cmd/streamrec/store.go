package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
)

// openStore opens the feature store: the in-memory store when redisAddr is
// empty, else Redis at redisAddr (see openRedisClient for the forms).
// clientCache > 0 gives a single-node Redis client a features.Tracker for
// that many users (the serving read: an unchanged user costs no round trip).
func openStore(ctx context.Context, redisAddr string, rt redisTLS, clientCache int, cfg features.Config, log zerolog.Logger) (features.Store, error) {
	if strings.TrimSpace(redisAddr) == "" {
		m, err := features.NewMemory(cfg)
		if err != nil {
			return nil, err
		}
		log.Info().Msg("feature store: in memory")
		return m, nil
	}
	c, err := openRedisClient(redisAddr, rt)
	if err != nil {
		return nil, err
	}
	if single, ok := c.(*redis.Client); ok && clientCache > 0 {
		o := features.ClientCache(clientCache)(single.Options())
		_ = single.Close()
		c = redis.NewClient(o)
		log.Info().Int("users", clientCache).Msg("redis client-side caching on (tracked users)")
	} else if clientCache > 0 {
		log.Info().Msg("redis client-side caching is for single-node Redis; off for a cluster")
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis %s: %w", redactRedisAddr(redisAddr), err)
	}
	s, err := features.NewRedis(ctx, c, cfg, log)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	log.Info().Str("redis", redactRedisAddr(redisAddr)).Msg("feature store: redis")
	return s, nil
}

// openRedisClient makes a client for addr, which is one of
//   - host:port
//   - redis://[user:password@]host:port[/db] or rediss://… (TLS), as go-redis
//     parses them (query options such as ?dial_timeout=3s included)
//   - a comma-separated list of host:port or URLs: a Redis Cluster client;
//     the first entry's credentials and TLS apply to all nodes.
//
// rt (--redis-ca, --redis-cert, --redis-key) adds a private CA and a client
// certificate to the TLS of rediss:// URLs, and turns TLS on for host:port
// addresses; with a redis:// URL (explicitly plaintext) it is an error.
// The client is not connected yet; callers Ping it.
func openRedisClient(addr string, rt redisTLS) (redis.UniversalClient, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return nil, errors.New("redis: empty address")
	}
	if strings.Contains(addr, ",") {
		var opts redis.ClusterOptions
		for i, a := range strings.Split(addr, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			o, err := parseRedisAddr(a, rt)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				opts.Username, opts.Password, opts.TLSConfig = o.Username, o.Password, o.TLSConfig
			}
			opts.Addrs = append(opts.Addrs, o.Addr)
		}
		if len(opts.Addrs) == 0 {
			return nil, fmt.Errorf("redis %q: no addresses", addr)
		}
		return redis.NewClusterClient(&opts), nil
	}
	o, err := parseRedisAddr(addr, rt)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

func parseRedisAddr(a string, rt redisTLS) (*redis.Options, error) {
	var o *redis.Options
	switch {
	case strings.HasPrefix(a, "redis://") || strings.HasPrefix(a, "rediss://"):
		var err error
		if o, err = redis.ParseURL(a); err != nil {
			return nil, fmt.Errorf("redis URL %s: %w", redactRedisAddr(a), err)
		}
		if o.TLSConfig != nil && o.TLSConfig.MinVersion == 0 {
			o.TLSConfig.MinVersion = tls.VersionTLS12
		}
		if rt.enabled() && o.TLSConfig == nil {
			return nil, usagef("redis URL %s is plaintext (redis://) but --redis-ca/--redis-cert are set: use rediss://", redactRedisAddr(a))
		}
	case strings.Contains(a, "://"):
		return nil, fmt.Errorf("redis address %s: want host:port, redis:// or rediss://", redactRedisAddr(a))
	default:
		if !strings.Contains(a, ":") {
			a += ":6379"
		}
		o = &redis.Options{Addr: a}
	}
	tc, err := rt.config(o.TLSConfig)
	if err != nil {
		return nil, usagef("%v", err)
	}
	o.TLSConfig = tc
	return o, nil
}

// redactRedisAddr hides a password in a Redis URL for logs and errors.
func redactRedisAddr(a string) string {
	scheme, rest, ok := strings.Cut(a, "://")
	if !ok {
		return a
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return a
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return a
	}
	return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
}
