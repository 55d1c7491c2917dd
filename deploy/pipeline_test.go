package deploy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/internal/testutil"
	"github.com/specgate/specgate/internal/testxds"
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

func TestMain(m *testing.M) { testutil.Main(m) }

// controlPlane starts the real control plane in-process on loopback ports, serving specDir
// with the gateway.yaml of the base, and returns its push API URL.
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

// workspace is a checkout of the central repository: deploy/base's kustomization and specs.
func workspace(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	base := filepath.Join(root, "deploy", "base")
	copyTree(t, "base/specs", filepath.Join(base, "specs"))
	b, err := os.ReadFile("base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "kustomization.yaml"), b)
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
		"GITHUB_STEP_SUMMARY="+filepath.Join(root, "summary.md"))
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

// The pipeline's lint, listing and dry-run steps, run as written against a live control plane
// that serves the base specs: a widening change is shown as a risk and nothing changes, a
// broken spec fails lint and the dry run, an unlisted file fails the listing check.
func TestPipeline(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t)
	for _, id := range []string{"lint", "listed", "diff"} {
		if !strings.Contains(w.step(t, "check", id).Run, map[string]string{
			"lint": "specgate lint --specs specs/", "listed": "specs/*.yaml",
			"diff": `specgate push --dry-run --allow-risky --server "$SPECGATE_XDS_URL" specs/*.yaml`,
		}[id]) {
			t.Fatalf("step %s changed its command; update this test with it", id)
		}
	}
	if !strings.Contains(w.step(t, "check", "diff").Env["SPECGATE_ADMIN_TOKEN"], "secrets.") {
		t.Error("the dry run must take the admin token from a secret")
	}
	live := t.TempDir()
	copyTree(t, "base/specs", live)
	srv, url := controlPlane(t, live)
	version, before := srv.Version(), treeHash(t, live)
	env := map[string]string{"SPECGATE_XDS_URL": url, "SPECGATE_ADMIN_TOKEN": "ci-token"}
	run := func(t *testing.T, root, id string) result {
		return runStep(t, w, "check", w.step(t, "check", id), root, env)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		if v := srv.Version(); v != version {
			t.Errorf("control plane version moved from %s to %s during a dry run", version, v)
		}
		if treeHash(t, live) != before {
			t.Error("the control plane's spec directory changed during a dry run")
		}
	}

	t.Run("widening change", func(t *testing.T) {
		root := workspace(t)
		orders := filepath.Join(root, "deploy/base/specs/orders.yaml")
		replaceInFile(t, orders, "http://orders.shop.svc.cluster.local:8080", "http://orders-v2.shop.svc.cluster.local:8080")
		wsBefore := treeHash(t, root)
		for _, id := range []string{"lint", "listed"} {
			if r := run(t, root, id); r.code != 0 {
				t.Fatalf("step %s: exit %d\n%s%s", id, r.code, r.stdout, r.stderr)
			}
		}
		r := run(t, root, "diff")
		if r.code != 0 {
			t.Fatalf("dry run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "specs/orders.yaml: service orders: dry run, would give version") {
			t.Errorf("dry run did not report its version:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "! orders: backend changed from http://orders.shop.svc.cluster.local:8080 to http://orders-v2.shop.svc.cluster.local:8080") {
			t.Errorf("dry run did not print the risky change:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "specs/catalog.yaml: service catalog: dry run, would give version "+version+", 0 change(s)") {
			t.Errorf("an unchanged spec must give the live version and no change:\n%s", r.stdout)
		}
		if summary, _ := os.ReadFile(filepath.Join(root, "summary.md")); !bytes.Contains(summary, []byte("! orders: backend changed")) {
			t.Error("the security diff is not in the job summary")
		}
		strict := w.step(t, "check", "diff")
		strict.Run = strings.Replace(strict.Run, " --allow-risky", "", 1)
		if r := runStep(t, w, "check", strict, root, env); r.code != 3 {
			t.Errorf("without --allow-risky a widening change must fail the check with exit 3, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		unchanged(t)
		if treeHash(t, root) != wsBefore {
			t.Error("the pipeline's checks changed the workspace")
		}
	})

	t.Run("broken spec", func(t *testing.T) {
		root := workspace(t)
		replaceInFile(t, filepath.Join(root, "deploy/base/specs/catalog.yaml"), "  basePath: /catalog", "  basePath: /catalog\n  basepath: /typo")
		r := run(t, root, "lint")
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "catalog.yaml") {
			t.Errorf("lint: want exit 1 naming catalog.yaml, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = run(t, root, "diff")
		if r.code != 1 || !strings.Contains(r.stderr, "specs/catalog.yaml") {
			t.Errorf("dry run: want exit 1 naming specs/catalog.yaml, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		unchanged(t)
	})

	t.Run("unlisted spec", func(t *testing.T) {
		root := workspace(t)
		b, _ := os.ReadFile("base/specs/catalog.yaml")
		b = bytes.ReplaceAll(b, []byte("title: Catalog"), []byte("title: Reviews"))
		b = bytes.ReplaceAll(b, []byte("/catalog"), []byte("/reviews"))
		writeFile(t, filepath.Join(root, "deploy/base/specs/reviews.yaml"), b)
		if r := run(t, root, "lint"); r.code != 0 {
			t.Fatalf("lint: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := run(t, root, "listed"); r.code != 1 || !strings.Contains(r.stdout, "specs/reviews.yaml is not listed") {
			t.Errorf("listed: want exit 1 naming specs/reviews.yaml, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r := run(t, root, "diff")
		if r.code != 0 || !strings.Contains(r.stdout, "! reviews: service added") {
			t.Errorf("dry run of a new service: want exit 0 and a risk line, got %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		unchanged(t)
	})
}

// The apply job runs after the checks, only on main, and replaces the very ConfigMap the
// kustomization generates and the control plane mounts.
func TestPipelineAppliesTheSpecsConfigMap(t *testing.T) {
	t.Parallel()
	w := readWorkflow(t)
	apply := w.Jobs["apply"]
	if needs, _ := apply.Needs.(string); needs != "check" {
		t.Errorf("apply needs %v, want check", apply.Needs)
	}
	if !strings.Contains(apply.If, "refs/heads/main") || !strings.Contains(apply.If, "'push'") {
		t.Errorf("apply must run on pushes to main only, if: %q", apply.If)
	}
	if apply.Defaults.Run.WorkingDirectory != w.Jobs["check"].Defaults.Run.WorkingDirectory {
		t.Error("apply and check must read the same specs/ directory")
	}
	run := w.step(t, "apply", "apply").Run
	o := build(t, "base")
	cm := o.ConfigMap("specgate-specs")
	if cm == nil {
		t.Fatal("no specgate-specs ConfigMap")
	}
	for _, want := range []string{"kubectl create configmap " + cm.Name, "--namespace " + cm.Namespace, "--from-file=specs/", "kubectl apply"} {
		if !strings.Contains(run, want) {
			t.Errorf("apply step does not contain %q:\n%s", want, run)
		}
	}
	// The pipeline's Role may patch exactly that ConfigMap.
	ok := false
	for _, r := range o.Roles {
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "configmaps") && slices.Equal(rule.ResourceNames, []string{cm.Name}) && slices.Contains(rule.Verbs, "patch") {
				ok = true
			}
			if slices.Contains(rule.Resources, "configmaps") && len(rule.ResourceNames) == 0 {
				t.Errorf("Role %s may change every ConfigMap", r.Name)
			}
		}
	}
	if !ok {
		t.Errorf("no Role lets the pipeline patch ConfigMap %s", cm.Name)
	}
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
