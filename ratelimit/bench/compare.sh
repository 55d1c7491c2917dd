#!/usr/bin/env bash
# Side by side on one redis-server: specgate ratelimit vs envoyproxy/ratelimit (defaults,
# and with its recommended REDIS_PIPELINE_WINDOW and a local cache), driven by the same Go
# gRPC load generator, ROUNDS alternating rounds each. Everything listens on 127.0.0.1.
#
#   ratelimit/bench/compare.sh            # needs $REDIS_SERVER or redis-server; installs the peer into .tools/bin
#   N=100000 D=10s C=64 ROUNDS=3 ratelimit/bench/compare.sh
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
N=${N:-100000} D=${D:-10s} C=${C:-64} ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

peer=$root/.tools/bin/service_cmd
if [[ ! -x $peer ]]; then
  GOBIN=$root/.tools/bin go install github.com/envoyproxy/ratelimit/src/service_cmd@latest
fi
(cd "$root" && go build -o "$tmp/specgate" ./cmd/specgate && go build -o "$tmp/loadgen" ./ratelimit/bench/loadgen)

rp=$(port)
"${REDIS_SERVER:-redis-server}" --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rp" ping >/dev/null 2>&1 && break; sleep 0.1; done

printf 'rateLimit: {store: "redis://127.0.0.1:%s/0"}\n' "$rp" >"$tmp/gateway.yaml"
sg_grpc=$(port) sg_http=$(port)
"$tmp/specgate" ratelimit --config "$tmp/gateway.yaml" --limits "$root/ratelimit/bench/limits.yaml" \
  --grpc "127.0.0.1:$sg_grpc" --http "127.0.0.1:$sg_http" 2>"$tmp/specgate.log" &
pids+=($!)
wait_http "http://127.0.0.1:$sg_http/readyz"

mkdir -p "$tmp/runtime/ratelimit/config"
cp "$root/ratelimit/bench/limits.yaml" "$tmp/runtime/ratelimit/config/config.yaml"
start_peer() { # name grpc_port http_port debug_port [extra env...]
  local g=$2 h=$3 dbg=$4; shift 4
  env USE_STATSD=false LOG_LEVEL=error REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$rp" \
    RUNTIME_ROOT="$tmp/runtime" RUNTIME_SUBDIRECTORY=ratelimit RUNTIME_WATCH_ROOT=false \
    HOST=127.0.0.1 PORT="$h" GRPC_HOST=127.0.0.1 GRPC_PORT="$g" DEBUG_HOST=127.0.0.1 DEBUG_PORT="$dbg" \
    "$@" "$peer" >"$tmp/peer-$g.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$h/healthcheck"
}
p1=$(port) p1h=$(port) p1d=$(port)
start_peer default "$p1" "$p1h" "$p1d"
p2=$(port) p2h=$(port) p2d=$(port)
start_peer tuned "$p2" "$p2h" "$p2d" REDIS_PIPELINE_WINDOW=150us LOCAL_CACHE_SIZE_IN_BYTES=10000000

targets=("specgate:$sg_grpc" "envoyproxy:$p1" "envoyproxy-tuned:$p2")
for scenario in "client 1000 distinct clients, limit never reached" "route one hot key, 1000/s, demand far above"; do
  set -- $scenario
  key=$1 route=orders.list
  [[ $key == route ]] && route=orders.hot
  echo "== ${scenario#* } (c=$C, n=$N, d=$D, rounds=$ROUNDS)"
  for r in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
      "$tmp/loadgen" -name "${t%%:*}" -addr "127.0.0.1:${t##*:}" -c "$C" -n "$N" -d "$D" -key "$key" -route "$route"
    done
  done | tee "$tmp/$key.txt"
  echo "-- medians"
  for t in "${targets[@]}"; do
    n=${t%%:*}
    med() { grep "^$n " "$tmp/$key.txt" | tr ' ' '\n' | sed -n "s/^$1=//p" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    printf '%-18s rps=%s p50_us=%s p99_us=%s\n' "$n" "$(med rps)" "$(med p50_us)" "$(med p99_us)"
  done
done
