// Command mkimage packs files into a single-layer OCI image archive, without docker or a
// registry: `make image` builds the images of deploy/ with it (scripts/images.sh).
//
//	mkimage -ref localhost/specgate:dev -o specgate.tar \
//	    -file bin/specgate=/specgate:0755 -dir /tmp:1777 \
//	    -entrypoint /specgate -user 65532:65532
//
// The output is deterministic: the same inputs (file contents, paths, modes, config) give a
// byte-identical archive. Layer entries are sorted by path, owned by 0:0, dated the Unix
// epoch, with parent directories added (0755); host mtimes and owners, and the order of the
// -file and -dir flags, do not matter.
//
// The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) whose
// index.json names the image with io.containerd.image.name (the full reference, which
// `ctr images import` uses) and org.opencontainers.image.ref.name (its tag, as the OCI layout
// spec suggests); it also holds a docker-style manifest.json pointing into blobs/, so tools
// that read `docker save` tarballs (docker load, crane push) read it too.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Media types of the OCI image spec.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// epoch is every entry's mtime, in the layer and in the archive.
var epoch = time.Unix(0, 0)

// spec is what goes into one image.
type spec struct {
	Ref        string   // the image's name, e.g. localhost/specgate:dev
	Files      []file   // files of the layer
	Dirs       []dir    // directories to create, beyond the files' parents
	Entrypoint []string // config.Entrypoint
	Cmd        []string // config.Cmd
	User       string   // config.User, e.g. 65532:65532
	Env        []string // config.Env, KEY=VALUE
	WorkingDir string   // config.WorkingDir
	Expose     []string // config.ExposedPorts, PORT/PROTO
	OS, Arch   string   // the platform
}

// file is one host file copied into the layer. Symlinks on the host are followed: the layer
// holds the content.
type file struct {
	Src  string      // path on the host
	Dst  string      // absolute path in the image
	Mode os.FileMode // permission bits (and setuid/setgid/sticky)
}

type dir struct {
	Path string
	Mode os.FileMode
}

func main() {
	s, out, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(2)
	}
	if err := writeFile(out, s); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string) (spec, string, error) {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var (
		s                                 spec
		out                               string
		files, dirs, ep, cmd, env, expose listFlag
	)
	fs.StringVar(&s.Ref, "ref", "", "image `name`, e.g. localhost/specgate:dev (required)")
	fs.StringVar(&out, "o", "", "output `archive` (required)")
	fs.Var(&files, "file", "`HOST=IMAGE[:MODE]`: copy the host file to IMAGE (absolute), with octal MODE (default: the host file's); repeatable")
	fs.Var(&dirs, "dir", "`IMAGE[:MODE]`: create the directory, with octal MODE (default 0755), e.g. /tmp:1777; repeatable")
	fs.Var(&ep, "entrypoint", "one `argument` of the entrypoint; repeatable")
	fs.Var(&cmd, "cmd", "one `argument` of the default command; repeatable")
	fs.StringVar(&s.User, "user", "", "`uid[:gid]` the image runs as")
	fs.Var(&env, "env", "`KEY=VALUE` of the environment; repeatable")
	fs.StringVar(&s.WorkingDir, "workdir", "/", "working `directory`")
	fs.Var(&expose, "expose", "`PORT[/PROTO]` the image listens on (documentation only); repeatable")
	fs.StringVar(&s.OS, "os", "linux", "the image's `os`")
	fs.StringVar(&s.Arch, "arch", runtime.GOARCH, "the image's `architecture`: the binaries'")
	if err := fs.Parse(args); err != nil {
		return s, "", err
	}
	if fs.NArg() > 0 {
		return s, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if s.Ref == "" || out == "" {
		return s, "", errors.New("-ref and -o are required")
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || src == "" {
			return s, "", fmt.Errorf("-file %q: want HOST=IMAGE[:MODE]", f)
		}
		dst, mode, err := splitMode(dst, 0)
		if err != nil {
			return s, "", fmt.Errorf("-file %q: %v", f, err)
		}
		if mode == 0 {
			st, err := os.Stat(src)
			if err != nil {
				return s, "", err
			}
			mode = st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
		}
		s.Files = append(s.Files, file{Src: src, Dst: dst, Mode: mode})
	}
	for _, d := range dirs {
		p, mode, err := splitMode(d, 0o755)
		if err != nil {
			return s, "", fmt.Errorf("-dir %q: %v", d, err)
		}
		s.Dirs = append(s.Dirs, dir{Path: p, Mode: mode})
	}
	s.Entrypoint, s.Cmd, s.Env, s.Expose = ep, cmd, env, expose
	return s, out, nil
}

// splitMode splits "PATH:MODE" where MODE is octal; a path without one gets def.
func splitMode(v string, def os.FileMode) (string, os.FileMode, error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return v, def, nil
	}
	n, err := strconv.ParseUint(v[i+1:], 8, 32)
	if err != nil || n > 0o7777 {
		return "", 0, fmt.Errorf("mode %q: want octal permission bits, e.g. 0755", v[i+1:])
	}
	return v[:i], fromUnixMode(int64(n)), nil
}

// fromUnixMode and unixMode convert between Go's FileMode and the Unix mode bits of tar.
func fromUnixMode(m int64) os.FileMode {
	mode := os.FileMode(m) & os.ModePerm
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func unixMode(mode os.FileMode) int64 {
	m := int64(mode & os.ModePerm)
	if mode&os.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&os.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// writeFile writes the archive to out.tmp and renames it: out is whole or absent.
func writeFile(out string, s spec) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f, s, filepath.Dir(out)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

// entry is one entry of the layer.
type entry struct {
	name string // clean, relative: usr/local/bin/envoy
	dir  bool
	mode int64
	src  string
}

// entries lists the layer's entries, sorted by name: a parent directory sorts before its
// children since its name is their prefix.
func entries(s spec) ([]entry, error) {
	byName := map[string]entry{}
	explicit := map[string]bool{}
	clean := func(p string) (string, error) {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return "", fmt.Errorf("image path %q: want a clean absolute path below /", p)
		}
		return p[1:], nil
	}
	addParents := func(name string) error {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			e, ok := byName[d]
			if ok && !e.dir {
				return fmt.Errorf("/%s is a file and the parent of /%s", d, name)
			}
			if !ok {
				byName[d] = entry{name: d, dir: true, mode: 0o755}
			}
		}
		return nil
	}
	for _, d := range s.Dirs {
		name, err := clean(d.Path)
		if err != nil {
			return nil, err
		}
		if e, ok := byName[name]; ok && (!e.dir || explicit[name]) {
			return nil, fmt.Errorf("/%s given twice", name)
		}
		byName[name] = entry{name: name, dir: true, mode: unixMode(d.Mode)}
		explicit[name] = true
		if err := addParents(name); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		name, err := clean(f.Dst)
		if err != nil {
			return nil, err
		}
		if _, ok := byName[name]; ok {
			return nil, fmt.Errorf("/%s given twice", name)
		}
		byName[name] = entry{name: name, mode: unixMode(f.Mode), src: f.Src}
		if err := addParents(name); err != nil {
			return nil, err
		}
	}
	out := make([]entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// writeLayer writes the uncompressed layer tar to w.
func writeLayer(w io.Writer, es []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(tw, h, e.src); err != nil {
			return err
		}
	}
	return tw.Close()
}

func copyFile(tw *tar.Writer, h *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	h.Typeflag, h.Size = tar.TypeReg, st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if n, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	} else if n != st.Size() {
		return fmt.Errorf("%s changed while being read", src)
	}
	return nil
}

// OCI image spec types, only the fields mkimage writes, in a fixed order.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
}

type image struct {
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Config       imageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []history `json:"history"`
}

type history struct {
	CreatedBy string `json:"created_by"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// dockerManifest is one entry of a `docker save` manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// countingWriter counts and hashes what goes through it.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) digest() string { return "sha256:" + hex.EncodeToString(c.h.Sum(nil)) }

// write writes the image archive to w; the compressed layer is staged in a file under tmpDir.
func write(w io.Writer, s spec, tmpDir string) error {
	if s.Ref == "" || strings.ContainsAny(s.Ref, "@ \t\n") {
		return fmt.Errorf("image reference %q: want NAME[:TAG]", s.Ref)
	}
	tag := s.Ref[strings.LastIndexByte(s.Ref, '/')+1:]
	if i := strings.LastIndexByte(tag, ':'); i >= 0 {
		tag = tag[i+1:]
	} else {
		tag = "latest"
	}
	es, err := entries(s)
	if err != nil {
		return err
	}

	// The layer: tar → (sha256 = diff_id) → gzip → (sha256 = digest) → temporary file.
	tmp, err := os.CreateTemp(tmpDir, ".mkimage-layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	gzOut := &countingWriter{w: tmp, h: sha256.New()}
	gz, err := gzip.NewWriterLevel(gzOut, gzip.BestCompression) // no name, no mtime: deterministic
	if err != nil {
		return err
	}
	tarOut := &countingWriter{w: gz, h: sha256.New()}
	if err := writeLayer(tarOut, es); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	layer := descriptor{MediaType: mediaTypeLayer, Digest: gzOut.digest(), Size: gzOut.n}

	var img image
	img.Architecture, img.OS = s.Arch, s.OS
	img.Config = imageConfig{User: s.User, Env: s.Env, Entrypoint: s.Entrypoint, Cmd: s.Cmd, WorkingDir: s.WorkingDir}
	for _, p := range s.Expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if img.Config.ExposedPorts == nil {
			img.Config.ExposedPorts = map[string]struct{}{}
		}
		img.Config.ExposedPorts[p] = struct{}{}
	}
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = []string{tarOut.digest()}
	img.History = []history{{CreatedBy: "mkimage"}}
	configJSON, err := json.Marshal(img)
	if err != nil {
		return err
	}
	config := blobDescriptor(mediaTypeConfig, configJSON)
	manifestJSON, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: mediaTypeManifest, Config: config, Layers: []descriptor{layer}})
	if err != nil {
		return err
	}
	man := blobDescriptor(mediaTypeManifest, manifestJSON)
	man.Platform = &platform{Architecture: s.Arch, OS: s.OS}
	man.Annotations = map[string]string{annotationImageName: s.Ref, annotationRefName: tag}
	indexJSON, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{man}})
	if err != nil {
		return err
	}
	dockerJSON, err := json.Marshal([]dockerManifest{{Config: blobPath(config), RepoTags: []string{s.Ref}, Layers: []string{blobPath(layer)}}})
	if err != nil {
		return err
	}

	// The archive, entries sorted by name.
	type member struct {
		name string
		dir  bool
		data []byte   // the content, or
		file *os.File // the file holding it,
		size int64    // of this size
	}
	ms := []member{
		{name: "blobs/", dir: true},
		{name: "blobs/sha256/", dir: true},
		{name: blobPath(config), data: configJSON},
		{name: blobPath(man), data: manifestJSON},
		{name: blobPath(layer), file: tmp, size: layer.Size},
		{name: "index.json", data: indexJSON},
		{name: "manifest.json", data: dockerJSON},
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.name, b.name) })
	tw := tar.NewWriter(w)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg}
		switch {
		case m.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case m.file != nil:
			h.Size = m.size
		default:
			h.Size = int64(len(m.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		var err error
		switch {
		case m.file != nil:
			_, err = io.Copy(tw, m.file)
		case !m.dir:
			_, err = tw.Write(m.data)
		}
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobDescriptor(mediaType string, b []byte) descriptor {
	sum := sha256.Sum256(b)
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

func blobPath(d descriptor) string { return "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:") }
