package redistest_test

import (
	"context"
	"testing"

	"github.com/streamrec/streamrec/features/redistest"
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
