package translate

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/specgate/specgate/compiler/ir"
)

// A path group whose routes fail validation is never cached: the same input translated again
// is refused again, not served from the cache.
func TestCacheKeepsNoRefusedGroup(t *testing.T) {
	cache := NewCache()
	group := []ir.Route{{Name: "specgate.404:/a", Kind: ir.RouteNotFound, Path: "/a"}}
	builds := 0
	bad := func() []*routev3.Route { builds++; return []*routev3.Route{{Name: "bad"}} } // no match, no action
	for i := range 2 {
		opts := Options{Cache: cache}
		cache.begin(opts, ir.Settings{})
		tr := newTranslator(opts, ir.Gateway{})
		tr.groupRoutes(group, bad)
		cache.end([]*translator{tr})
		if tr.err == nil {
			t.Fatalf("translation %d: an invalid route was accepted", i+1)
		}
	}
	if builds != 2 {
		t.Errorf("the refused group was built %d times, want 2 (once per translation)", builds)
	}
}
