package main

import (
	"context"
	"fmt"

	"github.com/streamrec/streamrec/ingest/broker"
)

// runBroker is `streamrec broker`: the embedded Kafka-protocol broker as a
// standalone development process.
func runBroker(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("broker", env)
	cfg := broker.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (port 0 picks a free port, printed on stdout)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the pre-created topics")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "persist topics, records and group offsets here and reload them on start (empty: in memory)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate of a TLS listener, with --tls-key (empty: plaintext)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.SASLUser, "sasl-user", "", "require SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) as this user, with --sasl-password (empty: no SASL)")
	fs.StringVar(&cfg.SASLPassword, "sasl-password", "", "password of --sasl-user (prefer STREAMREC_SASL_PASSWORD to the command line)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	log, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	b, err := broker.Start(cfg, log)
	if err != nil {
		return err
	}
	addr := b.Addrs()[0]
	fmt.Fprintln(env.Stdout, addr)
	if env.Ready != nil {
		env.Ready(map[string]string{"kafka": addr})
	}
	<-ctx.Done()
	return b.Close()
}
