package main

import "errors"

// Subcommands not built yet. Each moves to its own file when it is.
var errNotBuilt = errors.New("not built yet")
