# Concord build. `make run` starts a dev server; `make test` runs every test.
GO       ?= go
WASM_DIR := modes-wasm/builtin/modules
# Built-in modes: each folder modes-wasm/<name>/wasm is a wasip1 main.
MODES    := decision proposal task handoff quorum multiround
BIN      := bin/concord
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The browser example: npm packages from its lockfile, bundle in dist/.
WEB      := examples/web
WEB_DEPS := $(WEB)/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium

.PHONY: all build wasm run test test-race crashtest fuzz gen check-gen lint bench loadtest mpac-reference example web-example web-demo cluster-demo chromium clean FORCE

all: build

## wasm: compile the built-in modes to WebAssembly (embedded by the binary)
wasm: $(MODES:%=$(WASM_DIR)/%.wasm)

$(WASM_DIR)/%.wasm: FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared -ldflags='-s -w' -o $@ ./modes-wasm/$*/wasm

## build: the concord binary, with the modes embedded
build: wasm
	$(GO) build -trimpath -ldflags='-X main.version=$(VERSION)' -o $(BIN) ./cmd/concord

## run: a dev server on 127.0.0.1:50051, data in ./.concord-data
run: build
	$(BIN) serve --dev

## test: every test, against real servers on random ports (and a real Chromium)
test: wasm web-example chromium
	$(GO) test -count=1 ./...

## test-race: the kernel, the store, the fan-out and the server's concurrent tests under the race detector
RACE_SERVER_TESTS := ManySenders|StreamSession|WatchSessions|RateLimits|Restart|Decision
test-race: wasm
	$(GO) test -count=1 -race ./host/kernel/... ./host/store/... ./host/bus/... ./host/limits/... ./host/rpc/... ./host/auth/... ./internal/filewatch/...
	$(GO) test -count=1 -race -run '$(RACE_SERVER_TESTS)' ./host/server/

## crashtest: SIGKILL a real concord serve CRASH_KILLS times under load, in
## start-up, in the drain and in uploads; nothing acknowledged may be lost
CRASH_KILLS  ?= 25
CRASH_BUDGET ?= 5m
crashtest: build
	CONCORD_BINARY=$(abspath $(BIN)) $(GO) test -count=1 -v -timeout 30m -run '^TestCrash$$' ./internal/crashtest \
		-args -kills=$(CRASH_KILLS) -budget=$(CRASH_BUDGET) -replays=2

## fuzz: run every fuzz target for FUZZTIME each (seed corpora in testdata/fuzz)
FUZZTIME ?= 10s
FUZZ_TARGETS := ./host/server:FuzzSend \
	./abi/guest:FuzzDecodeStepRequest ./abi/guest:FuzzStepRequestRoundTrip \
	./abi/guest:FuzzStepResponseRoundTrip ./abi/guest:FuzzDecodeCommitment \
	./host/cmthash:FuzzCanonical ./host/cmthash:FuzzHashFromWire \
	./policy:FuzzValidateDescriptor ./modes-wasm/decision:FuzzStep \
	$(MODES:%=./modes-wasm/%:FuzzStepAfterHistory)
fuzz: wasm
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## gen: regenerate protobuf and Connect code, the example's TypeScript, the console's templ views and the guest codecs (guestgen)
gen: $(WEB_DEPS)
	$(GO) tool buf generate
	$(GO) tool buf generate --template $(WEB)/buf.gen.yaml
	$(GO) tool templ generate
	$(GO) generate ./abi/... ./examples/...

## check-gen: fail when generated code is stale
check-gen: gen
	@git diff --exit-code --stat -- proto ui $(WEB)/src/gen ':(glob)**/guest_gen.go' || (echo "generated code is stale: run make gen and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- proto ui $(WEB)/src/gen ':(glob)**/guest_gen.go')" || (git status --porcelain -- proto ui $(WEB)/src/gen ':(glob)**/guest_gen.go'; echo "generated code is untracked or stale: run make gen and commit" >&2; exit 1)

## lint: gofmt, go vet, staticcheck, buf lint
lint: wasm
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1)
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## bench: the benchmarks (Wasm step cost, store throughput, Send load)
bench: wasm
	$(GO) test -run '^$$' -bench . -benchmem ./...

## cluster-demo: three nodes on this machine, each with an embedded NATS
## server (ports 50051-50053, routes 6221-6223, data in ./.concord-cluster);
## Ctrl-C stops them
CLUSTER_DIR   ?= ./.concord-cluster
CLUSTER_PEERS := 127.0.0.1:6221,127.0.0.1:6222,127.0.0.1:6223
cluster-demo: build
	@mkdir -p $(CLUSTER_DIR)
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM; \
	for i in 1 2 3; do \
	  $(BIN) serve --dev --addr 127.0.0.1:5005$$i --data-dir $(CLUSTER_DIR)/n$$i --node-name n$$i --wasm-cache-dir $(CLUSTER_DIR)/wasm-cache \
	    --cluster-embedded --cluster-listen 127.0.0.1:622$$i --cluster-peers $(CLUSTER_PEERS) & \
	done; wait

## loadtest: every `concord bench` scenario against a fresh local server (10–15 minutes; not part of make test)
LOADTEST_FLAGS ?= --duration 5s --runs 3 --idle-sessions 20000 --fill 100000
loadtest: build bin/mpac.wasm
	$(BIN) bench --spawn --scenario all --mpac-wasm bin/mpac.wasm $(LOADTEST_FLAGS)

## bin/mpac.wasm: the example MPAC-style mode, uploaded by the mpac scenario
bin/mpac.wasm: FORCE
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=c-shared -ldflags='-s -w' -o $@ ./examples/modes/mpac/wasm

## mpac-reference: the MPAC reference coordinator's cycles/s (needs MPAC_SRC, see bench/mpac-reference)
mpac-reference:
	bench/mpac-reference/run.sh

## example: run the example Decision session against a running server
example:
	$(GO) run ./examples/decision-client

## web-example: type-checks and bundles the browser example into examples/web/dist
web-example: $(WEB_DEPS)
	cd $(WEB) && npm run --silent check && npm run --silent build

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund

## web-demo: a dev server that also serves the example at /examples/web/
web-demo: build web-example
	$(BIN) serve --dev --serve-example $(WEB)/dist

## chromium: Debian's chromium for the browser tests, installed when missing
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

clean:
	rm -rf bin $(WASM_DIR)/*.wasm $(WEB)/dist
