package main

import (
	"context"
	"errors"
)

// Subcommands not built yet. Each moves to its own file when it is.
var errNotBuilt = errors.New("not built yet")

func runRun(ctx context.Context, args []string, env Env) error   { return errNotBuilt }
func runServe(ctx context.Context, args []string, env Env) error { return errNotBuilt }
func runTune(ctx context.Context, args []string, env Env) error  { return errNotBuilt }
