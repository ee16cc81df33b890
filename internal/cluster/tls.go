package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// routeServerName is the name a route's dialler verifies the peer's
// certificate against: every instance certificate names localhost
// (pki.InstanceCertNames), wherever the instance runs, so that a peer on
// another host is verified by its chain (the domain CA) and its subject
// (an instance of this group), not by the address it was dialled at.
const routeServerName = "localhost"

// RouteTLS is the routes' mutual TLS for instance certificates of group
// groupID read from live (pki.Live: files replaced on disk are used from
// the next handshake): TLS 1.2 or newer, the instance's certificate
// presented both ways, the peer's verified against the domain CA, and its
// subject required to be an instance of the same group
// (pki.InstanceCommonName). A node manager's certificate, another group's
// instance's or another CA's fail the handshake.
func RouteTLS(live *pki.Live, groupID string) (*tls.Config, error) {
	id, err := live.Load()
	if err != nil {
		return nil, fmt.Errorf("route TLS: %w", err)
	}
	suffix := " (" + groupID + ")"
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cluster route: the peer presented no certificate")
		}
		cn := cs.PeerCertificates[0].Subject.CommonName
		if !strings.HasPrefix(cn, instanceCNPrefix) || !strings.HasSuffix(cn, suffix) {
			return fmt.Errorf("cluster route: %q is not an instance of group %s", cn, groupID)
		}
		return nil
	}
	base := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     pki.CipherSuites,
		ClientAuth:       tls.RequireAndVerifyClientCert,
		VerifyConnection: verify,
	}
	c := base.Clone()
	c.ServerName = routeServerName
	c.RootCAs = id.Pool()
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		id, err := live.Load()
		if err != nil {
			return nil, err
		}
		return &id.Cert, nil
	}
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		id, err := live.Load()
		if err != nil {
			return nil, err
		}
		s := base.Clone()
		s.Certificates = []tls.Certificate{id.Cert}
		s.ClientCAs = id.Pool()
		return s, nil
	}
	return c, nil
}

// instanceCNPrefix starts every instance certificate's subject
// (pki.InstanceCommonName).
var instanceCNPrefix, _, _ = strings.Cut(pki.InstanceCommonName("g", "i"), "i (g)")
