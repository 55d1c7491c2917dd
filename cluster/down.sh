#!/bin/bash
# make k8s-down: stop the test cluster cluster/up.sh started and remove exactly what it created:
# its processes (the recorded ones, then any left in its namespaces or pod cgroups), the cgroup
# and mountpoint dirs it recorded, and the state dir .tools/k8s/state. Safe after a failed or
# partial start, and a no-op when nothing is there. The namespaces, and every mount, veth and
# iptables rule in them, vanish with their last process.
set -uo pipefail   # no -e: keep cleaning up past any one failure
R=$(cd "$(dirname "$0")/.." && pwd); S=$R/.tools/k8s/state
[ -d "$S" ] || { echo "k8s: not running (nothing in $S)"; exit 0; }
NETNS=$(cat "$S/netns" 2>/dev/null) MNTNS=$(cat "$S/mntns" 2>/dev/null) CGROOT=$(cat "$S/cgroot" 2>/dev/null)
H=$(cat "$S/pids/holder" 2>/dev/null)

# ours PID: the process runs in the cluster's network or mount namespace (pids get reused)
ours() { [ -n "$NETNS" ] && [ "$(readlink "/proc/$1/ns/net" 2>/dev/null)" = "$NETNS" ] ||
         { [ -n "$MNTNS" ] && [ "$(readlink "/proc/$1/ns/mnt" 2>/dev/null)" = "$MNTNS" ]; }; }
# running PID: it exists and is no zombie (our daemons' parent is init, which may reap late)
running() { local st; st=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }
# gone PID...: wait (at most 5 s) until none of them runs, then SIGKILL the rest
gone() { local end=$(( SECONDS + 5 )) p left
  while :; do left=""; for p; do running "$p" && left="$left $p"; done
    [ -z "$left" ] && return 0
    [ $SECONDS -ge $end ] && { kill -9 $left 2>/dev/null; sleep 0.2; return 0; }
    sleep 0.1; done; }
# stop NAME...: SIGTERM the recorded processes together, wait for them, forget them
stop() { local c p ps=""
  for c; do p=$(cat "$S/pids/$c" 2>/dev/null) && [ -n "$p" ] && ours "$p" && kill "$p" 2>/dev/null && ps="$ps $p"; done
  [ -n "$ps" ] && gone $ps; for c; do rm -f "$S/pids/$c"; done; }

# 1. the node and control plane first, so nothing restarts the pods we are about to remove
stop kube-router kube-proxy kubelet coredns kube-scheduler kube-controller-manager kube-apiserver
# 2. the pods: SIGKILL every process in the pod cgroups (containers, pause), then containerd + etcd
if [ -n "$CGROOT" ] && [ -d "/sys/fs/cgroup/memory$CGROOT" ]; then
  pods=$(find "/sys/fs/cgroup/memory$CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null)
  [ -n "$pods" ] && { kill -9 $pods 2>/dev/null; gone $pods; }
fi
stop containerd etcd
# 3. anything else still in our namespaces (runc shims, a command started through nsx), then the
#    holder, whose exit ends the namespaces
left=""; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$H" ] && continue
  ours "$p" && left="$left $p"; done
if [ -n "$left" ]; then
  echo "k8s: stopping what else runs in the namespace:$(for p in $left; do printf ' %s(%s)' "$(cat /proc/$p/comm 2>/dev/null)" "$p"; done)"
  kill $left 2>/dev/null; gone $left; fi
# (a start that died before recording the namespaces: the holder is still known by its command line)
[ -z "$NETNS" ] && [ -n "$H" ] && [ "$(tr '\0' ' ' < "/proc/$H/cmdline" 2>/dev/null)" = "sleep infinity " ] && { kill "$H"; gone "$H"; }
stop holder
# 4. the cgroups the kubelet made under our root, then exactly the dirs up.sh created (deepest first)
if [ -n "$CGROOT" ]; then for h in /sys/fs/cgroup/*/; do
  [ -d "${h%/}$CGROOT" ] && find "${h%/}$CGROOT" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null; done; fi
ok=1
for f in cgroups-created hostdirs-created; do
  [ -f "$S/$f" ] || continue
  while read -r d; do [ ! -d "$d" ] || rmdir "$d" || { echo "k8s: could not remove $d"; ok=0; }; done < <(tac "$S/$f")
done
# 5. the state, unless something of ours still runs (its mounts could still use files in it)
for d in /proc/[0-9]*; do ours "${d#/proc/}" && { echo "k8s: process ${d#/proc/} still in the cluster's namespace; keeping $S"; exit 1; }; done
[ $ok = 1 ] || { echo "k8s: keeping $S (lists what is left)"; exit 1; }
rm -rf "$S" && echo "k8s: stopped; removed $S"
