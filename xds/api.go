package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/ir"
	"github.com/specgate/specgate/internal/adminhttp"
	"github.com/specgate/specgate/xds/specstore"
)

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	adminhttp.Probes(mux, func() (map[string]string, error) {
		if s.current.Load() == nil {
			return nil, errors.New("no good snapshot yet")
		}
		return map[string]string{"version": s.Version()}, nil
	})
	mux.Handle("POST /v1/changes", s.admin(s.postChanges))
	mux.Handle("POST /v1/rollback", s.admin(s.postRollback))
	mux.Handle("GET /v1/history", s.admin(s.getHistory))
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
		Revision int64   `json:"revision"`
		Services []entry `json:"services"`
	}{Version: s.Version(), Revision: s.Revision(), Services: []entry{}}
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
		s.refuseBody(w, err, "spec", s.opts.MaxSpecBytes)
		return
	}
	o, err := pushOptions(r)
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	res, err := s.Push(service, body, o)
	s.answer(w, res, err)
}

func (s *Server) deleteSpec(w http.ResponseWriter, r *http.Request) {
	o, err := pushOptions(r)
	if err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	res, err := s.Delete(r.PathValue("service"), o)
	s.answer(w, res, err)
}

// pushOptions reads ?dryRun=true, ?allowRisky=true and ?ifVersion=N. A change that widens
// access is refused unless the caller says allowRisky=true.
func pushOptions(r *http.Request) (PushOptions, error) {
	q := r.URL.Query()
	o := PushOptions{DryRun: q.Get("dryRun") == "true", AllowRisky: q.Get("allowRisky") == "true"}
	if v := q.Get("ifVersion"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("ifVersion %q: want a revision number", v)
		}
		o.IfVersion = &n
	}
	return o, nil
}

// postChanges takes a ChangeSet as JSON.
func (s *Server) postChanges(w http.ResponseWriter, r *http.Request) {
	var cs ChangeSet
	if !s.readJSON(w, r, &cs) {
		return
	}
	res, err := s.Apply(r.Context(), cs)
	s.answer(w, res, err)
}

// RollbackRequest is the body of POST /v1/rollback: the ChangeSet fields that apply (ifVersion,
// reason, author, dryRun, allowRisky) and the revision to return to (0: the one before the
// live one).
type RollbackRequest struct {
	To int64 `json:"to,omitempty"`
	ChangeSet
}

func (s *Server) postRollback(w http.ResponseWriter, r *http.Request) {
	var req RollbackRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	res, err := s.Rollback(r.Context(), req.To, req.ChangeSet)
	s.answer(w, res, err)
}

// HistoryResult is the answer of GET /v1/history.
type HistoryResult struct {
	Live      int64                `json:"live"`
	Revisions []specstore.Revision `json:"revisions"`
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	revs, err := s.History(r.Context())
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, HistoryResult{Live: s.StoreRevision(), Revisions: append([]specstore.Revision{}, revs...)})
}

// readJSON decodes a request body of at most MaxChangeBytes, one request at a time; it answers
// the error itself.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	select {
	case s.reading <- struct{}{}:
		defer func() { <-s.reading }()
	case <-r.Context().Done():
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.opts.MaxChangeBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.refuseBody(w, err, "request", s.opts.MaxChangeBytes)
		return false
	}
	return true
}

// refuseBody answers a request whose body could not be read: 413 when it is over limit (what
// names it), 400 otherwise.
func (s *Server) refuseBody(w http.ResponseWriter, err error, what string, limit int64) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.metrics.pushes.WithLabelValues("refused").Inc()
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("%s larger than %d bytes", what, limit)})
		return
	}
	writeJSON(w, 400, map[string]string{"error": "request body: " + err.Error()})
}

func (s *Server) answer(w http.ResponseWriter, res PushResult, err error) {
	var (
		refused  *RefusedError
		conflict *specstore.ConflictError
	)
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
	case errors.As(err, &conflict):
		s.metrics.pushes.WithLabelValues("conflict").Inc()
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "expected": conflict.Expected, "live": conflict.Live})
	case errors.Is(err, specstore.ErrUnknownRevision):
		writeJSON(w, 404, map[string]string{"error": err.Error()})
	case errors.Is(err, errNotFound):
		writeJSON(w, 404, map[string]string{"error": err.Error()})
	default:
		s.metrics.pushes.WithLabelValues("error").Inc()
		s.log.Error("push failed", "err", err)
		writeJSON(w, 500, map[string]string{"error": err.Error()})
	}
}

var writeJSON = adminhttp.WriteJSON
