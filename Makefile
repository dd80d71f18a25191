# streamrec — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
PKGS    ?= ./...
BENCH   ?= .
STATICCHECK_VERSION ?= v0.8.2

.PHONY: run test bench lint fuzz build results

run: ## the embedded default: broker, in-memory store, learner, demo data, HTTP on :8080
	$(GO) run ./cmd/streamrec run

build:
	$(GO) build -o bin/streamrec ./cmd/streamrec

test: ## vet, then every test with the race detector (real redis-server and kcat)
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

bench: ## benchmarks (not timed tests); see README "Performance"
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -timeout 30m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

fuzz: ## run every fuzz target (decoders and data-spec parsers) for FUZZTIME each (default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $${FUZZTIME:-60s} .
	for f in FuzzSplitFields FuzzCSVLine FuzzJSONL; do $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${FUZZTIME:-60s} ./ingest/dataset || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzSnapshotPayload$$' -fuzztime $${FUZZTIME:-60s} -fuzzminimizetime 5x ./learner

results: build ## regenerate docs/results.md: replay --json on ../shared/data for every protocol (takes minutes)
	$(GO) run ./learner/replay/cmd/results -bin bin/streamrec -out docs/results.md

.PHONY: bench-ingest
bench-ingest: ## Kafka → ingest → Redis (exactly once) on MovieLens 100K, beside redis-benchmark -P 16 -t set on the same server
	$(GO) test -run '^$$' -bench '^BenchmarkIngestEndToEnd$$' -benchtime $${BENCHTIME:-3x} -benchmem -timeout 30m ./ingest/
