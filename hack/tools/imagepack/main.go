// Command imagepack packs static binaries into a single-layer container image and writes it
// as a docker-save tarball, which `ctr images import` loads. It needs no registry and no base
// image: the layer holds the given files, /etc/passwd and /etc/group (root and nonroot 65532)
// and any extra directories. Timestamps are fixed, so the same inputs give the same image.
//
//	imagepack -o OUT.tar -tag REF [-entrypoint /bin] [-user 65532:65532] [-env K=V]...
//	          [-dir /tmp:1777]... SRC=/DST...
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// epoch is every entry's modification time, so rebuilding identical inputs is byte-identical.
var epoch = time.Unix(0, 0).UTC()

const passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
const group = "root:x:0:\nnonroot:x:65532:\n"

func main() {
	out := flag.String("o", "", "output tarball (docker-save format)")
	tag := flag.String("tag", "", "image reference, e.g. ghcr.io/keyward-dev/keyward:0.1.0")
	entrypoint := flag.String("entrypoint", "", "entrypoint path inside the image (default: the first file)")
	user := flag.String("user", "", "user[:group] the image runs as (numeric, e.g. 65532:65532)")
	workdir := flag.String("workdir", "/", "working directory")
	var envs, dirs list
	flag.Var(&envs, "env", "K=V environment entry (repeatable)")
	flag.Var(&dirs, "dir", "/PATH[:MODE] extra directory, mode in octal (repeatable), e.g. /tmp:1777")
	flag.Parse()
	if *out == "" || *tag == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: imagepack -o OUT.tar -tag REF [flags] SRC=/DST...")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if err := run(*out, *tag, *entrypoint, *user, *workdir, envs, dirs, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "imagepack: %v\n", err)
		os.Exit(1)
	}
}

func run(out, tag, entrypoint, user, workdir string, envs, dirs, files []string) error {
	ref, err := name.NewTag(tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	layerTar, first, err := buildLayer(dirs, files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	if entrypoint == "" {
		entrypoint = first
	}
	cf.Config.Entrypoint = []string{entrypoint}
	cf.Config.User = user
	cf.Config.WorkingDir = workdir
	cf.Config.Env = append([]string{"PATH=/"}, envs...)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := tarball.Write(ref, img, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s -> %s\n", ref.Name(), d, out)
	return nil
}

// buildLayer returns the uncompressed layer tarball and the first file's destination.
func buildLayer(dirs, files []string) ([]byte, string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	addDir := func(p string, mode int64) error {
		if p == "/" || p == "." || seen[p] {
			return nil
		}
		seen[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/",
			Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	parents := func(p string) error {
		var chain []string
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			if err := addDir(chain[i], 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	addFile := func(dst string, mode int64, data []byte) error {
		if err := parents(dst); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"),
			Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}

	sort.Strings(dirs)
	for _, d := range dirs {
		p, modeStr, hasMode := strings.Cut(d, ":")
		mode := int64(0o755)
		if hasMode {
			m, err := strconv.ParseInt(modeStr, 8, 64)
			if err != nil {
				return nil, "", fmt.Errorf("dir %q: mode: %w", d, err)
			}
			mode = m
		}
		p = path.Clean("/" + p)
		if err := parents(p); err != nil {
			return nil, "", err
		}
		if err := addDir(p, mode); err != nil {
			return nil, "", err
		}
	}
	if err := addFile("/etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, "", err
	}
	if err := addFile("/etc/group", 0o644, []byte(group)); err != nil {
		return nil, "", err
	}
	first := ""
	for _, spec := range files {
		src, dst, ok := strings.Cut(spec, "=")
		if !ok || !strings.HasPrefix(dst, "/") {
			return nil, "", fmt.Errorf("file %q: want SRC=/DST", spec)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, "", err
		}
		dst = path.Clean(dst)
		if first == "" {
			first = dst
		}
		if err := addFile(dst, 0o755, data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), first, nil
}
