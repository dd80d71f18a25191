// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, with an append-only file fsynced on every
// write so that Stop and Start keep the data (as a restarted production
// Redis would).
//
// When redis-server is not installed, Start fails the test if the
// environment has CI=true and skips it otherwise.
//
// With Options.TLS the server listens with TLS only (tls-port; port 0),
// for tests of clients verifying it with a private CA. A redis-server built
// without TLS support skips such tests, in CI too: that is a limit of the
// installed binary, not a failure.
package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	// TLS, when set, serves TLS only, with these files.
	TLS *TLSOptions
}

// TLSOptions are the PEM files of a TLS server.
type TLSOptions struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// CAFile holds the CA that signed the server's certificate (the
	// harness's own clients trust it) and that verifies client certificates.
	CAFile string
	// ClientCertFile and ClientKeyFile, when set, make the server require a
	// client certificate (tls-auth-clients yes); the harness's own clients
	// present this one. Unset: tls-auth-clients no.
	ClientCertFile, ClientKeyFile string
}

// Server is one redis-server process (or a stopped one that keeps its port
// and data directory for Start).
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	opts Options

	clientTLS *tls.Config // nil without TLS

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
	if opts.TLS != nil {
		if s.clientTLS, err = opts.TLS.clientConfig(); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
	}
	tb.Cleanup(func() { _ = s.Stop() })
	// A port taken between picking it and binding it is retried.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		if err = s.Start(); err == nil {
			return s
		}
		if opts.TLS != nil && errors.Is(err, errNoTLS) {
			tb.Skipf("redistest: %v", err)
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

// URL is the server's redis:// URL, rediss:// with TLS (with the password
// when one is set).
func (s *Server) URL() string {
	scheme := "redis://"
	if s.opts.TLS != nil {
		scheme = "rediss://"
	}
	if s.opts.Password != "" {
		return scheme + ":" + s.opts.Password + "@" + s.Addr()
	}
	return scheme + s.Addr()
}

// ClientTLS is the TLS configuration the harness's clients use (the CA's
// roots, and the client certificate when the server requires one); nil
// without TLS.
func (s *Server) ClientTLS() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// clientConfig trusts CAFile and presents the client certificate, if any.
func (o *TLSOptions) clientConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificates", o.CAFile)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if o.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCertFile, o.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// errNoTLS marks a redis-server built without TLS support.
var errNoTLS = errors.New("redis-server was built without TLS support (BUILD_TLS=no)")

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Client returns a client of the server, closed when the test ends; each
// of edit (if any) may change its options first.
func (s *Server) Client(tb testing.TB, edit ...func(*redis.Options) *redis.Options) *redis.Client {
	tb.Helper()
	o := &redis.Options{Addr: s.Addr(), Password: s.opts.Password, TLSConfig: s.ClientTLS()}
	for _, e := range edit {
		o = e(o)
	}
	c := redis.NewClient(o)
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
	port := []string{"--port", strconv.Itoa(s.port)}
	if t := s.opts.TLS; t != nil {
		auth := "no"
		if t.ClientCertFile != "" {
			auth = "yes"
		}
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port), "--tls-cert-file", t.CertFile,
			"--tls-key-file", t.KeyFile, "--tls-ca-cert-file", t.CAFile, "--tls-auth-clients", auth}
	}
	args := append(port,
		"--bind", "127.0.0.1", "--dir", s.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--logfile", "redis.log",
	)
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
	if err := waitReady(s.Addr(), s.opts.Password, s.clientTLS, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		if s.opts.TLS != nil && noTLSBuild(out.String()+string(log)) {
			return fmt.Errorf("%w: %s", errNoTLS, strings.TrimSpace(string(tail(out.Bytes(), 300))))
		}
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

// noTLSBuild reports whether redis-server's output says it does not know
// the TLS directives (a build without TLS rejects tls-port as a bad
// directive; some builds say TLS is not supported).
func noTLSBuild(out string) bool {
	o := strings.ToLower(out)
	return (strings.Contains(o, "bad directive") && strings.Contains(o, "tls")) ||
		strings.Contains(o, "tls is not supported") || strings.Contains(o, "not built with tls")
}

func waitReady(addr, password string, tc *tls.Config, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, TLSConfig: tc})
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
