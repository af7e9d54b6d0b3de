# adrules: make help lists the targets.
GO        ?= go
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
BIN       := bin/adrules
# The packages with Kafka tests, and the flags of their run by make it.
IT_PKGS   ?= ./streams ./node ./replay ./internal/backtest ./cmd/adrules
ITFLAGS   ?= -race

.PHONY: help build run demo test testrace it lint fuzz bench bench-backtest bench-e2e generate-check clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/adrules
	$(GO) build -o $(BIN) ./cmd/adrules

run: build ## the embedded default: in-process Kafka on 127.0.0.1:9092, a node, synthetic traffic (Ctrl-C stops)
	./$(BIN) dev

demo: build ## generate a week of events, backtest the default rules over it, show the result
	./$(BIN) demo

test: lint ## vet, format check, and every test with the race detector (the README's test command)
	$(GO) test -race -count=1 ./...

testrace: test ## alias of test: tests always run with -race

# it starts internal/kafkatest/kfakeserver, waits for the address it
# prints, runs the tests with KAFKA_BROKERS set to it and stops it on exit.
it: ## the Kafka tests against a kfake broker run as a process of its own, through KAFKA_BROKERS
	@dir=$$(mktemp -d); pid=; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -rf "$$dir"' EXIT; trap 'exit 130' INT TERM; \
	$(GO) build -o "$$dir/kfakeserver" ./internal/kafkatest/kfakeserver || exit 1; \
	"$$dir/kfakeserver" >"$$dir/brokers" & pid=$$!; \
	n=0; until grep -q . "$$dir/brokers"; do \
	  if ! kill -0 $$pid 2>/dev/null || [ $$n -ge 100 ]; then echo "make it: kfakeserver did not start" >&2; exit 1; fi; \
	  n=$$((n+1)); sleep 0.1; done; \
	brokers=$$(cat "$$dir/brokers"); echo "make it: KAFKA_BROKERS=$$brokers go test $(ITFLAGS) -count=1 $(IT_PKGS)"; \
	KAFKA_BROKERS=$$brokers $(GO) test $(ITFLAGS) -count=1 $(IT_PKGS)

lint: ## gofmt, go vet, go mod tidy leave nothing to change
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

fuzz: ## run each fuzz target for FUZZTIME (default 10s)
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./rules
	$(GO) test -run='^$$' -fuzz='^FuzzCompileEval$$' -fuzztime=$(FUZZTIME) ./rules
	$(GO) test -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./config
	$(GO) test -run='^$$' -fuzz='^FuzzValidate$$' -fuzztime=$(FUZZTIME) ./node
	$(GO) test -run='^$$' -fuzz='^FuzzConfigRecord$$' -fuzztime=$(FUZZTIME) ./versions

bench: ## Go benchmarks (with allocations), a backtest over 1,000,000 generated events, and bench-e2e
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...
	$(MAKE) bench-backtest
	$(MAKE) bench-e2e

# The sizes of bench-e2e: issue 13's workload by default; smaller for a
# quick look, e.g. make bench-e2e E2E_EVENTS=200000 E2E_RESTORE=200000,600000
E2E_EVENTS    ?= 1000000
E2E_ADS       ?= 20000
E2E_PARTITIONS ?= 6
E2E_RESTORE   ?= $(E2E_EVENTS),$(shell echo $$((3*$(E2E_EVENTS))))
E2E_PROFILE   ?= .data/bench/pipeline.cpu.pprof

bench-e2e: ## a node end to end beside a no-op and a plain franz-go consumer, then a fresh node's restore at two history lengths (issue 13)
	@mkdir -p .data/bench
	$(GO) test -v -count=1 -run='^TestE2E$$' -timeout=60m ./internal/bench -args -e2e \
	  -events=$(E2E_EVENTS) -ads=$(E2E_ADS) -partitions=$(E2E_PARTITIONS) -restore=$(E2E_RESTORE) \
	  -pipeline-cpuprofile=$(CURDIR)/$(E2E_PROFILE)
	@echo "pipeline CPU profile: go tool pprof -top $(E2E_PROFILE)"

bench-backtest: build ## backtest the default rules over 1,000,000 generated events; prints events/s and peak memory
	@mkdir -p .data/bench
	./$(BIN) gen --events 1000000 --bad-pct 0.5 --dup-pct 1 --out .data/bench/events.jsonl
	./$(BIN) backtest --rules examples/rules.yaml --input .data/bench/events.jsonl --out .data/bench/out

clean: ## remove build output and generated data
	rm -rf bin .data
