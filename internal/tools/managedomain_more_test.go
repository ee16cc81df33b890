package tools_test

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// Menu 8 and 9 (tags) and 19, 20, 21 (the deployments, an archive stored
// without a rollout, its download) through the real binary and a real ANM.
func TestManagedomainTagsAndArchives(t *testing.T) {
	pw := adminPasswordFile(t)
	anm, _ := startANMHost(t, "127.0.0.2", pw)
	h := anm.h
	h.MustRun("", "managedomain", "-c", "-n", "one", "-g", "G", "--traffic_port", fmt.Sprint(gwtest.FreePort(t)), "--management_port", fmt.Sprint(gwtest.FreePort(t)))

	// Tags.
	h.MustRun("", "managedomain", "--add_tag", "-n", "one", "-g", "G", "--tag_name", "env", "--tag_value", "prod")
	h.MustRun("", "managedomain", "--add_tag", "-n", "instance-1", "-g", "group-2", "--tag_name", "team", "--tag_value", "pay ments")
	if r := h.MustRun("", "managedomain", "-p"); !strings.Contains(r.Stdout, `tags: env="prod" team="pay ments"`) {
		t.Errorf("-p after tagging: %s", r.Stdout)
	}
	for _, c := range []struct{ args, want []string }{
		{[]string{"--add_tag", "-n", "one", "-g", "G", "--tag_name", "internal_admin_nm", "--tag_value", "true"}, []string{"Gatehouse's own"}},
		{[]string{"--add_tag", "-n", "one", "-g", "G", "--tag_name", "bad name"}, []string{`tag name "bad name"`}},
		{[]string{"--delete_tag", "-n", "one", "-g", "G", "--tag_name", "nope"}, []string{`has no tag "nope"`}},
		{[]string{"--add_tag", "-n", "nope", "-g", "G", "--tag_name", "x"}, []string{`no instance "nope"`}},
	} {
		wantFail(t, h.Run("", append([]string{"managedomain"}, c.args...)...), 1, c.want...)
	}
	h.MustRun("", "managedomain", "--delete_tag", "-n", "one", "-g", "G", "--tag_name", "env")
	if r := h.MustRun("", "managedomain", "-p"); strings.Contains(r.Stdout, "env=") || !strings.Contains(r.Stdout, `tags: team="pay ments"`) {
		t.Errorf("-p after deleting a tag: %s", r.Stdout)
	}
	var audit struct{ Entries []auditEntry }
	result(t, anm.api("GET", "/api/audit?action=tag", ""), 200, &audit)
	if len(audit.Entries) != 7 || audit.Entries[0].Action != "delete tag" || audit.Entries[0].Outcome != "ok" {
		t.Errorf("audit of the tags: %+v", audit.Entries)
	}

	// Menu 6: rename and new ports.
	tp := gwtest.FreePort(t)
	r0 := h.MustRun("", "managedomain", "--edit_instance", "-n", "one", "-g", "G", "--new_name", "uno", "--traffic_port", fmt.Sprint(tp))
	if !strings.Contains(r0.Stdout, `Renamed instance "one" to "uno"`) || !strings.Contains(r0.Stdout, fmt.Sprintf("traffic %d", tp)) {
		t.Errorf("edit_instance: %s", r0)
	}
	if r := h.MustRun("", "managedomain", "-p"); !strings.Contains(r.Stdout, `instance-1       "uno"`) || !strings.Contains(r.Stdout, fmt.Sprintf("traffic %d", tp)) {
		t.Errorf("-p after edit_instance: %s", r.Stdout)
	}
	wantFail(t, h.Run("", "managedomain", "--edit_instance", "-n", "uno", "-g", "G"), 2, "wants --new_name")
	h.MustRun("", "managedomain", "-c", "-n", "two", "-g", "G", "--traffic_port", fmt.Sprint(gwtest.FreePort(t)), "--management_port", fmt.Sprint(gwtest.FreePort(t)))
	wantFail(t, h.Run("", "managedomain", "--edit_instance", "-n", "two", "-g", "G", "--new_name", "uno"), 1, `instance "uno" in group "G" already exists`)

	// Archives: stored without a rollout, listed, downloaded.
	cred := []string{"--username", "admin", "--password_file", pw}
	conf := filepath.Join(t.TempDir(), "group.yaml")
	os.WriteFile(conf, []byte("log:\n  level: debug\n"), 0o644)
	r := h.MustRun("", append([]string{"managedomain", "--create_archive", "-g", "G", "--archive_filename", conf, "--comment", "from the menu"}, cred...)...)
	if !strings.Contains(r.Stdout, "archive 1 of group-2") || strings.Contains(r.Stdout, "job ") {
		t.Errorf("create_archive: %s", r.Stdout)
	}
	if r := h.MustRun("", append([]string{"managedomain", "--list_deployments", "-g", "G"}, cred...)...); !strings.Contains(r.Stdout, "from the menu") || !strings.Contains(r.Stdout, "group-2") {
		t.Errorf("list_deployments: %s", r.Stdout)
	}
	out := filepath.Join(t.TempDir(), "a.tar.gz")
	h.MustRun("", append([]string{"managedomain", "--download_archive", "-g", "group-2", "--archive", "1", "-o", out}, cred...)...)
	if data, err := os.ReadFile(out); err != nil || !strings.Contains(cdTarFile(t, data, "group.yaml"), "level: debug") {
		t.Errorf("download_archive: %v", err)
	}
	wantFail(t, h.Run("", append([]string{"managedomain", "--download_archive", "-g", "G", "--archive", "x", "-o", out}, cred...)...), 1, `--archive "x"`)
	// Menu 22: the comment and name change, the archive does not.
	if r := h.MustRun("", append([]string{"managedomain", "--update_archive", "-g", "G", "--archive", "1", "--comment", "reviewed", "--archive_name", "orders v2"}, cred...)...); !strings.Contains(r.Stdout, `Archive 1 of group-2: comment "reviewed", name "orders v2"`) {
		t.Errorf("update_archive: %s", r)
	}
	if r := h.MustRun("", append([]string{"managedomain", "--list_deployments", "-g", "G"}, cred...)...); !strings.Contains(r.Stdout, "reviewed") {
		t.Errorf("list after update_archive: %s", r.Stdout)
	}
	wantFail(t, h.Run("", append([]string{"managedomain", "--update_archive", "-g", "G", "--archive", "1"}, cred...)...), 2, "wants --comment")
	wantFail(t, h.Run("", append([]string{"managedomain", "--update_archive", "-g", "G", "--archive", "9", "--comment", "x"}, cred...)...), 1, "has no archive 9")
	out2 := filepath.Join(t.TempDir(), "b.tar.gz")
	h.MustRun("", append([]string{"managedomain", "--download_archive", "-g", "group-2", "--archive", "1", "-o", out2}, cred...)...)
	if a, b := readFileT(t, out), readFileT(t, out2); a != b {
		t.Error("the archive changed with its properties")
	}
	// Menu 2 and 3: a host renamed and deleted through the API; the ANM's
	// own host is refused.
	var hst struct{ ID string }
	result(t, anm.api("POST", "/api/topology/hosts", `{"name":"spare"}`), 201, &hst)
	if r := h.MustRun("", append([]string{"managedomain", "--edit_host", "--host", "spare", "--new_name", "spare2"}, cred...)...); !strings.Contains(r.Stdout, "renamed host "+hst.ID+" to spare2") {
		t.Errorf("edit_host: %s", r)
	}
	if r := h.MustRun("", append([]string{"managedomain", "--delete_host", "--host", "spare2"}, cred...)...); !strings.Contains(r.Stdout, "deleted host "+hst.ID) {
		t.Errorf("delete_host: %s", r)
	}
	wantFail(t, h.Run("", append([]string{"managedomain", "--delete_host", "--host", "host-1"}, cred...)...), 1, "Admin Node Manager")
	wantFail(t, h.Run("", append([]string{"managedomain", "--delete_host", "--host", "nowhere"}, cred...)...), 1, `no host with the id or name "nowhere"`)

	// The menu offers them.
	if r := h.Run("q\n", "managedomain", "--menu"); strings.Contains(r.Stdout, "8) Add a tag to a gateway instance (not available yet)") || strings.Contains(r.Stdout, "19) List the deployments (not available yet)") {
		t.Errorf("menu: %s", r.Stdout)
	}
}

func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Menu 25: the domain CA signs an operator's CSR as a client certificate
// only: no host names, no common name of Gatehouse's own, bounded days;
// audited.
func TestManagedomainSignCSR(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	dir := t.TempDir()
	csrFile := func(name, cn string, dns []string) string {
		csr, _, err := pki.NewKeyAndCSR(cn, dns, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, csr, 0o600)
		return p
	}
	out := filepath.Join(dir, "prometheus.pem")
	r := h.MustRun("", "managedomain", "--sign_csr", "--csr_file", csrFile("ok.csr", "prometheus", nil), "--cert_file", out, "--days", "30")
	if !strings.Contains(r.Stdout, `Signed a client certificate for "prometheus"`) {
		t.Errorf("sign_csr: %s", r)
	}
	cert, err := pki.ParseCertPEM([]byte(readFileT(t, out)))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "prometheus" || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
		t.Errorf("certificate: CN %q, usages %v, names %v %v", cert.Subject.CommonName, cert.ExtKeyUsage, cert.DNSNames, cert.IPAddresses)
	}
	if d := time.Until(cert.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("valid until %s, want about 30 days", cert.NotAfter)
	}
	ca, err := pki.ParseCertPEM([]byte(readFileT(t, h.Path("groups", "certs", "domaincert.pem"))))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("as a client certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the certificate verifies for a server")
	}
	wantFail(t, h.Run("", "managedomain", "--sign_csr", "--csr_file", csrFile("nm.csr", "Gatehouse Node Manager nodemanager-9 (host-9)", nil), "--cert_file", out), 1, "the domain's own")
	wantFail(t, h.Run("", "managedomain", "--sign_csr", "--csr_file", csrFile("dns.csr", "web", []string{"anm.example.com"}), "--cert_file", out), 1, "name no host")
	wantFail(t, h.Run("", "managedomain", "--sign_csr", "--csr_file", csrFile("d.csr", "x", nil), "--cert_file", out, "--days", "731"), 2, "--days")
	os.WriteFile(filepath.Join(dir, "junk.csr"), []byte("not a csr"), 0o600)
	wantFail(t, h.Run("", "managedomain", "--sign_csr", "--csr_file", filepath.Join(dir, "junk.csr"), "--cert_file", out), 1, "CERTIFICATE REQUEST")
	if log := readFileT(t, h.Path("conf", "audit", "audit.log")); !strings.Contains(log, `"action":"sign certificate"`) || !strings.Contains(log, `client certificate \"prometheus\"`) {
		t.Errorf("no audit entry of the signature")
	}
}

// --is_admin (a second Admin Node Manager) is later work: -a and
// --edit_host refuse it, saying so, before anything is done.
func TestManagedomainIsAdminLater(t *testing.T) {
	h := gwtest.NewHome(t)
	h.InitDomain()
	wantFail(t, h.Run("", "managedomain", "--edit_host", "--host", "host-1", "--new_name", "x", "--username", "admin", "--password", "p", "--is_admin"), 1, "a second Admin Node Manager is not available yet")
	fresh := gwtest.NewHome(t)
	wantFail(t, fresh.Run("", "managedomain", "-a", "--anm_host", "127.0.0.1:1", "--username", "admin", "--password", "p", "--is_admin"), 1, "a second Admin Node Manager is not available yet")
	if _, err := os.Stat(fresh.Path("groups", "topology.json")); err == nil {
		t.Error("-a --is_admin wrote a topology")
	}
}
