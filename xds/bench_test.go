package xds

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/config"
	"github.com/specgate/specgate/test/harness/specgen"
)

// BenchmarkSnapshotBuild is the whole candidate pipeline of a push: compile, translate,
// validate, hash and snapshot (without the optional envoy --mode validate).
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []struct{ services, ops int }{{100, 20}, {500, 20}} {
		b.Run(fmt.Sprintf("routes=%d", n.services*n.ops), func(b *testing.B) {
			s, err := New(Options{SpecDir: b.TempDir(), Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			files := specgen.Fleet(n.services, n.ops)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.build(files); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushOneOfHundred pushes a change to one of 100 specs of 100 operations (10,000
// routes) through the push API: compile, translate, snapshot, write, publish (goal < 300 ms).
// "cached" is the control plane as it runs, re-parsing, re-building and re-translating only
// the pushed file's service; "uncached" does all 100 each time, as before those caches.
func BenchmarkPushOneOfHundred(b *testing.B) {
	for _, cached := range []bool{true, false} {
		b.Run(map[bool]string{true: "cached", false: "uncached"}[cached], func(b *testing.B) {
			dir := b.TempDir()
			if err := specgen.Write(dir, specgen.Fleet(100, 100)); err != nil {
				b.Fatal(err)
			}
			s, err := New(Options{SpecDir: dir, Gateway: config.Default(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil || s.Version() == "" {
				b.Fatalf("initial compile: %v", err)
			}
			// Two versions of svc-042 that differ in one operation, pushed in turn.
			versions := [2][]byte{specgen.Service(42, 100), specgen.Service(42, 99)}
			i := 0
			for b.Loop() {
				if !cached {
					s.loader, s.routes = compiler.NewLoader(), translate.NewCache()
				}
				i++
				if _, err := s.Push("svc-42", versions[i%2], PushOptions{AllowRisky: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
