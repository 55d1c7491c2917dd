package envoy_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/test/harness/testenvoy"
)

// envoy/bootstrap.yaml is what `specgate bootstrap` writes with its defaults, and the real
// Envoy accepts it.
func TestCommittedBootstrap(t *testing.T) {
	b, err := os.ReadFile("bootstrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	boot, err := translate.ADSBootstrap(translate.BootstrapOptions{NodeID: "specgate-envoy"}, "127.0.0.1:18000", false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := translate.YAML(boot)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("#")) {
			body = append(body, line...)
		}
	}
	if !bytes.Equal(body, want) {
		t.Fatalf("envoy/bootstrap.yaml is stale; regenerate with `specgate bootstrap --xds 127.0.0.1:18000 -o envoy/bootstrap.yaml`")
	}
	if err := testenvoy.Validate(t, "bootstrap.yaml"); err != nil {
		t.Fatal(err)
	}
}
