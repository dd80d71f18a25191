package redistest_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrec/streamrec/features/redistest"
	"github.com/streamrec/streamrec/internal/testpki"
)

func TestStopStartKeepsData(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded on a stopped server")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after kill and start: %q, %v", v, err)
	}
}

func TestPassword(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartOptions(t, redistest.Options{Password: "s3cret"})
	if err := srv.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestTLS: with TLS options the server answers TLS clients that trust the
// private CA and refuses plaintext; with a client certificate configured it
// also refuses TLS clients without one.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	pki := testpki.New(t)
	opts := redistest.TLSOptions{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, CAFile: pki.CAFile}
	srv := redistest.StartOptions(t, redistest.Options{TLS: &opts})
	if !strings.HasPrefix(srv.URL(), "rediss://") {
		t.Errorf("URL %q is not rediss://", srv.URL())
	}
	if err := srv.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("TLS ping: %v", err)
	}
	plain := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("plaintext ping to the TLS port succeeded")
	}

	mutual := opts
	mutual.ClientCertFile, mutual.ClientKeyFile = pki.ClientCertFile, pki.ClientKeyFile
	msrv := redistest.StartOptions(t, redistest.Options{TLS: &mutual})
	if err := msrv.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("mutual TLS ping: %v", err)
	}
	noCert := redis.NewClient(&redis.Options{Addr: msrv.Addr(), MaxRetries: -1, DialTimeout: time.Second,
		TLSConfig: &tls.Config{RootCAs: pki.CAPool, MinVersion: tls.VersionTLS12}})
	defer noCert.Close()
	if err := noCert.Ping(ctx).Err(); err == nil {
		t.Error("ping without a client certificate succeeded on a server that requires one")
	}
}
