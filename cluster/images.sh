#!/bin/bash
# make k8s-images (and cluster/up.sh): (re-)import the image archives into the running test
# cluster's containerd: the cluster's own (.tools/k8s/images: pause, echo) and every *.tar in
# .tools/images (the gateway's images, rebuilt between runs). An archive must be an OCI or docker
# archive naming its image localhost/NAME:TAG; pods use imagePullPolicy Never or IfNotPresent
# (there is no registry). A re-imported tag takes effect for new pods (kctl rollout restart ...).
set -euo pipefail
R=$(cd "$(dirname "$0")/.." && pwd); S=$R/.tools/k8s/state
H=$(cat "$S/pids/holder" 2>/dev/null) && N=$(cat "$S/netns" 2>/dev/null) && [ -n "$N" ] &&
  [ "$(readlink "/proc/$H/ns/net" 2>/dev/null)" = "$N" ] ||
  { echo "k8s-images: the test cluster is not running (make k8s)"; exit 1; }
CTR="nsenter -t $H --net --mount $R/.tools/k8s/bin/ctr -a $S/containerd/containerd.sock -n k8s.io"
shopt -s nullglob
for f in "$R"/.tools/k8s/images/*.tar "$R"/.tools/images/*.tar; do
  # (ctr warns on every call that cgroup v1 is deprecated: drop that line)
  $CTR images import --local "$f" 2>&1 | sed -e '/cgroup v1 is deprecated/d' -e "s#^#${f#"$R"/}: #"
done
