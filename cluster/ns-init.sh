#!/bin/bash
# Runs INSIDE the cluster's fresh network + mount namespace (cluster/up.sh nsenters it here).
# Everything done here lives and dies with that namespace; the host sees none of it, except the
# empty mountpoint dirs below (recorded, and removed by cluster/down.sh).
# Args: STATE_DIR NODE_IP SERVICE_CIDR
set -euo pipefail
S=$1 NODEIP=$2 SVC=$3
mount --make-rshared /                 # kubelet needs mount propagation; only in this mount ns
mount -t tmpfs -o mode=755 tmpfs /run  # private /run: containerd/runc/netns files vanish with the ns
# kubelet insists on setting global sysctls (kernel.panic, vm.overcommit_memory, ...): show it
# files that already hold the values it wants, so the VM's kernel settings are never changed.
for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
          kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
  f=$S/fakesysctl/${kv%%=*}; mkdir -p "$(dirname "$f")"; echo "${kv#*=}" > "$f"
  mount --bind "$f" "/proc/sys/${kv%%=*}"
done
# processes run under nsx (tests, curl) resolve Service names through the cluster's CoreDNS
mount --bind "$S/ns-resolv.conf" /etc/resolv.conf
# The node: lo + a veth pair with the node IP, and no link to the host network at all.
ip link set lo up
ip link add name k8s0 type veth peer name k8s0p
ip addr add "$NODEIP/24" dev k8s0
ip link set k8s0 up; ip link set k8s0p up
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv4.conf.k8s0p.forwarding=0   # nothing is ever forwarded out of the stub
ip route add "$SVC" dev k8s0                   # ClusterIPs need a route before kube-proxy DNATs them
sysctl -qw net.bridge.bridge-nf-call-iptables=1   # pod-to-pod traffic on cni0 meets iptables
# kubelet and libcni write to a few hard-coded host paths: bind state dirs over them, in this
# mount namespace only.
for p in /var/lib/kubelet /var/lib/cni /var/log/containers; do
  [ -e "$p" ] || { mkdir -p "$p"; echo "$p" >> "$S/hostdirs-created"; }
  mkdir -p "$S/hostpaths$p"; mount --bind "$S/hostpaths$p" "$p"
done
