package tools_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// exeOf is the SHA-256 of the binary process pid runs.
func exeOf(t *testing.T, pid int) string {
	t.Helper()
	return fileSHA(t, fmt.Sprintf("/proc/%d/exe", pid))
}

func instancePID(t *testing.T, h *gwtest.Home, iid string) int {
	t.Helper()
	data, err := os.ReadFile(h.Path("var", "run", iid+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.Fields(string(data))[0]))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestUpgrade: gatehouse upgrade on a host with two instances run by its
// node manager: the domain backed up first, the new binary in
// posix/bin/gatehouse (the old one kept), each instance restarted on it
// one at a time and healthy; --rollback puts the old one back and restarts
// them on it; a binary that cannot start instances fails the upgrade on
// the first instance and the old binary is back, the instances running on
// it.
func TestUpgrade(t *testing.T) {
	h := gwtest.NewHome(t)
	p1 := newInstance(t, h, "G", "S1", false)
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	os.WriteFile(gconf[0], []byte("apis: []\n"), 0o644)
	p2 := ports{gwtest.FreePort(t), gwtest.FreePort(t), 0}
	h.MustRun("", "managedomain", "-c", "-n", "S2", "-g", "G", "--traffic_port", strconv.Itoa(p2.traffic), "--management_port", strconv.Itoa(p2.mgmt))
	h.MustRun("", "nodemanager", "-d", "-q")
	t.Cleanup(func() { h.Run("", "nodemanager", "-k", "-q") })
	for _, n := range []string{"S1", "S2"} {
		h.MustRun("", "startinstance", "-d", "-q", "-n", n, "-g", "G")
		t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", n, "-g", "G") })
	}
	bin := h.Path("posix", "bin", "gatehouse")
	old := fileSHA(t, bin)
	// The new binary: the same program with bytes after its end (an ELF
	// file runs the same), so that it is another file.
	dir := t.TempDir()
	data, _ := os.ReadFile(bin)
	newBin := filepath.Join(dir, "gatehouse-new")
	os.WriteFile(newBin, append(bytes.Clone(data), []byte("\nupgrade test\n")...), 0o755)
	newSHA := fileSHA(t, newBin)
	before := map[string]int{"instance-1": instancePID(t, h, "instance-1"), "instance-2": instancePID(t, h, "instance-2")}
	nmBefore := pidOf(t, h, "nodemanager-1")

	if r := h.Run("", "upgrade", "--binary", newBin); r.Code != 2 || !strings.Contains(r.Stderr, "--backup-dir") {
		t.Errorf("upgrade without --backup-dir: %s", r)
	}
	backups := t.TempDir()
	r := h.Run("", "upgrade", "--binary", newBin, "--backup-dir", backups, "--delay_before", "0s", "--delay_after", "0s")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Backed up the domain") || !strings.Contains(r.Stdout, "Upgraded 1 hosts") {
		t.Fatalf("upgrade: %s", r)
	}
	if fileSHA(t, bin) != newSHA || fileSHA(t, h.Path("posix", "bin", "gatehouse.previous")) != old {
		t.Fatal("posix/bin after the upgrade: not the new binary, or the old one not kept")
	}
	for iid, pid := range before {
		now := instancePID(t, h, iid)
		if now == pid || exeOf(t, now) != newSHA {
			t.Errorf("%s: pid %d → %d, runs the new binary: %v", iid, pid, now, exeOf(t, now) == newSHA)
		}
	}
	gwtest.AwaitHTTP(t, p1.url("/healthcheck"), 200, 5*time.Second)
	gwtest.AwaitHTTP(t, p2.url("/healthcheck"), 200, 5*time.Second)
	// The node manager restarted itself on the new binary.
	if nm := pidOf(t, h, "nodemanager-1"); nm == nmBefore || exeOf(t, nm) != newSHA {
		t.Errorf("node manager: pid %d → %d, runs the new binary: %v\n%s", nmBefore, nm, exeOf(t, nm) == newSHA, r)
	}
	if !strings.Contains(r.Stdout, "node manager restarted on the new binary") || strings.Contains(r.Stdout, "Still to do") {
		t.Errorf("the upgrade's steps do not say the node manager restarted: %s", r)
	}
	if files, _ := filepath.Glob(filepath.Join(backups, "gatehouse-domain-*-before-upgrade.backup")); len(files) != 1 {
		t.Errorf("the backup before the upgrade: %v", files)
	} else if r := h.Run("", "backup", "verify", "--checksums-only", files[0]); r.Code != 0 {
		t.Errorf("the backup before the upgrade does not verify: %s", r)
	}

	// Configuration changed after the upgrade: the rollback puts back the
	// backup's (a file rewritten, a file added), never data.
	groupBefore, _ := os.ReadFile(gconf[0])
	os.WriteFile(gconf[0], append(bytes.Clone(groupBefore), "# changed after the upgrade\n"...), 0o644)
	extra := filepath.Join(filepath.Dir(gconf[0]), "extra.yaml")
	os.WriteFile(extra, []byte("x: 1\n"), 0o644)
	if r := h.Run("", "upgrade", "--rollback", "--binary-only", "--backup", "x"); r.Code != 2 || !strings.Contains(r.Stderr, "exclude each other") {
		t.Errorf("--backup with --binary-only: %s", r)
	}
	if r := h.Run("", "upgrade", "--binary", newBin, "--no-backup", "--binary-only"); r.Code != 2 || !strings.Contains(r.Stderr, "for --rollback") {
		t.Errorf("--binary-only without --rollback: %s", r)
	}
	if r := h.Run("", "upgrade", "--rollback", "--backup", filepath.Join(dir, "gatehouse-new")); r.Code != 1 || !strings.Contains(r.Stderr, "nothing was changed") {
		t.Errorf("--rollback --backup of a file that is not a backup: %s", r)
	}
	// Back.
	r = h.Run("", "upgrade", "--rollback", "--delay_before", "0s", "--delay_after", "0s")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Rolled back") {
		t.Fatalf("rollback: %s", r)
	}
	if got, _ := os.ReadFile(gconf[0]); !bytes.Equal(got, groupBefore) || !strings.Contains(r.Stdout, "put back groups/group-2/conf/group.yaml") {
		t.Errorf("the group's configuration after the rollback: %q\n%s", got, r)
	}
	if _, err := os.Stat(extra); err == nil || !strings.Contains(r.Stdout, "removed groups/group-2/conf/extra.yaml") {
		t.Errorf("a configuration file added after the upgrade is still there: %s", r)
	}
	if fileSHA(t, bin) != old {
		t.Fatal("posix/bin/gatehouse after the rollback is not the old binary")
	}
	for iid := range before {
		if exeOf(t, instancePID(t, h, iid)) != old {
			t.Errorf("%s does not run the old binary after the rollback", iid)
		}
	}
	if exeOf(t, pidOf(t, h, "nodemanager-1")) != old {
		t.Error("the node manager does not run the old binary after the rollback")
	}

	// A binary that runs instances but not the node manager: the upgrade
	// fails at the node manager's restart (it comes back on the old
	// program), and everything is put back on the old binary.
	nmless := filepath.Join(dir, "nmless")
	os.WriteFile(nmless, []byte("#!/bin/sh\nif [ \"$1\" = nodemanager ]; then echo 'this binary runs no node manager' >&2; exit 1; fi\nexec "+filepath.Join(dir, "gatehouse-new")+" \"$@\"\n"), 0o755)
	r = h.Run("", "upgrade", "--binary", nmless, "--no-backup", "--delay_before", "0s", "--delay_after", "0s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the old binary is back on every host it reached") || !strings.Contains(r.Stderr, "node manager came back on binary") {
		t.Fatalf("upgrade to a binary that runs no node manager: %s", r)
	}
	if fileSHA(t, bin) != old || exeOf(t, pidOf(t, h, "nodemanager-1")) != old {
		t.Fatal("after the failed node manager restart: posix/bin or the node manager not on the old binary")
	}
	for iid := range before {
		if exeOf(t, instancePID(t, h, iid)) != old {
			t.Errorf("%s does not run the old binary after the failed node manager restart", iid)
		}
	}

	// A binary that answers "version" but cannot start an instance.
	broken := filepath.Join(dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'gatehouse broken'; exit 0; fi\necho 'cannot start' >&2\nexit 1\n"), 0o755)
	r = h.Run("", "upgrade", "--binary", broken, "--no-backup", "--delay_before", "0s", "--delay_after", "0s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the old binary is back on every host it reached") {
		t.Fatalf("upgrade to a broken binary: %s", r)
	}
	if !strings.Contains(r.Stdout, "configuration not put back") {
		t.Errorf("a failed upgrade without a backup does not say the configuration was not put back: %s", r)
	}
	if fileSHA(t, bin) != old {
		t.Fatal("posix/bin/gatehouse after a failed upgrade is not the old binary")
	}
	for iid := range before {
		if exeOf(t, instancePID(t, h, iid)) != old {
			t.Errorf("%s does not run the old binary after the failed upgrade", iid)
		}
	}
	gwtest.AwaitHTTP(t, p1.url("/healthcheck"), 200, 5*time.Second)
	gwtest.AwaitHTTP(t, p2.url("/healthcheck"), 200, 5*time.Second)
	if reports, _ := filepath.Glob(h.Path("conf", "upgrades", "upgrade-*.json")); len(reports) < 2 {
		t.Errorf("reports: %v", reports)
	}
}
