package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// FuzzNormalize: any upload is refused with ErrInvalid or accepted; an
// accepted one reads back (Open) to the same files and normalizes again to
// the same checksum. It never panics.
func FuzzNormalize(f *testing.F) {
	f.Add([]byte(groupYAML))
	f.Add([]byte(""))
	f.Add([]byte("a: [1"))
	f.Add(tarGz(f, entry{name: "group.yaml", data: groupYAML}, entry{name: "apis.yaml", data: apisYAML}))
	f.Add(tarGz(f, entry{name: "group.yaml", data: groupYAML}, entry{name: "d/", typ: tar.TypeDir}))
	f.Add(tarGz(f, entry{name: "group.yaml", data: "x: 1", hdr: func(h *tar.Header) { h.Format = tar.FormatPAX; h.PAXRecords = map[string]string{"path": "group.yaml"} }}))
	f.Add(tarBytes(f, entry{name: "group.yaml", data: groupYAML}))
	a, err := Normalize([]byte(groupYAML))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a.Canonical)
	f.Fuzz(func(t *testing.T, upload []byte) {
		a, err := Normalize(upload)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(a.Files) == 0 || a.Files[0].Name != GroupFile {
			t.Fatalf("accepted archive without group.yaml first: %q", a.Names())
		}
		o, err := Open(a.Canonical)
		if err != nil {
			t.Fatalf("Open(Canonical): %v", err)
		}
		if o.Checksum != a.Checksum || !sameFiles(o.Files, a.Files) {
			t.Fatalf("Open(Canonical): got %q %s, want %q %s", o.Names(), o.Checksum, a.Names(), a.Checksum)
		}
		b, err := Normalize(a.Canonical)
		if err != nil {
			t.Fatalf("Normalize(Canonical): %v", err)
		}
		if b.Checksum != a.Checksum || !bytes.Equal(b.Canonical, a.Canonical) {
			t.Fatalf("Normalize(Canonical): checksum %s, want %s", b.Checksum, a.Checksum)
		}
	})
}

// FuzzValidate: two group layers in an archive (groupconf's FuzzLoad has
// one) are validated without panicking, an error always names one of the
// files or a key, and the same archive gives the same answer twice.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(groupYAML), []byte(apisYAML))
	f.Add([]byte("log:\n  level: debug\n"), []byte("log:\n  levl: x\n"))
	f.Add([]byte("apis:\n  - name: a\n    path: /a/{id}\n    backend: b\n"), []byte("backends:\n  - name: b\n    url: http://x\n"))
	f.Add([]byte("a: &x 1\n"), []byte("[1]"))
	f.Fuzz(func(t *testing.T, group, other []byte) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, e := range []struct {
			name string
			data []byte
		}{{"group.yaml", group}, {"other.yaml", other}} {
			tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))})
			tw.Write(e.data)
		}
		tw.Close()
		zw.Close()
		a, err := Normalize(buf.Bytes())
		if err != nil {
			return // not YAML text: Normalize's business, fuzzed above
		}
		err1 := Validate(a)
		err2 := Validate(a, groupconf.Layer{Name: "instance.yaml", YAML: []byte("traffic:\n  port: 9000\n")})
		again := Validate(a)
		if (err1 == nil) != (again == nil) || (err1 != nil && err1.Error() != again.Error()) {
			t.Fatalf("Validate twice: %v, then %v", err1, again)
		}
		for _, err := range []error{err1, err2} {
			var ce *groupconf.Error
			if err != nil && !errors.As(err, &ce) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T %v: want a *groupconf.Error", err, err)
			}
		}
	})
}
