package deploy

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/testenvoy"
)

// kustomizations are every kustomization of deploy/ outside testdata (TestEveryKustomizationChecked
// keeps this list complete).
var kustomizations = []string{"base", "overlays/gke", "overlays/gke-cluster", "testdata/backend-tls", "testdata/tls", "testdata/validate"}

// componentBuilds are the kustomizations above that check a component of deploy/components.
var componentBuilds = map[string]string{"components/tls": "testdata/tls", "components/backend-tls": "testdata/backend-tls", "components/validate": "testdata/validate"}

const namespace = "specgate"

// roles that take traffic from Envoy scale with it; the control plane does not.
var (
	scaled      = []string{"specgate-envoy", "specgate-authz", "specgate-ratelimit", "specgate-validate"}
	minReplicas = map[string]int32{"specgate-envoy": 2, "specgate-authz": 2, "specgate-ratelimit": 2, "specgate-xds": 2, "specgate-validate": 2}
	// optional roles come from a component (components/validate).
	optional = map[string]bool{"specgate-validate": true}
)

var builds sync.Map // dir → func() (*Objects, error)

// build builds a kustomization once per test binary; the result is shared read-only.
func build(t *testing.T, dir string) *Objects {
	t.Helper()
	f, _ := builds.LoadOrStore(dir, sync.OnceValues(func() (*Objects, error) { return Build(dir) }))
	o, err := f.(func() (*Objects, error))()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func forEachKustomization(t *testing.T, f func(t *testing.T, o *Objects)) {
	t.Helper()
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			f(t, build(t, dir))
		})
	}
}

func TestEveryKustomizationChecked(t *testing.T) {
	t.Parallel()
	var found []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.Name() == "kustomization.yaml" {
			dir := filepath.ToSlash(filepath.Dir(p))
			if build, ok := componentBuilds[dir]; ok {
				dir = build // a component is checked inside a build that uses it
			} else if strings.HasPrefix(dir, "components/") {
				t.Errorf("component %s: no build of componentBuilds uses it", dir)
			}
			found = append(found, dir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	if !slices.Equal(found, kustomizations) {
		t.Fatalf("kustomizations on disk %v, checked %v: add the new one to kustomizations", found, kustomizations)
	}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	forEachKustomization(t, func(t *testing.T, o *Objects) {
		if len(o.Namespaces) != 1 || o.Namespaces[0].Name != namespace ||
			o.Namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("want one Namespace %s enforcing the restricted Pod Security Standard", namespace)
		}
		for _, w := range o.Workloads() {
			if w.Namespace != namespace {
				t.Errorf("%s %s in namespace %q, want %s", w.Kind, w.Name, w.Namespace, namespace)
			}
		}
		for name, check := range map[string]func(*Objects) error{
			"containers": checkContainers,
			"services":   checkServices,
			"volumes": func(o *Objects) error {
				return checkVolumes(o, "specgate-admin", "specgate-tls", "specgate-backend-tls", "specgate-redis", "specgate-redis-ca")
			},
			"specs": checkSpecStore,
			"monitoring": func(o *Objects) error {
				if strings.HasPrefix(t.Name(), "TestPolicies/overlays/gke") {
					return checkPodMonitoring(o)
				}
				if len(o.PodMonitorings) > 0 {
					return errors.New("PodMonitoring is a kind of GKE's Managed Prometheus: the base applies to any cluster")
				}
				return nil
			},
			"disruption":  func(o *Objects) error { return checkDisruptionAndScaling(o, scaled, minReplicas) },
			"networking":  func(o *Objects) error { return checkNetworkPolicies(o, namespace, intendedIngress(o)) },
			"deployments": checkRoles,
			"capacity":    checkCapacity,
			"egress":      checkEnvoyEgress,
			"credentials": checkNoCredentials,
			"edge":        func(o *Objects) error { return checkEdge(o, gatewayConfig(t, o).XFFTrustedHops) },
		} {
			if err := check(o); err != nil {
				t.Errorf("%s:\n%v", name, err)
			}
		}
	})
}

// intendedIngress is who may reach which port: the gRPC ports only from their Envoy (and, for
// ADS, ratelimit and validate) callers; admin and metrics ports from this namespace and the managed
// Prometheus collectors; each Redis from its one client; Envoy's public listener from anywhere and
// its internal listener from inside the cluster.
func intendedIngress(o *Objects) []portRule {
	var inNamespace []string
	for _, w := range o.Workloads() {
		inNamespace = append(inNamespace, w.Name)
	}
	adminPeers := append(slices.Clone(inNamespace), "same-namespace", "gmp-collector")
	inCluster := append(slices.Clone(adminPeers), "other-namespace")
	// Behind GKE's load balancers (overlay gke): their health checks on the stats listener and
	// the internal one's proxies on the internal listener.
	stats, internal := adminPeers, inCluster
	// Envoy's own HTTPS listener (components/tls): open like the public one.
	var https []string
	if d := o.Deployment("specgate-envoy"); d != nil && slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 8443 }) {
		https = append(slices.Clone(inCluster), "internet", "google-health-check", "proxy-only-subnet")
	}
	if len(o.Gateways) > 0 {
		stats = append(slices.Clone(adminPeers), "google-health-check")
		internal = append(slices.Clone(inCluster), "proxy-only-subnet")
	}
	return []portRule{
		{"specgate-authz", 9001, []string{"specgate-envoy"}},
		{"specgate-ratelimit", 9003, []string{"specgate-envoy"}},
		{"specgate-xds", 18000, []string{"specgate-envoy", "specgate-ratelimit", "specgate-validate"}},
		{"specgate-validate", 9005, []string{"specgate-envoy"}},
		{"specgate-validate", 9006, adminPeers},
		{"specgate-authz", 9002, adminPeers},
		{"specgate-ratelimit", 9004, adminPeers},
		{"specgate-xds", 18001, adminPeers},
		{"specgate-envoy", 9902, stats},
		{"redis", 6379, []string{"specgate-authz"}},
		{"redis-ratelimit", 6379, []string{"specgate-ratelimit"}},
		{"specgate-envoy", 8080, append(slices.Clone(inCluster), "internet", "google-health-check", "proxy-only-subnet")},
		{"specgate-envoy", 8081, internal},
		{"specgate-envoy", 8443, https},
	}
}

// checkRoles: the four roles run the documented commands with the documented ports.
func checkRoles(o *Objects) error {
	var errs []string
	want := map[string][]string{
		"specgate-xds":       {"xds", "--store", "kubernetes", "--seed", "/seed", "--config", "/etc/specgate/gateway.yaml", "--grpc", ":18000", "--http", ":18001"},
		"specgate-authz":     {"authz", "--config", "/etc/specgate/gateway.yaml", "--grpc", ":9001", "--http", ":9002"},
		"specgate-ratelimit": {"ratelimit", "--config", "/etc/specgate/gateway.yaml", "--xds", "specgate-xds.specgate.svc.cluster.local.:18000", "--grpc", ":9003", "--http", ":9004"},
	}
	if o.Deployment("specgate-validate") != nil { // components/validate
		want["specgate-validate"] = []string{"validate", "--xds", "specgate-xds.specgate.svc.cluster.local.:18000", "--grpc", ":9005", "--http", ":9006"}
	}
	for name, args := range want {
		d := o.Deployment(name)
		if d == nil {
			errs = append(errs, "no Deployment "+name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, args) || c.Command != nil {
			errs = append(errs, name+": args "+strings.Join(c.Args, " ")+", want "+strings.Join(args, " "))
		}
		if !strings.HasPrefix(c.Image, "specgate/specgate:") && !strings.Contains(c.Image, "/specgate:") {
			errs = append(errs, name+": image "+c.Image+" is not the specgate image")
		}
	}
	if d := o.Deployment("specgate-envoy"); d == nil || d.Spec.Template.Spec.Containers[0].Image != "envoyproxy/envoy:v1.40.0" {
		errs = append(errs, "specgate-envoy: want image envoyproxy/envoy:v1.40.0")
	}
	if len(errs) > 0 {
		return &joinedStrings{errs}
	}
	return nil
}

type joinedStrings struct{ s []string }

func (j *joinedStrings) Error() string { return strings.Join(j.s, "\n") }

// The gateway.yaml each build ships is valid, and with more than one authz and ratelimit
// replica both stores must be shared (Redis), never a local file or memory.
func TestGatewayConfig(t *testing.T) {
	t.Parallel()
	forEachKustomization(t, func(t *testing.T, o *Objects) {
		g := gatewayConfig(t, o)
		if !strings.HasPrefix(g.Revocation.Store, "redis") || !strings.HasPrefix(g.RateLimit.Store, "redis") {
			t.Errorf("revocation.store %q and rateLimit.store %q must both be Redis with several replicas", g.Revocation.Store, g.RateLimit.Store)
		}
		if g.Authz.FailOpen {
			t.Error("authz.failOpen must be false in production")
		}
		envoy := o.Deployment("specgate-envoy").Spec.Template.Spec
		for _, p := range []uint32{g.Listeners.Public, g.Listeners.Internal} {
			if _, err := resolvePort(envoy, intOrString(int32(p)), 0); err != nil {
				t.Errorf("listener %d is not a port of the Envoy container", p)
			}
		}
		// In-cluster Redis: the Service the stores name must exist, by its absolute name (a
		// trailing dot: no search-domain lookups); Memorystore: no Redis pods.
		for store, url := range map[string]string{"revocation": g.Revocation.Store, "rateLimit": g.RateLimit.Store} {
			host := redisHost(t, url)
			hasRedisService := slices.ContainsFunc(o.Services, func(s corev1.Service) bool { return host == s.Name+"."+namespace+".svc.cluster.local." })
			if net.ParseIP(host) == nil && !hasRedisService {
				t.Errorf("%s store host %q is neither an IP nor the absolute name of a Service of the build (NAME.%s.svc.cluster.local.)", store, host, namespace)
			}
			if net.ParseIP(host) != nil && len(o.StatefulSets) > 0 {
				t.Errorf("%s store points at %s but the build still runs a Redis StatefulSet", store, host)
			}
		}
		// Counters are not written to disk; revocations are (deploy/base/redis.yaml).
		for _, s := range o.StatefulSets {
			args := strings.Join(s.Spec.Template.Spec.Containers[0].Args, " ")
			if persistent := strings.Contains(args, "--appendonly yes"); persistent != (s.Name == "redis") {
				t.Errorf("StatefulSet %s: append-only file %v (want it only for the revocations' Redis)", s.Name, persistent)
			}
		}
	})
}

func gatewayConfig(t *testing.T, o *Objects) config.Gateway {
	t.Helper()
	var cm *corev1.ConfigMap
	for i := range o.ConfigMaps {
		if strings.HasPrefix(o.ConfigMaps[i].Name, "specgate-config-") {
			cm = &o.ConfigMaps[i]
		}
	}
	if cm == nil {
		t.Fatal("no specgate-config ConfigMap (with its content hash)")
	}
	g, err := config.Parse([]byte(cm.Data["gateway.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func redisHost(t *testing.T, store string) string {
	t.Helper()
	rest := store[strings.Index(store, "://")+3:]
	rest = rest[strings.LastIndex(rest, "@")+1:]
	host, _, err := net.SplitHostPort(strings.SplitN(rest, "/", 2)[0])
	if err != nil {
		t.Fatalf("store %q: %v", store, err)
	}
	return host
}

// The specs ConfigMap is exactly deploy/base/specs/*.yaml, which compile, and whose backends
// are cluster DNS names.
func TestSpecsConfigMap(t *testing.T) {
	t.Parallel()
	o := build(t, "base")
	cm := o.ConfigMap("specgate-seed")
	if cm == nil {
		t.Fatal("no specgate-seed ConfigMap")
	}
	files, err := filepath.Glob("base/specs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		b, _ := os.ReadFile(f)
		if cm.Data[filepath.Base(f)] != string(b) {
			t.Errorf("%s: ConfigMap content differs from the file", f)
		}
	}
	if !slices.Equal(keys, names) {
		t.Errorf("ConfigMap specgate-seed holds %v, base/specs has %v: list every file in the configMapGenerator", keys, names)
	}
	gw, diags := compiler.Compile("base/specs", compiler.Options{})
	if diags.HasErrors() {
		t.Fatalf("base/specs do not compile:\n%v", diags.Err())
	}
	for _, s := range gw.Services {
		if !strings.HasSuffix(s.Backend.Host, ".svc.cluster.local") {
			t.Errorf("service %s: backend host %q is not a cluster DNS name", s.Name, s.Backend.Host)
		}
	}
}

// The Envoy bootstrap in the ConfigMap is what `specgate bootstrap` generates for this
// namespace, names Services that exist, is mounted where Envoy reads it, and passes
// `envoy --mode validate`.
func TestEnvoyBootstrap(t *testing.T) {
	t.Parallel()
	o := build(t, "base")
	var cm *corev1.ConfigMap
	for i := range o.ConfigMaps {
		if strings.HasPrefix(o.ConfigMaps[i].Name, "envoy-bootstrap-") {
			cm = &o.ConfigMaps[i]
		}
	}
	if cm == nil {
		t.Fatal("no envoy-bootstrap ConfigMap")
	}
	data := cm.Data["bootstrap.yaml"]

	svc := func(name string) string { return name + "." + namespace + ".svc.cluster.local." }
	xdsAddr := net.JoinHostPort(svc("specgate-xds"), "18000")
	boot, err := translate.ADSBootstrap(translate.BootstrapOptions{
		NodeID:        "specgate-envoy",
		StatsAddress:  "0.0.0.0:9902",
		AdminAddress:  "unix:/tmp/envoy-admin.sock", // no admin over TCP in the cluster
		AuthzAddress:  net.JoinHostPort(svc("specgate-authz"), "9001"),
		RateLimitAddr: net.JoinHostPort(svc("specgate-ratelimit"), "9003"),
	}, xdsAddr, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := translate.YAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	if got := stripComments(data); got != string(want) {
		t.Errorf("deploy/base/envoy/bootstrap.yaml drifted from `specgate bootstrap` (regenerate it with the command in its header):\n--- got\n%s\n--- want\n%s", got, want)
	}
	for _, hp := range []string{xdsAddr, net.JoinHostPort(svc("specgate-authz"), "9001"), net.JoinHostPort(svc("specgate-ratelimit"), "9003")} {
		host, port, _ := net.SplitHostPort(hp)
		name := strings.Split(host, ".")[0]
		p, _ := strconv.Atoi(port)
		if !slices.ContainsFunc(o.Services, func(s corev1.Service) bool {
			return s.Name == name && slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == int32(p) })
		}) {
			t.Errorf("bootstrap names %s but the build has no Service %s with port %d", hp, name, p)
		}
	}

	// Mounted at the path of Envoy's -c.
	spec := o.Deployment("specgate-envoy").Spec.Template.Spec
	c := spec.Containers[0]
	cfg := flagValue(c.Args, "-c")
	mounted := false
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && filepath.Join(m.MountPath, "bootstrap.yaml") == cfg {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("Envoy reads %q but the bootstrap ConfigMap is not mounted there", cfg)
	}

	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testenvoy.Validate(t, path); err != nil {
		t.Fatal(err)
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// The plain Prometheus config scrapes every role of the namespace on its metrics port.
func TestPrometheusScrapeConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global        map[string]any `json:"global"`
		ScrapeConfigs []struct {
			JobName             string `json:"job_name"`
			MetricsPath         string `json:"metrics_path"`
			KubernetesSDConfigs []struct {
				Role       string `json:"role"`
				Namespaces struct {
					Names []string `json:"names"`
				} `json:"namespaces"`
			} `json:"kubernetes_sd_configs"`
			RelabelConfigs []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatal(err)
	}
	o := build(t, "base")
	paths := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		paths[sc.JobName] = sc.MetricsPath
		if len(sc.KubernetesSDConfigs) != 1 || sc.KubernetesSDConfigs[0].Role != "pod" ||
			!slices.Equal(sc.KubernetesSDConfigs[0].Namespaces.Names, []string{namespace}) {
			t.Errorf("job %s: want pod discovery in namespace %s", sc.JobName, namespace)
		}
		if !bytes.Contains(b, []byte("__meta_kubernetes_pod_label_app_kubernetes_io_component")) {
			t.Errorf("job %s: must keep pods by their component label", sc.JobName)
		}
	}
	for _, d := range o.Deployments {
		job := strings.TrimPrefix(d.Name, "specgate-")
		want := "/metrics"
		if job == "envoy" {
			want = "/stats/prometheus"
		}
		if got, ok := paths[job]; !ok || got != want {
			t.Errorf("no scrape job %q with metrics_path %s", job, want)
		}
	}
}

// The checks must catch broken manifests, not only pass good ones.
func TestBrokenManifestsFail(t *testing.T) {
	t.Parallel()
	t.Run("typo", func(t *testing.T) {
		t.Parallel()
		_, err := Build("testdata/typo")
		if err == nil || !strings.Contains(err.Error(), `unknown field "readinesProbe"`) {
			t.Fatalf("a misspelt field must fail strict decoding, got %v", err)
		}
	})
	t.Run("unknown kind", func(t *testing.T) {
		t.Parallel()
		_, err := Build("testdata/unknownkind")
		if err == nil || !strings.Contains(err.Error(), "a kind these checks do not know") {
			t.Fatalf("an unchecked kind must fail, got %v", err)
		}
	})
	t.Run("credentials", func(t *testing.T) {
		t.Parallel()
		o := &Objects{ConfigMaps: []corev1.ConfigMap{
			{ObjectMeta: metav1.ObjectMeta{Name: "specgate-config-abc"}, Data: map[string]string{"gateway.yaml": "revocation: {store: \"rediss://:hunter2@10.0.0.3:6378/0\"}\nrateLimit: {store: \"rediss://:${REDIS_AUTH}@10.0.0.3:6378/1\"}\nsentinel: {password: hunter2}\n"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "specgate-seed"}, Data: map[string]string{"a.yaml": "flows: {password: {tokenUrl: https://a/token}}\n"}},
		}}
		err := checkNoCredentials(o)
		for _, w := range []string{"key gateway.yaml: a URL with an inline password (rediss://…)", "a literal credential (password…)"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error does not mention %q:\n%v", w, err)
			}
		}
		if err != nil && (strings.Contains(err.Error(), "REDIS_AUTH") || strings.Contains(err.Error(), "specgate-seed")) {
			t.Errorf("a ${NAME} reference or an OpenAPI password flow refused:\n%v", err)
		}
	})
	t.Run("edge", func(t *testing.T) {
		t.Parallel()
		o, err := Build("testdata/edge")
		if err != nil {
			t.Fatal(err)
		}
		err = checkEdge(o, 0)
		for _, w := range []string{
			"xffTrustedHops 0", "HTTPRoute specgate-https-redirect: plain HTTP on the external Gateway must only redirect",
			"HealthCheckPolicy specgate-public: want HTTP GET /ready", "GCPBackendPolicy specgate-public: timeoutSec 30",
			"GCPBackendPolicy specgate-public: the public listener without a Cloud Armor",
			"HTTPRoute specgate-internal: Gateway class gke-l7-rilb reaches Service specgate-public (Envoy port 8080), want Envoy's port 8081",
		} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("error does not mention %q:\n%v", w, err)
			}
		}
	})
	t.Run("insecure", func(t *testing.T) {
		t.Parallel()
		o, err := Build("testdata/insecure")
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]struct {
			err  error
			want []string
		}{
			"containers": {checkContainers(o), []string{
				"container web: no readinessProbe", "container web: no livenessProbe", "no cpu limit",
				"runAsNonRoot is not true", "readOnlyRootFilesystem is not true", "allowPrivilegeEscalation is not false",
				"capabilities must drop ALL", "seccompProfile is not RuntimeDefault", `image "nginx" is not pinned`,
				`image "redis:latest" uses :latest`, "privileged", "runAsUser must be a numeric non-root user",
			}},
			"disruption": {checkDisruptionAndScaling(o, []string{"web"}, map[string]int32{"web": 2}), []string{
				"Deployment web: 0 PodDisruptionBudgets", "Deployment web: 1 replicas, want at least 2",
				"Deployment web: no HorizontalPodAutoscaler", "minAvailable 1 blocks every eviction of Deployment api",
			}},
			"services": {checkServices(o), []string{
				"Service web port http: target port 8443 is not a container port", "Service nothing selects no pods",
				"no LoadBalancer Service (or Service behind a Gateway) targets Envoy's public listener",
			}},
			"volumes":    {checkVolumes(o), []string{"no ConfigMap missing-config", "unknown Secret token"}},
			"specs":      {checkSpecStore(o), []string{"no Deployment specgate-xds"}},
			"monitoring": {checkPodMonitoring(o), []string{"Deployment web: 0 PodMonitorings"}},
			"networking": {checkNetworkPolicies(o, "shop", []portRule{{"web", 9001, []string{"specgate-envoy"}}}), []string{
				"web port 9001: internet admitted", "web port 9001: same-namespace admitted", "no default deny",
			}},
			"roles": {checkRoles(o), []string{"no Deployment specgate-xds"}},
		}
		for name, c := range cases {
			if c.err == nil {
				t.Errorf("%s: passed a broken manifest", name)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(c.err.Error(), w) {
					t.Errorf("%s: error does not mention %q:\n%v", name, w, c.err)
				}
			}
		}
	})
}
