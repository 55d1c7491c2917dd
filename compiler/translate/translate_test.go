package translate_test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

// compile is the planned model of dir, with gateway.yaml's defaults or cfg.
func compile(t *testing.T, dir string, cfg ...config.Gateway) ir.Gateway {
	t.Helper()
	o := compiler.Options{}
	if len(cfg) > 0 {
		o.Gateway = &cfg[0]
	}
	gw, diags := compiler.Compile(dir, o)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return gw
}

// Compiling the same specs twice gives byte-identical output and the same version hash;
// changing one operation changes the hash.
func TestDeterministic(t *testing.T) {
	var outs [][]byte
	var versions []string
	for range 3 {
		res, err := translate.Translate(compile(t, "../../examples/specs"), translate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		y, err := res.YAML()
		if err != nil {
			t.Fatal(err)
		}
		v, err := res.Version()
		if err != nil {
			t.Fatal(err)
		}
		outs, versions = append(outs, y), append(versions, v)
	}
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[0], outs[i]) || versions[0] != versions[i] {
			t.Fatalf("run %d differs: version %s vs %s", i, versions[0], versions[i])
		}
	}

	gw := compile(t, "../../examples/specs")
	gw.Services[0].Operations[0].Timeout++
	res, err := translate.Translate(gw, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Version(); v == versions[0] {
		t.Fatal("a changed timeout kept the same version")
	}
}

// Translate refuses a model that would give Envoy a config it rejects.
func TestTranslateRefusesInvalidModel(t *testing.T) {
	gw := compile(t, "../../examples/specs")
	gw.Services[0].Operations[0].RateLimits = []ir.RateLimit{{Requests: 0, Per: ir.Second, Key: ir.KeyIP}}
	if _, err := translate.Translate(gw, translate.Options{}); err == nil || !strings.Contains(err.Error(), "requests must be > 0") {
		t.Fatalf("err = %v", err)
	}
	gw = compile(t, "../../examples/specs")
	gw.Services[0].Operations[0].Security = ir.Security{}
	if _, err := translate.Translate(gw, translate.Options{}); err == nil {
		t.Fatal("a route neither anonymous nor protected was translated")
	}
}

// A Cache changes nothing in the output: over a sequence of models (a change to one
// operation, to a service's CORS, to the options, and back), the cached translation gives the
// same bytes and version as a fresh one, and a change still changes the version.
func TestCacheGivesTheSameOutput(t *testing.T) {
	base := compile(t, "../../examples/specs")
	timeout := compile(t, "../../examples/specs")
	timeout.Services[0].Operations[0].Timeout++
	// A CORS policy changes the route table too (preflight routes): planned after the edit.
	cors := compile(t, "../../examples/specs")
	cors.Services[1].CORS = &ir.CORS{AllowOrigins: []string{"https://shop.example.com"}}
	cors, err := ir.Plan(cors, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	cached := config.Default()
	cached.Authz.DecisionCacheTTL.Duration = 500 * time.Millisecond
	withSettings, err := ir.Plan(cors, cached)
	if err != nil {
		t.Fatal(err)
	}
	opts := translate.Options{}
	cache := translate.NewCache()
	seen := map[string]string{}
	for i, step := range []struct {
		gw   ir.Gateway
		opts translate.Options
	}{{base, opts}, {base, opts}, {timeout, opts}, {cors, opts}, {withSettings, opts}, {base, opts}} {
		fresh, err := translate.Translate(step.gw, step.opts)
		if err != nil {
			t.Fatal(err)
		}
		withCache := step.opts
		withCache.Cache = cache
		cached, err := translate.Translate(step.gw, withCache)
		if err != nil {
			t.Fatal(err)
		}
		fy, _ := fresh.YAML()
		cy, _ := cached.YAML()
		fv, _ := fresh.Version()
		cv, _ := cached.Version()
		if !bytes.Equal(fy, cy) || fv != cv {
			t.Fatalf("step %d: cached output differs (version %s vs %s)", i, cv, fv)
		}
		key := string(fy)
		if prev, ok := seen[key]; ok && prev != cv || !ok && slices.Contains(slices.Collect(maps.Values(seen)), cv) {
			t.Fatalf("step %d: version %s does not follow the content", i, cv)
		}
		seen[key] = cv
	}
	if len(seen) != 4 {
		t.Fatalf("%d distinct outputs, want 4", len(seen))
	}
}
