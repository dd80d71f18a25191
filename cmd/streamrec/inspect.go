package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
)

const inspectUsage = `usage: streamrec inspect [--redis ADDR | --url URL] user ID | item ID | users | stats

Prints the feature store's view as JSON (users: one JSON object per line).
With --redis it reads Redis directly; otherwise it asks a running
"streamrec run" or "streamrec serve" at --url (GET URL/v1/inspect/...).
An unknown user or item exits with status 1.

flags:
`

// runInspect is `streamrec inspect`.
func runInspect(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("inspect", env)
	redisAddr := fs.String("redis", "", "Redis address (host:port, redis:// or rediss:// URL, or comma-separated cluster nodes)")
	redisTLS := registerRedisTLS(fs)
	baseURL := fs.String("url", "", "base URL of a running run/serve instance (default http://127.0.0.1:8080 when --redis is not set)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), inspectUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the positional arguments.
	var pos []string
	for {
		if err := parseFlags(fs, args, env); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) == 0 {
		return usagef("missing what to inspect: user ID, item ID, users or stats")
	}
	var path string
	switch what := pos[0]; what {
	case "user", "item":
		if len(pos) != 2 || pos[1] == "" {
			return usagef("inspect %s takes exactly one ID", what)
		}
		path = "/" + what + "s/" + url.PathEscape(pos[1])
	case "users", "stats":
		if len(pos) != 1 {
			return usagef("inspect %s takes no arguments", what)
		}
		path = "/" + what
	default:
		return usagef("unknown inspect target %q: want user ID, item ID, users or stats", what)
	}
	if *redisAddr != "" && *baseURL != "" {
		return usagef("give --redis or --url, not both")
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if err := redisTLS.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *redisAddr != "" {
		return inspectRedis(ctx, *redisAddr, *redisTLS, pos, env.Stdout)
	}
	u := *baseURL
	if u == "" {
		u = "http://127.0.0.1:8080"
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return usagef("--url %q: want http:// or https://", u)
	}
	return inspectURL(ctx, strings.TrimRight(u, "/")+"/v1/inspect"+path, pos, env.Stdout)
}

func inspectRedis(ctx context.Context, addr string, rt redisTLS, pos []string, out io.Writer) error {
	c, err := openRedisClient(addr, rt)
	if err != nil {
		return err
	}
	s, err := features.NewRedis(ctx, c, features.DefaultConfig(), zerolog.Nop())
	if err != nil {
		_ = c.Close()
		return fmt.Errorf("redis %s: %w", redactRedisAddr(addr), err)
	}
	defer s.Close()
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	switch pos[0] {
	case "user":
		u, ok, err := s.User(ctx, pos[1])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %q not found", pos[1])
		}
		return enc.Encode(features.NewUserView(u))
	case "item":
		it, ok, err := s.Item(ctx, pos[1])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("item %q not found", pos[1])
		}
		return enc.Encode(features.NewItemView(it))
	case "users":
		return s.EachUser(ctx, func(u features.User) error { return enc.Encode(features.NewUserView(u)) })
	default: // stats
		g, err := s.Global(ctx)
		if err != nil {
			return err
		}
		return enc.Encode(features.NewStatsView(g))
	}
}

func inspectURL(ctx context.Context, u string, pos []string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return errors.New(e.Error.Message)
		}
		return fmt.Errorf("inspect: GET %s: %s", u, resp.Status)
	}
	if pos[0] != "users" {
		_, err := io.Copy(out, resp.Body)
		return err
	}
	// JSON Lines: a server error mid-stream arrives as a last error line.
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(out)
	defer w.Flush()
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"error":`)) {
			var e struct {
				Error struct{ Message string }
			}
			_ = json.Unmarshal(line, &e)
			return fmt.Errorf("inspect users: server failed mid-stream: %s", e.Error.Message)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("inspect users: %w", err)
	}
	return nil
}
