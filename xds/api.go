package xds

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/internal/atomicfile"
)

// PushResult is the answer to a push or delete.
type PushResult struct {
	Version     string               `json:"version"`
	Applied     bool                 `json:"applied"`
	Changes     []compiler.Change    `json:"changes"`
	Diagnostics compiler.Diagnostics `json:"diagnostics,omitempty"` // warnings
}

// RefusedError is a push that did not compile or that Envoy would reject; nothing changed.
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

// PushOptions say how a push or delete is taken.
type PushOptions struct {
	DryRun bool // only report what would change
	// RefuseRisky refuses a change whose security diff widens access (a ! line), so that
	// `specgate push` applies one only with --allow-risky.
	RefuseRisky bool
}

// Push replaces (or adds) the spec of one service. The candidate set of specs is compiled and
// validated first; only then is the file written (atomically) and the snapshot set.
func (s *Server) Push(service string, spec []byte, o PushOptions) (PushResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.currentFiles()
	if err != nil {
		return PushResult{}, err
	}
	name, owner := s.fileOf(service)
	if owner != "" && owner != service {
		return PushResult{}, &RefusedError{Reason: fmt.Sprintf("file %s already holds service %s", name, owner)}
	}
	files[name] = spec
	bs, diags, err := s.build(files)
	if err != nil {
		return PushResult{}, refusal(diags, err)
	}
	if !slices.ContainsFunc(bs.gw.Services, func(svc ir.Service) bool { return svc.File == name && svc.Name == service }) {
		return PushResult{}, refusal(diags, fmt.Errorf("the pushed spec does not declare service %q (set x-specgate.service or info.title)", service))
	}
	return s.commit(bs, diags, o, func() error { return atomicfile.WriteFile(filepath.Join(s.opts.SpecDir, name), spec, 0o644) })
}

// Delete removes one service's spec, under the same rules as Push.
func (s *Server) Delete(service string, o PushOptions) (PushResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, owner := s.fileOf(service)
	if owner == "" {
		return PushResult{}, errNotFound
	}
	files, err := s.currentFiles()
	if err != nil {
		return PushResult{}, err
	}
	delete(files, name)
	bs, diags, err := s.build(files)
	if err != nil {
		return PushResult{}, refusal(diags, err)
	}
	return s.commit(bs, diags, o, func() error { return os.Remove(filepath.Join(s.opts.SpecDir, name)) })
}

// commit writes the change to the directory, then serves it. A failed write serves nothing.
func (s *Server) commit(bs *builtState, diags compiler.Diagnostics, o PushOptions, write func() error) (PushResult, error) {
	res := PushResult{Version: bs.version, Diagnostics: diags}
	if cur := s.current.Load(); cur != nil {
		res.Changes = compiler.Diff(cur.gw, bs.gw)
	} else {
		res.Changes = compiler.Diff(ir.Gateway{}, bs.gw)
	}
	if o.DryRun {
		return res, nil
	}
	if o.RefuseRisky && slices.ContainsFunc(res.Changes, func(c compiler.Change) bool { return c.Risk }) {
		return PushResult{}, &RefusedError{Changes: res.Changes, Reason: "the change widens access (the ! lines); push it with --allow-risky (allowRisky=true) once reviewed"}
	}
	if err := write(); err != nil {
		return PushResult{}, fmt.Errorf("write spec directory: %w", err)
	}
	if err := s.publish(bs); err != nil {
		return PushResult{}, err
	}
	res.Applied = true
	return res, nil
}

var errNotFound = errors.New("no such service")

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

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	adminhttp.Probes(mux, func() (map[string]string, error) {
		if s.current.Load() == nil {
			return nil, errors.New("no good snapshot yet")
		}
		return map[string]string{"version": s.Version()}, nil
	})
	mux.Handle("GET /v1/specs", s.admin(s.listSpecs))
	mux.Handle("GET /v1/specs/{service}", s.admin(s.getSpec))
	mux.Handle("PUT /v1/specs/{service}", s.admin(s.putSpec))
	mux.Handle("DELETE /v1/specs/{service}", s.admin(s.deleteSpec))
	return mux
}

func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return adminhttp.RequireToken(s.opts.AdminToken, h)
}

func (s *Server) listSpecs(w http.ResponseWriter, _ *http.Request) {
	type entry struct {
		Service    string `json:"service"`
		File       string `json:"file"`
		Operations int    `json:"operations"`
	}
	out := struct {
		Version  string  `json:"version"`
		Services []entry `json:"services"`
	}{Version: s.Version(), Services: []entry{}}
	if st := s.current.Load(); st != nil {
		for _, svc := range st.gw.Services {
			out.Services = append(out.Services, entry{svc.Name, svc.File, len(svc.Operations)})
		}
	}
	writeJSON(w, 200, out)
}

func (s *Server) getSpec(w http.ResponseWriter, r *http.Request) {
	if st := s.current.Load(); st != nil {
		if svc := st.service(r.PathValue("service")); svc != nil {
			w.Header().Set("Content-Type", "application/yaml")
			_, _ = w.Write(st.files[svc.File])
			return
		}
	}
	writeJSON(w, 404, map[string]string{"error": errNotFound.Error()})
}

func (s *Server) putSpec(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	if !ir.ValidServiceName(service) {
		writeJSON(w, 400, map[string]string{"error": "service name must be 1-63 of [a-z0-9-]"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxSpecBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.metrics.pushes.WithLabelValues("refused").Inc()
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("spec larger than %d bytes", s.opts.MaxSpecBytes)})
			return
		}
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	res, err := s.Push(service, body, pushOptions(r))
	s.answer(w, res, err)
}

func (s *Server) deleteSpec(w http.ResponseWriter, r *http.Request) {
	res, err := s.Delete(r.PathValue("service"), pushOptions(r))
	s.answer(w, res, err)
}

// pushOptions reads ?dryRun=true and ?allowRisky=false (risky changes are taken unless the
// caller asks otherwise, as before the flag existed; specgate push asks).
func pushOptions(r *http.Request) PushOptions {
	q := r.URL.Query()
	return PushOptions{DryRun: q.Get("dryRun") == "true", RefuseRisky: q.Get("allowRisky") == "false"}
}

func (s *Server) answer(w http.ResponseWriter, res PushResult, err error) {
	var refused *RefusedError
	switch {
	case err == nil:
		if res.Applied {
			s.metrics.pushes.WithLabelValues("accepted").Inc()
		}
		if res.Changes == nil {
			res.Changes = []compiler.Change{}
		}
		writeJSON(w, 200, res)
	case errors.As(err, &refused):
		s.metrics.pushes.WithLabelValues("refused").Inc()
		s.log.Warn("push refused", "err", err)
		writeJSON(w, http.StatusUnprocessableEntity, refused)
	case errors.Is(err, errNotFound):
		writeJSON(w, 404, map[string]string{"error": err.Error()})
	default:
		s.metrics.pushes.WithLabelValues("error").Inc()
		s.log.Error("push failed", "err", err)
		writeJSON(w, 500, map[string]string{"error": err.Error()})
	}
}

var writeJSON = adminhttp.WriteJSON
