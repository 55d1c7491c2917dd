package revocation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSetSemantics(t *testing.T) {
	now := time.Now()
	s := NewSet(1000, 1e-6)
	var sum [32]byte
	sum[0] = 7
	s.Add(Entry{Key: JTIKey("j1"), At: now, Expires: now.Add(time.Hour)}, now)
	s.Add(Entry{Key: TokenKey(sum), At: now, Expires: now.Add(time.Hour)}, now)
	s.Add(Entry{Key: SubjectKey("bob"), At: now, Expires: now.Add(time.Hour)}, now)
	s.Add(Entry{Key: JTIKey("old"), At: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}, now) // already expired
	var other [32]byte
	cases := []struct {
		name     string
		jti, sub string
		sum      *[32]byte
		iat      time.Time
		want     bool
	}{
		{"revoked jti", "j1", "", &other, now, true},
		{"other jti", "j2", "", &sum, now, false}, // with a jti, the hash is not consulted
		{"hash without jti", "", "", &sum, now, true},
		{"other hash", "", "", &other, now, false},
		{"subject, iat before", "x", "bob", &other, now.Add(-time.Minute), true},
		{"subject, iat same second", "x", "bob", &other, now.Truncate(time.Second), true},
		{"subject, no iat", "x", "bob", &other, time.Time{}, true},
		{"subject, iat after", "x", "bob", &other, now.Add(2 * time.Second), false},
		{"expired entry ignored", "old", "", &other, now, false},
	}
	for _, c := range cases {
		if got := s.Revoked(c.jti, c.sub, c.sum, c.sum, c.iat); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// A later revocation of the subject moves the cut-off forward, an earlier one never back.
	s.Add(Entry{Key: SubjectKey("bob"), At: now.Add(-time.Hour), Expires: now.Add(time.Hour)}, now)
	if !s.Revoked("x", "bob", &other, &other, now.Add(-time.Minute)) {
		t.Error("earlier revocation moved the cut-off back")
	}
}

func TestSweepAndRebuild(t *testing.T) {
	now := time.Now()
	s := NewSet(100, 1e-6)
	for i := range 1000 { // ten times the design: the filter must grow, never saturate
		s.Add(Entry{Key: JTIKey(fmt.Sprint(i)), At: now, Expires: now.Add(time.Minute)}, now)
	}
	s.Sweep(now)
	if fp := s.EstimatedFPRate(); fp > 1e-4 {
		t.Fatalf("filter saturated: estimated fp %g, fill %g", fp, s.FillRatio())
	}
	for i := range 1000 {
		if _, ok := s.Lookup([]byte(JTIKey(fmt.Sprint(i)))); !ok {
			t.Fatalf("entry %d lost in the rebuild", i)
		}
	}
	if n := s.Sweep(now.Add(2 * time.Minute)); n != 1000 || s.Len() != 0 {
		t.Fatalf("swept %d, left %d", n, s.Len())
	}
	if s.FillRatio() != 0 {
		t.Fatalf("filter not rebuilt after expiry: fill %g", s.FillRatio())
	}
}

func TestReplaceKeepsLocalEntries(t *testing.T) {
	now := time.Now()
	s := NewSet(100, 1e-6)
	s.Add(Entry{Key: "jti:local", At: now, Expires: now.Add(time.Hour)}, now)
	s.Replace([]Entry{{Key: "jti:remote", At: now, Expires: now.Add(time.Hour)}}, now)
	for _, k := range []string{"jti:local", "jti:remote"} {
		if _, ok := s.Lookup([]byte(k)); !ok {
			t.Errorf("%s missing after Replace", k)
		}
	}
	if !s.Loaded() {
		t.Error("not marked loaded")
	}
}

func TestFileStoreTornLineAndCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	now := time.Now()
	st, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range []Entry{
		{Key: "jti:a", At: now, Expires: now.Add(time.Hour)},
		{Key: "jti:gone", At: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)},
	} {
		if err := st.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"key":"jti:torn","at":"20`) // a crash mid-write
	f.Close()
	st, err = OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := readFile(path)
	if err != nil || len(entries) != 1 || entries[0].Key != "jti:a" {
		t.Fatalf("after compaction: %v %v", entries, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
}

// Open refuses an unset store: a revocation the API accepted must survive a restart.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for store, ok := range map[string]bool{
		"memory": true, "redis://127.0.0.1:1/0": true, "file://" + dir + "/x.jsonl": true,
		"": false, "memcached://x": false, "file://": false,
	} {
		st, err := Open(store, slogDiscard())
		if (err == nil) != ok {
			t.Errorf("%q: %v", store, err)
		}
		if st != nil {
			st.Close()
		}
	}
}

// A mass revocation runs through several overlay folds while readers look up what was already
// added: no added key is ever missed, before, during or after a fold.
func TestMassRevocationThroughFoldsMissesNothing(t *testing.T) {
	now := time.Now()
	s := NewSet(3_000, 1e-7) // overlay of 3,000 keys: 10,000 additions fold three times
	const n = 10_000
	var added atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var misses atomic.Int64
	for r := range 4 {
		wg.Go(func() {
			for i := r; ; i += 7 {
				select {
				case <-stop:
					return
				default:
				}
				hi := added.Load()
				if hi == 0 {
					continue
				}
				if _, ok := s.Lookup([]byte(JTIKey(fmt.Sprint("mass-", int64(i)%hi)))); !ok {
					misses.Add(1)
				}
			}
		})
	}
	for i := range n {
		s.Add(Entry{Key: JTIKey(fmt.Sprint("mass-", i)), At: now, Expires: now.Add(time.Hour)}, now)
		added.Store(int64(i + 1))
	}
	close(stop)
	wg.Wait()
	if m := misses.Load(); m != 0 {
		t.Fatalf("%d lookups missed a revoked key", m)
	}
	for i := range n {
		if _, ok := s.Lookup([]byte(JTIKey(fmt.Sprint("mass-", i)))); !ok {
			t.Fatalf("key %d missed after the folds", i)
		}
	}
	if _, ok := s.Lookup([]byte(JTIKey("never-revoked"))); ok {
		t.Fatal("a key never added was found")
	}
}

// The plugin's feed: a reader that asks with the epoch and seq of its last answer gets only
// the entries written since; any other reader (first ask, another replica's numbering, fallen
// behind the log, after a reload) gets the whole set.
func TestChanges(t *testing.T) {
	now := time.Now()
	s := NewSet(100, 0.01)
	s.Replace([]Entry{{Key: JTIKey("a"), At: now, Expires: now.Add(time.Hour)}}, now)
	all := func(Entry) bool { return true }
	keys := func(es []Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Key)
		}
		slices.Sort(out)
		return out
	}

	es, epoch, seq, full := s.Changes(0, 0, all)
	if !full || !slices.Equal(keys(es), []string{"jti:a"}) {
		t.Fatalf("first ask: %v full=%v", keys(es), full)
	}
	if es, _, next, full := s.Changes(epoch, seq, all); full || len(es) != 0 || next != seq {
		t.Fatalf("nothing new: %v full=%v seq %d→%d", keys(es), full, seq, next)
	}
	s.Add(Entry{Key: SubjectKey("bob"), At: now, Expires: now.Add(time.Hour)}, now)
	s.Add(Entry{Key: JTIKey("b"), At: now, Expires: now.Add(time.Hour)}, now)
	es, _, next, full := s.Changes(epoch, seq, func(e Entry) bool { return e.Key != JTIKey("b") })
	if full || !slices.Equal(keys(es), []string{"sub:bob"}) || next != seq+2 {
		t.Fatalf("delta: %v full=%v next %d", keys(es), full, next)
	}
	if _, _, _, full := s.Changes(epoch+1, next, all); !full {
		t.Error("another epoch's seq was taken for this set's")
	}
	for i := range maxLog + 1 {
		s.Add(Entry{Key: JTIKey(fmt.Sprint("x", i)), At: now, Expires: now.Add(time.Hour)}, now)
	}
	if es, _, _, full := s.Changes(epoch, next, all); !full || len(es) != maxLog+4 {
		t.Errorf("a reader behind the log: %d entries, full=%v", len(es), full)
	}
	_, _, last, _ := s.Changes(epoch, 0, all)
	s.Replace(nil, now)
	if es, _, _, full := s.Changes(epoch, last, all); !full || len(es) != maxLog+4 {
		t.Errorf("after a reload: %d entries, full=%v", len(es), full)
	}
}
