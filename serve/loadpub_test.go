package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/learner"
)

// Under churn the load benchmark's snapshots are published from a process
// of their own by default, as a learner publishes them: writing 23 MB into
// Redis every few seconds then does not stall the load generator, which
// times the requests, with its garbage and its syscalls. The publisher
// still shares the machine's cores. SERVE_LOAD_PUBLISH_INPROC=1 publishes
// from the benchmark's process as before.

// publisherChildEnv names the folder of snapshots to publish; when it is
// set, this test binary is the publisher (see TestMain).
const (
	publisherChildEnv  = "STREAMREC_PUBLISHER_CHILD_DIR"
	publisherRedisEnv  = "STREAMREC_PUBLISHER_REDIS"
	publisherDBEnv     = "STREAMREC_PUBLISHER_DB"
	publisherBlobExt   = ".blob"
	publisherInfoExt   = ".json"
	publisherReady     = "READY"
	publisherOK        = "OK"
	publisherErrPrefix = "ERR "
)

// runPublisherChild loads every snapshot of dir, prints READY, then
// publishes the version named by each line of its standard input into
// Redis, answering OK or ERR <reason> per line, until the input closes.
func runPublisherChild(dir string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "publisher:", err); return 1 }
	db, err := strconv.Atoi(os.Getenv(publisherDBEnv))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", publisherDBEnv, err))
	}
	type snapshot struct {
		info learner.SnapshotInfo
		blob []byte
	}
	snaps := map[string]snapshot{}
	paths, err := filepath.Glob(filepath.Join(dir, "*"+publisherBlobExt))
	if err != nil {
		return fail(err)
	}
	for _, p := range paths {
		v := strings.TrimSuffix(filepath.Base(p), publisherBlobExt)
		blob, err := os.ReadFile(p)
		if err != nil {
			return fail(err)
		}
		ij, err := os.ReadFile(filepath.Join(dir, v+publisherInfoExt))
		if err != nil {
			return fail(err)
		}
		var info learner.SnapshotInfo
		if err := json.Unmarshal(ij, &info); err != nil {
			return fail(fmt.Errorf("snapshot %s info: %w", v, err))
		}
		snaps[v] = snapshot{info, blob}
	}
	client := redis.NewClient(&redis.Options{Addr: os.Getenv(publisherRedisEnv), DB: db})
	defer client.Close()
	store := learner.NewRedisSnapshots(client, 5, zerolog.Nop())
	fmt.Println(publisherReady)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		s, ok := snaps[sc.Text()]
		if !ok {
			fmt.Printf("%sno snapshot %q\n", publisherErrPrefix, sc.Text())
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := store.Publish(ctx, s.info, s.blob)
		cancel()
		if err != nil {
			fmt.Printf("%s%s\n", publisherErrPrefix, strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Println(publisherOK)
	}
	return 0
}

// publisherChild is the parent's handle on a publisher process; it meets
// the churn loop's snapshot store (Publish).
type publisherChild struct {
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Scanner
}

// startPublisherChild writes the snapshots to files, runs this test binary
// as their publisher into Redis database db at redisAddr, and waits until
// it has loaded them.
func startPublisherChild(b *testing.B, redisAddr string, db int, blobs [][]byte, infos []learner.SnapshotInfo) *publisherChild {
	b.Helper()
	dir := b.TempDir()
	for i, blob := range blobs {
		v := strconv.FormatInt(infos[i].Version, 10)
		ij, err := json.Marshal(infos[i])
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v+publisherBlobExt), blob, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v+publisherInfoExt), ij, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), publisherChildEnv+"="+dir, publisherRedisEnv+"="+redisAddr, publisherDBEnv+"="+strconv.Itoa(db))
	in, out := startPiped(b, cmd, os.Stderr)
	p := &publisherChild{in: in, out: bufio.NewScanner(out)}
	if !p.out.Scan() || p.out.Text() != publisherReady {
		b.Fatalf("publisher: did not start (%q, %v)", p.out.Text(), p.out.Err())
	}
	return p
}

// Publish asks the child to publish info's version and waits for its
// answer; the blob is the child's copy.
func (p *publisherChild) Publish(ctx context.Context, info learner.SnapshotInfo, _ []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := fmt.Fprintln(p.in, info.Version); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	if !p.out.Scan() {
		return fmt.Errorf("publisher: no answer: %v", p.out.Err())
	}
	switch msg := p.out.Text(); {
	case msg == publisherOK:
		return ctx.Err()
	case strings.HasPrefix(msg, publisherErrPrefix):
		return fmt.Errorf("publisher: %s", strings.TrimPrefix(msg, publisherErrPrefix))
	default:
		return fmt.Errorf("publisher: unexpected answer %q", msg)
	}
}
