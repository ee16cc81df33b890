package gwtest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// Instances' management listeners take mutual TLS with certificates signed
// by the domain CA (docs/instance.md). These helpers give tests a client
// certificate issued by the CA of the test's install directory.

// MgmtURL is https://127.0.0.1:port followed by path: a management
// listener's address.
func MgmtURL(port int, path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", port, path)
}

// ClientCert issues (once per Home) a client certificate signed by the
// domain CA of h, for the name "gwtest client", and returns the files of
// the certificate and of its key (in a temporary directory of the test),
// ready for curl --cert and --key. The domain must exist (InitDomain or
// quickstart).
func (h *Home) ClientCert() (certFile, keyFile string) {
	h.T.Helper()
	h.mgmtMu.Lock()
	defer h.mgmtMu.Unlock()
	if h.clientCert != "" {
		return h.clientCert, h.clientKey
	}
	ca, err := pki.LoadCA(home.Home{Dir: h.Dir})
	if err != nil {
		h.T.Fatalf("client certificate: %v", err)
	}
	kp, err := ca.IssueKeyPair("gwtest client", []string{"localhost"}, nil, true)
	if err != nil {
		h.T.Fatalf("client certificate: %v", err)
	}
	dir := h.T.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "private", "client-key.pem")
	if err := kp.Save(home.Home{Dir: dir}, certFile, keyFile); err != nil {
		h.T.Fatalf("client certificate: %v", err)
	}
	h.clientCert, h.clientKey = certFile, keyFile
	return certFile, keyFile
}

// CACertFile is the domain CA certificate of h (for curl --cacert).
func (h *Home) CACertFile() string { return h.Path("groups", "certs", pki.CertFileName) }

// MgmtClient is an HTTP client for the management listeners of h's
// instances: it presents ClientCert's certificate and trusts only the
// domain CA of h. It has a 30 s timeout and no proxy.
func (h *Home) MgmtClient() *http.Client {
	h.T.Helper()
	certFile, keyFile := h.ClientCert()
	h.mgmtMu.Lock()
	defer h.mgmtMu.Unlock()
	if h.mgmtClient != nil {
		return h.mgmtClient
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		h.T.Fatalf("management client: %v", err)
	}
	caCert, err := pki.LoadCACert(home.Home{Dir: h.Dir})
	if err != nil {
		h.T.Fatalf("management client: %v", err)
	}
	conf := pki.MutualTLSClient(cert, caCert)
	h.mgmtClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: conf, MaxIdleConnsPerHost: 4}}
	return h.mgmtClient
}

// MgmtGet fetches path from the management listener on port with
// MgmtClient and returns status and body; it fails the test when there is
// no answer.
func (h *Home) MgmtGet(port int, path string) (int, string) {
	h.T.Helper()
	resp, err := h.MgmtClient().Get(MgmtURL(port, path))
	if err != nil {
		h.T.Fatalf("GET %s: %v", MgmtURL(port, path), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
