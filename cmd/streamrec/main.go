// Command streamrec is the single binary of the streamrec online recommender:
// the embedded all-in-one mode, the broker, ingest, learner, server,
// producer, inspection, model admin, replay and tuning subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "streamrec: stopping (signal again to force)")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "streamrec: forced exit")
		os.Exit(1)
	}()
	code := Main(ctx, os.Args[1:], StdEnv())
	cancel()
	os.Exit(code)
}
