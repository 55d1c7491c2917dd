// Package compiler reads every service's OpenAPI file, validates the specgate vocabulary and
// merges the files into one gateway model (package ir). It is pure: it reads files and nothing
// else. Package translate turns the model into Envoy resources.
package compiler

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// Spec is one loaded and validated OpenAPI document.
type Spec struct {
	File string // as given to Load, relative to the spec directory
	Doc  *openapi3.T
}

// Load reads every *.yaml, *.yml and *.json file of dir (not recursing), sorted by name. A
// file that does not load is reported and skipped, so one run reports every broken file.
func Load(dir string) ([]Spec, Diagnostics) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, Diagnostics{{Severity: Error, File: dir, Message: err.Error()}}
	}
	return LoadFiles(dir, files)
}

// ReadDir returns the spec files of dir (name → content). Dot files are skipped: the kubelet's
// ..data links of a mounted ConfigMap, editors' swap files, the control plane's temp files.
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

// LoadFiles parses in-memory files (name → content), resolving relative $refs among the
// files of dir. The control plane uses it to check a pushed file before writing it.
func LoadFiles(dir string, files map[string][]byte) ([]Spec, Diagnostics) {
	var (
		specs []Spec
		diags Diagnostics
	)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	// Parsing and validating dominate compile time and files are independent: load them on
	// every core, then report in name order.
	docs := make([]*openapi3.T, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				docs[i], errs[i] = loadOne(dir, names[i], files[names[i]])
			}
		})
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	for i, name := range names {
		if errs[i] != nil {
			diags.errorf(name, "", "%v", errs[i])
			continue
		}
		specs = append(specs, Spec{File: name, Doc: docs[i]})
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

func loadOne(dir, name string, data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// $refs may point at other files of the spec directory, never outside it, never a URL.
	loader.ReadFromURIFunc = func(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
		if u.Scheme != "" && u.Scheme != "file" || u.Host != "" {
			return nil, fmt.Errorf("$ref %s: only files of the spec directory can be referenced", u)
		}
		p := filepath.Clean(u.Path)
		if !filepath.IsAbs(p) {
			p = filepath.Join(absDir, p)
		}
		if rel, err := filepath.Rel(absDir, p); err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("$ref %s: outside the spec directory", u)
		}
		return os.ReadFile(p)
	}
	doc, err := loader.LoadFromDataWithPath(data, &url.URL{Path: filepath.Join(absDir, name)})
	if err != nil {
		return nil, fmt.Errorf("load: %s", cleanErr(err, absDir))
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI: %s", cleanErr(err, absDir))
	}
	return doc, nil
}

// cleanErr drops the absolute directory from loader messages so they name the file as given.
func cleanErr(err error, absDir string) string {
	return strings.ReplaceAll(err.Error(), absDir+string(filepath.Separator), "")
}
