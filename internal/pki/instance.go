package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Files of a gateway instance's certificate (see docs/pki.md), under the
// instance's directory: its management listener presents it, and it may
// serve as a client certificate too.
const (
	InstanceCertName = "instance.pem"
	InstanceKeyName  = "instance-key.pem"
)

// InstanceCertFile is groups/<gid>/<iid>/conf/certs/instance.pem: the
// instance's certificate (PEM, 0644), signed by the domain CA.
func InstanceCertFile(h home.Home, groupID, instanceID string) string {
	return filepath.Join(h.InstanceDir(groupID, instanceID), "conf", "certs", InstanceCertName)
}

// InstanceKeyFile is groups/<gid>/<iid>/conf/certs/private/instance-key.pem:
// its private key (PKCS#8 PEM, 0600, directory 0700).
func InstanceKeyFile(h home.Home, groupID, instanceID string) string {
	return filepath.Join(h.InstanceDir(groupID, instanceID), "conf", "certs", "private", InstanceKeyName)
}

// InstanceCertNames are the subject alternative names of an instance's
// certificate: localhost, 127.0.0.1, ::1, and the management listener's
// address when it is a specific IP or a host name (an unspecified address,
// "", 0.0.0.0 or ::, adds nothing).
func InstanceCertNames(managementAddress string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	a := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(managementAddress)), ".")
	if ip := net.ParseIP(a); ip != nil {
		if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	} else if a != "" && !slices.Contains(dns, a) {
		dns = append(dns, a)
	}
	return dns, ips
}

// InstanceCommonName is the subject CN of an instance's certificate.
func InstanceCommonName(groupID, instanceID string) string {
	return fmt.Sprintf("Gatehouse Instance %s (%s)", instanceID, groupID)
}

// IssueInstance issues and saves the certificate of instance iid of group
// gid (ECDSA P-256, server and client authentication, the names of
// InstanceCertNames) and returns it. The files are replaced atomically, the
// key first.
func (ca *CA) IssueInstance(h home.Home, groupID, instanceID, managementAddress string) (*KeyPair, error) {
	dns, ips := InstanceCertNames(managementAddress)
	kp, err := ca.IssueKeyPair(InstanceCommonName(groupID, instanceID), dns, ips, true)
	if err != nil {
		return nil, err
	}
	if err := kp.Save(h, InstanceCertFile(h, groupID, instanceID), InstanceKeyFile(h, groupID, instanceID)); err != nil {
		kp.KeyPEM.Wipe() // mutate:equivalent delete-stmt kp is dropped on this path: wiping its key is defence in depth that no caller can see
		return nil, fmt.Errorf("saving the certificate of %s: %w", instanceID, err)
	}
	return kp, nil
}

// CheckPeerLeaf is CheckLeaf for a certificate used on both ends of mutual
// TLS: it must also allow client authentication.
func CheckPeerLeaf(leaf, ca *x509.Certificate, dnsNames []string, ips []net.IP, minValidity time.Duration) error {
	if err := CheckLeaf(leaf, ca, dnsNames, ips, minValidity); err != nil {
		return err
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return errors.New("does not allow client authentication")
	}
	return nil
}

// MutualTLSServer is the TLS configuration of a listener inside the domain:
// TLS 1.2 or newer, cert presented, and a client certificate required and
// verified against the domain CA caCert (a peer without one, or with one of
// another CA, fails the handshake).
//
// With a nil caCert it is the base of a Live's ServerConfig, which sets the
// certificate and the CA at each handshake.
func MutualTLSServer(cert tls.Certificate, caCert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	if caCert != nil {
		pool.AddCert(caCert)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
}

// MutualTLSClient is the TLS configuration of a client inside the domain:
// TLS 1.2 or newer, cert presented when the server asks, and the server's
// certificate verified against the domain CA caCert (and its name against
// the address dialled).
func MutualTLSClient(cert tls.Certificate, caCert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}
}

// NodeManagerCNPrefix starts the subject common name of every node
// manager's certificate: "Gatehouse Node Manager nodemanager-2 (host-2)".
// Only the domain CA issues certificates, so a verified chain whose leaf
// has it is a node manager's (instances' say "Gatehouse Instance ...").
const NodeManagerCNPrefix = "Gatehouse Node Manager "

// NodeManagerCommonName is the subject common name of node manager nmID of
// host hostID.
func NodeManagerCommonName(nmID, hostID string) string {
	return NodeManagerCNPrefix + nmID + " (" + hostID + ")"
}
