package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// Docker cannot run here, so the Dockerfile is checked for what matters: a Go builder stage
// building a static, trimmed binary; a distroless final stage that runs it as a non-root user;
// images pinned by tag; COPY --from naming earlier stages.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, "../Dockerfile")
	type stage struct {
		image, name string
		body        []instruction
	}
	var stages []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			if err := checkImage(s.image); err != nil {
				t.Errorf("FROM: %v", err)
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if len(stages) != 2 {
		t.Fatalf("want 2 stages (build, runtime), got %d", len(stages))
	}
	builder, final := stages[0], stages[1]
	if builder.image != "golang:1.26" {
		t.Errorf("builder image %s, want golang:1.26", builder.image)
	}
	if final.image != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final image %s, want distroless static nonroot", final.image)
	}
	var compiled bool
	for _, in := range builder.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "-o /out/specgate", "./cmd/specgate"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("go build without %s: %s", want, in.args)
				}
			}
			compiled = true
		}
	}
	if !compiled {
		t.Error("the build stage runs no go build")
	}
	var user, entry string
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "RUN":
			t.Errorf("RUN in the distroless stage (it has no shell): %s", in.args)
		case "COPY":
			if from, ok := strings.CutPrefix(in.args, "--from="); ok {
				name, _, _ := strings.Cut(from, " ")
				if name != builder.name {
					t.Errorf("COPY --from=%s: no such earlier stage", name)
				}
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "root" || uid == "0" {
		t.Errorf("final stage USER %q: must be a non-root user", user)
	} else if uid != "65532" && uid != "nonroot" {
		t.Errorf("final stage USER %q: want distroless' nonroot (65532)", user)
	}
	if entry != `["/specgate"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/specgate\"]", entry)
	}
	// The manifests run the image with the same numeric user.
	o := build(t, "base")
	for _, d := range o.Deployments {
		c := d.Spec.Template.Spec.Containers[0]
		sc := d.Spec.Template.Spec.SecurityContext
		if strings.Contains(c.Image, "specgate:") && (sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532) {
			t.Errorf("Deployment %s: runAsUser must be 65532, the image's user", d.Name)
		}
	}
}

// `make image` (scripts/images.sh, without docker) builds the image the Dockerfile describes:
// the same go build, the binary at the same path as the entrypoint, the same user and ports,
// and the CA certificates that the distroless base has.
func TestImageScriptMatchesDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../scripts/images.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	ins := parseDockerfile(t, "../Dockerfile")
	var last int
	for i, in := range ins {
		if in.cmd == "FROM" {
			last = i
		}
	}
	var build, user, entry string
	var ports []string
	for i, in := range ins {
		switch {
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			build = in.args
		case i < last:
		case in.cmd == "USER":
			user = in.args
		case in.cmd == "ENTRYPOINT":
			entry = in.args
		case in.cmd == "EXPOSE":
			ports = append(ports, strings.Fields(in.args)...)
		}
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) != 1 {
		t.Fatalf("ENTRYPOINT %s: want one path, in exec form", entry)
	}
	bin := argv[0]
	want := []string{
		"NONROOT=" + user,
		`-entrypoint ` + bin + ` -user "$NONROOT"`,
		`-file "$work/specgate=` + bin + `:0755"`,
		`gobuild "$work/specgate" ./cmd/specgate`,
		"CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
		`ca=(-file "$CA_BUNDLE=$CA_BUNDLE:0644"`,
	}
	// The go build's environment and flags, as the Dockerfile spells them.
	for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`} {
		if !strings.Contains(strings.ReplaceAll(build, `-ldflags="-s -w"`, `-ldflags "-s -w"`), flag) {
			t.Errorf("the Dockerfile's go build has no %s: update this test", flag)
		}
		want = append(want, flag)
	}
	for _, p := range ports {
		want = append(want, "-expose "+p)
	}
	for _, w := range want {
		if !strings.Contains(script, w) {
			t.Errorf("scripts/images.sh does not build the Dockerfile's image: no %s", w)
		}
	}
}

// .dockerignore must not drop a file the build needs: go.mod, go.sum and every Go file of the
// module's packages that cmd/specgate imports.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("negated pattern %q: extend this test's matcher first", line)
		}
		patterns = append(patterns, strings.TrimPrefix(filepath.Clean(line), "/"))
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "../cmd/specgate").Output()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], root+string(filepath.Separator)) {
			continue // a dependency from the module cache
		}
		rel, _ := filepath.Rel(root, f[0])
		for _, name := range f[1:] {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if !slices.Contains(needed, "cmd/specgate/main.go") {
		t.Fatalf("go list found no cmd/specgate files: %v", needed)
	}
	for _, p := range needed {
		for _, pat := range patterns {
			if dockerignoreMatch(pat, p) {
				t.Errorf(".dockerignore pattern %q drops %s, which the build needs", pat, p)
			}
		}
	}
	// And it keeps the context small: the Envoy binary and VCS data stay out.
	for _, p := range []string{".git/HEAD", ".tools/envoy/envoy", "specgate", "deploy/base/kustomization.yaml"} {
		if !slices.ContainsFunc(patterns, func(pat string) bool { return dockerignoreMatch(pat, p) }) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// dockerignoreMatch follows Docker's rules closely enough for this file: a pattern matches a
// path or any of its parent directories; a leading **/ matches at any depth.
func dockerignoreMatch(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
