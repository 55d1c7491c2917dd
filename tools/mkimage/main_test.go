package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture writes the host files of an image and returns the flags that pack them.
func fixture(t *testing.T) (host string, args []string) {
	t.Helper()
	host = t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		p := filepath.Join(host, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	write("app", "#!/bin/true\nthe binary\n", 0o755)
	write("ca.crt", "-----BEGIN CERTIFICATE-----\n", 0o600)
	write("lib.so", strings.Repeat("library ", 1000), 0o644)
	if err := os.Symlink("lib.so", filepath.Join(host, "lib-link.so")); err != nil {
		t.Fatal(err)
	}
	return host, []string{
		"-ref", "localhost/app:dev",
		"-file", filepath.Join(host, "app") + "=/usr/local/bin/app",
		"-file", filepath.Join(host, "ca.crt") + "=/etc/ssl/certs/ca-certificates.crt:0644",
		"-file", filepath.Join(host, "lib-link.so") + "=/lib/x86_64-linux-gnu/libx.so.1",
		"-dir", "/tmp:1777",
		"-dir", "/etc/app",
		"-entrypoint", "/usr/local/bin/app", "-entrypoint", "serve",
		"-cmd", "--port", "-cmd", "8080",
		"-user", "65532:65532",
		"-env", "PATH=/usr/local/bin:/usr/bin:/bin",
		"-expose", "8080",
		"-arch", "amd64",
	}
}

func pack(t *testing.T, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	s, o, err := parseFlags(append(args, "-o", out))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeFile(o, s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*")); len(left) != 1 {
		t.Errorf("files left beside the archive: %v", left)
	}
	return b
}

// Same input, same bytes: whatever the host files' mtimes and the order of the flags.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	host, args := fixture(t)
	first := pack(t, args...)

	later := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, name := range []string{"app", "ca.crt", "lib.so"} {
		if err := os.Chtimes(filepath.Join(host, name), later, later); err != nil {
			t.Fatal(err)
		}
	}
	// The flags in another order: pairs reversed (each flag stays before its value), except
	// the repeated -entrypoint and -cmd, whose order is the command's.
	var pairs [][]string
	for i := 0; i < len(args); i += 2 {
		pairs = append(pairs, args[i:i+2])
	}
	slices.SortStableFunc(pairs, func(a, b []string) int {
		switch {
		case a[0] == "-entrypoint" || a[0] == "-cmd" || b[0] == "-entrypoint" || b[0] == "-cmd":
			return 0
		}
		return strings.Compare(b[1], a[1])
	})
	var shuffled []string
	for _, p := range pairs {
		shuffled = append(shuffled, p...)
	}
	if slices.Equal(shuffled, args) {
		t.Fatal("the shuffle changed nothing")
	}
	if second := pack(t, shuffled...); !bytes.Equal(first, second) {
		t.Errorf("two packings of the same input differ (%d and %d bytes)", len(first), len(second))
	}

	// And a different input gives a different archive.
	if err := os.WriteFile(filepath.Join(host, "app"), []byte("another binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if third := pack(t, args...); bytes.Equal(first, third) {
		t.Error("changing a file's content did not change the archive")
	}
}

// archive is an image archive read back.
type archive struct {
	names []string
	files map[string]*tar.Header
	data  map[string][]byte
}

func readTar(t *testing.T, r io.Reader) archive {
	t.Helper()
	a := archive{files: map[string]*tar.Header{}, data: map[string][]byte{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return a
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := a.files[h.Name]; dup {
			t.Errorf("%s twice", h.Name)
		}
		a.names = append(a.names, h.Name)
		a.files[h.Name], a.data[h.Name] = h, b
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// blob returns the blob a descriptor names, after checking its digest and size.
func (a archive) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	b, ok := a.data[blobPath(d)]
	if !ok {
		t.Fatalf("no blob %s", blobPath(d))
	}
	if got := digestOf(b); got != d.Digest {
		t.Errorf("blob %s: content digest %s", d.Digest, got)
	}
	if int64(len(b)) != d.Size {
		t.Errorf("blob %s: %d bytes, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func unmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

// The archive is an OCI image layout whose digests all check out, whose config describes the
// layer and the flags, and whose layer holds the files, sorted, owned by root, dated 0.
func TestArchiveStructure(t *testing.T) {
	t.Parallel()
	_, args := fixture(t)
	a := readTar(t, bytes.NewReader(pack(t, args...)))

	if !slices.IsSorted(a.names) {
		t.Errorf("archive entries not sorted: %v", a.names)
	}
	for _, name := range a.names {
		h := a.files[name]
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("archive entry %s: mtime %v, owner %d:%d %q:%q", name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
	}
	if got := string(a.data["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", got)
	}

	var idx index
	unmarshal(t, a.data["index.json"], &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != mediaTypeIndex || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %s", a.data["index.json"])
	}
	md := idx.Manifests[0]
	if md.MediaType != mediaTypeManifest || md.Platform == nil || *md.Platform != (platform{"amd64", "linux"}) {
		t.Errorf("index.json's manifest descriptor: %+v", md)
	}
	if md.Annotations[annotationImageName] != "localhost/app:dev" || md.Annotations[annotationRefName] != "dev" {
		t.Errorf("index.json's annotations: %v", md.Annotations)
	}

	var man manifest
	unmarshal(t, a.blob(t, md), &man)
	if man.SchemaVersion != 2 || man.MediaType != mediaTypeManifest || man.Config.MediaType != mediaTypeConfig || len(man.Layers) != 1 || man.Layers[0].MediaType != mediaTypeLayer {
		t.Fatalf("manifest: %+v", man)
	}
	var cfg image
	unmarshal(t, a.blob(t, man.Config), &cfg)
	layerGz := a.blob(t, man.Layers[0])

	// Every blob is one the manifest or the index names: nothing stray.
	want := []string{"blobs/", "blobs/sha256/", blobPath(md), blobPath(man.Config), blobPath(man.Layers[0]), "index.json", "manifest.json", "oci-layout"}
	slices.Sort(want)
	if !slices.Equal(a.names, want) {
		t.Errorf("archive entries %v, want %v", a.names, want)
	}

	// docker-style manifest.json, for docker load and crane push.
	var dm []dockerManifest
	unmarshal(t, a.data["manifest.json"], &dm)
	if len(dm) != 1 || dm[0].Config != blobPath(man.Config) || !slices.Equal(dm[0].Layers, []string{blobPath(man.Layers[0])}) || !slices.Equal(dm[0].RepoTags, []string{"localhost/app:dev"}) {
		t.Errorf("manifest.json: %s", a.data["manifest.json"])
	}

	// The layer: gzip without name or mtime, and diff_id = sha256 of the tar.
	zr, err := gzip.NewReader(bytes.NewReader(layerGz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header: name %q, mtime %v", zr.Name, zr.ModTime)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.Type != "layers" || !slices.Equal(cfg.RootFS.DiffIDs, []string{digestOf(layerTar)}) {
		t.Errorf("rootfs %+v, want diff_id %s", cfg.RootFS, digestOf(layerTar))
	}

	// The config: what the flags said.
	if cfg.Architecture != "amd64" || cfg.OS != "linux" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	c := cfg.Config
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/app", "serve"}) || !slices.Equal(c.Cmd, []string{"--port", "8080"}) {
		t.Errorf("entrypoint %q, cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" || c.WorkingDir != "/" || !slices.Equal(c.Env, []string{"PATH=/usr/local/bin:/usr/bin:/bin"}) {
		t.Errorf("user %q, workdir %q, env %q", c.User, c.WorkingDir, c.Env)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}

	// The layer's entries: parents first, sorted, root-owned, dated 0, with the modes given.
	l := readTar(t, bytes.NewReader(layerTar))
	wantEntries := map[string]struct {
		mode    int64
		content string // "" for a directory
	}{
		"etc/":                              {0o755, ""},
		"etc/app/":                          {0o755, ""},
		"etc/ssl/":                          {0o755, ""},
		"etc/ssl/certs/":                    {0o755, ""},
		"etc/ssl/certs/ca-certificates.crt": {0o644, "-----BEGIN CERTIFICATE-----\n"},
		"lib/":                              {0o755, ""},
		"lib/x86_64-linux-gnu/":             {0o755, ""},
		"lib/x86_64-linux-gnu/libx.so.1":    {0o644, strings.Repeat("library ", 1000)}, // the symlink's target
		"tmp/":                              {0o1777, ""},
		"usr/":                              {0o755, ""},
		"usr/local/":                        {0o755, ""},
		"usr/local/bin/":                    {0o755, ""},
		"usr/local/bin/app":                 {0o755, "#!/bin/true\nthe binary\n"},
	}
	if !slices.IsSorted(l.names) {
		t.Errorf("layer entries not sorted: %v", l.names)
	}
	if len(l.names) != len(wantEntries) {
		t.Errorf("layer entries %v, want %d", l.names, len(wantEntries))
	}
	for _, name := range l.names {
		h := l.files[name]
		w, ok := wantEntries[name]
		if !ok {
			t.Errorf("unexpected layer entry %s", name)
			continue
		}
		wantType := byte(tar.TypeReg)
		if w.content == "" {
			wantType = tar.TypeDir
		}
		if h.Typeflag != wantType || h.Mode != w.mode || string(l.data[name]) != w.content {
			t.Errorf("%s: type %c mode %o content %q, want type %c mode %o content %q", name, h.Typeflag, h.Mode, l.data[name], wantType, w.mode, w.content)
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || len(h.PAXRecords) != 0 {
			t.Errorf("%s: mtime %v, owner %d:%d %q:%q, pax %v", name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname, h.PAXRecords)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	host, _ := fixture(t)
	app := filepath.Join(host, "app")
	s, out, err := parseFlags([]string{"-ref", "x:1", "-o", "o.tar", "-file", app + "=/a", "-file", app + "=/b:4755", "-dir", "/d", "-dir", "/e:0700"})
	if err != nil {
		t.Fatal(err)
	}
	if out != "o.tar" || s.Ref != "x:1" || s.WorkingDir != "/" || s.OS != "linux" {
		t.Errorf("%+v, %s", s, out)
	}
	wantFiles := []file{{app, "/a", 0o755}, {app, "/b", 0o755 | os.ModeSetuid}}
	if !slices.Equal(s.Files, wantFiles) {
		t.Errorf("files %v, want %v", s.Files, wantFiles)
	}
	if want := []dir{{"/d", 0o755}, {"/e", 0o700}}; !slices.Equal(s.Dirs, want) {
		t.Errorf("dirs %v, want %v", s.Dirs, want)
	}

	for _, bad := range [][]string{
		{"-o", "o.tar"},
		{"-ref", "x"},
		{"-ref", "x", "-o", "o", "-file", "/a"},
		{"-ref", "x", "-o", "o", "-file", app + "=/a:0999"},
		{"-ref", "x", "-o", "o", "-file", filepath.Join(host, "missing") + "=/a"},
		{"-ref", "x", "-o", "o", "-dir", "/a:rw"},
		{"-ref", "x", "-o", "o", "extra"},
	} {
		if _, _, err := parseFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestBadLayouts(t *testing.T) {
	t.Parallel()
	host, _ := fixture(t)
	app := filepath.Join(host, "app")
	for name, s := range map[string]spec{
		"relative":       {Files: []file{{app, "usr/app", 0o755}}},
		"unclean":        {Files: []file{{app, "/usr/../app", 0o755}}},
		"root":           {Dirs: []dir{{"/", 0o755}}},
		"twice":          {Files: []file{{app, "/app", 0o755}, {app, "/app", 0o755}}},
		"dir and file":   {Files: []file{{app, "/app", 0o755}}, Dirs: []dir{{"/app", 0o755}}},
		"dir twice":      {Dirs: []dir{{"/tmp", 0o777 | os.ModeSticky}, {"/tmp", 0o755}}},
		"file as parent": {Files: []file{{app, "/app", 0o755}, {app, "/app/x", 0o755}}},
		"not a file":     {Files: []file{{host, "/app", 0o755}}},
		"digest ref":     {Ref: "x@sha256:00"},
	} {
		if s.Ref == "" {
			s.Ref = "x:1"
		}
		if err := write(io.Discard, s, t.TempDir()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A directory given explicitly and as a parent is one entry, with the explicit mode.
	es, err := entries(spec{Files: []file{{app, "/tmp/x", 0o755}}, Dirs: []dir{{"/tmp", 0o777 | os.ModeSticky}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0] != (entry{name: "tmp", dir: true, mode: 0o1777}) {
		t.Errorf("entries %+v", es)
	}
}
