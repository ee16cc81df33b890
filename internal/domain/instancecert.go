package domain

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// InstanceCertRenewBefore: an instance certificate closer than this to its
// expiry is reissued when the instance starts (on a host that has the CA
// key).
const InstanceCertRenewBefore = 30 * 24 * time.Hour

// ErrNoInstanceCert is wrapped when an instance has no usable certificate
// for its management listener and this host cannot issue one.
var ErrNoInstanceCert = errors.New("no instance certificate")

// EnsureInstanceCert makes sure instance iid of group gid has a certificate
// for its management listener (pki.InstanceCertFile) that is signed by the
// current domain CA, names every one of pki.InstanceCertNames(managementAddress),
// allows server and client authentication and is valid for at least
// InstanceCertRenewBefore more. When it does not, and this host has the
// domain CA key, a new one is issued and saved.
//
// It returns a note for the operator ("" when the certificate there was
// fine): what was issued and why, or why a certificate that should be
// reissued was kept (no CA key here, but it is still valid). An instance
// without a usable certificate on a host without the CA key is an error
// wrapping ErrNoInstanceCert that says how to get one.
func EnsureInstanceCert(h home.Home, groupID, instanceID, managementAddress string) (note string, err error) {
	caCert, err := pki.LoadCACert(h)
	if err != nil {
		return "", fmt.Errorf("instance certificate of %s: %w", instanceID, err)
	}
	certFile, keyFile := pki.InstanceCertFile(h, groupID, instanceID), pki.InstanceKeyFile(h, groupID, instanceID)
	dns, ips := pki.InstanceCertNames(managementAddress)
	cur, lerr := pki.LoadKeyPair(h, certFile, keyFile)
	var why string
	switch {
	case errors.Is(lerr, os.ErrNotExist):
		why = "there was none"
	case lerr != nil:
		why = lerr.Error()
	default:
		cerr := pki.CheckPeerLeaf(cur.Leaf, caCert, dns, ips, InstanceCertRenewBefore)
		if cerr == nil {
			return "", nil
		}
		why = "the one there " + cerr.Error()
	}
	ca, caErr := pki.LoadCA(h)
	if caErr != nil {
		// The CA's key sealed with its passphrase, which this process
		// (an instance: it gets its group's passphrase only) does not
		// hold, is as good as no key here.
		var locked *secret.LockedError
		sealed := errors.As(caErr, &locked)
		if !errors.Is(caErr, pki.ErrNoCA) && !sealed {
			return "", fmt.Errorf("instance certificate of %s: %w", instanceID, caErr)
		}
		// A certificate that still verifies is kept: the instance can serve.
		if cur.Leaf != nil && pki.CheckPeerLeaf(cur.Leaf, caCert, nil, nil, 0) == nil {
			if sealed {
				return fmt.Sprintf("instance certificate %s kept although it should be reissued (%s): the domain CA's key is sealed with its passphrase, which this process does not hold", h.Rel(certFile), why), nil
			}
			return fmt.Sprintf("instance certificate %s kept although it should be reissued (%s): this host has no domain CA key", h.Rel(certFile), why), nil
		}
		if sealed {
			return "", fmt.Errorf("%w for %s: %s is not usable (%s) and this process cannot issue one: %w",
				ErrNoInstanceCert, instanceID, h.Rel(certFile), why, caErr)
		}
		// Seam for the second-host work: a host without the CA key asks the
		// Admin Node Manager to sign a request for the instance's key here.
		return "", fmt.Errorf("%w for %s: %s is not usable (%s) and this host cannot issue one, it has no domain CA key (%s); "+
			"start the instance on the host that holds the domain CA (the Admin Node Manager's) once so that it is issued, "+
			"or copy a certificate and key signed by the domain CA to %s and %s",
			ErrNoInstanceCert, instanceID, h.Rel(certFile), why, h.Rel(pki.KeyFile(h)), h.Rel(certFile), h.Rel(keyFile))
	}
	kp, err := ca.IssueInstance(h, groupID, instanceID, managementAddress)
	if err != nil {
		return "", err
	}
	kp.KeyPEM.Wipe()
	return fmt.Sprintf("instance certificate %s issued by the domain CA (%s), valid until %s", h.Rel(certFile), why, kp.Cert.NotAfter.UTC().Format(time.DateOnly)), nil
}
