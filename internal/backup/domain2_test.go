package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

type outer struct {
	name string
	data []byte
	typ  byte
}

// outerTar is a domain archive made by hand.
func outerTar(t *testing.T, es ...outer) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: 0o600, Size: int64(len(e.data)), Typeflag: typ}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(e.data)
		}
	}
	tw.Close()
	return b.Bytes()
}

func manifestOf(t *testing.T, dm DomainManifest) []byte {
	t.Helper()
	b, err := json.Marshal(dm)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestDomainManifestChecks(t *testing.T) {
	h1, _ := installDir(t)
	var p bytes.Buffer
	if _, err := Write(t.Context(), h1, &p, Options{Host: "host-1"}); err != nil {
		t.Fatal(err)
	}
	part := p.Bytes()
	good := HostPart{HostID: "host-1", Entry: "hosts/host-1.backup", Size: int64(len(part)), SHA256: sum(part)}
	dm := func(hosts ...HostPart) []byte {
		return manifestOf(t, DomainManifest{Format: DomainFormat, Version: Version, Hosts: hosts})
	}
	ok := outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(good)})
	if _, err := VerifyDomain(t.Context(), bytes.NewReader(ok)); err != nil {
		t.Fatalf("the hand-made archive: %v", err)
	}
	wrongSum := good
	wrongSum.SHA256 = strings.Repeat("0", 64)
	other := good
	other.Entry = "hosts/host-2.backup"
	badPart := append(bytes.Clone(part[:len(part)/2]), make([]byte, 10)...)
	cases := []struct {
		name string
		tar  []byte
		want string
	}{
		{"more hosts listed", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(good, other)}), "lists 2 hosts, the archive holds 1"},
		{"a checksum wrong", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(wrongSum)}), "bytes with SHA-256"},
		{"a size wrong", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(HostPart{HostID: "host-1", Entry: good.Entry, Size: 1, SHA256: good.SHA256})}), "the manifest says 1 bytes"},
		{"another part listed", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(other)}), "hosts/host-2.backup is missing"},
		{"after the manifest", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: DomainManifestName, data: dm(good)}, outer{name: "hosts/x.backup", data: part}), "entries after the manifest"},
		{"another format", outerTar(t, outer{name: DomainManifestName, data: manifestOf(t, DomainManifest{Format: "zip", Version: Version, Hosts: []HostPart{}})}), `format "zip"`},
		{"another version", outerTar(t, outer{name: DomainManifestName, data: manifestOf(t, DomainManifest{Format: DomainFormat, Version: Version + 1, Hosts: []HostPart{}})}), "version"},
		{"a manifest not JSON", outerTar(t, outer{name: DomainManifestName, data: []byte("{")}), "its manifest"},
		{"an entry outside hosts/", outerTar(t, outer{name: "conf/x.backup", data: part}), "is not an entry of a domain backup"},
		{"not a .backup", outerTar(t, outer{name: "hosts/host-1.tar", data: part}), "is not an entry of a domain backup"},
		{"a directory", outerTar(t, outer{name: "hosts/host-1.backup", typ: tar.TypeDir}), "is not an entry of a domain backup"},
		{"a host id with a space", outerTar(t, outer{name: "hosts/a b.backup", data: part}), "is not an entry of a domain backup"},
		{"a part twice", outerTar(t, outer{name: "hosts/host-1.backup", data: part}, outer{name: "hosts/host-1.backup", data: part}), "twice"},
		{"a damaged part", outerTar(t, outer{name: "hosts/host-1.backup", data: badPart}), "hosts/host-1.backup"},
		{"no manifest", outerTar(t, outer{name: "hosts/host-1.backup", data: part}), "ends before its manifest"},
		{"not a tar", []byte(strings.Repeat("x", 1024)), "damaged"},
	}
	for _, tc := range cases {
		_, err := VerifyDomain(t.Context(), bytes.NewReader(tc.tar))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if tc.name != "a damaged part" && err != nil && !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %v does not wrap ErrDamaged", tc.name, err)
		}
	}
	// The part callback's own error stops the reading, naming the entry.
	boom := errors.New("boom")
	if _, err := ReadDomain(t.Context(), bytes.NewReader(ok), func(string, io.Reader) error { return boom }); !errors.Is(err, boom) || !strings.Contains(err.Error(), "hosts/host-1.backup") {
		t.Errorf("a callback's error: %v", err)
	}
	// A cancelled context stops it.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := VerifyDomain(ctx, bytes.NewReader(ok)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if !IsDomain(ok) || IsDomain(part) || IsDomain(outerTar(t, outer{name: "conf/acl.json", data: []byte("{}")})) || !IsDomain(outerTar(t, outer{name: DomainManifestName, data: []byte("{}")})) {
		t.Error("IsDomain")
	}
}

func TestHostIDOK(t *testing.T) {
	for id, want := range map[string]bool{
		"host-1": true, "a.b_c-D9": true, "azAZ09": true, strings.Repeat("h", 200): true,
		"": false, ".": false, "..": false, strings.Repeat("h", 201): false,
		"a/b": false, "a b": false, "a[": false, "a~": false, "é": false, "a\x00": false, "@": false, "`": false, "{": false, ":": false,
	} {
		if got := hostIDOK(id); got != want {
			t.Errorf("hostIDOK(%q) = %v, want %v", id, got, want)
		}
	}
}
