package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/specgate/specgate/test/harness/testutil"
)

// A built binary names its revision: specgate version and --version print the commit the
// go command stamped (the repository's HEAD, +modified for a dirty tree).
func TestVersionNamesTheRevision(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (the test needs the repository's git)", err)
	}
	bin := testutil.Specgate(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("specgate %s: %v", args[0], err)
		}
		if s := string(out); !strings.Contains(s, "revision "+strings.TrimSpace(string(head))) || !strings.Contains(s, "go1.") {
			t.Errorf("specgate %s: %q, want revision %s and the Go version", args[0], s, strings.TrimSpace(string(head)))
		}
	}
}

func TestMain(m *testing.M) { testutil.Main(m) }
