package compiler

import (
	"errors"
	"maps"
	"slices"

	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
)

// Options shape a compilation. The zero value caches nothing, applies no backend policy,
// checks path ownership with no shared prefixes and plans the default gateway.yaml.
type Options struct {
	// Loader keeps each file's parse by content between compilations (the control plane's).
	Loader *Loader
	// Policy is what gateway.yaml says about specs.
	Policy Policy
	// Gateway is the gateway.yaml whose listeners and settings the model is planned with
	// (ir.Plan); nil: config.Default().
	Gateway *config.Gateway
	// Strict adds the warnings of a whole-document OpenAPI validation (lint --strict).
	Strict bool
}

// CompileFiles is the one path from spec files (name → content, as ReadDir returns them) to
// the model: load, build, the gateway's policy; the diagnostics sorted. The control plane's
// every push and reload, specgate lint/compile/push, the golden tests and the benchmarks
// compile through it, so that none of them accepts what another refuses.
func CompileFiles(dir string, files map[string][]byte, o Options) (ir.Gateway, Diagnostics) {
	if o.Loader == nil {
		o.Loader = NewLoader()
	}
	ov, diags := o.Loader.overlays(files)
	if diags.HasErrors() {
		diags.Sort()
		return ir.Gateway{}, diags
	}
	specs, more := o.Loader.LoadFiles(dir, ov.files)
	diags = append(diags, more...)
	for i, s := range specs {
		if tree := ov.trees[s.File]; tree != nil {
			specs[i].whole = &wholeDoc{tree: tree}
		}
	}
	gw, more := Build(specs)
	diags = append(diags, more...)
	if o.Strict {
		diags = append(diags, Strict(dir, files, specs)...)
	}
	diags = append(diags, o.Policy.Check(gw)...)
	if !diags.HasErrors() {
		cfg := o.Gateway
		if cfg == nil {
			d := config.Default()
			cfg = &d
		}
		var err error
		var located ir.Problems
		if gw, err = o.Loader.planner.Plan(gw, *cfg); errors.As(err, &located) {
			for _, p := range located {
				diags.add(Error, p.File, p.Line, p.Operation, "%s", p.Message)
			}
		} else if err != nil {
			diags.errorf("gateway.yaml", "", "%v", err)
		} else {
			diags = append(diags, publish(&gw, specs, cfg.APIDescription)...)
		}
	}
	ov.remap(diags)
	diags.Sort()
	return gw, diags
}

// Compile is CompileFiles on the spec files of dir, read now.
func Compile(dir string, o Options) (ir.Gateway, Diagnostics) {
	files, err := ReadDir(dir)
	if err != nil {
		return ir.Gateway{}, Diagnostics{{Severity: Error, File: dir, Message: err.Error()}}
	}
	return CompileFiles(dir, files, o)
}

// Policy is what gateway.yaml says about specs, which the specs themselves do not carry:
// where backends may point, and which basePaths services may share. compile, lint and every
// push and reload of the control plane check it.
type Policy struct {
	Backend        func(host string) error // gateway.yaml backends; nil allows any host
	SharedPrefixes []string
	PathOverrides  []config.PathOverride
	// TLSProfiles are gateway.yaml's backendTLS profiles, which x-specgate backendTLS names.
	TLSProfiles []string
}

// PolicyOf is the Policy that gateway.yaml cfg sets.
func PolicyOf(cfg config.Gateway) Policy {
	return Policy{Backend: cfg.Backends.Check, SharedPrefixes: cfg.SharedPrefixes, PathOverrides: cfg.PathOverrides,
		TLSProfiles: slices.Sorted(maps.Keys(cfg.BackendTLS))}
}

// Check applies the policy to a built gateway.
func (p Policy) Check(gw ir.Gateway) Diagnostics {
	var diags Diagnostics
	if p.Backend != nil {
		for _, s := range gw.Services {
			if err := p.Backend(s.Backend.Host); err != nil {
				diags.add(Error, s.File, s.Backend.Line, "", "x-specgate.backend: %v", err)
			}
		}
	}
	for _, s := range gw.Services {
		if name := s.Backend.TLSProfile; name != "" && !slices.Contains(p.TLSProfiles, name) {
			diags.add(Error, s.File, s.Backend.Line, "", "x-specgate.backendTLS.profile %q: gateway.yaml backendTLS has no such profile%s", name, config.DidYouMean(name, p.TLSProfiles))
		}
	}
	diags = append(diags, checkOwnership(gw, p.SharedPrefixes)...)
	return append(diags, checkRootShadows(gw, p.PathOverrides)...)
}

// Output is what the gateway serves for one set of specs: the planned model, its Envoy
// resources and their version.
type Output struct {
	Model     ir.Gateway
	Resources *translate.Resources
	Version   string
}

// ErrRefused is CompileEnvoy's error when the specs have errors (the diagnostics say which).
var ErrRefused = errors.New("specs refused")

// CompileEnvoy is the one path from spec files to what Envoy is served: CompileFiles (load,
// build, the gateway's policy, the plan of o.Gateway), translation with to, and the version.
// The control plane's every push and reload, specgate compile and the benchmarks go through
// it; the golden tests take its two halves apart.
func CompileEnvoy(dir string, files map[string][]byte, o Options, to translate.Options) (*Output, Diagnostics, error) {
	gw, diags := CompileFiles(dir, files, o)
	if diags.HasErrors() {
		return nil, diags, ErrRefused
	}
	res, err := translate.Translate(gw, to)
	if err != nil {
		return nil, diags, err
	}
	version, err := res.Version()
	if err != nil {
		return nil, diags, err
	}
	return &Output{Model: gw, Resources: res, Version: version}, diags, nil
}
