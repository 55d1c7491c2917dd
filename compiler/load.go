// Package compiler reads every service's OpenAPI file, validates the specgate vocabulary and
// merges the files into one gateway model (package ir). It is pure: it reads files and nothing
// else. Package translate turns the model into Envoy resources.
package compiler

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/specgate/specgate/compiler/ir"
)

// Spec is one service's OpenAPI document, loaded for the gateway.
type Spec struct {
	File  string // as given to Load, relative to the spec directory
	Doc   *openapi3.T
	lines map[string]int // JSON pointer → line of the key in File
	built *builtService  // the service built from Doc, once, kept with the Loader's cache
	// schema is the whole description for specgate validate when the file asks for request
	// validation (Doc holds only what the gateway reads); schemaErr why it could not be made.
	schema    *ir.Schema
	schemaErr error
	// whole is the file decoded whole, for the published description (publish.go).
	whole *wholeDoc
}

// line is the line of the first of the JSON pointers that the file has (0: none).
func (s Spec) line(pointers ...string) int {
	for _, p := range pointers {
		if n, ok := s.lines[p]; ok {
			return n
		}
	}
	return 0
}

// ReadDir returns the spec files of dir (name → content). Dot files are skipped: the kubelet's
// ..data links of a mounted ConfigMap, editors' swap files, the control plane's temp files.
// Subdirectories are not read: they hold $ref fragments, never services.
func ReadDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spec directory: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isSpecFile(name) {
			continue
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: read: %w", name, err)
		}
		files[name] = b
	}
	return files, nil
}

// Loader loads spec files and keeps each file's result by content, so a control plane that
// rebuilds after one of a hundred files changed parses only that one. A file whose $refs read
// other files is not kept: those may have changed. It also keeps the parsed paths of the last
// plan (ir.Planner) and the descriptions its overlays last rewrote.
type Loader struct {
	mu    sync.Mutex
	cache map[[32]byte]*fileResult
	// planner keeps the parsed paths of the last plan (compilations plan the whole model).
	planner ir.Planner
	// lastOverlays is the last overlay result (Loader.overlays).
	lastOverlays *overlayCache
}

// NewLoader returns a Loader with an empty cache.
func NewLoader() *Loader { return &Loader{cache: map[[32]byte]*fileResult{}} }

// fileKind is what a file of the spec directory turned out to be.
type fileKind int

const (
	kindBroken   fileKind = iota // refused: its diagnostics say why
	kindService                  // an OpenAPI document: one service
	kindFragment                 // no openapi key: a $ref target, never a service
	kindOther                    // not for specgate (a Kubernetes manifest): skipped
)

type fileResult struct {
	kind  fileKind
	spec  Spec
	diags Diagnostics
	// readsFiles: its $refs read other files, which may change without it: not cached.
	readsFiles bool
}

// LoadFiles parses in-memory files (name → content), resolving relative $refs among the
// files (then the disk) of dir. The control plane uses it to check a pushed file before
// writing it.
func (l *Loader) LoadFiles(dir string, files map[string][]byte) ([]Spec, Diagnostics) {
	names := slices.Sorted(maps.Keys(files))
	keys := make([][32]byte, len(names))
	results := make([]*fileResult, len(names))
	var todo []int
	l.mu.Lock()
	for i, name := range names {
		keys[i] = sha256.Sum256(append([]byte(name+"\x00"), files[name]...))
		if r, ok := l.cache[keys[i]]; ok {
			results[i] = r
		} else {
			todo = append(todo, i)
		}
	}
	l.mu.Unlock()
	// Parsing dominates compile time and files are independent: load them on every core,
	// then report in name order.
	var wg sync.WaitGroup
	work := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Go(func() {
			for i := range work {
				results[i] = loadOne(dir, names[i], files)
			}
		})
	}
	for _, i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()

	l.mu.Lock()
	l.cache = map[[32]byte]*fileResult{} // keep only this set: a changed file's old result goes
	for i, r := range results {
		if !r.readsFiles && r.kind != kindBroken {
			l.cache[keys[i]] = r
		}
	}
	l.mu.Unlock()

	var (
		specs []Spec
		diags Diagnostics
	)
	for _, r := range results {
		diags = append(diags, r.diags...)
		if r.kind == kindService {
			specs = append(specs, r.spec)
		}
	}
	if len(specs) == 0 && !diags.HasErrors() {
		diags.errorf(dir, "", "no OpenAPI files (*.yaml, *.yml, *.json)")
	}
	return specs, diags
}

func isSpecFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// loadOne scans one file, tells what it is and, for a service, decodes what the gateway reads.
func loadOne(dir, name string, files map[string][]byte) *fileResult {
	r := &fileResult{}
	fail := func(line int, format string, a ...any) *fileResult {
		r.kind = kindBroken
		r.diags = append(r.diags, Diagnostic{Severity: Error, File: name, Line: line, Message: fmt.Sprintf(format, a...)})
		return r
	}
	s, err := scan(files[name])
	if err != nil {
		le, _ := err.(*lineError)
		if le == nil {
			le = &lineError{msg: err.Error()}
		}
		return fail(le.line, "%s", le.msg)
	}
	if len(s.dups) > 0 {
		for _, d := range s.dups {
			fail(d.line, "%s", d)
		}
		return r
	}
	root := s.root
	str := func(k string) string { v, _ := root[k].(string); return v }
	switch {
	case s.docs == 0:
		return fail(0, "empty file: not an OpenAPI document (remove it from the spec directory)")
	case root == nil:
		return fail(1, "not an OpenAPI document: the top level is %s, not an object", s.top)
	case str("kind") != "" && str("apiVersion") != "" && root["openapi"] == nil:
		r.kind = kindOther
		r.diags.warnf(name, "", "a Kubernetes manifest (kind: %s), not an OpenAPI document: skipped", str("kind"))
		return r
	case s.docs > 1:
		return fail(0, "holds %d YAML documents (---): a spec file holds one OpenAPI document", s.docs)
	case root["swagger"] != nil:
		return fail(s.lines["/swagger"], "Swagger %v (OpenAPI 2): specgate reads OpenAPI 3.0, 3.1 and 3.2; convert the file first (swagger2openapi, or kin-openapi's openapi2conv)", root["swagger"])
	case root["openapi"] == nil && (root["paths"] != nil || root[extKey] != nil):
		return fail(0, "no openapi key: a service's spec starts with openapi: 3.x")
	case root["openapi"] == nil:
		r.kind = kindFragment
		return r
	}
	if v := str("openapi"); !(strings.HasPrefix(v, "3.0.") || strings.HasPrefix(v, "3.1.") || strings.HasPrefix(v, "3.2.")) {
		return fail(s.lines["/openapi"], "openapi %v: specgate reads OpenAPI 3.0, 3.1 and 3.2", root["openapi"])
	}
	slimParameters(root)
	pruned, err := json.Marshal(root)
	if err != nil {
		return fail(0, "load: %v", err)
	}
	doc := &openapi3.T{}
	if err := json.Unmarshal(pruned, doc); err != nil {
		// kin-openapi's decoder names the Go type and field (Info.version): find the key's
		// line, and say what was expected in the file's terms.
		if m := typeErr.FindStringSubmatch(err.Error()); m != nil {
			object := "/" + strings.ToLower(m[2][:1]) + m[2][1:]
			at := func(suffix string) (line int, n int) {
				for ptr, l := range s.lines {
					if strings.HasSuffix(ptr, suffix) {
						line, n = l, n+1
					}
				}
				return line, n
			}
			// The key's own line when the scan kept it, else its object's (info is kept whole).
			line, n := at(object + "/" + m[3])
			if n != 1 {
				line, n = at(object)
			}
			if n == 1 {
				return fail(line, "%s.%s: a %s, where OpenAPI wants a %s", strings.ToLower(m[2][:1])+m[2][1:], m[3], m[1], m[4])
			}
		}
		return fail(0, "load: %v", err)
	}
	absDir, disk, err := setRoot(dir)
	if err != nil {
		return fail(0, "load: %v", err)
	}
	loader := newRefLoader(absDir, disk, files, func() { r.readsFiles = true })
	if err := loader.ResolveRefsIn(doc, &url.URL{Path: filepath.Join(absDir, name)}); err != nil {
		return fail(0, "$ref: %s", cleanErr(err, absDir))
	}
	r.kind = kindService
	r.spec = Spec{File: name, Doc: doc, lines: s.lines, built: &builtService{}}
	if validates(root) {
		r.spec.schema, r.spec.schemaErr = validationSchema(newRefLoader(absDir, disk, files, func() {}), files[name], filepath.Join(absDir, name))
	}
	r.spec.whole = &wholeDoc{data: files[name]}
	return r
}

// typeErr is kin-openapi's decoding error for a value of the wrong type.
var typeErr = regexp.MustCompile(`cannot unmarshal (\w+) into field (\w+)\.(\w+) of type (\S+)`)

// setRoot is where a set's $refs resolve: the spec directory dir, or, with no dir (a set held
// by the control plane's store, not on disk), a root of its own where nothing but the set is
// read (disk false).
func setRoot(dir string) (abs string, disk bool, err error) {
	if dir == "" {
		return string(filepath.Separator) + "specgate-set", false, nil
	}
	abs, err = filepath.Abs(dir)
	return abs, true, err
}

// newRefLoader is a kin-openapi loader whose $refs may point at other files of the spec
// directory (or below it), never outside it, never a URL. A file of the candidate set is read
// from files (a push has not written it yet), any other from the disk when disk is set. read
// is called for each file read.
func newRefLoader(absDir string, disk bool, files map[string][]byte, read func()) *openapi3.Loader {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	loader.ReadFromURIFunc = func(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
		if u.Scheme != "" && u.Scheme != "file" || u.Host != "" {
			return nil, fmt.Errorf("$ref %s: only files of the spec directory can be referenced", u)
		}
		p := filepath.Clean(u.Path)
		if !filepath.IsAbs(p) {
			p = filepath.Join(absDir, p)
		}
		rel, err := filepath.Rel(absDir, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("$ref %s: outside the spec directory", u)
		}
		read()
		if b, ok := files[rel]; ok {
			return b, nil
		}
		if !disk {
			return nil, fmt.Errorf("$ref %s: not a file of the spec set", u)
		}
		// On disk, where it really is: a symlink inside the directory may point anywhere.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			realDir, derr := filepath.EvalSymlinks(absDir)
			if derr != nil {
				realDir = absDir
			}
			if r, err := filepath.Rel(realDir, real); err != nil || strings.HasPrefix(r, "..") {
				return nil, fmt.Errorf("$ref %s: outside the spec directory (through a symlink, to %s)", u, real)
			}
			p = real
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		// Fragments under subdirectories are not scanned with the specs: check them here.
		if fs, err := scan(b); err != nil {
			return nil, fmt.Errorf("%s: %v", rel, err)
		} else if len(fs.dups) > 0 {
			return nil, fmt.Errorf("%s:%d: %s", rel, fs.dups[0].line, fs.dups[0])
		}
		return b, nil
	}
	return loader
}

// Strict reads each service spec of files whole, as kin-openapi does, and validates all of it
// — schemas, examples, defaults, patterns, formats — for `specgate lint --strict`. What it
// finds is documentation the gateway does not use: warnings, one line each.
func Strict(dir string, files map[string][]byte, specs []Spec) Diagnostics {
	var diags Diagnostics
	absDir, disk, err := setRoot(dir)
	if err != nil {
		return Diagnostics{{Severity: Error, File: dir, Message: err.Error()}}
	}
	for _, spec := range specs {
		loader := newRefLoader(absDir, disk, files, func() {})
		doc, err := loader.LoadFromDataWithPath(files[spec.File], &url.URL{Path: filepath.Join(absDir, spec.File)})
		if err == nil {
			err = doc.Validate(context.Background(), openapi3.EnableMultiError(), openapi3.EnableExamplesValidation(),
				openapi3.EnableSchemaDefaultsValidation(), openapi3.EnableSchemaPatternValidation(), openapi3.EnableSchemaFormatValidation())
		}
		for _, e := range flatten(err) {
			msg, _, _ := strings.Cut(cleanErr(e, absDir), "\n") // the first line: kin-openapi follows it with dumps of schema and value
			diags.add(Warning, spec.File, 0, "", "strict: %s", strings.TrimSpace(msg))
		}
	}
	return diags
}

// cleanErr drops the absolute directory from loader messages so they name the file as given.
func cleanErr(err error, absDir string) string {
	return strings.ReplaceAll(err.Error(), absDir+string(filepath.Separator), "")
}

// flatten lists the errors inside kin-openapi's MultiErrors.
func flatten(err error) []error {
	var me openapi3.MultiError
	if !errors.As(err, &me) {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range me {
		out = append(out, flatten(e)...)
	}
	return out
}
