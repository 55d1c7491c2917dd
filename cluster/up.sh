#!/bin/bash
# make k8s: a real single-node Kubernetes cluster for end-to-end tests (needs root; make k8s-tools
# builds what it runs). Every process runs inside ONE private network + mount namespace held by a
# `sleep`: node IP 10.201.0.1, pods 10.244.0.0/24 on the bridge cni0, Services 10.96.0.0/16, and no
# link to the host's network, so nothing clashes with host ports and nothing leaves. Pod cgroups
# nest under our own memory cgroup; host paths and kernel settings stay untouched (conf/, ns-init.sh).
# State (etcd, containerd, logs, kubeconfig) lives in .tools/k8s/state; cluster/down.sh removes it.
#
# Already up: says so and exits 0. Half up (a component died, a start failed): cleans up with
# cluster/down.sh and starts afresh. Every start begins from an empty etcd and image store.
set -euo pipefail
C=$(cd "$(dirname "$0")" && pwd); R=$(dirname "$C")
KB=$R/.tools/kube B=$R/.tools/k8s/bin S=$R/.tools/k8s/state
ETCD_BIN=${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}
NODE=specgate NODEIP=10.201.0.1 SVC=10.96.0.0/16 PODS=10.244.0.0/24
COMPONENTS="etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns"
[ -x "$B/kube-router" ] && COMPONENTS="$COMPONENTS kube-router"
export PATH=$B:$KB:/usr/sbin:/usr/bin:/sbin:/bin
T0=$(date +%s%N)
ts() { printf '[%5.1fs] %s\n' "$(( $(date +%s%N) - T0 ))e-9" "$*"; }
# alive NAME: the recorded process still runs in the cluster's network namespace (so a reused pid
# of some unrelated process never counts)
alive() { local p n; p=$(cat "$S/pids/$1" 2>/dev/null) && n=$(cat "$S/netns" 2>/dev/null) &&
  [ -n "$p" ] && [ -n "$n" ] && [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$n" ]; }

if [ -d "$S" ]; then
  down=""; for c in holder $COMPONENTS; do alive "$c" || down="$down $c"; done
  if [ -z "$down" ]; then echo "k8s: already up (state $S; make k8s-down stops it)"; exit 0; fi
  echo "k8s: left over from an earlier start, not running:$down; cleaning up first"
  "$C/down.sh"
fi
[ "$(id -u)" = 0 ] || { echo "make k8s needs root"; exit 1; }

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds, at most SECONDS
wait_for() { local end=$(( SECONDS + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "k8s: timed out waiting for $what; logs in $S/logs (make k8s-down cleans up)"
      tail -n 5 "$S"/logs/*.log; exit 1; fi
    sleep 0.2
  done; ts "$what"; }

mkdir -p "$S"/{pids,logs,certs,cni/net.d,cni/ipam,kubelet,pod-logs,containerd,runc}

# --- 1. the namespace holder; everything else nsenters into its namespaces
setsid unshare --net --mount --propagation private sleep infinity </dev/null >/dev/null 2>&1 &
H=$!; echo $H > "$S/pids/holder"
host_net=$(readlink /proc/self/ns/net)
wait_for 5 "namespace holder $H" bash -c "n=\$(readlink /proc/$H/ns/net) && [ \"\$n\" != '$host_net' ]"
readlink "/proc/$H/ns/net" > "$S/netns"; readlink "/proc/$H/ns/mnt" > "$S/mntns"
NS="nsenter -t $H --net --mount"
echo "nameserver $NODEIP" > "$S/resolv.conf"   # the kubelet's, for pods
printf 'nameserver %s\nsearch svc.cluster.local cluster.local\n' "$NODEIP" > "$S/ns-resolv.conf"
$NS "$C/ns-init.sh" "$S" "$NODEIP" "$SVC"
# run NAME CMD...: start CMD in the namespace in its own session (a signal to make's process
# group does not reach it), log to logs/NAME.log, pid to pids/NAME (nsenter execs, so it is CMD's)
run() { local n=$1; shift; setsid $NS "$@" >"$S/logs/$n.log" 2>&1 </dev/null & echo $! > "$S/pids/$n"; }

# --- 2. the pods' cgroup root, under our own memory cgroup in every v1 hierarchy; record each dir
#        we create so that down.sh removes exactly those
MEMCG=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup); [ "$MEMCG" = / ] && MEMCG=
CGROOT=$MEMCG/specgate-k8s; echo "$CGROOT" > "$S/cgroot"
for h in /sys/fs/cgroup/*/; do
  p=${h%/}; for part in ${CGROOT//\// }; do
    p=$p/$part; [ -d "$p" ] && continue; mkdir "$p"; echo "$p" >> "$S/cgroups-created"
    if [ -f "$p/cpuset.cpus" ]; then   # a new cpuset cgroup starts empty: inherit the parent's
      cat "${p%/*}/cpuset.cpus" > "$p/cpuset.cpus"; cat "${p%/*}/cpuset.mems" > "$p/cpuset.mems"; fi
  done
done

# --- 3. configs and credentials (a fresh service-account key and admin token each start)
fill() { sed -e "s#@S@#$S#g" -e "s#@NODEIP@#$NODEIP#g" -e "s#@PODS@#$PODS#g" -e "s#@CGROOT@#$CGROOT#g" "$1"; }
fill "$C/conf/containerd.toml.in" > "$S/containerd.toml"
fill "$C/conf/cni.conflist.in" > "$S/cni/net.d/10-specgate.conflist"
fill "$C/conf/kubelet.yaml.in" > "$S/kubelet.yaml"
fill "$C/conf/Corefile.in" > "$S/Corefile"
openssl genrsa -out "$S/certs/sa.key" 2048 2>/dev/null
openssl rsa -in "$S/certs/sa.key" -pubout -out "$S/certs/sa.pub" 2>/dev/null
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN,admin,admin,system:masters" > "$S/certs/tokens.csv"

# --- 4. etcd and containerd, then the images (containerd must have them before the kubelet asks)
run etcd "$ETCD_BIN" --data-dir "$S/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
run containerd containerd --config "$S/containerd.toml"
wait_for 30 "containerd up" $NS ctr -a "$S/containerd/containerd.sock" version
"$C/images.sh"
ts "images imported"

# --- 5. kube-apiserver; its self-signed serving cert (certs/apiserver.crt) is the cluster CA and
#        covers the node IP and the kubernetes Service (10.96.0.1, kubernetes.default.svc)
run kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 \
  --advertise-address="$NODEIP" --secure-port=6443 --cert-dir="$S/certs" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$S/certs/sa.pub" --service-account-signing-key-file="$S/certs/sa.key" \
  --token-auth-file="$S/certs/tokens.csv" --authorization-mode=Node,RBAC \
  --service-cluster-ip-range="$SVC" --allow-privileged=true --kubelet-preferred-address-types=InternalIP
wait_for 60 "kube-apiserver ready" bash -c "$NS curl -sfk -H 'Authorization: Bearer $TOKEN' https://$NODEIP:6443/readyz | grep -qx ok"
K=$S/kubeconfig
kubectl config set-cluster specgate --server="https://$NODEIP:6443" --certificate-authority="$S/certs/apiserver.crt" --embed-certs --kubeconfig="$K" >/dev/null
kubectl config set-credentials specgate --token="$TOKEN" --kubeconfig="$K" >/dev/null
kubectl config set-context specgate --cluster=specgate --user=specgate --kubeconfig="$K" >/dev/null
kubectl config use-context specgate --kubeconfig="$K" >/dev/null

# --- 6. the rest of the control plane, the node, and DNS. The node's podCIDR is allocated from
#        10.244.0.0/16: the first /24, the one the CNI config hands out.
run kube-controller-manager kube-controller-manager --kubeconfig="$K" --leader-elect=false \
  --bind-address=127.0.0.1 --service-account-private-key-file="$S/certs/sa.key" \
  --root-ca-file="$S/certs/apiserver.crt" --use-service-account-credentials=false \
  --allocate-node-cidrs=true --cluster-cidr=10.244.0.0/16 --node-cidr-mask-size=24 --service-cluster-ip-range="$SVC"
run kube-scheduler kube-scheduler --kubeconfig="$K" --leader-elect=false --bind-address=127.0.0.1
run kubelet kubelet --config="$S/kubelet.yaml" --kubeconfig="$K" --root-dir="$S/kubelet" \
  --hostname-override="$NODE" --node-ip="$NODEIP" --cert-dir="$S/kubelet/pki" --v=1
# conntrack tuning is a global sysctl: leave it alone (all four at 0). Sync on every change, not
# at most once a second: a new Service answers sooner (tests wait less)
run kube-proxy kube-proxy --kubeconfig="$K" --proxy-mode=iptables --hostname-override="$NODE" \
  --iptables-min-sync-period=0 --cluster-cidr=10.244.0.0/16 --conntrack-max-per-core=0 --conntrack-min=0 \
  --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
  --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
run coredns coredns -conf "$S/Corefile"

# --- 7. helpers for the host shell and for tests
cat > "$S/kctl" <<EOF
#!/bin/sh
# kubectl for the test cluster (run in its namespace, where the API server is)
exec nsenter -t $H --net --mount --wd="\$PWD" $KB/kubectl --kubeconfig $K "\$@"
EOF
cat > "$S/nsx" <<EOF
#!/bin/sh
# run a command in the test cluster's network + mount namespace: Service and pod IPs answer there,
# and names resolve through the cluster's CoreDNS (e.g. nsx curl http://echo.default.svc.cluster.local)
exec nsenter -t $H --net --mount --wd="\$PWD" "\$@"
EOF
chmod +x "$S/kctl" "$S/nsx"

wait_for 120 "node $NODE Ready" bash -c "'$S/kctl' get node $NODE | grep -qw Ready"
if [ -x "$B/kube-router" ]; then   # NetworkPolicy enforcement only (iptables + ipset); it looks
  # its node up once, at start, so it starts after the node registered
  run kube-router kube-router --kubeconfig="$K" --hostname-override="$NODE" --run-firewall=true \
    --run-router=false --run-service-proxy=false --service-cluster-ip-range="$SVC" --health-port=20244
  wait_for 60 "kube-router (NetworkPolicy) healthy" $NS curl -sf http://127.0.0.1:20244/healthz
fi
wait_for 60 "default ServiceAccount and kube-root-ca.crt" bash -c "'$S/kctl' -n default get sa default && '$S/kctl' -n default get cm kube-root-ca.crt"
wait_for 30 "DNS answers (kubernetes.default.svc.cluster.local)" bash -c "'$S/nsx' getent hosts kubernetes.default.svc.cluster.local | grep -q '^10.96.0.1 '"
for c in $COMPONENTS; do alive "$c" || { echo "k8s: $c exited; see $S/logs/$c.log"; tail -n 20 "$S/logs/$c.log"; exit 1; }; done
echo "k8s: up. kubectl: $S/kctl   run in the cluster's network: $S/nsx CMD   stop: make k8s-down"
