package specgate_test

import (
	"bytes"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The repository holds sources, not build outputs: no tracked file is a compiled executable
// (a 58 MB benchmark binary was once committed at the root), and none outside testdata is
// larger than 5 MB.
func TestNoBinariesOrLargeFilesTracked(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (the test needs the repository's git)", err)
	}
	magic := map[string][]byte{"ELF": []byte("\x7fELF"), "Mach-O": {0xcf, 0xfa, 0xed, 0xfe}, "PE": []byte("MZ"), "Wasm": []byte("\x00asm")}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		f, err := os.Open(name)
		if err != nil {
			continue // deleted in the working tree
		}
		head := make([]byte, 4)
		n, _ := io.ReadFull(f, head)
		st, _ := f.Stat()
		f.Close()
		for kind, m := range magic {
			if n >= len(m) && bytes.HasPrefix(head, m) {
				t.Errorf("%s is a %s binary: build outputs belong in .gitignore", name, kind)
			}
		}
		if st != nil && st.Size() > 5<<20 && !strings.Contains(name, "testdata/") {
			t.Errorf("%s is %d MB: keep files over 5 MB out of the repository (fetch them into .tools)", name, st.Size()>>20)
		}
	}
}

// docs/architecture.md's package table runs from the bottom of the layering up. Each row's
// imports column names exactly the packages of this module that its packages import (go
// list, without tests), and each of those sits in an earlier row: no package imports one at
// or above its own layer, and no product package imports a harness under test/.
func TestArchitectureDocMatchesImports(t *testing.T) {
	const module = "github.com/specgate/specgate/"
	doc, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "\n## Packages\n")
	table, _, _ = strings.Cut(table, "\n## ")
	ticked := regexp.MustCompile("`([a-z0-9/]+)`")
	names := func(cell string) []string {
		var out []string
		for _, m := range ticked.FindAllStringSubmatch(cell, -1) {
			out = append(out, m[1])
		}
		return out
	}
	rowOf := map[string]int{} // package → its row, from 0 at the bottom
	var rows [][2][]string    // each row: its packages, its documented imports
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) != 3 {
			continue
		}
		pkgs := names(cells[0])
		for _, p := range pkgs {
			if _, dup := rowOf[p]; dup {
				t.Errorf("docs/architecture.md: %s has two rows", p)
			}
			rowOf[p] = len(rows)
		}
		rows = append(rows, [2][]string{pkgs, names(cells[2])})
	}
	if len(rows) < 10 {
		t.Fatalf("docs/architecture.md: found %d rows in the Packages table; has its layout changed?", len(rows))
	}

	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{.Name}} {{join .GoFiles ","}}, {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{} // every package with non-test files → its module imports
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, isMain, files := strings.TrimPrefix(f[0], module), f[1] == "main", f[2]
		if files == "," || pkg == strings.TrimSuffix(module, "/") {
			continue
		}
		var mine []string
		for _, imp := range f[3:] {
			if strings.HasPrefix(imp, module) {
				mine = append(mine, strings.TrimPrefix(imp, module))
			}
		}
		if _, listed := rowOf[pkg]; !listed {
			// Programs that import nothing of the module stand outside the layering, as do
			// packages of tests whose one other file is the package comment.
			if !(isMain || files == "doc.go,") || len(mine) > 0 {
				t.Errorf("%s is not in docs/architecture.md's Packages table", pkg)
			}
			continue
		}
		imports[pkg] = mine
	}
	for i, row := range rows {
		got := map[string]bool{}
		for _, p := range row[0] {
			if _, ok := imports[p]; !ok {
				t.Errorf("docs/architecture.md lists %s, which go list does not know (or which has only tests)", p)
			}
			for _, imp := range imports[p] {
				got[imp] = true
				if strings.HasPrefix(imp, "test/") && !strings.HasPrefix(p, "test/") {
					t.Errorf("%s (product) imports the harness %s", p, imp)
				}
				if r, ok := rowOf[imp]; !ok || r >= i {
					t.Errorf("%s imports %s, which is not in a row above it in docs/architecture.md", p, imp)
				}
			}
		}
		var want []string
		for _, imp := range row[1] {
			if _, isPkg := rowOf[imp]; isPkg || strings.Contains(imp, "/") {
				want = append(want, imp)
			}
		}
		gotList := slices.Sorted(maps.Keys(got))
		slices.Sort(want)
		if !slices.Equal(gotList, want) {
			t.Errorf("docs/architecture.md, row %v: imports column says %v, go list says %v", row[0], want, gotList)
		}
	}
}
