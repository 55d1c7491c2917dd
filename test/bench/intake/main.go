// Command intake measures spec intake (make bench-intake, and part of make bench): specgate
// lint and specgate compile on real public descriptions and on synthetic fleets, each beside
// `envoy --mode validate` of the bootstrap it compiled, in alternating rounds. It prints one
// Markdown table of medians: wall time, CPU time and peak RSS of each process, and the ratio
// of compile to Envoy's validate (goal ≤ 0.5). Each command is a separate process, so RSS is
// its own; nothing listens on the network.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/specgate/specgate/test/harness/realspecs"
	"github.com/specgate/specgate/test/harness/specgen"
)

// run is one measured process.
type run struct {
	wall, cpu time.Duration
	rssMB     float64
}

func measure(name string, args ...string) (run, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := run{wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.rssMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	if err != nil {
		return r, fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

type set struct {
	name, what string
	write      func(dir string) error
}

func main() {
	specgate := flag.String("specgate", "bin/specgate", "specgate binary")
	envoy := flag.String("envoy", os.Getenv("ENVOY_BIN"), "envoy binary")
	rounds := flag.Int("rounds", 3, "alternating rounds; medians are reported")
	flag.Parse()
	if *envoy == "" {
		fail(fmt.Errorf("-envoy or ENVOY_BIN is required"))
	}
	tmp, err := os.MkdirTemp("", "specgate-intake-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)

	// A name, not 127.0.0.1: compile applies the default backend policy, which refuses loopback.
	const backend = "http://backend.bench.internal:8080"
	sets := []set{
		{"github", "GitHub REST (3.0.3, 1,223 operations, 13 MB JSON)", func(d string) error { return realspecs.Write(d, backend, realspecs.GitHub) }},
		{"real", "GitHub + OpenAI + Anthropic + Cohere (1,631 routes)", func(d string) error { return realspecs.Write(d, backend, realspecs.All...) }},
		{"fleet-26k", "synthetic: 100 specs × 260 operations", func(d string) error { return specgen.Write(d, specgen.Fleet(100, 260)) }},
		{"file-26k", "synthetic: 1 spec of 26,000 operations (21 MB YAML)", func(d string) error { return specgen.Write(d, specgen.Fleet(1, 26000)) }},
	}
	type row struct {
		set                 set
		lint, comp, validat []run
	}
	rows := make([]row, len(sets))
	for i, s := range sets {
		dir := filepath.Join(tmp, s.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fail(err)
		}
		if err := s.write(dir); err != nil {
			fail(err)
		}
		rows[i].set = s
	}
	for r := range *rounds {
		for i := range rows {
			s := rows[i].set
			fmt.Fprintf(os.Stderr, "intake: round %d/%d %s\n", r+1, *rounds, s.name)
			dir := filepath.Join(tmp, s.name)
			boot := filepath.Join(tmp, s.name+".bootstrap.yaml")
			steps := []struct {
				into *[]run
				cmd  []string
			}{
				{&rows[i].lint, []string{*specgate, "lint", "--specs", dir}},
				{&rows[i].comp, []string{*specgate, "compile", "--specs", dir, "--format", "bootstrap", "-o", boot}},
				{&rows[i].validat, []string{*envoy, "--mode", "validate", "-c", boot, "--log-level", "error"}},
			}
			for _, st := range steps {
				m, err := measure(st.cmd[0], st.cmd[1:]...)
				if err != nil {
					fail(err)
				}
				*st.into = append(*st.into, m)
			}
		}
	}
	fmt.Printf("| set | what | lint wall / CPU / RSS | compile wall / CPU / RSS | envoy --mode validate wall / CPU / RSS | compile ÷ validate (wall) |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		l, c, v := median(r.lint), median(r.comp), median(r.validat)
		fmt.Printf("| %s | %s | %s | %s | %s | %.2f× |\n", r.set.name, r.set.what, l, c, v, c.wall.Seconds()/v.wall.Seconds())
	}
	fmt.Printf("\nMedians of %d alternating rounds; RSS is each process's peak (getrusage ru_maxrss).\n", *rounds)
}

func (r run) String() string {
	return fmt.Sprintf("%s / %s / %.0f MB", r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), r.rssMB)
}

// median takes each figure's median on its own.
func median(rs []run) run {
	pick := func(f func(run) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return run{
		wall:  time.Duration(pick(func(r run) float64 { return float64(r.wall) })),
		cpu:   time.Duration(pick(func(r run) float64 { return float64(r.cpu) })),
		rssMB: pick(func(r run) float64 { return r.rssMB }),
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "intake:", err)
	os.Exit(1)
}
