package tools_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/backup/schedule"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// TestDomainBackup: two hosts (the ANM on 127.0.0.2, a joined one on
// 127.0.0.3), an instance on each. gatehouse backup --domain on the ANM's
// host gathers both hosts' backups through the node managers into one
// file, verified; restore --host takes one host's part; with the second
// host's node manager down the backup fails naming it, unless
// --skip-unreachable, which records the gap; --host fetches one host's
// backup alone; the joined host cannot gather the domain's.
func TestDomainBackup(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, fingerprint := startANMHost(t, "127.0.0.2", pw)
	second, join := newHostOn(t, "127.0.0.3", anm, pw)
	second.h.MustRun("", append(join, "--anm_fingerprint", fingerprint)...)
	t.Cleanup(func() { second.h.Run("", "nodemanager", "-k", "-q") })
	second.h.MustRun("", "nodemanager", "-d")
	inStep(t, "the join", anm.h, second.h)
	var group struct{ ID string }
	result(t, anm.api("POST", "/api/topology/groups", `{"name":"G"}`), 201, &group)
	tp1, mp1, tp2, mp2 := gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t), gwtest.FreePort(t)
	var svc struct{ ID string }
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"one","hostID":"host-1","trafficPort":%d,"managementPort":%d}`, tp1, mp1)), 201, &svc)
	result(t, anm.api("POST", "/api/topology/services/"+group.ID, fmt.Sprintf(`{"name":"two","hostID":"host-2","trafficPort":%d,"managementPort":%d}`, tp2, mp2)), 201, &svc)
	inStep(t, "two instances", anm.h, second.h)

	dir := t.TempDir()
	out := filepath.Join(dir, "domain.backup")
	r := anm.h.Run("", "backup", "--domain", "-o", out, "--scratch", t.TempDir())
	if r.Code != 0 || !strings.Contains(r.Stdout, "the domain's backup: 2 hosts") || !strings.Contains(r.Stdout, "Domain backup "+out+": 2 hosts, every checksum right") || !strings.Contains(r.Stdout, "Starting the part of host host-1") || !strings.Contains(r.Stdout, `Instance "one" of group "G" started`) {
		t.Fatalf("backup --domain: %s", r)
	}
	// Verified again on the joined host: its own part is the one started.
	if r := second.h.Run("", "backup", "verify", out, "--scratch", t.TempDir()); r.Code != 0 || !strings.Contains(r.Stdout, "Starting the part of host host-2") || !strings.Contains(r.Stdout, `Instance "two" of group "G" started`) {
		t.Errorf("verify on the second host: %s", r)
	}
	// A drill of the whole domain: both hosts' parts started side by side.
	report := filepath.Join(t.TempDir(), "drill.json")
	r = anm.h.Run("", "dr", "drill", "--domain", "--report", report, "--scratch", t.TempDir())
	if r.Code != 0 || !strings.Contains(r.Stdout, "Restored 2 host(s)") || !strings.Contains(r.Stdout, `ok   instance "one" of group "G"`) || !strings.Contains(r.Stdout, `ok   instance "two" of group "G"`) || !strings.Contains(r.Stdout, "2 host(s), 2 instances") {
		t.Fatalf("dr drill --domain: %s", r)
	}
	for _, line := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(line, "Recovery") {
			t.Log(line)
		}
	}
	if r := anm.h.Run("", "dr", "drill", "--from", out, "--scratch", t.TempDir()); r.Code != 0 || !strings.Contains(r.Stdout, "Restored 2 host(s)") {
		t.Errorf("dr drill --from a domain backup: %s", r)
	}
	// Restore the second host's part on a cold site.
	cold := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "apigateway")}
	if r := cold.Run("", "restore", out); r.Code != 2 || !strings.Contains(r.Stderr, "--host") {
		t.Errorf("restore of a domain backup without --host: %s", r)
	}
	if r := cold.Run("", "restore", out, "--host", "nosuch"); r.Code != 1 || !strings.Contains(r.Stderr, `no part for host "nosuch"`) || !strings.Contains(r.Stderr, "host-2 (second)") {
		t.Errorf("restore of an unknown host: %s", r)
	}
	if r := cold.Run("", "restore", out, "--host", "second"); r.Code != 0 || !strings.Contains(r.Stdout, "backup of host host-2") {
		t.Fatalf("restore --host second: %s", r)
	}
	nm, err := domain.LoadNodeManagerConf(home.Home{Dir: cold.Dir})
	if err != nil || nm.HostID != "host-2" || nm.ANMAddress != "127.0.0.2" {
		t.Errorf("the restored host: %+v %v", nm, err)
	}
	live, _ := os.ReadFile(second.h.Path("system", "conf", "certs", "private", "nodemanager-key.pem"))
	restored, _ := os.ReadFile(filepath.Join(cold.Dir, "system", "conf", "certs", "private", "nodemanager-key.pem"))
	if len(live) == 0 || string(live) != string(restored) {
		t.Error("the restored host's node manager key is not the live one's")
	}
	// One host alone, through its node manager.
	one := filepath.Join(dir, "host-2.backup")
	if r := anm.h.Run("", "backup", "--host", "host-2", "-o", one, "--no-verify"); r.Code != 0 || !strings.Contains(r.Stdout, "the backup of host host-2") {
		t.Errorf("backup --host: %s", r)
	}
	if r := anm.h.Run("", "backup", "verify", "--checksums-only", one); r.Code != 0 || !strings.Contains(r.Stdout, "host host-2") {
		t.Errorf("the host's backup: %s", r)
	}
	// The joined host cannot gather the domain's backup.
	if r := second.h.Run("", "backup", "--domain", "-o", filepath.Join(dir, "x")); r.Code != 1 || !strings.Contains(r.Stderr, "run it on the Admin Node Manager's host") {
		t.Errorf("--domain on a joined host: %s", r)
	}
	// gatehouse client status: every host's scheduled backups. The second
	// host's fail (their directory cannot be made): shown, and exit 1.
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, nil, 0o600)
	sh := home.Home{Dir: second.h.Dir}
	nmc, err := domain.LoadNodeManagerConf(sh)
	if err != nil {
		t.Fatal(err)
	}
	nmc.Backup = schedule.Conf{Schedule: "@every 1s", Directory: filepath.Join(blocker, "sub")}
	if err := domain.SaveNodeManagerConf(sh, nmc); err != nil {
		t.Fatal(err)
	}
	second.h.MustRun("", "nodemanager", "-k", "-q")
	second.h.MustRun("", "nodemanager", "-d")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st, _ := schedule.ReadState(sh); st.Failed > 0 {
			break
		}
	}
	client := []string{"client", "--url", fmt.Sprintf("https://127.0.0.2:%d/api", anm.port), "--cacert", anm.h.Path("groups", "certs", "domaincert.pem"), "--username", "admin", "--password-file", pw}
	r = anm.h.Run("", append(client, "status")...)
	if r.Code != 1 || !strings.Contains(r.Stdout, "first (host-1): no scheduled backups") ||
		!strings.Contains(r.Stdout, `second (host-2): scheduled backups "@every 1s" into `) || !strings.Contains(r.Stdout, "FAILING") ||
		!strings.Contains(r.Stderr, "the last scheduled backup of host-2 failed") {
		t.Errorf("client status with a failing host: %s", r)
	}
	if r := anm.h.Run("", append(client, "status", "G")...); r.Code != 2 || !strings.Contains(r.Stderr, "GROUP and INSTANCE, or no argument") {
		t.Errorf("client status with one argument: %s", r)
	}
	var bs struct {
		Hosts []struct {
			HostID, NodeManager string
			Backups             *struct{ Failing bool }
		}
	}
	result(t, anm.api("GET", "/api/backup/status", ""), 200, &bs)
	if len(bs.Hosts) != 2 || bs.Hosts[0].Backups != nil || bs.Hosts[1].Backups == nil || !bs.Hosts[1].Backups.Failing {
		t.Errorf("GET /api/backup/status: %+v", bs)
	}
	// Through the API: the whole domain (both hosts), or --this-host.
	viaAPI := filepath.Join(dir, "api-domain.backup")
	if r := anm.h.Run("", append(client, "backup", "-o", viaAPI)...); r.Code != 0 || !strings.Contains(r.Stdout, "Wrote the domain's backup (hosts host-1, host-2)") {
		t.Errorf("client backup of the domain: %s", r)
	}
	if r := anm.h.Run("", "backup", "verify", "--checksums-only", viaAPI); r.Code != 0 {
		t.Errorf("the domain backup through the API does not verify: %s", r)
	}
	if r := anm.h.Run("", append(client, "backup", "--this-host", "-o", filepath.Join(dir, "api-host.backup"))...); r.Code != 0 || !strings.Contains(r.Stdout, "Wrote the backup of host host-1") {
		t.Errorf("client backup --this-host: %s", r)
	}
	if r := anm.h.Run("", append(client, "backup", "--this-host", "--skip-unreachable", "-o", filepath.Join(dir, "x"))...); r.Code != 2 && r.Code != 1 || !strings.Contains(r.Stderr, "skipUnreachable is for a backup of the whole domain") {
		t.Errorf("client backup --this-host --skip-unreachable: %s", r)
	}
	// The second host down: the backup fails naming it, and nothing is
	// written; with --skip-unreachable the gap is recorded.
	second.h.MustRun("", "nodemanager", "-k", "-q")
	if r := anm.h.Run("", append(client, "status")...); r.Code != 1 || !strings.Contains(r.Stdout, "second (host-2): node manager unreachable") {
		t.Errorf("client status with a host down: %s", r)
	}
	failed := filepath.Join(dir, "failed.backup")
	if r := anm.h.Run("", "backup", "--domain", "-o", failed, "--no-verify"); r.Code != 1 || !strings.Contains(r.Stderr, "host host-2") || !strings.Contains(r.Stderr, "nothing was written") {
		t.Errorf("backup --domain with a host down: %s", r)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("a failed domain backup left %s", failed)
	}
	gap := filepath.Join(dir, "gap.backup")
	r = anm.h.Run("", "backup", "--domain", "--skip-unreachable", "-o", gap, "--no-verify")
	if r.Code != 0 || !strings.Contains(r.Stderr, "WARNING: host host-2 (second) is NOT in this backup") || !strings.Contains(r.Stdout, "host host-2 missing (unreachable)") {
		t.Errorf("--skip-unreachable: %s", r)
	}
	if r := anm.h.Run("", "backup", "verify", "--checksums-only", gap); r.Code != 0 || !strings.Contains(r.Stdout, "1 hosts") || !strings.Contains(r.Stdout, "host host-2 (second) is NOT in it") {
		t.Errorf("verify of a backup with a gap: %s", r)
	}
	if r := anm.h.Run("", "backup", "--this-host", "--skip-unreachable", "-o", gap); r.Code != 2 {
		t.Errorf("--skip-unreachable with --this-host: %s", r)
	}
	// Without --domain, on the ANM's host of two hosts: the whole domain.
	dflt := filepath.Join(dir, "default.backup")
	if r := anm.h.Run("", "backup", "--skip-unreachable", "-o", dflt, "--no-verify"); r.Code != 0 || !strings.Contains(r.Stderr, "backing up the whole domain") || !strings.Contains(r.Stderr, "host host-2 (second) is NOT in this backup") {
		t.Errorf("backup on the ANM's host of two hosts: %s", r)
	}
	if r := anm.h.Run("", "backup", "--this-host", "-o", filepath.Join(dir, "this.backup"), "--no-verify"); r.Code != 0 || strings.Contains(r.Stderr, "whole domain") || !strings.Contains(r.Stdout, "Backed up") {
		t.Errorf("backup --this-host: %s", r)
	}
}
