package main

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/features/redistest"
)

func TestOpenRedisClient(t *testing.T) {
	tests := []struct {
		addr    string
		cluster bool
		want    string
		pass    string
		tls     bool
		wantErr bool
	}{
		{addr: "127.0.0.1:6379", want: "127.0.0.1:6379"},
		{addr: "redis-host", want: "redis-host:6379"},
		{addr: "redis://:pw@h:7000/2", want: "h:7000", pass: "pw"},
		{addr: "rediss://user:pw@h:7001", want: "h:7001", pass: "pw", tls: true},
		{addr: "a:1,b:2,c:3", cluster: true, want: "a:1"},
		{addr: "rediss://:pw@a:1,b:2", cluster: true, want: "a:1", pass: "pw", tls: true},
		{addr: "", wantErr: true},
		{addr: "http://h:1", wantErr: true},
		{addr: "redis://h:1/notadb", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			c, err := openRedisClient(tc.addr, redisTLS{})
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			switch cc := c.(type) {
			case *redis.Client:
				o := cc.Options()
				if tc.cluster || o.Addr != tc.want || o.Password != tc.pass || (o.TLSConfig != nil) != tc.tls {
					t.Errorf("client options: addr %q pass %q tls %v", o.Addr, o.Password, o.TLSConfig != nil)
				}
			case *redis.ClusterClient:
				o := cc.Options()
				if !tc.cluster || o.Addrs[0] != tc.want || o.Password != tc.pass || (o.TLSConfig != nil) != tc.tls {
					t.Errorf("cluster options: addrs %q pass %q tls %v", o.Addrs, o.Password, o.TLSConfig != nil)
				}
			default:
				t.Errorf("client type %T", c)
			}
		})
	}
	if got := redactRedisAddr("redis://u:secret@h:1"); got != "redis://u:xxxxx@h:1" {
		t.Errorf("redact = %q", got)
	}
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	cfg := features.DefaultConfig()
	s, err := openStore(ctx, "", redisTLS{}, 0, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*features.Memory); !ok {
		t.Errorf("empty address: %T, want *features.Memory", s)
	}
	srv := redistest.StartOptions(t, redistest.Options{Password: "pw"})
	s, err = openStore(ctx, srv.URL(), redisTLS{}, 0, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*features.Redis); !ok {
		t.Errorf("redis URL: %T, want *features.Redis", s)
	}
	if _, err := s.Global(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(ctx, srv.Addr(), redisTLS{}, 0, cfg, zerolog.Nop()); err == nil {
		t.Error("no password: no error")
	}
}
