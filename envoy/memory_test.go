package envoy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/realspecs"
	"github.com/specgate/specgate/test/harness/specgen"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// BenchmarkEnvoyMemory is Envoy's allocated memory per operation (KB/operation) for a synthetic
// fleet of 1,000 and 10,000 operations (specgen: 100 per service, half templated, a fifth
// rate limited, a tenth internal), as compiled and as the same routes with no per-route
// policy, and with parts of the compiled routes taken away to show where the memory goes;
// at 10,000 with the authz plugin on (its fixed cost apart); then for the real descriptions
// of make specs (most of their operations anonymous).
// The routes reach Envoy over RDS as in production (from files, not from a control plane),
// so that listeners naming one route table share it. Each sub-benchmark starts one Envoy:
// run it with -benchtime 1x.
func BenchmarkEnvoyMemory(b *testing.B) {
	empty, _ := envoyAllocated(b, fleet(1), nil)
	for _, ops := range []int{1000, 10000} {
		for _, v := range []struct {
			name string
			edit func(*routev3.Route)
		}{
			{"compiled", nil},
			{"no-per-route-policy", func(r *routev3.Route) {
				r.TypedPerFilterConfig, r.Metadata, r.RequestHeadersToRemove, r.RequestHeadersToAdd = nil, nil, nil, nil
				if a := r.GetRoute(); a != nil {
					a.RateLimits = nil
				}
			}},
			{"without-per-route-filter-configs", func(r *routev3.Route) { r.TypedPerFilterConfig = nil }},
			{"without-route-stats", func(r *routev3.Route) { r.StatPrefix = "" }},
		} {
			b.Run(fmt.Sprintf("ops=%d/%s", ops, v.name), func(b *testing.B) {
				for b.Loop() {
					mem, _ := envoyAllocated(b, fleet(ops), v.edit)
					report(b, mem, empty, ops)
				}
			})
		}
	}
	// The authz plugin puts the policy of each route it decides in the route's metadata; its
	// VMs (one per worker and one on the main thread) cost a fixed amount besides.
	plugin := func(c *config.Gateway) {
		c.Authz.Plugin.Module, c.Authz.Plugin.FeedAddress = testutil.Plugin(b), testutil.FreeAddr(b)
	}
	b.Run("ops=10000/with-authz-plugin", func(b *testing.B) {
		for b.Loop() {
			pluginEmpty, _ := envoyAllocated(b, fleet(1), nil, plugin)
			mem, _ := envoyAllocated(b, fleet(10000), nil, plugin)
			report(b, mem, pluginEmpty, 10000)
			b.ReportMetric(float64(pluginEmpty-empty)/1e6, "MB-plugin-fixed")
		}
	})
	b.Run("real-descriptions/compiled", func(b *testing.B) {
		for b.Loop() {
			mem, ops := envoyAllocated(b, func(dir string) error {
				return realspecs.Write(dir, "http://127.0.0.1:1", realspecs.All...)
			}, nil)
			report(b, mem, empty, ops)
		}
	})
}

func report(b *testing.B, mem, empty, ops int) {
	b.ReportMetric(float64(mem-empty)/1e3/float64(ops), "KB/operation")
	b.ReportMetric(float64(mem)/1e6, "MB-allocated")
	b.ReportMetric(float64(ops), "operations")
}

// fleet writes specgen's fleet of ops operations, 100 per service.
func fleet(ops int) func(dir string) error {
	return func(dir string) error {
		perService := min(ops, 100)
		return specgen.Write(dir, specgen.Fleet(ops/perService, perService))
	}
}

// envoyAllocated starts Envoy on the specs that write writes, each route edited by edit (if
// any), and returns server.memory_allocated once it is ready, and the operations served.
func envoyAllocated(b *testing.B, write func(dir string) error, edit func(*routev3.Route), configure ...func(*config.Gateway)) (allocated, ops int) {
	b.Helper()
	dir := b.TempDir()
	specs := filepath.Join(dir, "specs")
	if err := os.Mkdir(specs, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := write(specs); err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listeners.Public, cfg.Listeners.Internal = uint32(testutil.FreePort(b)), uint32(testutil.FreePort(b))
	for _, c := range configure {
		c(&cfg)
	}
	gw, diags := compiler.Compile(specs, compiler.Options{Gateway: &cfg})
	if err := diags.Err(); err != nil {
		b.Fatal(err)
	}
	for _, svc := range gw.Services {
		ops += len(svc.Operations)
	}
	res, err := translate.Translate(gw, translate.Options{ListenAddress: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	// Each route configuration in a file of its own, which the listeners naming it read.
	source := map[string]*corev3.ConfigSource{}
	for _, rc := range res.Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				if edit != nil {
					edit(r)
				}
			}
		}
		a, err := anypb.New(rc)
		if err != nil {
			b.Fatal(err)
		}
		pb, err := proto.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: a.TypeUrl, Resources: []*anypb.Any{a}})
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "rds-"+rc.Name+".pb")
		if err := os.WriteFile(path, pb, 0o644); err != nil {
			b.Fatal(err)
		}
		source[rc.Name] = &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: path}}}
	}
	for _, l := range res.Listeners {
		fs := l.FilterChains[0].Filters
		f := fs[len(fs)-1] // the connection manager: the terminal filter
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			b.Fatal(err)
		}
		hcm.GetRds().ConfigSource = source[hcm.GetRds().GetRouteConfigName()]
		a, err := anypb.New(hcm)
		if err != nil {
			b.Fatal(err)
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	admin := testutil.FreeAddr(b)
	boot, err := translate.Bootstrap(res, translate.BootstrapOptions{AdminAddress: admin,
		AuthzAddress: testutil.FreeAddr(b), RateLimitAddr: testutil.FreeAddr(b)})
	if err != nil {
		b.Fatal(err)
	}
	pb, err := proto.Marshal(boot)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "bootstrap.pb")
	if err := os.WriteFile(path, pb, 0o644); err != nil {
		b.Fatal(err)
	}
	e := testenvoy.Start(b, path, admin)
	defer e.Stop()
	mem, err := e.Stat("server.memory_allocated")
	if err != nil {
		b.Fatal(err)
	}
	n, err := strconv.Atoi(mem)
	if err != nil {
		b.Fatal(err)
	}
	return n, ops
}
