package ingest_test

import "testing"

// newStore is the store the exactly-once tests run against.
func newStore(tb testing.TB) store { return newMemory(tb) }
