package nodeapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// renewBefore: a certificate closer than this to its expiry is reissued on
// start (on the host that has the CA key).
const renewBefore = 30 * 24 * time.Hour

// CertNames are the subject alternative names of a node manager's
// certificate: the loopback names (localhost, 127.0.0.1, ::1), the host's
// name in the topology when it is a DNS name, and the listen address (an
// IP, or a DNS name) when it is a specific one. Nothing else: the domain CA
// signs a joining node manager exactly these (POST /nm/join refuses a CSR
// that asks for more), so that no node can hold another's names. A joining
// node manager asks for them in its CSR (managedomain -a), so that its
// listener finds its certificate fine.
func CertNames(topologyHostName, listenAddress string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	if n := strings.ToLower(topologyHostName); isDNSName(n) && n != "localhost" {
		dns = append(dns, n)
	}
	if n := strings.ToLower(listenAddress); isDNSName(n) && !slices.Contains(dns, n) {
		dns = append(dns, n)
	}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(listenAddress); ip != nil && !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
		ips = append(ips, ip)
	}
	return dns, ips
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// NodeManagerCert returns this host's node manager certificate
// (system/conf/certs/nodemanager.pem), issuing it with the domain CA when it
// is missing, not signed by the current domain CA, lacks one of the names,
// or expires within 30 days — which needs the CA key
// (groups/certs/private/domainkey.pem), present on the host that created
// the domain. Without the key an existing certificate is used as it is (a
// warning says why it is not ideal); a missing one is an error.
func NodeManagerCert(h home.Home, log *slog.Logger, commonName string, dns []string, ips []net.IP) (tls.Certificate, *x509.Certificate, error) {
	caCert, err := pki.LoadCACert(h)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certFile, keyFile := pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h)
	cur, err := pki.LoadKeyPair(h, certFile, keyFile)
	var why string
	switch {
	case errors.Is(err, os.ErrNotExist):
		why = "there is none"
	case err != nil:
		why = err.Error()
	default:
		if cerr := pki.CheckLeaf(cur.Leaf, caCert, dns, ips, renewBefore); cerr != nil {
			why = "the one there " + cerr.Error()
		} else {
			return cur, caCert, nil
		}
	}
	ca, caErr := pki.LoadCA(h)
	if caErr != nil {
		if cur.Leaf != nil {
			log.Warn("node manager certificate kept although it should be reissued: this host has no domain CA key", "reason", why, "file", h.Rel(certFile))
			return cur, caCert, nil
		}
		return tls.Certificate{}, nil, fmt.Errorf("this host has no node manager certificate (%s) and cannot issue one: %w (a host joins the domain with managedomain -a, which obtains its certificate from the Admin Node Manager)", h.Rel(certFile), caErr)
	}
	kp, err := ca.IssueKeyPair(commonName, dns, ips, true)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	defer kp.KeyPEM.Wipe()
	if err := kp.Save(h, certFile, keyFile); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("saving node manager certificate: %w", err)
	}
	log.Info("node manager certificate issued by the domain CA", "reason", why, "file", h.Rel(certFile), "dnsNames", dns, "ips", fmt.Sprint(ips), "notAfter", kp.Cert.NotAfter)
	c, err := pki.LoadKeyPair(h, certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return c, caCert, nil
}

// NodeManagerLive is NodeManagerCert as a pki.Live: the certificate checked
// (and issued when it should be and can) once, then read again whenever
// its files change, so that certificates replaced by managedomain
// --regen_certs are used without restarting the node manager.
func NodeManagerLive(h home.Home, log *slog.Logger, commonName string, dns []string, ips []net.IP) (*pki.Live, error) {
	if _, _, err := NodeManagerCert(h, log, commonName, dns, ips); err != nil {
		return nil, err
	}
	return pki.NewLive(h, pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h), pki.CertFile(h))
}

// ServerTLSConfig is the listener's TLS: TLS 1.2 or newer, the node
// manager's certificate, and client certificates requested and verified
// against the domain CA when given (a certificate from another CA fails the
// handshake). Which paths need one is decided per request (requirePeer).
//
// The certificate and the CA are live's at each handshake.
func ServerTLSConfig(live *pki.Live) *tls.Config {
	return live.ServerConfig(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: pki.CipherSuites,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		NextProtos:   []string{"h2", "http/1.1"},
	})
}

// VerifiedPeer reports whether the request came with a client certificate
// that the handshake verified against the domain CA.
func VerifiedPeer(cs *tls.ConnectionState) bool {
	return cs != nil && len(cs.VerifiedChains) > 0
}
