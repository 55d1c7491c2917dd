package compiler_test

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/testenvoy"
	"github.com/specgate/specgate/test/harness/testutil"
)

// bootstrapCase is the one golden case whose bootstrap.yaml is kept.
const bootstrapCase = "basic"

var update = flag.Bool("update", false, "rewrite the golden files of compiler/testdata (review the diff!)")

// TestGolden compiles every compiler/testdata/<case>/specs directory. A case either compiles,
// and its ir.yaml and resources.yaml are compared, or is refused, and its diagnostics.txt
// (the lint lines) is compared. Each case's bootstrap must pass the real Envoy's --mode
// validate; only bootstrapCase keeps it as a golden file, since a bootstrap is the case's
// resources.yaml inlined into the same static parts. A case's gateway.yaml, when it has one, replaces the default settings.
// Two stages, as in Envoy Gateway's testdata: specs → ir.yaml, then the reviewed ir.yaml →
// the Envoy files, so that a compiler change shows in ir.yaml alone and a translator change
// in the Envoy files alone.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*/specs")
	if err != nil || len(cases) < 12 {
		t.Fatalf("want at least 12 golden cases, found %d (%v)", len(cases), err)
	}
	for _, specs := range cases {
		dir := filepath.Dir(specs)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			// A case's gateway.yaml brings its backend policy and shared prefixes too.
			cfg, o := config.Default(), compiler.Options{}
			if p := filepath.Join(dir, "gateway.yaml"); fileExists(p) {
				var err error
				if cfg, err = config.Load(p); err != nil {
					t.Fatal(err)
				}
				o.Policy = compiler.PolicyOf(cfg)
			}
			o.Gateway = &cfg
			gw, diags := compiler.Compile(specs, o)
			var lines []string
			for _, d := range diags {
				lines = append(lines, d.String())
			}
			diagText := strings.Join(lines, "\n")
			if diagText != "" {
				diagText += "\n"
			}
			golden(t, filepath.Join(dir, "diagnostics.txt"), []byte(diagText), diagText != "")
			if diags.HasErrors() {
				for _, f := range []string{"ir.yaml", "resources.yaml", "bootstrap.yaml"} {
					if fileExists(filepath.Join(dir, f)) {
						t.Errorf("refused case has an orphaned %s", f)
					}
				}
				return
			}
			irJSON, err := json.Marshal(gw)
			if err != nil {
				t.Fatal(err)
			}
			irYAML, err := yaml.JSONToYAML(irJSON)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "ir.yaml"), irYAML, true)
			gw = readIR(t, filepath.Join(dir, "ir.yaml"))

			res, err := translate.Translate(gw, translate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			resYAML, err := res.YAML()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "resources.yaml"), resYAML, true)

			inline, err := translate.Translate(gw, translate.Options{InlineRoutes: true})
			if err != nil {
				t.Fatal(err)
			}
			boot, err := translate.Bootstrap(inline, translate.BootstrapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			bootYAML, err := translate.YAML(boot)
			if err != nil {
				t.Fatal(err)
			}
			bootPath := filepath.Join(dir, "bootstrap.yaml")
			if filepath.Base(dir) == bootstrapCase {
				golden(t, bootPath, bootYAML, true)
			} else {
				if fileExists(bootPath) {
					t.Errorf("%s: only %s keeps a bootstrap golden", bootPath, bootstrapCase)
				}
				bootPath = filepath.Join(t.TempDir(), "bootstrap.yaml")
				if err := os.WriteFile(bootPath, bootYAML, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// Envoy reads the files of static secrets to validate them: each backend TLS
			// profile's directories, made here with tls.crt, tls.key and ca.crt.
			for _, name := range slices.Sorted(maps.Keys(cfg.BackendTLS)) {
				p := cfg.BackendTLS[name]
				made := t.TempDir()
				crt := testutil.ServerCert(t, made, name+".test", 1)
				if err := os.WriteFile(filepath.Join(made, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw}), 0o600); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{p.CA, p.Certificate} {
					if f != "" {
						bootYAML = bytes.ReplaceAll(bootYAML, []byte(filepath.Dir(f)+"/"), []byte(made+"/"))
					}
				}
				bootPath = filepath.Join(t.TempDir(), "bootstrap.yaml")
				if err := os.WriteFile(bootPath, bootYAML, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tl := cfg.Listeners.TLS; tl != nil {
				// Envoy reads a static secret's files to validate it: the same bootstrap with
				// the certificate's directory made here.
				certDir := t.TempDir()
				testutil.ServerCert(t, certDir, "gateway.test", 1)
				bootYAML = bytes.ReplaceAll(bootYAML, []byte(filepath.Dir(tl.Certificate)+"/"), []byte(certDir+"/"))
				bootPath = filepath.Join(t.TempDir(), "bootstrap.yaml")
				if err := os.WriteFile(bootPath, bootYAML, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := testenvoy.Validate(t, bootPath); err != nil {
				t.Error(err)
			}
		})
	}
}

// readIR is the model a golden ir.yaml holds.
func readIR(t *testing.T, path string) ir.Gateway {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./compiler -update and review the diff)", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var gw ir.Gateway
	if err := json.Unmarshal(j, &gw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return gw
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// golden compares got with the file, or rewrites it under -update. want=false means the file
// must not exist (an orphan from an earlier run is deleted under -update).
func golden(t *testing.T, path string, got []byte, want bool) {
	t.Helper()
	if *update {
		if want {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			_ = os.Remove(path)
		}
		return
	}
	old, err := os.ReadFile(path)
	if !want {
		if err == nil {
			t.Errorf("%s exists but the case produced nothing for it", path)
		}
		return
	}
	if err != nil {
		t.Fatalf("%v (run go test ./compiler -update and review the diff)", err)
	}
	if !bytes.Equal(old, got) {
		t.Errorf("%s differs from the output (run go test ./compiler -update and review the diff):\n%s", path, firstDiff(string(old), string(got)))
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}
