#!/usr/bin/env bash
# make run: the whole gateway on localhost — control plane on examples/specs, demo backends,
# authz with a local dev issuer, ratelimit, validate, and a real Envoy on envoy/bootstrap.yaml.
# Ctrl-C stops everything. Logs go to .run/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENVOY_BIN:?ENVOY_BIN must point at Envoy (make run sets it)}"
RUN=.run
mkdir -p "$RUN"
rm -rf "$RUN/specs" && cp -r examples/specs "$RUN/specs"   # pushes change the copy, not the examples
export SPECGATE_ADMIN_TOKEN="${SPECGATE_ADMIN_TOKEN:-dev-admin-token}"
SG=bin/specgate

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping..."
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

start() { # name, command...
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  pids+=($!)
}

wait_http() { # url, what
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up; see $RUN/*.log"; exit 1
}

for port in 8080 8081 9001 9002 9003 9004 9005 9006 9901 18000 18001 7001 7002 7003; do
  if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is in use: stop what holds it (an earlier make run?)"; exit 1
  fi
done

start backends bin/demo-backend 127.0.0.1:7001=orders 127.0.0.1:7002=catalog 127.0.0.1:7003=accounts
start authz "$SG" authz --config examples/gateway.yaml --grpc 127.0.0.1:9001 --http 127.0.0.1:9002 --dev-key "$RUN/dev-key.pem"
wait_http http://127.0.0.1:9002/healthz "authz"
start xds "$SG" xds --specs "$RUN/specs" --config examples/gateway.yaml --grpc 127.0.0.1:18000 --http 127.0.0.1:18001 --envoy-validate "$ENVOY_BIN"
wait_http http://127.0.0.1:18001/readyz "control plane"
start ratelimit "$SG" ratelimit --config examples/gateway.yaml --xds 127.0.0.1:18000 --grpc 127.0.0.1:9003 --http 127.0.0.1:9004
start validate "$SG" validate --xds 127.0.0.1:18000 --grpc 127.0.0.1:9005 --http 127.0.0.1:9006
start envoy "$ENVOY_BIN" -c envoy/bootstrap.yaml --log-level warn --use-dynamic-base-id
wait_http http://127.0.0.1:9901/ready "Envoy"
wait_http http://127.0.0.1:9004/readyz "ratelimit"
wait_http http://127.0.0.1:9006/readyz "validate"
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/catalog/products || true)
  [ "$code" = 200 ] && break; sleep 0.1
done

cat <<MSG

specgate is running: public listener http://127.0.0.1:8080, internal http://127.0.0.1:8081
Logs: $RUN/{xds,authz,ratelimit,validate,envoy,backends}.log    Admin token: \$SPECGATE_ADMIN_TOKEN=$SPECGATE_ADMIN_TOKEN

Try (in another shell, from this directory):

  # anonymous route: 200
  curl -s http://127.0.0.1:8080/catalog/products
  # protected route without a token: 401 with WWW-Authenticate
  curl -i http://127.0.0.1:8080/orders/42
  # mint a token with the local dev key, then: 200 (X-User-Id set by the gateway)
  TOKEN=\$($SG token --sub alice --scope "orders:read")
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/orders/42
  # creating an order needs orders:write: 403 insufficient_scope
  curl -i -X POST -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/orders
  # with it, an order is checked against the OpenAPI description first: quantity 0 answers
  # 400 application/problem+json naming /lines/0/quantity; quantity 1 reaches the backend
  W=\$($SG token --sub alice --scope "orders:write")
  curl -i -X POST -H "Authorization: Bearer \$W" -H "Content-Type: application/json" -d '{"lines": [{"sku": "A-1", "quantity": 0}]}' http://127.0.0.1:8080/orders
  # DELETE is internal: 405 on the public listener, served on the internal one
  curl -i -X DELETE -H "Authorization: Bearer \$($SG token --sub alice --scope admin)" http://127.0.0.1:8081/orders/42
  # revoke alice's tokens: the same request now answers 401
  SPECGATE_ADMIN_TOKEN=$SPECGATE_ADMIN_TOKEN $SG revoke --server http://127.0.0.1:9002 --sub alice
  # rate limit: 3 signups per minute per IP, the 4th answers 429
  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code} ' -X POST http://127.0.0.1:8080/accounts/signup; done; echo
  # push a changed spec and see the security diff (dry run: nothing changes)
  SPECGATE_ADMIN_TOKEN=$SPECGATE_ADMIN_TOKEN $SG push --server http://127.0.0.1:18001 --dry-run examples/specs/orders.yaml
  # authz figures
  $SG stats --server http://127.0.0.1:9002

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $RUN/*.log"
