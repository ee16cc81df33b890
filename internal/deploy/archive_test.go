package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// entry is one tar entry for tests; typ 0 means a regular file.
type entry struct {
	name string
	data string
	typ  byte
	hdr  func(*tar.Header) // optional changes to the header
}

// tarGz builds a tar.gz the way an operator's tar would (with owner names,
// mtimes and, when asked, PAX records).
func tarGz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	return gz(t, tarBytes(t, entries...))
}

func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Uid: 1000, Gid: 1000, Uname: "op", Gname: "op", ModTime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
			h.Linkname = "group.yaml"
		}
		if e.hdr != nil {
			e.hdr(h)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Name = "conf.tar"
	zw.ModTime = time.Now()
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const (
	groupYAML = "log:\n  level: debug\nbackends:\n  - name: b\n    url: http://127.0.0.1:9\n"
	apisYAML  = "apis:\n  - name: a\n    pathPrefix: /a\n    backend: b\n"
)

func TestNormalizeYAML(t *testing.T) {
	a, err := Normalize([]byte(groupYAML))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Names(), []string{"group.yaml"}; !slices.Equal(got, want) {
		t.Errorf("files: got %q, want %q", got, want)
	}
	if string(a.Files[0].Data) != groupYAML {
		t.Errorf("group.yaml: got %q, want %q", a.Files[0].Data, groupYAML)
	}
	// The same YAML in a tar.gz is the same archive.
	b, err := Normalize(tarGz(t, entry{name: "group.yaml", data: groupYAML}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Checksum != b.Checksum {
		t.Errorf("checksum of the YAML %s, of the same file in a tar.gz %s: want them equal", a.Checksum, b.Checksum)
	}
	if len(a.Checksum) != 64 {
		t.Errorf("checksum %q: want 64 hex digits", a.Checksum)
	}
}

func TestNormalizeTarGzOrderAndDeterminism(t *testing.T) {
	a, err := Normalize(tarGz(t,
		entry{name: "b.yml", data: "log:\n  maxBackups: 3\n"},
		entry{name: "group.yaml", data: groupYAML},
		entry{name: "apis.yaml", data: apisYAML},
	))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Names(), []string{"group.yaml", "apis.yaml", "b.yml"}; !slices.Equal(got, want) {
		t.Errorf("layer order: got %q, want %q", got, want)
	}
	// Other entry order, modes, owners, times, PAX records, gzip header and
	// compression: the same canonical bytes.
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Comment = "made elsewhere"
	zw.Write(tarBytes(t,
		entry{name: "apis.yaml", data: apisYAML, hdr: func(h *tar.Header) {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{"comment": "x"}
			h.ModTime = time.Unix(1700000000, 123456789)
		}},
		entry{name: "group.yaml", data: groupYAML, hdr: func(h *tar.Header) { h.Mode = 0o755; h.Uid = 0; h.Format = tar.FormatGNU }},
		entry{name: "b.yml", data: "log:\n  maxBackups: 3\n"},
	))
	zw.Close()
	b, err := Normalize(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Canonical, b.Canonical) || a.Checksum != b.Checksum {
		t.Errorf("two uploads of the same files: checksums %s and %s, want equal", a.Checksum, b.Checksum)
	}
	// The canonical tar itself: sorted names, 0644, zero times and owners,
	// plain ustar.
	zr, err := gzip.NewReader(bytes.NewReader(a.Canonical))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" || zr.Comment != "" {
		t.Errorf("gzip header: got mtime %v name %q comment %q, want none", zr.ModTime, zr.Name, zr.Comment)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 || len(h.PAXRecords) != 0 || h.Format != tar.FormatUSTAR {
			t.Errorf("%s: got mode %o uid %d gid %d uname %q mtime %v pax %v format %v, want the canonical header", h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime, h.PAXRecords, h.Format)
		}
	}
	if want := []string{"apis.yaml", "b.yml", "group.yaml"}; !slices.Equal(names, want) {
		t.Errorf("tar order: got %q, want %q", names, want)
	}
	// A different content is a different checksum.
	c, err := Normalize(tarGz(t, entry{name: "group.yaml", data: groupYAML + "# x\n"}, entry{name: "apis.yaml", data: apisYAML}, entry{name: "b.yml", data: "log:\n  maxBackups: 3\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Checksum == a.Checksum {
		t.Errorf("a changed file kept the checksum %s", a.Checksum)
	}
	// Open reads the canonical form back.
	o, err := Open(a.Canonical)
	if err != nil {
		t.Fatal(err)
	}
	if o.Checksum != a.Checksum || !sameFiles(o.Files, a.Files) {
		t.Errorf("Open: got %q %s, want %q %s", o.Names(), o.Checksum, a.Names(), a.Checksum)
	}
}

func TestNormalizeRefusals(t *testing.T) {
	group := entry{name: "group.yaml", data: groupYAML}
	big := "#" + strings.Repeat("x", MaxFileSize) + "\n" // one byte over with the newline
	chunk := "#" + strings.Repeat("x", 3<<20) + "\n"     // 3 MiB: six of them make over 16 MiB
	var many []entry
	for i := range MaxFiles {
		many = append(many, entry{name: fmt.Sprintf("f%02d.yaml", i), data: "{}\n"})
	}
	many = append(many, group)
	good := tarGz(t, group)
	incompressible := make([]byte, MaxUpload+1)
	rand.NewChaCha8([32]byte{1}).Read(incompressible)
	cases := []struct {
		name   string
		upload []byte
		want   string
	}{
		{"directory", tarGz(t, group, entry{name: "conf/", typ: tar.TypeDir}), `"conf/" is a directory`},
		{"symlink", tarGz(t, group, entry{name: "l.yaml", typ: tar.TypeSymlink}), `"l.yaml" is a link`},
		{"hard link", tarGz(t, group, entry{name: "l.yaml", typ: tar.TypeLink}), `"l.yaml" is a link`},
		{"char device", tarGz(t, group, entry{name: "null.yaml", typ: tar.TypeChar}), "device"},
		{"fifo", tarGz(t, group, entry{name: "p.yaml", typ: tar.TypeFifo}), "device or a pipe"},
		{"absolute path", tarGz(t, entry{name: "/etc/group.yaml", data: groupYAML}), "absolute path"},
		{"dot dot", tarGz(t, group, entry{name: "../x.yaml", data: "{}"}), `contains ".."`},
		{"dot dot deep", tarGz(t, group, entry{name: "a/../../x.yaml", data: "{}"}), `contains ".."`},
		{"subdirectory", tarGz(t, entry{name: "conf/group.yaml", data: groupYAML}), "not at the top level"},
		{"dot slash", tarGz(t, entry{name: "./group.yaml", data: groupYAML}), "not at the top level"},
		{"duplicate", tarGz(t, group, group), "group.yaml is in the tar twice"},
		{"too many files", tarGz(t, many...), "more than 64 entries"},
		{"file over 4 MiB", tarGz(t, group, entry{name: "big.yaml", data: big}), "big.yaml is over the limit of 4194304 bytes"},
		{"total over 16 MiB", tarGz(t, group, entry{name: "a.yaml", data: chunk}, entry{name: "b.yaml", data: chunk}, entry{name: "c.yaml", data: chunk}, entry{name: "d.yaml", data: chunk}, entry{name: "e.yaml", data: chunk}, entry{name: "f.yaml", data: chunk}), "over the limit of 16777216 bytes (16 MiB) together"},
		{"upload over 8 MiB", incompressible, "over the limit of 8388608 (8 MiB)"},
		{"YAML over 4 MiB", []byte(big), "over the limit of 4194304 (4 MiB) for one file"},
		{"trailing garbage after gzip", append(slices.Clone(good), "junk"...), "4 bytes after the end of the gzip stream"},
		{"second gzip member", append(slices.Clone(good), good...), "after the end of the gzip stream"},
		{"garbage after the tar", gz(t, append(tarBytes(t, group), "junk"...)), "data after the end of the tar"},
		{"truncated gzip", good[:len(good)-10], "gzip"},
		{"gzip of no tar", gz(t, []byte("hello")), "not a valid tar"},
		{"bad gzip header", append([]byte{0x1f, 0x8b, 99}, good[3:]...), "not a valid gzip"},
		{"binary", []byte{0x89, 'P', 'N', 'G', 0, 1, 2}, "neither a gzip-compressed tar nor a YAML document"},
		{"uncompressed tar", tarBytes(t, group), "not gzip-compressed"},
		{"zip", []byte("PK\x03\x04\x14\x00\x00\x00"), "neither a gzip-compressed tar nor a YAML document"},
		{"not YAML", []byte("a: [1, 2\n"), "the upload is not YAML"},
		{"empty upload", nil, "the upload is empty"},
		{"blank upload", []byte(" \n\n"), "the upload is empty"},
		{"not YAML in tar", tarGz(t, group, entry{name: "x.yaml", data: "a: {b\n"}), "not YAML (x.yaml"},
		{"not UTF-8 in tar", tarGz(t, group, entry{name: "x.yaml", data: "a: \xff\xfe\n"}), "x.yaml is not YAML text"},
		{"no group.yaml", tarGz(t, entry{name: "apis.yaml", data: apisYAML}), "no group.yaml in the tar"},
		{"empty tar", tarGz(t), "no group.yaml in the tar"},
		{"not yaml name", tarGz(t, group, entry{name: "x.json", data: "{}"}), `"x.json" is not an accepted file name`},
		{"space in name", tarGz(t, group, entry{name: "a b.yaml", data: "{}"}), "not an accepted file name"},
		{"hidden file", tarGz(t, group, entry{name: "._group.yaml", data: "{}"}), "not an accepted file name"},
		{"sparse", tarGz(t, group, entry{name: "s.yaml", typ: tar.TypeGNUSparse, hdr: func(h *tar.Header) { h.Format = tar.FormatGNU }}), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Normalize(c.upload)
			if err == nil {
				t.Fatalf("got an archive of %q, want an error", a.Names())
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want an error wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %q, want it to contain %q", err, c.want)
			}
		})
	}
}

// A gzip bomb is refused after reading little more than the limit: the
// sizes in the headers are not trusted and nothing is read whole first.
func TestNormalizeGzipBomb(t *testing.T) {
	// 64 MiB of '#' in one entry compresses to a few hundred KiB.
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	size := int64(64 << 20)
	tw.WriteHeader(&tar.Header{Name: "group.yaml", Typeflag: tar.TypeReg, Mode: 0o644, Size: size})
	line := bytes.Repeat([]byte("#"), 1<<20)
	for range size >> 20 {
		tw.Write(line)
	}
	tw.Close()
	zw.Close()
	if buf.Len() > MaxUpload {
		t.Fatalf("bomb is %d bytes compressed; the test wants it under the upload limit", buf.Len())
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Normalize(buf.Bytes())
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "over the limit of 4194304 bytes") {
		t.Fatalf("got %v, want the file refused as over 4 MiB", err)
	}
	t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("Normalize allocated %d MiB for a bomb; want it to stop reading near the limit", alloc>>20)
	}
}

func TestOpenRefusesYAML(t *testing.T) {
	if _, err := Open([]byte(groupYAML)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(YAML): got %v, want ErrInvalid (a stored archive is always a tar.gz)", err)
	}
}

func TestValidate(t *testing.T) {
	a, err := Normalize(tarGz(t, entry{name: "group.yaml", data: groupYAML}, entry{name: "apis.yaml", data: apisYAML}))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(a); err != nil {
		t.Errorf("valid archive: got %v", err)
	}
	inst := groupconf.Layer{Name: "instance.yaml", YAML: []byte("traffic:\n  port: 9000\n")}
	if err := Validate(a, inst); err != nil {
		t.Errorf("valid archive and instance layer: got %v", err)
	}
	cases := []struct {
		name  string
		files []entry
		inst  []groupconf.Layer
		want  string
	}{
		{"unknown key in group.yaml", []entry{{name: "group.yaml", data: "log:\n  levl: debug\n"}}, nil, `group.yaml:2: log.levl: unknown key "levl"`},
		{"error in a later file", []entry{{name: "group.yaml", data: groupYAML}, {name: "z.yaml", data: "# z\napis:\n  - name: a\n    pathPrefix: /a\n    backend: nope\n"}}, nil, "z.yaml:5: "},
		{"later file wins", []entry{{name: "group.yaml", data: apisYAML + "backends:\n  - name: b\n    url: http://x\n"}, {name: "z.yaml", data: "backends: []\n"}}, nil, "group.yaml:4: "},
		{"clash with the instance layer", []entry{{name: "group.yaml", data: "management:\n  port: 9000\n"}}, []groupconf.Layer{inst}, "9000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Normalize(tarGz(t, c.files...))
			if err != nil {
				t.Fatal(err)
			}
			err = Validate(a, c.inst...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			var ce *groupconf.Error
			if !errors.As(err, &ce) {
				t.Errorf("got %T, want groupconf's *Error unchanged", err)
			}
		})
	}
}
