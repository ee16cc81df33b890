package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// twoHosts is a domain backup of two install directories.
func twoHosts(t *testing.T, extra ...Source) ([]byte, []byte, []byte) {
	t.Helper()
	h1, _ := installDir(t)
	h2, _ := installDir(t)
	var p1, p2 bytes.Buffer
	if _, err := Write(t.Context(), h1, &p1, Options{Host: "host-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(t.Context(), h2, &p2, Options{Host: "host-2"}); err != nil {
		t.Fatal(err)
	}
	src := func(id string, b []byte) Source {
		return Source{HostID: id, HostName: "name-" + id, Fetch: func(ctx context.Context, w io.Writer) error { _, err := w.Write(b); return err }}
	}
	var out bytes.Buffer
	_, err := WriteDomain(t.Context(), &out, append([]Source{src("host-1", p1.Bytes()), src("host-2", p2.Bytes())}, extra...), DomainOptions{Gatehouse: "test", TopologyVersion: 7})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), p1.Bytes(), p2.Bytes()
}

func TestDomainBackup(t *testing.T) {
	d, _, p2 := twoHosts(t)
	if !IsDomain(d) || IsDomain(p2) || IsDomain([]byte("x")) {
		t.Fatal("IsDomain does not tell the formats apart")
	}
	dm, err := VerifyDomain(t.Context(), bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	if len(dm.Hosts) != 2 || dm.Hosts[1].HostID != "host-2" || dm.Hosts[1].HostName != "name-host-2" || dm.Hosts[1].Entries == 0 || dm.TopologyVersion != 7 || dm.Hosts[0].RecoveryPoint.IsZero() {
		t.Errorf("manifest: %+v", dm)
	}
	var got bytes.Buffer
	if _, err := ExtractPart(t.Context(), bytes.NewReader(d), "host-2", &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), p2) {
		t.Error("the extracted part is not host-2's backup")
	}
	if _, err := ExtractPart(t.Context(), bytes.NewReader(d), "host-9", io.Discard); err == nil || !strings.Contains(err.Error(), "no part for host host-9") || !strings.Contains(err.Error(), "host-1") {
		t.Errorf("an unknown host: %v", err)
	}
}

func TestDomainBackupDamaged(t *testing.T) {
	d, _, _ := twoHosts(t)
	// A byte of the second part flipped; the archive cut; bytes added.
	flip := bytes.Clone(d)
	flip[len(d)/2] ^= 0x40
	cases := map[string][]byte{"flipped": flip, "cut": d[:len(d)*2/3], "empty": nil}
	for name, b := range cases {
		if _, err := VerifyDomain(t.Context(), bytes.NewReader(b)); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: %v, want damaged", name, err)
		}
	}
}

func TestDomainGapsAndFailures(t *testing.T) {
	down := errors.New("connection refused")
	gone := Source{HostID: "host-3", HostName: "third", Fetch: func(ctx context.Context, w io.Writer) error { return down }}
	h1, _ := installDir(t)
	ok := Source{HostID: "host-1", Fetch: func(ctx context.Context, w io.Writer) error {
		_, err := Write(ctx, h1, w, Options{Host: "host-1"})
		return err
	}}
	// Without skipping: the backup fails naming the host.
	if _, err := WriteDomain(t.Context(), io.Discard, []Source{ok, gone}, DomainOptions{}); err == nil || !strings.Contains(err.Error(), "host host-3") {
		t.Errorf("an unreachable host: %v", err)
	}
	// Skipping: a gap in the manifest.
	var out bytes.Buffer
	var progress []string
	dm, err := WriteDomain(t.Context(), &out, []Source{ok, gone}, DomainOptions{Skip: func(err error) bool { return errors.Is(err, down) },
		Progress: func(id string, size int64, err error) { progress = append(progress, id) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(dm.Hosts) != 1 || len(dm.Gaps) != 1 || dm.Gaps[0].HostID != "host-3" || !strings.Contains(dm.Gaps[0].Error, "refused") || strings.Join(progress, ",") != "host-1,host-3" {
		t.Errorf("gaps: %+v, progress %v", dm, progress)
	}
	if back, err := VerifyDomain(t.Context(), &out); err != nil || len(back.Gaps) != 1 {
		t.Errorf("read back: %+v %v", back, err)
	}
	// A part that does not verify, or is another host's, fails.
	bad := Source{HostID: "host-2", Fetch: func(ctx context.Context, w io.Writer) error { _, err := w.Write([]byte("not a backup")); return err }}
	if _, err := WriteDomain(t.Context(), io.Discard, []Source{bad}, DomainOptions{}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a damaged part: %v", err)
	}
	other := Source{HostID: "host-2", Fetch: ok.Fetch}
	if _, err := WriteDomain(t.Context(), io.Discard, []Source{other}, DomainOptions{}); err == nil || !strings.Contains(err.Error(), "is of host host-1") {
		t.Errorf("another host's part: %v", err)
	}
	evil := Source{HostID: "../x", Fetch: ok.Fetch}
	if _, err := WriteDomain(t.Context(), io.Discard, []Source{evil}, DomainOptions{}); err == nil || !strings.Contains(err.Error(), "cannot name a file") {
		t.Errorf("a host id with a path: %v", err)
	}
}
