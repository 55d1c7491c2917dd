package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specgate import krakend writes the spec set and prints the report; a file that is not a
// KrakenD v3 configuration exits with an error and writes nothing.
func TestImportKrakenD(t *testing.T) {
	out := t.TempDir()
	stdout, _, err := run(t, "import", "krakend", "../../krakend/testdata/krakend.json", "-o", out)
	if err != nil || !strings.Contains(stdout, "- GET /v1/dashboard: 2 backends (aggregation)") {
		t.Fatalf("import: %v\n%s", err, stdout)
	}
	for _, f := range []string{"gateway.yaml", "specs/users-shop-svc-cluster-local.yaml", "specs/catalog-shop-svc-cluster-local.yaml"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, _, err := run(t, "lint", "--specs", filepath.Join(out, "specs"), "--config", filepath.Join(out, "gateway.yaml")); err != nil {
		t.Errorf("lint of the imported specs: %v", err)
	}
	empty := t.TempDir()
	if _, _, err := run(t, "import", "krakend", "../../examples/specs/orders.yaml", "-o", empty); err == nil || !strings.Contains(err.Error(), "not a KrakenD v3 configuration") {
		t.Errorf("a non-KrakenD file: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused import wrote %d files", len(entries))
	}
}
