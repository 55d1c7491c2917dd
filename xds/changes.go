package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/xds/specstore"
)

// ChangeSet is one change to the spec set, compiled and validated as a whole, then applied
// all or nothing as one new revision.
type ChangeSet struct {
	// Sync makes Specs the whole set: files not in it are removed. Otherwise each spec
	// replaces the file of the service it declares (or is added as <service>.yaml), and
	// Delete removes services.
	Sync   bool       `json:"sync,omitempty"`
	Specs  []SpecFile `json:"specs,omitempty"`
	Delete []string   `json:"delete,omitempty"`
	// IfVersion, when set, refuses the change with a conflict unless the live revision is
	// still this one: what a reviewer approved is what gets applied.
	IfVersion *int64 `json:"ifVersion,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Author    string `json:"author,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
	// AllowRisky applies a change whose security diff widens access (a ! line); without it
	// such a change is refused with its diff.
	AllowRisky bool `json:"allowRisky,omitempty"`
}

// SpecFile is one file of a change set.
type SpecFile struct {
	Name    string `json:"name"`
	Content []byte `json:"content"` // base64 in JSON: the bytes arrive exactly as sent
	// Service, when set, is the service the file must declare (PUT /v1/specs/{service}).
	Service string `json:"-"`
}

// PushResult is the answer to a change set, push, delete or rollback.
type PushResult struct {
	// Version is the Envoy configuration's version (a content hash) that the set compiles to.
	Version string `json:"version"`
	// Revision is the store revision that is live after the call (for a dry run: the live
	// one); LiveRevision the one the change was diffed against, to pass as --if-version.
	Revision     int64                `json:"revision"`
	LiveRevision int64                `json:"liveRevision"`
	Applied      bool                 `json:"applied"`
	Unchanged    bool                 `json:"unchanged,omitempty"` // the set is the live one already
	Changes      []compiler.Change    `json:"changes"`
	Diagnostics  compiler.Diagnostics `json:"diagnostics,omitempty"` // warnings
}

// RefusedError is a change that did not compile, that Envoy would reject, or that widens
// access without AllowRisky; nothing changed.
type RefusedError struct {
	Diagnostics compiler.Diagnostics `json:"diagnostics,omitempty"`
	Changes     []compiler.Change    `json:"changes,omitempty"` // a risky change refused
	Lines       []string             `json:"lines,omitempty"`   // the lint lines of Diagnostics
	Reason      string               `json:"error"`
}

func (e *RefusedError) Error() string {
	if err := e.Diagnostics.Err(); err != nil {
		return err.Error()
	}
	return e.Reason
}

func refusal(diags compiler.Diagnostics, err error) *RefusedError {
	r := &RefusedError{Diagnostics: diags, Reason: err.Error()}
	for _, d := range diags {
		r.Lines = append(r.Lines, d.String())
	}
	return r
}

var errNotFound = errors.New("no such service")

// Apply takes a change set: the resulting set is compiled and checked whole, diffed against
// the live one, and committed to the store as one revision (unless DryRun). Every replica then
// serves it; this one at once.
func (s *Server) Apply(ctx context.Context, cs ChangeSet) (PushResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, reloadErr := s.reloadLocked(ctx, "change")
	live := s.storeRev
	if cs.IfVersion != nil && *cs.IfVersion != live {
		return PushResult{}, &specstore.ConflictError{Expected: *cs.IfVersion, Live: live}
	}
	cur := s.current.Load()
	if served := int64(0); !cs.Sync && reloadErr != nil && !errors.Is(reloadErr, errEmptyStore) {
		if cur != nil {
			served = cur.revision.Number
		}
		if served != live {
			// The change would be built on the last set that compiled here and silently undo
			// what the live one changed since.
			return PushResult{}, &RefusedError{Reason: fmt.Sprintf("live version %d does not load on this control plane (%v); it serves version %d: apply a whole set with --sync, or fix the cause", live, reloadErr, served)}
		}
	}
	old := ir.Gateway{}
	base := map[string][]byte{}
	if cur != nil {
		old, base = cur.gw, maps.Clone(cur.files)
	}
	cs.Specs = slices.Clone(cs.Specs)
	files, err := s.changedFiles(base, cs)
	if err != nil {
		return PushResult{}, err
	}
	bs, diags, err := s.build(files)
	if err != nil {
		return PushResult{}, refusal(diags, err)
	}
	for _, f := range cs.Specs {
		if f.Service != "" && !slices.ContainsFunc(bs.gw.Services, func(svc ir.Service) bool { return svc.File == f.Name && svc.Name == f.Service }) {
			return PushResult{}, refusal(diags, fmt.Errorf("the pushed spec does not declare service %q (set x-specgate.service or info.title)", f.Service))
		}
	}
	res := PushResult{Version: bs.version, Revision: live, LiveRevision: live, Changes: compiler.Diff(old, bs.gw), Diagnostics: diags}
	bs.digest = specstore.FilesDigest(files)
	if cur != nil && cur.digest == bs.digest && cur.revision.Number == live {
		res.Unchanged = true
		return res, nil
	}
	if cs.DryRun {
		return res, nil
	}
	if !cs.AllowRisky && slices.ContainsFunc(res.Changes, func(c compiler.Change) bool { return c.Risk }) {
		return PushResult{}, &RefusedError{Changes: res.Changes, Reason: "the change widens access (the ! lines); apply it with allowRisky=true (specgate push --allow-risky) once reviewed"}
	}
	meta := specstore.Meta{Reason: cs.Reason, Author: cs.Author, Summary: summarize(res.Changes)}
	rev, err := s.store.Commit(ctx, files, meta, live)
	if err != nil {
		return PushResult{}, err
	}
	s.storeRev, bs.revision = rev.Number, rev
	if _, err := s.serve(bs); err != nil {
		return PushResult{}, err
	}
	res.Applied, res.Revision = true, rev.Number
	return res, nil
}

// changedFiles applies cs to the live files.
func (s *Server) changedFiles(files map[string][]byte, cs ChangeSet) (map[string][]byte, error) {
	if cs.Sync {
		if len(cs.Delete) > 0 {
			return nil, &RefusedError{Reason: "a sync names the whole set: delete nothing, leave the file out"}
		}
		if len(cs.Specs) == 0 {
			return nil, &RefusedError{Reason: "a sync of no files would remove every service"}
		}
		files = map[string][]byte{}
	}
	seen := map[string]bool{}
	for i := range cs.Specs {
		f := &cs.Specs[i] // its Name is resolved here, for Apply's check that follows
		if !cs.Sync && f.Service == "" {
			svc, err := s.serviceOf(*f)
			if err != nil {
				return nil, err
			}
			f.Service = svc
		}
		if f.Service != "" {
			name, owner := s.fileOf(f.Service)
			if owner != "" && owner != f.Service {
				return nil, &RefusedError{Reason: fmt.Sprintf("file %s already holds service %s", name, owner)}
			}
			f.Name = name
		}
		if !specstore.ValidFileName(f.Name) {
			return nil, &RefusedError{Reason: fmt.Sprintf("spec file name %q: want a plain name ending in .yaml, .yml or .json", f.Name)}
		}
		if seen[f.Name] {
			return nil, &RefusedError{Reason: fmt.Sprintf("%s: given twice in one change set", f.Name)}
		}
		seen[f.Name], files[f.Name] = true, f.Content
	}
	for _, service := range cs.Delete {
		name, owner := s.fileOf(service)
		if owner == "" {
			return nil, fmt.Errorf("delete %s: %w", service, errNotFound)
		}
		delete(files, name)
	}
	return files, nil
}

// serviceOf compiles a pushed file alone to learn which service it declares. The loader keeps
// the parse for the compilation of the whole set that follows.
func (s *Server) serviceOf(f SpecFile) (string, error) {
	name := cmp.Or(f.Name, "pushed.yaml")
	gw, diags := compiler.CompileFiles(s.opts.SpecDir, map[string][]byte{name: f.Content}, compiler.Options{Loader: s.loader})
	if diags.HasErrors() {
		return "", refusal(diags, compiler.ErrRefused)
	}
	if len(gw.Services) != 1 {
		return "", &RefusedError{Reason: fmt.Sprintf("%s: declares %d services, want 1", name, len(gw.Services))}
	}
	return gw.Services[0].Name, nil
}

// fileOf returns the file holding service in the live version, or <service>.yaml for a new
// one, and the service that file holds now ("" if none).
func (s *Server) fileOf(service string) (file, owner string) {
	file = service + ".yaml"
	st := s.current.Load()
	if st == nil {
		return file, ""
	}
	if svc := st.service(service); svc != nil {
		return svc.File, service
	}
	for _, svc := range st.gw.Services {
		if svc.File == file {
			return file, svc.Name
		}
	}
	return file, ""
}

// PushOptions say how a push or delete of one service is taken.
type PushOptions struct {
	DryRun     bool
	AllowRisky bool   // see ChangeSet.AllowRisky
	IfVersion  *int64 // see ChangeSet.IfVersion
}

// Push replaces (or adds) the spec of one service: a change set of one file.
func (s *Server) Push(service string, spec []byte, o PushOptions) (PushResult, error) {
	return s.Apply(context.Background(), ChangeSet{Specs: []SpecFile{{Content: spec, Service: service}},
		DryRun: o.DryRun, AllowRisky: o.AllowRisky, IfVersion: o.IfVersion, Reason: "push " + service})
}

// Delete removes one service's spec: a change set of one removal.
func (s *Server) Delete(service string, o PushOptions) (PushResult, error) {
	return s.Apply(context.Background(), ChangeSet{Delete: []string{service},
		DryRun: o.DryRun, AllowRisky: o.AllowRisky, IfVersion: o.IfVersion, Reason: "delete " + service})
}

// Rollback makes a kept revision's set live again as a new revision; to 0 is the revision
// before the live one. It is a sync change set like any other: diffed, checked, and refused
// when it widens access without AllowRisky.
func (s *Server) Rollback(ctx context.Context, to int64, cs ChangeSet) (PushResult, error) {
	s.mu.Lock()
	if _, err := s.reloadLocked(ctx, "change"); err != nil {
		s.log.Warn("rollback: the live set does not load here", "err", err)
	}
	live := s.storeRev
	s.mu.Unlock()
	if cs.IfVersion != nil {
		live = *cs.IfVersion // "the version before" the one the caller saw; Apply checks it is live
	}
	if to == 0 {
		hist, err := s.store.History(ctx)
		if err != nil {
			return PushResult{}, err
		}
		for _, r := range hist {
			if r.Number < live {
				to = r.Number
				break
			}
		}
		if to == 0 {
			return PushResult{}, &RefusedError{Reason: fmt.Sprintf("no version before %d is kept", live)}
		}
	}
	files, err := s.store.Files(ctx, to)
	if err != nil {
		return PushResult{}, fmt.Errorf("rollback to %d: %w", to, err)
	}
	cs.Sync, cs.Delete, cs.Specs = true, nil, nil
	for _, name := range slices.Sorted(maps.Keys(files)) {
		cs.Specs = append(cs.Specs, SpecFile{Name: name, Content: files[name]})
	}
	cs.IfVersion = &live // the version chosen above is relative to this one
	cs.Reason = strings.TrimSuffix(fmt.Sprintf("rollback to %d: %s", to, cs.Reason), ": ")
	return s.Apply(ctx, cs)
}

// History lists the kept revisions, newest first.
func (s *Server) History(ctx context.Context) ([]specstore.Revision, error) {
	return s.store.History(ctx)
}

// summarize is the one line of a change that the history keeps.
func summarize(changes []compiler.Change) string {
	if len(changes) == 0 {
		return "no change to routing or policy"
	}
	var added, removed []string
	risky := 0
	for _, c := range changes {
		if c.Risk {
			risky++
		}
		switch {
		case c.Operation == "" && strings.HasPrefix(c.Message, "service added"):
			added = append(added, c.Service)
		case c.Operation == "" && strings.HasPrefix(c.Message, "service removed"):
			removed = append(removed, c.Service)
		}
	}
	out := fmt.Sprintf("%d changes, %d widen access", len(changes), risky)
	if len(added) > 0 {
		out += "; added " + strings.Join(added, ", ")
	}
	if len(removed) > 0 {
		out += "; removed " + strings.Join(removed, ", ")
	}
	return out
}
