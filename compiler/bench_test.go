package compiler_test

import (
	"runtime"
	"testing"

	"github.com/specgate/specgate/compiler"
	"github.com/specgate/specgate/compiler/translate"
	"github.com/specgate/specgate/test/harness/realspecs"
	"github.com/specgate/specgate/test/harness/specgen"
)

func benchCompile(b *testing.B, services, ops int) {
	dir := b.TempDir()
	if err := specgen.Write(dir, specgen.Fleet(services, ops)); err != nil {
		b.Fatal(err)
	}
	benchCompileDir(b, dir)
}

// benchCompileDir measures the whole compile of dir: load, build, translate, hash.
func benchCompileDir(b *testing.B, dir string) {
	opts := translate.Options{}
	routes := 0
	var peak uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		gw, diags := compiler.Compile(dir, compiler.Options{})
		if err := diags.Err(); err != nil {
			b.Fatal(err)
		}
		res, err := translate.Translate(gw, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := res.Version(); err != nil {
			b.Fatal(err)
		}
		routes = 0
		for _, s := range gw.Services {
			routes += len(s.Operations)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ReportMetric(float64(routes), "routes")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkCompile2000 is 100 specs × 20 operations (goal < 300 ms).
func BenchmarkCompile2000(b *testing.B) { benchCompile(b, 100, 20) }

// BenchmarkCompile10000 is 500 specs × 20 operations (goal < 2 s).
func BenchmarkCompile10000(b *testing.B) { benchCompile(b, 500, 20) }

// BenchmarkCompile26000 is 100 specs × 260 operations (goal < 5 s, < 1 GB).
func BenchmarkCompile26000(b *testing.B) { benchCompile(b, 100, 260) }

// BenchmarkCompile26000OneFile is one spec of 26,000 operations (21 MB of YAML).
func BenchmarkCompile26000OneFile(b *testing.B) { benchCompile(b, 1, 26000) }

// BenchmarkCompileReal is the real descriptions of make specs: GitHub's alone (goal < 1 s,
// < 300 MB), then all four together.
func BenchmarkCompileReal(b *testing.B) {
	for _, set := range []struct {
		name string
		srcs []realspecs.Source
	}{{"github", []realspecs.Source{realspecs.GitHub}}, {"all", realspecs.All}} {
		b.Run(set.name, func(b *testing.B) {
			dir := b.TempDir()
			if err := realspecs.Write(dir, "http://127.0.0.1:8081", set.srcs...); err != nil {
				b.Fatal(err)
			}
			benchCompileDir(b, dir)
		})
	}
}
