#!/usr/bin/env bash
# make bench: every figure of docs/benchmarks.md, measured side by side in one run, printed
# as one table (progress on stderr). Bounded: about 35 minutes on 2 cores; loads only 127.0.0.1.
#
#   make bench                       # needs bin/specgate (make build), Envoy (make envoy), $REDIS_SERVER (make redis),
#                                    # kube-apiserver and etcd (make kube etcd)
#   ROUNDS=5 D=8s make bench         # more and longer alternating rounds
#   PROFILE=/tmp/prof make bench     # also CPU profiles of authz and ratelimit under Envoy load
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
ROUNDS=${ROUNDS:-3} D=${D:-5s}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { echo "bench: $*" >&2; }
REDIS_SERVER=${REDIS_SERVER:-redis-server}
command -v "$REDIS_SERVER" >/dev/null || { echo "bench: no Redis server: run make redis, or set REDIS_SERVER" >&2; exit 1; }
export REDIS_SERVER
[[ -x bin/specgate ]] || { echo "bench: bin/specgate missing: run make build" >&2; exit 1; }

go build -o "$tmp/bench" ./test/bench/gateway

say "compiler, control plane, Envoy's memory per operation and replica fan-out (go test)"
{
  go test -run '^$' -bench 'Compile' -benchtime 3x ./compiler/
  go test -run '^$' -bench 'SnapshotBuild|PushOneOfHundred' -benchtime 3x ./xds/
  go test -count=1 -run 'TestPushGoesLiveAndMoves|TestNoFailedRequestsDuringPushes' -v ./xds/
  go test -run '^$' -bench 'EnvoyMemory' -benchtime 1x -timeout 20m ./envoy/
  go test -run '^$' -bench 'RevocationFanOut' -benchtime 60x ./extauthz/
  go test -run '^$' -bench 'ReplicasOneKey' -benchtime 3x ./ratelimit/
} >"$tmp/go.txt" 2>&1 || { cat "$tmp/go.txt" >&2; exit 1; }

say "authz: an API key check beside a cached token's ($ROUNDS alternating rounds)"
go test -c -o "$tmp/authz.test" ./extauthz/ || exit 1
for _ in $(seq "$ROUNDS"); do
  (cd extauthz && "$tmp/authz.test" -test.run '^$' -test.bench 'CheckCached$|CheckAPIKey' -test.benchtime 20000x)
done >"$tmp/keys.txt" 2>&1 || { cat "$tmp/keys.txt" >&2; exit 1; }

say "validate: the processor's own cost of a 2 KB body ($ROUNDS rounds)"
go test -c -o "$tmp/validate.test" ./validate/ || exit 1
for _ in $(seq "$ROUNDS"); do
  (cd validate && "$tmp/validate.test" -test.run '^$' -test.bench 'Check2KB' -test.benchtime 3000x)
done >"$tmp/validate.txt" 2>&1 || { cat "$tmp/validate.txt" >&2; exit 1; }

say "spec store: 100-service fleet through a real kube-apiserver (test/fleet)"
{
  SPECGATE_FLEET_GOALS=1 go test -count=1 -run 'TestFleetOnKubernetes' -v -timeout 15m ./test/fleet/
  go test -run '^$' -bench 'CommitOneOfHundred' -benchtime 20x -count 5 ./xds/specstore/
} >"$tmp/fleet.txt" 2>&1 || { cat "$tmp/fleet.txt" >&2; exit 1; }

say "specgate ratelimit vs envoyproxy/ratelimit on one Redis server (test/bench/ratelimit/compare.sh)"
N=100000 D=$D C=64 ROUNDS=$ROUNDS test/bench/ratelimit/compare.sh >"$tmp/ratelimit.txt" 2>&1 || { cat "$tmp/ratelimit.txt" >&2; exit 1; }

say "spec intake: lint and compile beside envoy --mode validate (test/bench/intake)"
go run ./test/bench/intake -specgate bin/specgate -rounds "$ROUNDS" >"$tmp/intake.txt" || exit 1

say "gateway: Envoy variants and gRPC Check (test/bench/gateway)"
"$tmp/bench" -specgate bin/specgate -rounds "$ROUNDS" -d "$D" \
  -ratelimit-report "$tmp/ratelimit.txt" -go-report "$tmp/go.txt" ${PROFILE:+-profile "$PROFILE"}
echo
echo "### Spec intake"
echo
cat "$tmp/intake.txt"
echo
echo "### Authz: an API key check beside a cached token check (in-process Check, ns/op, median of $ROUNDS)"
echo
for name in BenchmarkCheckCached BenchmarkCheckAPIKey; do
  grep "^$name-" "$tmp/keys.txt" | awk '{print $3}' | sort -n |
    awk -v name="$name" '{v[NR] = $1} END {print "    " name " " v[int((NR + 1) / 2)]}'
done
echo
echo "### Request validation: the processor's check of a 2 KB order (in-process, ns/op, median of $ROUNDS; goal < 50 µs)"
echo
for name in BenchmarkCheck2KB/openapi-3.0.3 BenchmarkCheck2KB/openapi-3.1.0; do
  grep "^$name-" "$tmp/validate.txt" | awk '{print $3}' | sort -n |
    awk -v name="$name" '{v[NR] = $1} END {print "    " name " " v[int((NR + 1) / 2)]}'
done
echo
echo "### Spec store (Kubernetes API server path, test/fleet)"
echo
sed -n 's/^ *fleet_test.go:[0-9]*: figure: /- /p' "$tmp/fleet.txt"
echo
echo "A change of one file of 100 (20 MB), committed and read back by another replica, 5 runs:"
echo
grep '^BenchmarkCommitOneOfHundred' "$tmp/fleet.txt" | awk '{print "    " $1 " " $3/1e6 " ms"}'
if [[ -n ${PROFILE:-} ]]; then
  say "profiles: go tool pprof -top $PROFILE/authz.pprof (and ratelimit.pprof)"
fi
