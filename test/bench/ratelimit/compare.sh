#!/usr/bin/env bash
# Side by side on one redis-server: specgate ratelimit vs envoyproxy/ratelimit (defaults,
# and with its recommended REDIS_PIPELINE_WINDOW and a local cache); then both on one 3-shard
# Redis Cluster (test/bench/ratelimit/rediscluster). Driven by the same Go gRPC load generator,
# ROUNDS alternating rounds each. Everything listens on 127.0.0.1.
#
#   test/bench/ratelimit/compare.sh            # needs $REDIS_SERVER or redis-server; installs the peer into .tools/bin
#   N=100000 D=10s C=64 ROUNDS=3 test/bench/ratelimit/compare.sh
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
N=${N:-100000} D=${D:-10s} C=${C:-64} ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
wait_tcp() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "not up: port $1" >&2; exit 1; }

peer=$root/.tools/bin/service_cmd
if [[ ! -x $peer ]]; then
  GOBIN=$root/.tools/bin go install github.com/envoyproxy/ratelimit/src/service_cmd@latest
fi
(cd "$root" && go build -o "$tmp/specgate" ./cmd/specgate && go build -o "$tmp/loadgen" ./test/bench/ratelimit/loadgen &&
  go build -o "$tmp/rediscluster" ./test/bench/ratelimit/rediscluster)

rp=$(port)
"${REDIS_SERVER:-redis-server}" --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_tcp "$rp"
"$tmp/rediscluster" -masters 3 >"$tmp/cluster.url" 2>"$tmp/cluster.log" &
pids+=($!)
for _ in $(seq 300); do [[ -s $tmp/cluster.url ]] && break; sleep 0.1; done
cluster=$(cat "$tmp/cluster.url")
[[ $cluster == redis+cluster://* ]] || { echo "no cluster: $(cat "$tmp/cluster.log")" >&2; exit 1; }

start_specgate() { # grpc_port store_url
  local h; h=$(port)
  printf 'rateLimit: {store: "%s"}\n' "$2" >"$tmp/gateway-$1.yaml"
  "$tmp/specgate" ratelimit --config "$tmp/gateway-$1.yaml" --limits "$root/test/bench/ratelimit/limits.yaml" \
    --grpc "127.0.0.1:$1" --http "127.0.0.1:$h" 2>"$tmp/specgate-$1.log" &
  pids+=($!)
  wait_http "http://127.0.0.1:$h/readyz"
}
sg_grpc=$(port) sgc_grpc=$(port)
start_specgate "$sg_grpc" "redis://127.0.0.1:$rp/0"
start_specgate "$sgc_grpc" "$cluster"

mkdir -p "$tmp/runtime/ratelimit/config"
cp "$root/test/bench/ratelimit/limits.yaml" "$tmp/runtime/ratelimit/config/config.yaml"
start_peer() { # name grpc_port http_port debug_port [extra env...]
  local g=$2 h=$3 dbg=$4; shift 4
  env USE_STATSD=false LOG_LEVEL=error REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$rp" REDIS_TYPE=single \
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
p3=$(port) p3h=$(port) p3d=$(port)
start_peer cluster "$p3" "$p3h" "$p3d" REDIS_TYPE=cluster REDIS_URL="${cluster#redis+cluster://}"

targets=("specgate:$sg_grpc" "envoyproxy:$p1" "envoyproxy-tuned:$p2" "specgate-cluster:$sgc_grpc" "envoyproxy-cluster:$p3")
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
