package specgate_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
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
