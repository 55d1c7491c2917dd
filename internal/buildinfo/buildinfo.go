// Package buildinfo says which build of specgate is running: the module version and the VCS
// revision the go command stamped into the binary (go build in a git checkout), for
// specgate version, every role's /healthz and the specgate_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Info is one build.
type Info struct {
	Version   string `json:"version"`  // the module version, "(devel)" for a local build
	Revision  string `json:"revision"` // the VCS revision, "unknown" when not stamped
	Modified  bool   `json:"modified"` // built from a tree with uncommitted changes
	GoVersion string `json:"goVersion"`
}

// Get is this binary's build.
var Get = sync.OnceValue(func() Info {
	i := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if v := bi.Main.Version; v != "" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
})

// String is the build in one line: version, revision (with +modified) and Go version.
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += "+modified"
	}
	return i.Version + " (revision " + rev + ", " + i.GoVersion + ")"
}

// Collectors are what every role's registry holds besides its own metrics: the Go runtime's,
// the process's, and specgate_build_info.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo()}
}

// buildInfo is specgate_build_info, 1 with the build as labels.
func buildInfo() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "specgate_build_info",
		Help: "The running build: 1, with its module version, VCS revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision,
			"modified": map[bool]string{true: "true", false: "false"}[i.Modified], "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
