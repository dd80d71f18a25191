package serve

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The load benchmark runs its targets (streamrec serve and the trivial
// handler) as processes of their own by default, as in production: the
// load generator's goroutines, garbage and timers then do not share the
// server's Go runtime, so a snapshot decode or a collection in the server
// does not also stall the client that times it.

// trivialChildEnv names the file with the trivial handler's answer body;
// when it is set, this test binary is the trivial server (see TestMain).
const trivialChildEnv = "STREAMREC_TRIVIAL_CHILD_BODY"

func TestMain(m *testing.M) {
	if path := os.Getenv(trivialChildEnv); path != "" {
		os.Exit(runTrivialChild(path))
	}
	if dir := os.Getenv(publisherChildEnv); dir != "" {
		os.Exit(runPublisherChild(dir))
	}
	os.Exit(m.Run())
}

// runTrivialChild serves a fixed JSON body on a free loopback port, prints
// "ADDR host:port" and serves until its standard input closes.
func runTrivialChild(path string) int {
	body, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})}
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childProc is a target process: its base URL and its CPU time.
type childProc struct {
	name string
	base string
	cmd  *exec.Cmd
	log  string
	addr chan string // what the child printed as "ADDR host:port"
	// admin is the admin (pprof) base URL, with SERVE_LOAD_PPROF.
	admin string
}

// profile starts a CPU profile of d of the child into $SERVE_LOAD_PPROF
// (when set and the child has an admin address); wait for the returned
// channel to close.
func (p *childProc) profile(b *testing.B, d time.Duration) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("SERVE_LOAD_PPROF")
	if path == "" || p == nil || p.admin == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, int(d.Seconds())))
		if err != nil {
			b.Errorf("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			b.Errorf("profile: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			b.Errorf("profile: %v", err)
		}
	}()
	return done
}

// cpu is the process's user + system CPU time, from /proc (0 elsewhere).
func (p *childProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// metric is the value of one sample line of the process's /metrics (0 when
// absent), e.g. `streamrec_serve_cache_requests_total{result="hit"}`.
func (p *childProc) metric(sample string) float64 {
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// metricSum lists the samples of a metric family by labels, and their sum.
func (p *childProc) metricSum(family string) string {
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var parts []string
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, family); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			parts = append(parts, rest)
			if i := strings.LastIndexByte(rest, ' '); i >= 0 {
				f, _ := strconv.ParseFloat(rest[i+1:], 64)
				sum += f
			}
		}
	}
	return fmt.Sprintf("%.0f %v", sum, parts)
}

// startTrivialChild runs this test binary as the trivial server of body.
func startTrivialChild(b *testing.B, body []byte) *childProc {
	b.Helper()
	path := filepath.Join(b.TempDir(), "body.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), trivialChildEnv+"="+path)
	p := startChild(b, "trivial", cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case a := <-p.addr:
		p.base = "http://" + a
		return p
	case <-ctx.Done():
		b.Fatalf("trivial: no address within 60s; log:\n%s", tail(p.log))
		return nil
	}
}

// startServeChild builds the streamrec binary (once per benchmark) and
// runs `streamrec serve` against redisAddr with extra flags, waiting until
// it serves a snapshot.
func startServeChild(b *testing.B, bin, name, redisAddr string, flags ...string) *childProc {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a free port, for the child to take
	var admin string
	if os.Getenv("SERVE_LOAD_PPROF") != "" {
		aln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		admin = aln.Addr().String()
		aln.Close()
		flags = append(flags, "--admin-addr", admin)
	}
	level := "warn"
	if os.Getenv("SERVE_LOAD_CHILD_LOGS") != "" {
		level = "info" // with the swaps' timings
	}
	args := append([]string{"serve", "--addr", addr, "--redis", redisAddr, "--log-level", level}, flags...)
	cmd := exec.Command(bin, args...)
	// SERVE_LOAD_SERVE_ENV adds variables to the serve processes' environment
	// only (e.g. "GOMAXPROCS=4 GOGC=200"), to try runtime settings on the
	// server without changing the load generator.
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("SERVE_LOAD_SERVE_ENV"))...)
	p := startChild(b, name, cmd)
	p.base = "http://" + addr
	if admin != "" {
		p.admin = "http://" + admin
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && p.metric("streamrec_serve_snapshot_version") > 0 {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: no snapshot served within 60s; log:\n%s", name, tail(p.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildStreamrec builds cmd/streamrec into dir.
func buildStreamrec(b *testing.B, dir string) string {
	b.Helper()
	bin := filepath.Join(dir, "streamrec")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/streamrec/streamrec/cmd/streamrec").CombinedOutput()
	if err != nil {
		b.Fatalf("go build ./cmd/streamrec: %v\n%s", err, out)
	}
	return bin
}

// startChild starts cmd, logging its output to a file; a child that prints
// "ADDR host:port" (the trivial one) gets that as its base URL.
func startChild(b *testing.B, name string, cmd *exec.Cmd) *childProc {
	b.Helper()
	// SERVE_LOAD_CHILD_LOGS (a folder) keeps the children's logs after the
	// run, e.g. with GODEBUG=gctrace=1 in the environment.
	dir := os.Getenv("SERVE_LOAD_CHILD_LOGS")
	if dir == "" {
		dir = b.TempDir()
	}
	logPath := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logf.Close() }) // after the child stops (cleanups run last first)
	_, out := startPiped(b, cmd, logf)
	p := &childProc{name: name, cmd: cmd, log: logPath, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if a, ok := strings.CutPrefix(line, "ADDR "); ok {
				select {
				case p.addr <- a:
				default:
				}
			}
		}
	}()
	return p
}

// startPiped starts cmd with pipes to its standard input and output and
// its standard error into stderr; at cleanup it closes the input, asks the
// child to stop and kills it after 10 s.
func startPiped(b *testing.B, cmd *exec.Cmd, stderr io.Writer) (io.WriteCloser, io.ReadCloser) {
	b.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return stdin, out
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
