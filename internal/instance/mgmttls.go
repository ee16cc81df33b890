package instance

import (
	"crypto/tls"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// LoadManagementTLS reads the certificate of instance iid of group gid
// (pki.InstanceCertFile and pki.InstanceKeyFile) and the domain CA
// certificate of h, and returns the management listener's TLS
// configuration for Options.ManagementTLS: mutual TLS inside the domain,
// TLS 1.2 or newer, the instance's certificate presented, and a client
// certificate signed by the domain CA required (a peer without one, or with
// one of another CA, fails the handshake). Issuing the certificate is the
// caller's business (domain.EnsureInstanceCert).
//
// The files are read again when they change (pki.Live): certificates that
// managedomain --regen_certs replaced are presented from the next
// handshake on, without restarting the instance.
func LoadManagementTLS(h home.Home, groupID, instanceID string) (*tls.Config, error) {
	if _, err := pki.LoadCACert(h); err != nil {
		return nil, fmt.Errorf("management listener TLS: %w", err)
	}
	live, err := pki.NewLive(h, pki.InstanceCertFile(h, groupID, instanceID), pki.InstanceKeyFile(h, groupID, instanceID), pki.CertFile(h))
	if err != nil {
		return nil, fmt.Errorf("management listener TLS: instance certificate: %w", err)
	}
	base := pki.MutualTLSServer(tls.Certificate{}, nil)
	base.NextProtos = []string{"http/1.1"}
	return live.ServerConfig(base), nil
}
