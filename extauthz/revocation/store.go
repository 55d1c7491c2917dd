package revocation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/specgate/specgate/internal/redisurl"
)

// ErrUnavailable wraps a store failure: the revocation was not recorded.
var ErrUnavailable = errors.New("revocation store unavailable")

// ErrUncertain: the store was asked but did not answer (a timeout, a lost connection), so the
// revocation may or may not be stored. Revoking again is harmless.
var ErrUncertain = errors.New("revocation store did not answer")

// ErrNotReplicated: the revocation is stored on the Redis primary and published to every
// replica of authz, but no Redis replica confirmed it in time, so a failover now could lose
// it. Revoking again is harmless.
var ErrNotReplicated = errors.New("revocation stored on the Redis primary but not confirmed by a Redis replica")

// Store keeps revocations durably and tells every replica about them.
type Store interface {
	// Add records e; it returns only after the write is durable.
	Add(ctx context.Context, e Entry) error
	// Sync fills set with every live entry, then keeps it current (entries added by other
	// replicas, a full reload after any reconnect) until ctx ends.
	Sync(ctx context.Context, set *Set) error
	// Durable is false for the in-memory store.
	Durable() bool
	Close() error
}

// Open picks the store named by gateway.yaml's revocation.store: a Redis URL (one server, a
// cluster or Sentinel),
// file:///path (or file://relative/path), or memory (tests only). Unset is an error: a
// revocation the API accepted must not come undone when the process restarts.
func Open(store string, log *slog.Logger) (Store, error) {
	switch {
	case store == "":
		return nil, errors.New("revocation.store is not set: use redis://host:port/db (shared by replicas) or file:///path (one replica); " +
			"memory keeps revocations only until a restart")
	case store == "memory":
		log.Warn("revocation.store is memory: revocations are lost on restart and not shared between replicas")
		return memoryStore{}, nil
	case redisurl.IsRedis(store):
		return NewRedis(store, log)
	case strings.HasPrefix(store, "file://"):
		u, err := url.Parse(store)
		if err != nil {
			return nil, fmt.Errorf("revocation store %q: %w", store, err)
		}
		path := u.Host + u.Path // file://rel/path and file:///abs/path
		if path == "" {
			return nil, fmt.Errorf("revocation store %q: no path", store)
		}
		return OpenFile(path)
	}
	return nil, errors.New("revocation store: must be a Redis URL (redis://, rediss://, redis+cluster://, redis+sentinel://), file:// or memory")
}

type memoryStore struct{}

func (memoryStore) Add(context.Context, Entry) error { return nil }
func (memoryStore) Durable() bool                    { return false }
func (memoryStore) Close() error                     { return nil }
func (memoryStore) Sync(ctx context.Context, set *Set) error {
	set.Replace(nil, time.Now())
	<-ctx.Done()
	return nil
}

// List is the revocation list of one replica: the in-memory set the hot path reads and the
// store that makes it durable and shared.
type List struct {
	Set         *Set
	Store       Store
	MaxLifetime time.Duration
	Now         func() time.Time
}

// Slack keeps an entry past MaxLifetime for the verifier's clock leeway on exp and iat.
const Slack = time.Minute

// Revoke records key as revoked at `at` and applies it locally. The entry lives as long as
// the longest token it can concern: one issued before `at` expires by at+MaxLifetime.
func (l *List) Revoke(ctx context.Context, key string, at time.Time) (Entry, error) {
	e := Entry{Key: key, At: at.UTC(), Expires: at.Add(l.MaxLifetime + Slack).UTC()}
	if !e.Expires.After(l.Now()) {
		return e, nil // every token it could concern has expired already
	}
	return e, l.put(ctx, e)
}

// NewAPIKey makes an API key for grant that works until expires, stores it (its hash) and
// applies it locally. The key is returned once: only its hash is kept.
func (l *List) NewAPIKey(ctx context.Context, grant Grant, expires time.Time) (string, Entry, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Entry{}, err
	}
	key := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	e := Entry{Key: APIKeyKey(key), At: l.Now().UTC(), Expires: expires.UTC(), Grant: &grant}
	return key, e, l.put(ctx, e)
}

// RevokeAPIKey refuses the API key of entry e from now on, everywhere.
func (l *List) RevokeAPIKey(ctx context.Context, e Entry) (Entry, error) {
	e.Revoked = true
	return e, l.put(ctx, e)
}

// APIKeyPrefix starts every API key, so that a key found in a log or a repository is
// recognisable (secret scanners match such prefixes).
const APIKeyPrefix = "sgk_"

// put stores e and applies it locally, with Revoke's error meanings.
func (l *List) put(ctx context.Context, e Entry) error {
	if err := l.Store.Add(ctx, e); errors.Is(err, ErrNotReplicated) {
		l.Set.Add(e, l.Now()) // in force here and on every replica that got it published
		return err
	} else if errors.Is(err, ErrUncertain) {
		return err
	} else if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.Set.Add(e, l.Now())
	return nil
}

// Run keeps the set current and expires entries until ctx ends.
func (l *List) Run(ctx context.Context, sweep time.Duration, log *slog.Logger) {
	go func() {
		if err := l.Store.Sync(ctx, l.Set); err != nil && ctx.Err() == nil {
			log.Error("revocation sync stopped", "err", err)
		}
	}()
	t := time.NewTicker(sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := l.Set.Sweep(l.Now()); n > 0 {
				log.Info("revocations expired", "entries", n)
			}
		}
	}
}
