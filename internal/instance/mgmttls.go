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
func LoadManagementTLS(h home.Home, groupID, instanceID string) (*tls.Config, error) {
	caCert, err := pki.LoadCACert(h)
	if err != nil {
		return nil, fmt.Errorf("management listener TLS: %w", err)
	}
	cert, err := pki.LoadKeyPair(pki.InstanceCertFile(h, groupID, instanceID), pki.InstanceKeyFile(h, groupID, instanceID))
	if err != nil {
		return nil, fmt.Errorf("management listener TLS: instance certificate: %w", err)
	}
	conf := pki.MutualTLSServer(cert, caCert)
	conf.NextProtos = []string{"http/1.1"}
	return conf, nil
}
