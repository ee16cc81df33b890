package tools_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// Mutual TLS on an instance's management listener, with the real binary:
// the certificate issued when the instance is created; plain HTTP, TLS
// without a client certificate and a certificate of another CA refused; a
// domain-signed client (Go and curl) answered; the Admin Node Manager's
// router and supervisor reaching the instance with the node manager's
// certificate.
func TestManagementListenerMutualTLS(t *testing.T) {
	a := startANM(t)
	h := a.h
	tp, mp := gwtest.FreePort(t), gwtest.FreePort(t)
	h.MustRun("", "managedomain", "-c", "-n", "S", "-g", "G", "--traffic_port", strconv.Itoa(tp), "--management_port", strconv.Itoa(mp))

	// Issued at creation: files and modes.
	certFile := h.Path("groups", "group-2", "instance-1", "conf", "certs", "instance.pem")
	keyFile := h.Path("groups", "group-2", "instance-1", "conf", "certs", "private", "instance-key.pem")
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{certFile, 0o644}, {keyFile, 0o600}, {filepath.Dir(keyFile), 0o700 | os.ModeDir}} {
		if fi, err := os.Stat(c.path); err != nil || fi.Mode() != c.mode {
			t.Errorf("%s: got %v %v, want mode %v", c.path, fi.Mode(), err, c.mode)
		}
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S", "-g", "G")
	t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", "S", "-g", "G") })
	url := gwtest.MgmtURL(mp, "/status")

	caPEM, err := os.ReadFile(a.ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	other, err := pki.NewCA("Other")
	if err != nil {
		t.Fatal(err)
	}
	otherKP, err := other.IssueKeyPair("intruder", []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := tls.X509KeyPair(otherKP.CertPEM, otherKP.KeyPEM.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	tlsClient := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	refused := []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"plain HTTP", &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}, fmt.Sprintf("http://127.0.0.1:%d/status", mp)},
		{"TLS without a client certificate", tlsClient(nil), url},
		{"a client certificate of another CA", tlsClient([]tls.Certificate{otherCert}), url},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(tt.url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					t.Fatalf("GET %s: got 200, want refused", tt.url)
				}
			}
		})
	}
	code, body := h.MgmtGet(mp, "/status")
	if code != 200 || !strings.Contains(body, `"instanceId":"instance-1"`) {
		t.Errorf("domain client: got %d %s, want 200 with the status", code, body)
	}

	// curl, verifying the instance with the domain CA and presenting a
	// domain-signed certificate; then the instance's own certificate, as
	// QuickStart prints it; without a certificate it fails.
	cc, ck := h.ClientCert()
	curl := func(args ...string) (string, error) {
		out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20", "--cacert", a.ca}, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, pair := range [][2]string{{cc, ck}, {certFile, keyFile}} {
		if out, err := curl("--cert", pair[0], "--key", pair[1], url); err != nil || !strings.Contains(out, `"phase":"serving"`) {
			t.Errorf("curl --cert %s: %v: %s", pair[0], err, out)
		}
	}
	if out, err := curl(url); err == nil {
		t.Errorf("curl without a certificate: got success %s, want failure", out)
	}
	if out, err := curl("--cert", cc, "--key", ck, "--tls-max", "1.1", url); err == nil {
		t.Errorf("curl TLS 1.1: got success %s, want failure", out)
	}

	// POSTs (taking the instance out of the load balancer) only from this
	// host's node manager: not from another node manager of the domain,
	// nor from a name that merely starts like one, nor from an instance.
	domainCA, err := pki.LoadCA(home.Home{Dir: h.Dir})
	if err != nil {
		t.Fatal(err)
	}
	lbURL := fmt.Sprintf("https://127.0.0.1:%d/deployment/lb", mp)
	for _, cn := range []string{pki.NodeManagerCommonName("nodemanager-9", "host-9"), pki.NodeManagerCNPrefix + "nodemanager-1 (host-1) x", pki.InstanceCommonName("group-2", "instance-1")} {
		kp, err := domainCA.IssueKeyPair(cn, []string{"localhost"}, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tlsClient([]tls.Certificate{c}).Post(lbURL, "application/json", strings.NewReader(`{"inService": false}`))
		if err != nil {
			t.Fatalf("POST as %q: %v", cn, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("POST /deployment/lb as %q: got %d %s, want 403", cn, resp.StatusCode, b)
		}
	}
	if code, body := h.MgmtGet(mp, "/status"); code != 200 || !strings.Contains(body, `"inService":true`) {
		t.Errorf("after refused POSTs: got %d %s, want the instance still in service", code, body)
	}

	// The Admin Node Manager: router and supervisor over mutual TLS.
	if r := a.curl("-u", adminCreds, "/api/router/service/instance-1/status"); r.code != 200 || !strings.Contains(r.body, `"instanceId":"instance-1"`) {
		t.Errorf("/status through the router: got %d %s %s", r.code, r.body, r.stderr)
	}
	if r := a.curl("-u", adminCreds, "/api/router/service/instance-1/metrics"); r.code != 200 || !strings.Contains(r.body, "gatehouse_phase_state") {
		t.Errorf("/metrics through the router: got %d", r.code)
	}
	var st struct{ Status, Health, Phase string }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := a.api("POST", "/api/management/status/group-2/instance-1", "")
		var env struct{ Result json.RawMessage }
		json.Unmarshal([]byte(r.body), &env)
		json.Unmarshal(env.Result, &st)
		if st.Health == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor's view: got %+v (%s), want health ok", st, r.body)
		}
	}
	if st.Phase != "serving" || st.Status != "running" {
		t.Errorf("supervisor's view: got %+v, want running, serving", st)
	}
	log, _ := os.ReadFile(h.Path("groups", "group-2", "instance-1", "logs", "instance.log"))
	if !strings.Contains(string(log), "TLS handshake error") {
		t.Errorf("instance.log does not record the refused handshakes")
	}
}

// An instance without a certificate (created before certificates existed)
// gets one when it starts on the host that holds the CA key; on a host
// without the key it does not start, and the message says how to get one.
func TestStartinstanceIssuesMissingCert(t *testing.T) {
	h := gwtest.NewHome(t)
	p := newInstance(t, h, "G", "S", false)
	certDir := h.Path("groups", "group-2", "instance-1", "conf", "certs")
	if err := os.RemoveAll(certDir); err != nil {
		t.Fatal(err)
	}
	r := h.MustRun("", "startinstance", "-n", "S", "-g", "G", "-d")
	if code, _ := h.MgmtGet(p.mgmt, "/status"); code != 200 {
		t.Errorf("status after the certificate was issued at start: got %d", code)
	}
	if _, err := os.Stat(filepath.Join(certDir, "instance.pem")); err != nil {
		t.Errorf("certificate not issued at start: %v\n%s", err, r)
	}
	h.MustRun("", "startinstance", "-k", "-q", "-n", "S", "-g", "G")

	// No CA key on this host, no certificate: refused, saying how.
	if err := os.RemoveAll(certDir); err != nil {
		t.Fatal(err)
	}
	key := h.Path("groups", "certs", "private", "domainkey.pem")
	if err := os.Rename(key, key+".away"); err != nil {
		t.Fatal(err)
	}
	r = h.Run("", "startinstance", "-n", "S", "-g", "G", "-d")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no instance certificate") || !strings.Contains(r.Stderr, "no domain CA key") || !strings.Contains(r.Stderr, "instance.pem") {
		t.Errorf("start without a certificate nor the CA key: got %s, want a failure saying how to get one", r)
	}
}
