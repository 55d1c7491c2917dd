package validate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// Schemas holds the descriptions that routes name by hash (policy.ValidateSchema): those of
// the control plane's current snapshot and of the one before it, since an Envoy may still
// route by the older one while a push reaches it. A route naming a description not here yet
// waits for it (the processor's stream can be a moment behind Envoy's).
type Schemas struct {
	mu      sync.Mutex
	current map[string]*description
	prev    map[string]*description
	changed chan struct{} // closed and replaced at each Set
	set     bool          // Set was called once: ready
}

// NewSchemas is an empty store.
func NewSchemas() *Schemas { return &Schemas{changed: make(chan struct{})} }

// Set replaces the current descriptions with docs (hash → JSON). A document that does not
// parse fails the whole set: the live ones stay (the control plane compiled them from files
// that kin-openapi read, so this is a bug, not a user's mistake).
func (s *Schemas) Set(docs map[string][]byte) error {
	s.mu.Lock()
	known := maps.Clone(s.current)
	maps.Copy(known, s.prev)
	s.mu.Unlock()
	next := make(map[string]*description, len(docs))
	var errs []error
	for hash, b := range docs {
		if d, ok := known[hash]; ok {
			next[hash] = d
			continue
		}
		d, err := parse(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("description %s: %w", hash, err))
			continue
		}
		next[hash] = d
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prev, s.current = s.current, next
	s.set = true
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Ready reports whether a first set of descriptions arrived.
func (s *Schemas) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// Len is the number of current descriptions.
func (s *Schemas) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.current)
}

// get returns the description of hash, waiting for a Set that brings it until ctx ends.
func (s *Schemas) get(ctx context.Context, hash string) (*description, error) {
	for {
		s.mu.Lock()
		d, ok := s.current[hash]
		if !ok {
			d, ok = s.prev[hash]
		}
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return d, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("description %s: not received from the control plane: %w", hash, ctx.Err())
		}
	}
}

func parse(b []byte) (*description, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, err
	}
	d := &description{doc: doc, ops: map[opKey]*operation{}}
	if doc.IsOpenAPI31OrLater() {
		if d.compiler, err = newCompiler(b); err != nil {
			return nil, err
		}
	}
	return d, nil
}
