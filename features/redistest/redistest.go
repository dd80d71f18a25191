// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, with an append-only file fsynced on every
// write so that Stop and Start keep the data (as a restarted production
// Redis would).
//
// When redis-server is not installed, Start fails the test if the
// environment has CI=true and skips it otherwise.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune the server. The zero value is a plain server.
type Options struct {
	// Password, when set, requires AUTH (requirepass).
	Password string
	// Args are extra redis-server arguments ("--name", "value", ...).
	Args []string
}

// Server is one redis-server process (or a stopped one that keeps its port
// and data directory for Start).
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	opts Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a redis-server for the test; it is stopped and its directory
// removed when the test ends.
func Start(tb testing.TB) *Server { return StartOptions(tb, Options{}) }

// StartOptions is Start with options.
func StartOptions(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redistest: redis-server not found (CI=true, so this fails): %v", err)
		}
		tb.Skipf("redistest: redis-server not found: %v", err)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), opts: opts}
	tb.Cleanup(func() { _ = s.Stop() })
	// A port taken between picking it and binding it is retried.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		if err = s.Start(); err == nil {
			return s
		}
		if attempt == 4 {
			tb.Fatalf("redistest: %v", err)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL (with the password when one is set).
func (s *Server) URL() string {
	if s.opts.Password != "" {
		return "redis://:" + s.opts.Password + "@" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.opts.Password})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Start (re)starts a stopped server on its port with its data. It is a no-op
// on a running server.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--logfile", "redis.log",
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitReady(s.Addr(), s.opts.Password, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("redis-server on %s: %w\n%s%s", s.Addr(), err, out.Bytes(), tail(log, 2000))
	}
	s.cmd, s.done = cmd, done
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitReady(addr, password string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited during start")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 15s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down gracefully (SIGTERM; the append-only file is
// already synced). The port and data stay for Start. Stopping a stopped
// server is a no-op.
func (s *Server) Stop() error { return s.stop(syscall.SIGTERM) }

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd, s.done = nil, nil
	return nil
}

// Restart stops and starts the server.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}
