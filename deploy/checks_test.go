package deploy

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The checks below each return every problem they find, joined; nil means the objects pass.

// checkContainers: probes, resources, a hardened security context and a pinned image on every
// container of every workload.
func checkContainers(o *Objects) error {
	var errs []error
	for _, w := range o.Workloads() {
		pod := w.Template.Spec
		psc := pod.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
		if len(pod.Containers) == 0 {
			errs = append(errs, fmt.Errorf("%s %s: no containers", w.Kind, w.Name))
		}
		for _, c := range all {
			where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, c.Name)
			add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(where+": "+format, a...)) }
			isInit := slices.ContainsFunc(pod.InitContainers, func(i corev1.Container) bool { return i.Name == c.Name })
			if !isInit {
				if c.ReadinessProbe == nil {
					add("no readinessProbe")
				}
				if c.LivenessProbe == nil {
					add("no livenessProbe")
				}
				for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
					if p != nil && p.Exec == nil && p.HTTPGet == nil && p.TCPSocket == nil && p.GRPC == nil {
						add("%s has no handler", name)
					}
				}
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					add("no %s request", r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					add("no %s limit", r)
				}
			}
			sc := c.SecurityContext
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
				add("runAsNonRoot is not true")
			}
			if uid := firstNonNil(sc.RunAsUser, psc.RunAsUser); uid == nil || *uid == 0 {
				add("runAsUser must be a numeric non-root user (the kubelet cannot verify a named image user)")
			}
			if !isTrue(sc.ReadOnlyRootFilesystem) {
				add("readOnlyRootFilesystem is not true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				add("allowPrivilegeEscalation is not false")
			}
			if isTrue(sc.Privileged) {
				add("privileged")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				add("capabilities must drop ALL and add none")
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				add("seccompProfile is not RuntimeDefault")
			}
			if err := checkImage(c.Image); err != nil {
				add("%v", err)
			}
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			errs = append(errs, fmt.Errorf("%s %s: uses a host namespace", w.Kind, w.Name))
		}
	}
	return errors.Join(errs...)
}

// checkImage accepts name:tag (tag not latest) and name@sha256:digest.
func checkImage(image string) error {
	if image == "" {
		return errors.New("no image")
	}
	if _, digest, ok := strings.Cut(image, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			return fmt.Errorf("image %q: digest is not sha256", image)
		}
		return nil
	}
	name := image[strings.LastIndex(image, "/")+1:] // a registry port has a colon too
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("image %q is not pinned to a tag", image)
	case tag == "latest":
		return fmt.Errorf("image %q uses :latest", image)
	}
	return nil
}

// checkDisruptionAndScaling: a PDB selecting each Deployment (and no PDB that can never allow
// an eviction), an HPA for each of the named Deployments, and at least minReplicas replicas.
func checkDisruptionAndScaling(o *Objects, hpaFor []string, minReplicas map[string]int32) error {
	var errs []error
	for _, d := range o.Deployments {
		podLabels := labels.Set(d.Spec.Template.Labels)
		n := 0
		for _, pdb := range o.PDBs {
			if pdb.Namespace != d.Namespace || pdb.Spec.Selector == nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil {
				errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: %w", pdb.Name, err))
				continue
			}
			if sel.Empty() || !sel.Matches(podLabels) {
				continue
			}
			n++
			if mina := pdb.Spec.MinAvailable; mina != nil && mina.Type == intstr.Int && mina.IntVal >= replicas(d.Spec.Replicas) {
				errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: minAvailable %d blocks every eviction of Deployment %s (%d replicas)",
					pdb.Name, mina.IntVal, d.Name, replicas(d.Spec.Replicas)))
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("Deployment %s: %d PodDisruptionBudgets select it, want 1", d.Name, n))
		}
		if min, ok := minReplicas[d.Name]; ok && replicas(d.Spec.Replicas) < min {
			errs = append(errs, fmt.Errorf("Deployment %s: %d replicas, want at least %d", d.Name, replicas(d.Spec.Replicas), min))
		}
	}
	for _, name := range hpaFor {
		d := o.Deployment(name)
		if d == nil && optional[name] {
			continue
		}
		if d == nil {
			errs = append(errs, fmt.Errorf("Deployment %s: missing", name))
			continue
		}
		var hpa *autoscalingv2.HorizontalPodAutoscaler
		for i, h := range o.HPAs {
			ref := h.Spec.ScaleTargetRef
			if h.Namespace == d.Namespace && ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && ref.Name == name {
				hpa = &o.HPAs[i]
			}
		}
		switch {
		case hpa == nil:
			errs = append(errs, fmt.Errorf("Deployment %s: no HorizontalPodAutoscaler", name))
		case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < max(minReplicas[name], 1):
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: minReplicas below %d", hpa.Name, minReplicas[name]))
		case hpa.Spec.MaxReplicas <= *hpa.Spec.MinReplicas:
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: maxReplicas must exceed minReplicas", hpa.Name))
		case len(hpa.Spec.Metrics) == 0:
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s: no metrics", hpa.Name))
		}
		// An HPA on CPU utilization needs CPU requests on every container.
		for _, c := range d.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				errs = append(errs, fmt.Errorf("Deployment %s container %s: an HPA needs a CPU request", name, c.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// cpuBudget is what the gateway may request at its minimum replicas with every Deployment
// surging at once (a new image rolls them all): it leaves 430m of an e2-standard-2 node's
// 1930m allocatable for the node's own pods (kube-proxy, DNS, logging, metrics). Requests above
// what a node has left leave surge pods Pending while maxUnavailable: 0 keeps the old ones:
// the rollout never ends (2.3 CPUs at minimum replicas did, on a 2-core node).
const cpuBudget = 1500 // millicores

// validateBudget is what components/validate adds to cpuBudget (its kustomization says so).
const validateBudget = 150

// checkCapacity: the CPU requests at minimum replicas, plus one surge of every Deployment, fit
// in cpuBudget.
func checkCapacity(o *Objects) error {
	var total int64
	var parts []string
	add := func(kind, name string, pods int32, spec corev1.PodSpec) {
		var cpu int64
		for _, c := range spec.Containers {
			cpu += c.Resources.Requests.Cpu().MilliValue()
		}
		total += int64(pods) * cpu
		parts = append(parts, fmt.Sprintf("%s %s %d×%dm", kind, name, pods, cpu))
	}
	for _, d := range o.Deployments {
		surge := int32(1)
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxSurge.Type == intstr.Int {
			surge = ru.MaxSurge.IntVal
		}
		add("Deployment", d.Name, replicas(d.Spec.Replicas)+surge, d.Spec.Template.Spec)
	}
	for _, s := range o.StatefulSets {
		add("StatefulSet", s.Name, replicas(s.Spec.Replicas), s.Spec.Template.Spec)
	}
	budget := int64(cpuBudget)
	if o.Deployment("specgate-validate") != nil {
		budget += validateBudget
	}
	if total > budget {
		return fmt.Errorf("CPU requests during a rollout of everything: %dm (%s), over the budget of %dm", total, strings.Join(parts, ", "), budget)
	}
	return nil
}

// checkServices: every Service selects pods and its target ports exist on them; Envoy's public
// listener is behind a LoadBalancer and its internal one behind a ClusterIP Service.
func checkServices(o *Objects) error {
	var errs []error
	for _, s := range o.Services {
		pods := o.podsSelectedBy(s.Namespace, s.Spec.Selector)
		if len(pods) == 0 {
			errs = append(errs, fmt.Errorf("Service %s selects no pods", s.Name))
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, err := resolvePort(pods[0].Template.Spec, p.TargetPort, p.Port); err != nil {
				errs = append(errs, fmt.Errorf("Service %s port %s: %w", s.Name, p.Name, err))
			}
		}
	}
	lb, internal := false, false
	for _, s := range o.Services {
		pods := o.podsSelectedBy(s.Namespace, s.Spec.Selector)
		if len(pods) == 0 || pods[0].Name != "specgate-envoy" {
			continue
		}
		for _, p := range s.Spec.Ports {
			target, err := resolvePort(pods[0].Template.Spec, p.TargetPort, p.Port)
			if err != nil {
				continue
			}
			switch {
			case target == 8080 && s.Spec.Type == corev1.ServiceTypeLoadBalancer:
				lb = true
			case target == 8080 && len(o.Gateways) > 0 && s.Spec.Type == corev1.ServiceTypeClusterIP:
				lb = true // behind a Gateway's load balancer: checkEdge
			case target == 8080:
				errs = append(errs, fmt.Errorf("Service %s exposes the public listener but is %q, not LoadBalancer (or ClusterIP behind a Gateway)", s.Name, s.Spec.Type))
			case target == 8081 && s.Spec.Type == corev1.ServiceTypeLoadBalancer:
				errs = append(errs, fmt.Errorf("Service %s puts the internal listener on a LoadBalancer", s.Name))
			case target == 8081:
				internal = true
			case target == 9901 || target == 9902:
				errs = append(errs, fmt.Errorf("Service %s exposes Envoy's admin or stats port", s.Name))
			}
		}
	}
	if !lb {
		errs = append(errs, errors.New("no LoadBalancer Service (or Service behind a Gateway) targets Envoy's public listener 8080"))
	}
	if !internal {
		errs = append(errs, errors.New("no ClusterIP Service targets Envoy's internal listener 8081"))
	}
	return errors.Join(errs...)
}

// checkVolumes: every ConfigMap a pod mounts exists in the build; every Secret it uses is one
// of the allowed external ones (created outside git).
func checkVolumes(o *Objects, externalSecrets ...string) error {
	var errs []error
	for _, w := range o.Workloads() {
		for _, v := range w.Template.Spec.Volumes {
			if v.ConfigMap != nil && o.ConfigMap(v.ConfigMap.Name) == nil {
				errs = append(errs, fmt.Errorf("%s %s: volume %s: no ConfigMap %s", w.Kind, w.Name, v.Name, v.ConfigMap.Name))
			}
			if v.Secret != nil && !slices.Contains(externalSecrets, v.Secret.SecretName) {
				errs = append(errs, fmt.Errorf("%s %s: volume %s: unknown Secret %s", w.Kind, w.Name, v.Name, v.Secret.SecretName))
			}
		}
		for _, c := range w.Template.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if !slices.ContainsFunc(w.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) && !slices.Contains(w.Claims, m.Name) {
					errs = append(errs, fmt.Errorf("%s %s container %s: mount of undeclared volume %s", w.Kind, w.Name, c.Name, m.Name))
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !slices.Contains(externalSecrets, e.ValueFrom.SecretKeyRef.Name) {
					errs = append(errs, fmt.Errorf("%s %s container %s: env %s: unknown Secret %s", w.Kind, w.Name, c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkSpecStore: the control plane keeps its specs in the Kubernetes store of its own
// namespace, as its own ServiceAccount, which a RoleBinding lets work on ConfigMaps; the seed
// ConfigMap exists and is mounted where --seed points.
func checkSpecStore(o *Objects) error {
	d := o.Deployment("specgate-xds")
	if d == nil {
		return errors.New("no Deployment specgate-xds")
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	var errs []error
	if flagValue(c.Args, "--store") != "kubernetes" {
		errs = append(errs, errors.New("specgate-xds: want --store kubernetes"))
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		errs = append(errs, errors.New("specgate-xds: POD_NAMESPACE must come from metadata.namespace (the store's namespace)"))
	}
	if spec.ServiceAccountName != "specgate-xds" || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
		errs = append(errs, errors.New("specgate-xds: want ServiceAccount specgate-xds with its token mounted"))
	}
	bound := false
	for _, rb := range o.RoleBindings {
		for _, sub := range rb.Subjects {
			if sub.Kind == "ServiceAccount" && sub.Name == "specgate-xds" && rb.RoleRef.Kind == "Role" && rb.RoleRef.Name == "specgate-xds" {
				bound = true
			}
		}
	}
	if !bound {
		errs = append(errs, errors.New("no RoleBinding of ServiceAccount specgate-xds to Role specgate-xds"))
	}
	cm := o.ConfigMap("specgate-seed")
	if cm == nil || len(cm.Data) == 0 {
		return errors.Join(append(errs, errors.New("no ConfigMap specgate-seed with specs"))...)
	}
	vol := ""
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			vol = v.Name
		}
	}
	mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == vol && m.MountPath == flagValue(c.Args, "--seed") && m.SubPath == ""
	})
	if vol == "" || !mounted {
		errs = append(errs, errors.New("specgate-xds: the seed ConfigMap is not mounted at its --seed directory"))
	}
	return errors.Join(errs...)
}

// checkPodMonitoring: each Deployment is scraped by one PodMonitoring whose port exists.
func checkPodMonitoring(o *Objects) error {
	var errs []error
	for _, d := range o.Deployments {
		n := 0
		for _, pm := range o.PodMonitorings {
			sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
			if err != nil || sel.Empty() || pm.Namespace != d.Namespace || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			n++
			for _, e := range pm.Spec.Endpoints {
				if _, err := resolvePort(d.Spec.Template.Spec, e.Port, 0); err != nil {
					errs = append(errs, fmt.Errorf("PodMonitoring %s: %w", pm.Name, err))
				}
				if e.Path == "" {
					errs = append(errs, fmt.Errorf("PodMonitoring %s: no path", pm.Name))
				}
			}
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("Deployment %s: %d PodMonitorings select it, want 1", d.Name, n))
		}
	}
	return errors.Join(errs...)
}

// flagValue returns the argument after name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// resolvePort turns a port name or number into a container port of the pod. A zero target
// means "same as the service port".
func resolvePort(pod corev1.PodSpec, target intstr.IntOrString, servicePort int32) (int32, error) {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			switch {
			case target.Type == intstr.String && target.StrVal != "" && p.Name == target.StrVal,
				target.Type == intstr.Int && target.IntVal != 0 && p.ContainerPort == target.IntVal,
				target.Type == intstr.Int && target.IntVal == 0 && p.ContainerPort == servicePort:
				return p.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("target port %s is not a container port", target.String())
}

func (o *Objects) podsSelectedBy(namespace string, selector map[string]string) []Workload {
	if len(selector) == 0 {
		return nil
	}
	var out []Workload
	for _, w := range o.Workloads() {
		if w.Namespace == namespace && labels.SelectorFromSet(selector).Matches(labels.Set(w.Template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// --- NetworkPolicy evaluation ----------------------------------------------------------------

// peer is a source of traffic: a pod (labels, namespace and its namespace's labels) or, with
// external set, an address outside the cluster.
type peer struct {
	name      string
	labels    map[string]string
	namespace string
	nsLabels  map[string]string
	addr      netip.Addr // outside the cluster when valid
}

// admits reports whether the NetworkPolicies let from reach port on the pods of w, following
// the Kubernetes semantics: a pod selected by no Ingress policy admits everything; otherwise a
// connection needs one rule whose ports and peers both match.
func admits(pols []networkingv1.NetworkPolicy, w Workload, port int32, from peer) bool {
	return allowedBy(pols, w, hasIngressType, func(np networkingv1.NetworkPolicy) bool {
		for _, rule := range np.Spec.Ingress {
			if portMatches(rule.Ports, w.Template.Spec, port) && peerMatches(rule.From, np.Namespace, from) {
				return true
			}
		}
		return false
	})
}

// allowedBy is NetworkPolicy's rule for one direction: a pod of w that no policy of that
// direction (applies) selects is not isolated; otherwise one selecting policy must allow.
func allowedBy(pols []networkingv1.NetworkPolicy, w Workload, applies, allows func(networkingv1.NetworkPolicy) bool) bool {
	isolated := false
	for _, np := range pols {
		if np.Namespace != w.Namespace || !applies(np) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(w.Template.Labels)) {
			continue
		}
		isolated = true
		if allows(np) {
			return true
		}
	}
	return !isolated
}

func hasIngressType(np networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return true // Ingress is implied
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

func portMatches(ports []networkingv1.NetworkPolicyPort, pod corev1.PodSpec, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil {
			return true
		}
		n := p.Port.IntVal
		if p.Port.Type == intstr.String {
			var err error
			if n, err = resolvePort(pod, *p.Port, 0); err != nil {
				continue
			}
		}
		end := n
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port >= n && port <= end {
			return true
		}
	}
	return false
}

func peerMatches(from []networkingv1.NetworkPolicyPeer, policyNamespace string, src peer) bool {
	if len(from) == 0 {
		return true
	}
	for _, f := range from {
		if f.IPBlock != nil {
			// Only traffic from outside the cluster is judged by address here; pod traffic
			// through an ipBlock is implementation-defined, so no rule of ours may rely on it.
			if src.addr.IsValid() && inIPBlock(*f.IPBlock, src.addr) {
				return true
			}
			continue
		}
		if src.addr.IsValid() {
			continue
		}
		nsOK := src.namespace == policyNamespace
		if f.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(f.NamespaceSelector)
			nsOK = err == nil && sel.Matches(labels.Set(src.nsLabels))
		}
		podOK := true
		if f.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(f.PodSelector)
			podOK = err == nil && sel.Matches(labels.Set(src.labels))
		}
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// portRule is the intended ingress of one port of one workload: exactly these peers.
type portRule struct {
	workload string
	port     int32
	allowed  []string // peer names; every other peer must be refused
}

// checkNetworkPolicies evaluates every (workload, port, peer) of rules against the policies:
// each listed peer must get in, every other one must not. Peers are the workloads of the
// build plus an unrelated pod of the namespace ("same-namespace"), a pod of another namespace
// ("other-namespace"), the managed Prometheus collector ("gmp-collector") and an address on
// the internet ("internet"), Google's load-balancer health checks ("google-health-check") and
// a regional load balancer's proxy ("proxy-only-subnet", the gke overlay's placeholder range).
// A port of no rule must be closed to everyone.
func checkNetworkPolicies(o *Objects, namespace string, rules []portRule) error {
	nsLabels := map[string]string{"kubernetes.io/metadata.name": namespace}
	var peers []peer
	for _, w := range o.Workloads() {
		peers = append(peers, peer{name: w.Name, labels: w.Template.Labels, namespace: w.Namespace, nsLabels: nsLabels})
	}
	peers = append(peers,
		peer{name: "same-namespace", labels: map[string]string{"app": "debug"}, namespace: namespace, nsLabels: nsLabels},
		peer{name: "other-namespace", labels: map[string]string{"app.kubernetes.io/name": "specgate", "app.kubernetes.io/component": "envoy"},
			namespace: "shop", nsLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}},
		peer{name: "gmp-collector", labels: map[string]string{"app.kubernetes.io/name": "collector"},
			namespace: "gmp-system", nsLabels: map[string]string{"kubernetes.io/metadata.name": "gmp-system"}},
		peer{name: "internet", addr: netip.MustParseAddr("198.51.100.7")},
		peer{name: "google-health-check", addr: netip.MustParseAddr("35.191.7.8")},
		peer{name: "proxy-only-subnet", addr: netip.MustParseAddr("10.129.0.9")},
	)
	var errs []error
	byName := map[string]Workload{}
	for _, w := range o.Workloads() {
		byName[w.Name] = w
	}
	for _, r := range rules {
		w, ok := byName[r.workload]
		if !ok {
			continue // e.g. no Redis in an overlay; checkDeployments finds missing roles
		}
		for _, p := range peers {
			want := slices.Contains(r.allowed, p.name)
			if got := admits(o.NetworkPolicies, w, r.port, p); got != want {
				verb := "refused"
				if got {
					verb = "admitted"
				}
				errs = append(errs, fmt.Errorf("%s port %d: %s %s", r.workload, r.port, p.name, verb))
			}
		}
	}
	// Any port no rule names is closed (default deny), e.g. a debug port.
	for _, w := range o.Workloads() {
		for _, p := range peers {
			if admits(o.NetworkPolicies, w, 65000, p) {
				errs = append(errs, fmt.Errorf("%s: unlisted port 65000 admits %s (no default deny?)", w.Name, p.name))
			}
		}
	}
	return errors.Join(errs...)
}

func inIPBlock(b networkingv1.IPBlock, a netip.Addr) bool {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !p.Contains(a) {
		return false
	}
	for _, e := range b.Except {
		if x, err := netip.ParsePrefix(e); err == nil && x.Contains(a) {
			return false
		}
	}
	return true
}

func intOrString(n int32) intstr.IntOrString { return intstr.FromInt32(n) }

// checkEdge: the GKE edge (overlay gke). The external Gateway terminates HTTPS with a
// Google-managed certificate and answers HTTP only with a redirect to HTTPS; the routes reach
// Envoy's public listener from it and the internal listener from the internal Gateway; each
// Service behind a Gateway has a health check on Envoy's /ready and a backend policy whose
// timeout outlasts Envoy's own, the public one with Cloud Armor; gateway.yaml trusts the
// load balancer's two X-Forwarded-For entries.
func checkEdge(o *Objects, xffTrustedHops uint32) error {
	if len(o.Gateways) == 0 {
		return nil
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if xffTrustedHops != 2 {
		fail("gateway.yaml xffTrustedHops %d behind Google's Application Load Balancer, want 2 (it appends the client and its own address)", xffTrustedHops)
	}
	type listener struct{ gateway, class, section, protocol string }
	listeners := map[string]listener{} // gateway/section
	for _, g := range o.Gateways {
		class := string(g.Spec.GatewayClassName)
		for _, l := range g.Spec.Listeners {
			listeners[g.Name+"/"+string(l.Name)] = listener{g.Name, class, string(l.Name), string(l.Protocol)}
			if l.Protocol == "HTTPS" && g.Annotations["networking.gke.io/certmap"] == "" &&
				(l.TLS == nil || l.TLS.Options["networking.gke.io/pre-shared-certs"] == "") {
				fail("Gateway %s listener %s: HTTPS without a certificate (certmap annotation or pre-shared-certs)", g.Name, l.Name)
			}
		}
	}
	// Service name → the Envoy listener port it targets.
	envoyPort := map[string]int32{}
	for _, s := range o.Services {
		pods := o.podsSelectedBy(s.Namespace, s.Spec.Selector)
		if len(pods) == 0 || pods[0].Name != "specgate-envoy" || len(s.Spec.Ports) != 1 {
			continue
		}
		p := s.Spec.Ports[0]
		if target, err := resolvePort(pods[0].Template.Spec, p.TargetPort, p.Port); err == nil {
			envoyPort[s.Name] = target
		}
	}
	behind := map[string][]string{} // Service → the Gateway classes in front of it
	for _, r := range o.HTTPRoutes {
		for _, parent := range r.Spec.ParentRefs {
			if parent.SectionName == nil {
				fail("HTTPRoute %s: attach to one listener (sectionName)", r.Name)
				continue
			}
			l, ok := listeners[string(parent.Name)+"/"+string(*parent.SectionName)]
			if !ok {
				fail("HTTPRoute %s: no listener %s/%s", r.Name, parent.Name, *parent.SectionName)
				continue
			}
			for _, rule := range r.Spec.Rules {
				redirects := slices.ContainsFunc(rule.Filters, func(f gatewayv1.HTTPRouteFilter) bool {
					return f.RequestRedirect != nil && f.RequestRedirect.Scheme != nil && *f.RequestRedirect.Scheme == "https"
				})
				if l.class == "gke-l7-global-external-managed" && l.protocol == "HTTP" && (!redirects || len(rule.BackendRefs) > 0) {
					fail("HTTPRoute %s: plain HTTP on the external Gateway must only redirect to HTTPS", r.Name)
				}
				for _, b := range rule.BackendRefs {
					name := string(b.Name)
					want := map[string]int32{"gke-l7-global-external-managed": 8080, "gke-l7-rilb": 8081}[l.class]
					if got := envoyPort[name]; got != want {
						fail("HTTPRoute %s: Gateway class %s reaches Service %s (Envoy port %d), want Envoy's port %d", r.Name, l.class, name, got, want)
					}
					if svc := slices.IndexFunc(o.Services, func(s corev1.Service) bool { return s.Name == name }); svc < 0 ||
						b.Port == nil || o.Services[svc].Spec.Ports[0].Port != *b.Port {
						fail("HTTPRoute %s: backend %s port %v is not a port of that Service", r.Name, name, b.Port)
					}
					behind[name] = append(behind[name], l.class)
				}
			}
		}
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(behind)), func(c []string) bool { return slices.Contains(c, "gke-l7-global-external-managed") }) {
		fail("no HTTPRoute takes the external Gateway's HTTPS to Envoy's public listener")
	}
	for svc, classes := range behind {
		hc := slices.IndexFunc(o.HealthChecks, func(p GKEPolicy) bool { return p.Spec.TargetRef.Kind == "Service" && p.Spec.TargetRef.Name == svc })
		if hc < 0 {
			fail("Service %s behind a Gateway: no HealthCheckPolicy", svc)
		} else if c := o.HealthChecks[hc].Spec.Default.Config; c == nil || c.Type != "HTTP" || c.HTTPHealthCheck.Port != 9902 ||
			c.HTTPHealthCheck.PortSpecification != "USE_FIXED_PORT" || c.HTTPHealthCheck.RequestPath != "/ready" {
			fail("HealthCheckPolicy %s: want HTTP GET /ready on Envoy's stats port 9902 (fixed port)", o.HealthChecks[hc].Name)
		}
		bp := slices.IndexFunc(o.BackendPolicies, func(p GKEPolicy) bool { return p.Spec.TargetRef.Kind == "Service" && p.Spec.TargetRef.Name == svc })
		if bp < 0 {
			fail("Service %s behind a Gateway: no GCPBackendPolicy", svc)
			continue
		}
		d := o.BackendPolicies[bp].Spec.Default
		if d.TimeoutSec <= 60 {
			fail("GCPBackendPolicy %s: timeoutSec %d, want more than Envoy's 60 s for a request", o.BackendPolicies[bp].Name, d.TimeoutSec)
		}
		if slices.Contains(classes, "gke-l7-global-external-managed") && d.SecurityPolicy == "" {
			fail("GCPBackendPolicy %s: the public listener without a Cloud Armor securityPolicy", o.BackendPolicies[bp].Name)
		}
	}
	return errors.Join(errs...)
}

// egressAdmits reports whether the NetworkPolicies let pods of w open a TCP connection to port
// of to (a pod of the build or another namespace, or an address outside the cluster, whose
// named ports resolve on spec).
func egressAdmits(pols []networkingv1.NetworkPolicy, w Workload, to peer, spec corev1.PodSpec, port int32) bool {
	egress := func(np networkingv1.NetworkPolicy) bool {
		return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	return allowedBy(pols, w, egress, func(np networkingv1.NetworkPolicy) bool {
		for _, rule := range np.Spec.Egress {
			if portMatches(rule.Ports, spec, port) && peerMatches(rule.To, np.Namespace, to) {
				return true
			}
		}
		return false
	})
}

// checkEnvoyEgress: Envoy reaches DNS, authz's Check, ratelimit's RLS, the control plane's
// ADS, pods of other namespaces and the internet; not the gateway's own listeners, admin
// ports and Redis, nor private and link-local addresses (the metadata server).
func checkEnvoyEgress(o *Objects) error {
	var envoy *Workload
	byName := map[string]Workload{}
	for _, w := range o.Workloads() {
		byName[w.Name] = w
		if w.Name == "specgate-envoy" {
			envoy = &w
		}
	}
	if envoy == nil {
		return errors.New("no specgate-envoy")
	}
	nsLabels := map[string]string{"kubernetes.io/metadata.name": envoy.Namespace}
	pod := func(name string) (peer, corev1.PodSpec) {
		w := byName[name]
		return peer{name: name, labels: w.Template.Labels, namespace: w.Namespace, nsLabels: nsLabels}, w.Template.Spec
	}
	backend := peer{name: "a backend in namespace shop", labels: map[string]string{"app": "orders"}, namespace: "shop",
		nsLabels: map[string]string{"kubernetes.io/metadata.name": "shop"}}
	ext := func(addr string) peer { return peer{name: addr, addr: netip.MustParseAddr(addr)} }
	var errs []error
	for _, c := range []struct {
		to   string
		port int32
		want bool
	}{
		{"specgate-authz", 9001, true}, {"specgate-ratelimit", 9003, true}, {"specgate-xds", 18000, true}, {"specgate-validate", 9005, true},
		{"specgate-authz", 9002, false}, {"specgate-ratelimit", 9004, false}, {"specgate-xds", 18001, false}, {"specgate-validate", 9006, false},
		{"specgate-envoy", 8080, false}, {"specgate-envoy", 8081, false}, {"specgate-envoy", 9902, false},
		{"redis", 6379, false}, {"redis-ratelimit", 6379, false},
	} {
		if _, ok := byName[c.to]; !ok {
			continue // e.g. no Redis in an overlay
		}
		p, spec := pod(c.to)
		if got := egressAdmits(o.NetworkPolicies, *envoy, p, spec, c.port); got != c.want {
			errs = append(errs, fmt.Errorf("Envoy → %s port %d: admitted %v, want %v", c.to, c.port, got, c.want))
		}
	}
	for _, c := range []struct {
		to   peer
		port int32
		want bool
	}{
		{backend, 8080, true}, {ext("203.0.113.5"), 443, true}, {ext("10.201.0.1"), 53, true},
		{ext("169.254.169.254"), 80, false}, {ext("10.8.0.5"), 8080, false}, {ext("100.100.100.200"), 80, false},
	} {
		if got := egressAdmits(o.NetworkPolicies, *envoy, c.to, corev1.PodSpec{}, c.port); got != c.want {
			errs = append(errs, fmt.Errorf("Envoy → %s port %d: admitted %v, want %v", c.to.name, c.port, got, c.want))
		}
	}
	return errors.Join(errs...)
}

// inlinePassword is a URL's user information with a password that is not a ${NAME}
// reference; credentialKey a gateway.yaml key whose value is a literal secret.
var (
	inlinePassword = regexp.MustCompile(`[a-z+]+://[^/\s"'@]*:(?:[^@/\s"'$]|\$[^{])[^@/\s"']*@`)
	credentialKey  = regexp.MustCompile(`(?i)\b(password|passwd|secret|auth|apikey)\s*:\s*["']?[^\s"'$\[{]`)
)

// checkNoCredentials: no ConfigMap holds a credential. A Redis password appears in gateway.yaml
// as ${NAME}, set from a Secret (deploy/overlays/gke): a ConfigMap is readable by every
// principal that may read the namespace's configuration, and it lands in git.
func checkNoCredentials(o *Objects) error {
	var errs []error
	for _, cm := range o.ConfigMaps {
		for key, v := range cm.Data {
			if m := inlinePassword.FindString(v); m != "" {
				errs = append(errs, fmt.Errorf("ConfigMap %s key %s: a URL with an inline password (%s…): use ${NAME} and a Secret", cm.Name, key, m[:strings.Index(m, "://")+3]))
			}
			if strings.HasPrefix(cm.Name, "specgate-config") {
				if m := credentialKey.FindString(v); m != "" {
					errs = append(errs, fmt.Errorf("ConfigMap %s key %s: a literal credential (%s…)", cm.Name, key, strings.SplitN(m, ":", 2)[0]))
				}
			}
		}
	}
	return errors.Join(errs...)
}
