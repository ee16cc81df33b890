package instance

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// startDomainTLSInstance starts an instance whose management listener has
// the domain's mutual TLS (a new domain CA in its install directory, the
// instance's certificate, LoadManagementTLS), with more options after.
// It returns the instance, the CA and the listener's https base URL.
func startDomainTLSInstance(t *testing.T, yaml string, mod ...func(*Options)) (*testInstance, *pki.CA, string) {
	t.Helper()
	var ca *pki.CA
	ti := startInstance(t, yaml, append([]func(*Options){func(o *Options) {
		var err error
		if ca, err = pki.NewCA("D"); err != nil {
			t.Fatal(err)
		}
		if err := ca.Save(o.Home); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.IssueInstance(o.Home, o.GroupID, o.InstanceID, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if o.ManagementTLS, err = LoadManagementTLS(o.Home, o.GroupID, o.InstanceID); err != nil {
			t.Fatal(err)
		}
	}}, mod...)...)
	return ti, ca, strings.Replace(ti.mgmt, "http://", "https://", 1)
}

// domainClient is an HTTPS client trusting ca and presenting a client
// certificate of ca for common name cn.
func domainClient(t *testing.T, ca *pki.CA, cn string) *http.Client {
	t.Helper()
	kp, err := ca.IssueKeyPair(cn, []string{"localhost"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}}}
}

// The management listener with LoadManagementTLS: mutual TLS with the
// domain CA. Only a client with a certificate signed by that CA is served.
func TestManagementMutualTLS(t *testing.T) {
	ti, ca, base := startDomainTLSInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	url := base + "/status"

	other, err := pki.NewCA("Other")
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(ca *pki.CA, serverAndClient bool) []tls.Certificate {
		kp, err := ca.IssueKeyPair("client", []string{"localhost"}, nil, serverAndClient)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	client := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12},
		}}
	}
	tests := []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"domain certificate", leaf(ca, true), true},
		{"no certificate", nil, false},
		{"certificate of another CA", leaf(other, true), false},
		{"domain certificate for servers only", leaf(ca, false), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client(tt.certs).Get(url)
			if tt.ok {
				if err != nil {
					t.Fatalf("GET %s: %v", url, err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("GET %s: got %d, want 200", url, resp.StatusCode)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET %s: got %d, want the handshake refused", url, resp.StatusCode)
			}
		})
	}

	// TLS 1.1 is refused; so is plain HTTP (answered 400 by net/http).
	c := client(leaf(ca, true))
	c.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	c.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1: got %d, want the handshake refused", resp.StatusCode)
	}
	if r := do(t, nil, "GET", ti.mgmt+"/status", nil); r.status == 200 {
		t.Errorf("plain HTTP: got %d %s, want refused", r.status, r.body)
	}
}

// A missing certificate is an error naming the file.
func TestLoadManagementTLSMissing(t *testing.T) {
	ti := newInstance(t, quickstartYAML(newPorts(t), sampleAPI))
	ca, err := pki.NewCA("D")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(ti.home); err != nil {
		t.Fatal(err)
	}
	_, err = LoadManagementTLS(ti.home, groupID, instanceID)
	if err == nil || !strings.Contains(err.Error(), pki.InstanceCertName) {
		t.Errorf("LoadManagementTLS: got %v, want an error naming %s", err, pki.InstanceCertName)
	}
}
