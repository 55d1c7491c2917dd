package specstore

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/specgate/specgate/test/harness/specgen"
	"github.com/specgate/specgate/test/harness/testkube"
)

// BenchmarkCommitOneOfHundred: a change set that changes one file of a 100-service, 20 MB
// fleet, committed (stored and made live) and then read back by another replica, on each
// backend side by side. make bench prints it with the fleet's figures.
func BenchmarkCommitOneOfHundred(b *testing.B) {
	fleet := map[string][]byte{}
	for s := range 100 {
		fleet[fmt.Sprintf("svc-%03d.yaml", s)] = specgen.Documented(s, 20, 200<<10)
	}
	for _, backend := range []string{"dir", "kubernetes"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			var writer, reader Store
			switch backend {
			case "dir":
				d, err := OpenDir(b.TempDir(), 0)
				if err != nil {
					b.Fatal(err)
				}
				writer, reader = d, d
			case "kubernetes":
				c := testkube.Shared(b)
				ns := c.Namespace(b)
				w, _ := NewKube(c.Client(b), KubeOptions{Namespace: ns})
				r, _ := NewKube(c.Client(b), KubeOptions{Namespace: ns})
				writer, reader = w, r
			}
			files := maps.Clone(fleet)
			if _, err := writer.Commit(ctx, files, Meta{}, 0); err != nil {
				b.Fatal(err)
			}
			if _, _, err := reader.Live(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				files["svc-042.yaml"] = fmt.Appendf(fleet["svc-042.yaml"], "\n# change %d\n", i)
				if _, err := writer.Commit(ctx, files, Meta{}, int64(i+1)); err != nil {
					b.Fatal(err)
				}
				if rev, _, err := reader.Live(ctx); err != nil || rev.Number != int64(i+2) {
					b.Fatalf("read back: %d %v", rev.Number, err)
				}
			}
		})
	}
}
