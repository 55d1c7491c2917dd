package deploy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/testkube"
	"github.com/specgate/specgate/test/harness/testutil"
	"github.com/specgate/specgate/test/harness/testxds"
	"github.com/specgate/specgate/xds"
)

const pipelineFile = "../examples/ci/specs.yml"

// workflow is the part of a GitHub Actions workflow the test reads.
type workflow struct {
	Env  map[string]string `json:"env"`
	Jobs map[string]struct {
		Needs    any    `json:"needs"`
		If       string `json:"if"`
		Defaults struct {
			Run struct {
				Shell            string `json:"shell"`
				WorkingDirectory string `json:"working-directory"`
			} `json:"run"`
		} `json:"defaults"`
		Steps []step `json:"steps"`
	} `json:"jobs"`
}

type step struct {
	ID   string            `json:"id"`
	Name string            `json:"name"`
	Run  string            `json:"run"`
	Uses string            `json:"uses"`
	Env  map[string]string `json:"env"`
}

func readWorkflow(t *testing.T) workflow {
	t.Helper()
	b, err := os.ReadFile(pipelineFile)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w workflow) step(t *testing.T, job, id string) step {
	t.Helper()
	for _, s := range w.Jobs[job].Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("%s: job %s has no step with id %q", pipelineFile, job, id)
	return step{}
}

func TestMain(m *testing.M) {
	code := testkube.Run(m) // the RBAC test's API server
	testutil.RemoveSpecgate()
	os.Exit(code)
}

// controlPlane starts the real control plane in-process on loopback ports, serving specDir
// (a directory store) with the gateway.yaml of the base, and returns its API URL.
func controlPlane(t *testing.T, specDir string) (*xds.Server, string) {
	t.Helper()
	cfg, err := config.Load("base/config/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cp := testxds.Start(t, xds.Options{
		SpecDir: specDir, Gateway: cfg, AdminToken: "ci-token", Debounce: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, "127.0.0.1:0", "127.0.0.1:0")
	srv := cp.Server
	if srv.Version() == "" {
		t.Fatal("the control plane has no version for the base specs")
	}
	return srv, cp.API
}

// workspace is a checkout of the central repository: specs/ and gateway.yaml.
func workspace(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	copyTree(t, "base/specs", filepath.Join(root, "specs"))
	b, err := os.ReadFile("base/config/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "gateway.yaml"), b)
	return root
}

type result struct {
	code           int
	stdout, stderr string
}

// runStep runs a step's script the way the runner does (bash -e -o pipefail, in the job's
// working directory), with the built specgate first on PATH.
func runStep(t *testing.T, w workflow, job string, s step, root string, env map[string]string) result {
	t.Helper()
	bin := testutil.Specgate(t)
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
	cmd.Dir = filepath.Join(root, w.Jobs[job].Defaults.Run.WorkingDirectory)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GITHUB_STEP_SUMMARY="+filepath.Join(root, "summary.md"), "GITHUB_SHA=0123abc", "GITHUB_ACTOR=octocat")
	for k, v := range w.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("step %s: %v", s.ID, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

var liveVersionLine = regexp.MustCompile(`(?m)^<!-- specgate-live-version: ([0-9]+) -->$`)

// The pipeline's steps, run as written against a live control plane that serves the base
// specs: the pull request's dry run posts the diff and the live version; the apply on main
// applies exactly that, and refuses (exit 4, nothing changed) once the live set has moved; a
// rename across files is one change set; a broken spec fails lint and the dry run.
func TestPipeline(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t)
	for job, steps := range map[string]map[string]string{
		"check": {"lint": "specgate lint --specs specs/ --config gateway.yaml",
			"diff": `specgate push --sync specs/ --dry-run --allow-risky --output markdown --server "$SPECGATE_XDS_URL" >diff.md`},
		"apply": {"apply": `specgate push --sync specs/ --if-version "$IF_VERSION" --allow-risky`},
	} {
		for id, cmd := range steps {
			if !strings.Contains(w.step(t, job, id).Run, cmd) {
				t.Fatalf("step %s changed its command; update this test with it", id)
			}
		}
	}
	for _, s := range []step{w.step(t, "check", "diff"), w.step(t, "apply", "apply")} {
		if !strings.Contains(s.Env["SPECGATE_ADMIN_TOKEN"], "secrets.") {
			t.Errorf("step %s must take the admin token from a secret", s.ID)
		}
	}
	if !strings.Contains(w.step(t, "apply", "apply").Env["IF_VERSION"], "steps.version.outputs.version") ||
		!strings.Contains(w.step(t, "apply", "version").Run, "specgate-live-version: ") {
		t.Error("the apply must take --if-version from the pull request's dry run")
	}
	live := t.TempDir()
	copyTree(t, "base/specs", live)
	srv, url := controlPlane(t, live)
	env := map[string]string{"SPECGATE_XDS_URL": url, "SPECGATE_ADMIN_TOKEN": "ci-token"}
	run := func(t *testing.T, root, job, id string, more ...string) result {
		e := maps.Clone(env)
		for i := 0; i+1 < len(more); i += 2 {
			e[more[i]] = more[i+1]
		}
		return runStep(t, w, job, w.step(t, job, id), root, e)
	}
	// dryRun runs lint and the dry run and returns the posted diff and its live version.
	dryRun := func(t *testing.T, root string) (string, string) {
		t.Helper()
		if r := run(t, root, "check", "lint"); r.code != 0 {
			t.Fatalf("lint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		revision, version, before := srv.Revision(), srv.Version(), treeHash(t, live)
		if r := run(t, root, "check", "diff"); r.code != 0 {
			t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if srv.Revision() != revision || srv.Version() != version || treeHash(t, live) != before {
			t.Error("the dry run changed what is live or the control plane's store")
		}
		diff, _ := os.ReadFile(filepath.Join(root, "diff.md"))
		m := liveVersionLine.FindSubmatch(diff)
		if m == nil || string(m[1]) != strconv.FormatInt(revision, 10) {
			t.Fatalf("the dry run's comment does not name live version %d:\n%s", revision, diff)
		}
		return string(diff), string(m[1])
	}

	t.Run("widening change, reviewed then applied", func(t *testing.T) {
		root := workspace(t)
		replaceInFile(t, filepath.Join(root, "specs/orders.yaml"), "http://orders.shop.svc.cluster.local:8080", "http://orders-v2.shop.svc.cluster.local:8080")
		diff, version := dryRun(t, root)
		if !strings.Contains(diff, "| ⚠️ | `orders` |  | `backend changed from http://orders.shop.svc.cluster.local:8080 to http://orders-v2.shop.svc.cluster.local:8080` |") {
			t.Errorf("the comment does not flag the backend change:\n%s", diff)
		}
		strict := w.step(t, "check", "diff")
		strict.Run = strings.Replace(strict.Run, " --allow-risky", "", 1)
		if r := runStep(t, w, "check", strict, root, env); r.code != 3 {
			t.Errorf("without --allow-risky a widening change must fail the check with exit 3, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r := run(t, root, "apply", "apply", "IF_VERSION", version)
		if r.code != 0 || !strings.Contains(r.stdout, "applied: version ") {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(live, "orders.yaml")); !bytes.Contains(b, []byte("orders-v2.shop")) {
			t.Error("the applied change is not in the control plane's store")
		}
		// The same reviewed version again: the live set moved, so nothing is applied.
		moved, before := srv.Revision(), treeHash(t, live)
		replaceInFile(t, filepath.Join(root, "specs/catalog.yaml"), "  basePath: /catalog", "  basePath: /catalog\n  timeout: 5s")
		if r := run(t, root, "apply", "apply", "IF_VERSION", version); r.code != 4 || !strings.Contains(r.stderr, "conflict") {
			t.Errorf("apply against a stale version: exit %d, want 4\n%s%s", r.code, r.stdout, r.stderr)
		}
		if srv.Revision() != moved || treeHash(t, live) != before {
			t.Error("a conflicting apply changed the live version or the store")
		}
	})

	t.Run("rename across files", func(t *testing.T) {
		root := workspace(t)
		b, _ := os.ReadFile(filepath.Join(root, "specs/catalog.yaml"))
		if err := os.Remove(filepath.Join(root, "specs/catalog.yaml")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "specs/products.yaml"), bytes.ReplaceAll(b, []byte("title: Catalog"), []byte("title: Products")))
		diff, version := dryRun(t, root)
		for _, want := range []string{"`catalog` |  | `service removed", "`products` | `GET /catalog/products` | `route moved from catalog"} {
			if !strings.Contains(diff, want) {
				t.Errorf("the diff lacks %q:\n%s", want, diff)
			}
		}
		if r := run(t, root, "apply", "apply", "IF_VERSION", version); r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(live, "catalog.yaml")); !os.IsNotExist(err) {
			t.Error("catalog.yaml is still live after the rename")
		}
	})

	t.Run("broken spec", func(t *testing.T) {
		root := workspace(t)
		replaceInFile(t, filepath.Join(root, "specs/orders.yaml"), "  basePath: /orders", "  basePath: /orders\n  basepath: /typo")
		revision, before := srv.Revision(), treeHash(t, live)
		if r := run(t, root, "check", "lint"); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "orders.yaml") {
			t.Errorf("lint: want exit 1 naming orders.yaml, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := run(t, root, "check", "diff"); r.code != 1 || !strings.Contains(r.stderr, "orders.yaml") {
			t.Errorf("dry run: want exit 1 naming orders.yaml, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if srv.Revision() != revision || treeHash(t, live) != before {
			t.Error("a refused change set moved the live version or changed the store")
		}
	})
}

// The apply job runs only on main, and the pipeline's own identity writes nothing in the
// cluster: its Role only reaches the control plane (port-forward), whose API takes the change.
func TestPipelineWritesThroughTheChangeAPI(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t)
	apply := w.Jobs["apply"]
	if !strings.Contains(apply.If, "refs/heads/main") || !strings.Contains(apply.If, "'push'") {
		t.Errorf("apply must run on pushes to main only, if: %q", apply.If)
	}
	o := build(t, "base")
	for _, r := range o.Roles {
		if r.Name != "specs-pipeline" {
			continue
		}
		for _, rule := range r.Rules {
			for _, verb := range rule.Verbs {
				if verb != "get" && verb != "list" && !(verb == "create" && slices.Equal(rule.Resources, []string{"pods/portforward"})) {
					t.Errorf("Role specs-pipeline may %s %v: it should only reach the control plane", verb, rule.Resources)
				}
			}
		}
		return
	}
	t.Error("no Role specs-pipeline")
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func replaceInFile(t *testing.T, p, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", p, old)
	}
	writeFile(t, p, bytes.Replace(b, []byte(old), []byte(new), 1))
}

// treeHash hashes every file name and content under dir (summary.md, the runner's file, aside).
func treeHash(t *testing.T, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "summary.md" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00"))
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}
