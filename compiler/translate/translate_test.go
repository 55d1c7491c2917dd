package translate_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

func compile(t *testing.T, dir string) ir.Gateway {
	t.Helper()
	gw, diags := compiler.Compile(dir)
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
		res, err := translate.Translate(compile(t, "../../examples/specs"), translate.Options{Gateway: config.Default()})
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
	res, err := translate.Translate(gw, translate.Options{Gateway: config.Default()})
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
	if _, err := translate.Translate(gw, translate.Options{Gateway: config.Default()}); err == nil || !strings.Contains(err.Error(), "requests must be > 0") {
		t.Fatalf("err = %v", err)
	}
	gw = compile(t, "../../examples/specs")
	gw.Services[0].Operations[0].Security = ir.Security{}
	if _, err := translate.Translate(gw, translate.Options{Gateway: config.Default()}); err == nil {
		t.Fatal("a route neither anonymous nor protected was translated")
	}
}
