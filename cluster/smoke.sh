#!/bin/bash
# cluster/smoke.sh: prove the running test cluster (make k8s) works end to end, then remove what
# it applied: the echo Deployment's pod becomes Ready, its Service answers from the cluster's
# namespace (by ClusterIP and by DNS name), a pod resolves names through CoreDNS, and, when
# kube-router runs, a NetworkPolicy is enforced.
set -euo pipefail
C=$(cd "$(dirname "$0")" && pwd); S=$(dirname "$C")/.tools/k8s/state
K=$S/kctl X=$S/nsx
[ -x "$K" ] || { echo "smoke: the test cluster is not running (make k8s)"; exit 1; }
T0=$(date +%s%N); ts() { printf '[%5.1fs] %s\n' "$(( $(date +%s%N) - T0 ))e-9" "$*"; }
# retry SECONDS CMD...: kube-proxy and kube-router program iptables shortly after a change
retry() { local end=$(( SECONDS + $1 )); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done; }
trap '$K delete --ignore-not-found --wait=false -f "$C/echo/netpol.yaml" -f "$C/echo/echo.yaml" >/dev/null' EXIT

$K apply -f "$C/echo/echo.yaml"
$K rollout status deploy/echo --timeout=120s
$K wait --for=condition=Ready pod/client --timeout=60s
ts "echo pod and client pod Ready"
$K get pods -o wide
IP=$($K get svc echo -o jsonpath='{.spec.clusterIP}')
retry 10 $X curl -sf -m 2 -o /dev/null "http://$IP/"
ts "Service answers on $IP"
$X curl -sf -m 2 "http://$IP/hello"
$X curl -sf -m 2 "http://echo.default.svc.cluster.local/by-name"
# from a pod, through CoreDNS: full names, and a short one through the pod's search path
$K exec client -- /echo lookup kubernetes.default.svc.cluster.local echo.default.svc.cluster.local echo
$K exec client -- /echo get http://echo/from-a-pod
ts "DNS and Service work from a pod"

if [ -f "$S/pids/kube-router" ]; then
  $K apply -f "$C/echo/netpol.yaml"
  # the client lacks the label echo-client=true: its requests must now fail
  retry 10 bash -c "! $K exec client -- /echo get http://echo/ >/dev/null 2>&1"
  ts "NetworkPolicy blocks the unlabelled client"
  $K label pod client echo-client=true
  retry 10 $K exec client -- /echo get http://echo/allowed >/dev/null
  ts "NetworkPolicy admits the labelled client"
  $K label pod client echo-client-
fi
echo "smoke: OK"
