// Package specstore keeps the control plane's spec sets: every OpenAPI file of the fleet, as
// numbered revisions that become live one whole set at a time, with the older ones kept for
// rollback. Two backends implement Store: a directory (local runs and tests) and Kubernetes API
// objects (every control-plane replica of a cluster watches the same ones).
//
// A revision is content-addressed underneath: each file's bytes are stored once under their
// SHA-256, and a revision is a small manifest naming the files of the set by digest. Making a
// set live is one compare-and-swap of one small record, so a reader sees the old set or the new
// one, never a mix, and a writer that dies half-way leaves the old set live.
package specstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Store is where the spec sets live.
type Store interface {
	// Live returns the live revision and its files. An empty store answers a zero Revision
	// and no files.
	Live(ctx context.Context) (Revision, map[string][]byte, error)
	// Commit makes files the live set as revision expect+1, if the live revision is still
	// expect (0: the store is empty); otherwise it returns a *ConflictError and changes
	// nothing.
	Commit(ctx context.Context, files map[string][]byte, meta Meta, expect int64) (Revision, error)
	// History lists the kept revisions, newest first.
	History(ctx context.Context) ([]Revision, error)
	// Files returns the files of a kept revision (ErrUnknownRevision if it is not kept).
	Files(ctx context.Context, revision int64) (map[string][]byte, error)
	// Watch calls changed whenever the live revision may have moved (another replica
	// committed, or files were edited in place), until ctx ends.
	Watch(ctx context.Context, changed func()) error
}

// Meta says why a revision was made; it is kept in the history.
type Meta struct {
	Reason  string `json:"reason,omitempty"`
	Author  string `json:"author,omitempty"`
	Summary string `json:"summary,omitempty"` // the change, in a line (the control plane writes it)
}

// Revision is one set of files that was live.
type Revision struct {
	Number int64     `json:"revision"`
	Digest string    `json:"digest"` // of the whole set (SetDigest)
	Time   time.Time `json:"time"`
	Meta
	// Files maps each file name to the SHA-256 (hex) of its content.
	Files map[string]string `json:"files"`
	// Bytes is the set's total size, uncompressed.
	Bytes int64 `json:"bytes"`
}

// ConflictError is a commit whose expected revision is no longer the live one.
type ConflictError struct{ Expected, Live int64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the live version is %d, not %d: another change was applied meanwhile; review the new diff and push again", e.Live, e.Expected)
}

// ErrUnknownRevision is a revision the store does not keep (never made, or pruned).
var ErrUnknownRevision = errors.New("no such revision in the kept history")

// Digest is the SHA-256 of one file's content, in hex.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SetDigest identifies a set of files by names and contents, whatever the order.
func SetDigest(files map[string]string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s\x00%s\n", name, files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FilesDigest is SetDigest of files by content: the Digest of the set they would make.
func FilesDigest(files map[string][]byte) string {
	sums := make(map[string]string, len(files))
	for name, b := range files {
		sums[name] = Digest(b)
	}
	return SetDigest(sums)
}

// newRevision is the record of files as revision n.
func newRevision(n int64, files map[string][]byte, meta Meta, now time.Time) Revision {
	r := Revision{Number: n, Time: now.UTC().Truncate(time.Millisecond), Meta: meta, Files: make(map[string]string, len(files))}
	for name, b := range files {
		r.Files[name] = Digest(b)
		r.Bytes += int64(len(b))
	}
	r.Digest = SetDigest(r.Files)
	return r
}

// check refuses a record that names a file outside a flat set or a digest that is not one:
// records are read back from disk and from the API server.
func (r Revision) check() error {
	for name, sum := range r.Files {
		if !ValidFileName(name) {
			return fmt.Errorf("revision %d names file %q: not a plain spec file name", r.Number, name)
		}
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			return fmt.Errorf("revision %d: %s: %q is not a SHA-256 digest", r.Number, name, sum)
		}
	}
	return nil
}

// checkNames refuses a file name that is not a plain spec file name: a set is flat.
func checkNames(files map[string][]byte) error {
	for name := range files {
		if !ValidFileName(name) {
			return fmt.Errorf("spec file name %q: want a plain name ending in .yaml, .yml or .json, without / or a leading dot", name)
		}
	}
	return nil
}

// ValidFileName reports whether name can name a file of a set.
func ValidFileName(name string) bool {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return len(name) > len(filepath.Ext(name))
	}
	return false
}
