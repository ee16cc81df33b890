package tools

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Menu 25: sign a certificate signing request with the domain CA, on the
// Admin Node Manager's host (where the CA's key is). The certificate is
// for TLS client authentication only, names no host and cannot take a
// common name of Gatehouse's own (pki.IssueClient): an operator's tool
// (a Prometheus scraping the instances' /metrics over mutual TLS) can
// present it, nothing can serve with it or pose as a node manager.

func init() {
	vb := &mdVerb{
		Name: "sign_csr", Menu: 25, Title: "sign a certificate signing request with the domain CA (a client certificate)",
		Help: "On the Admin Node Manager's host: signs the CSR (PEM, an ECDSA P-256 or P-384 key) with the domain CA\n" +
			"as a certificate for TLS client authentication only: its common name is the CSR's (not one starting\n" +
			"with \"Gatehouse \"), it names no host (a CSR asking for DNS names or addresses is refused), and it\n" +
			"is valid for --days (default 365, at most 730). Written to --cert_file (0644, atomically); in the\n" +
			"audit log as \"sign certificate\" with its common name and serial number.",
		Params: []mdParam{
			{Long: "csr_file", Arg: "F", Help: "the certificate signing request (PEM)", Required: true, Prompt: "CSR file"},
			{Long: "cert_file", Arg: "F", Help: "where to write the certificate (PEM)", Required: true, Prompt: "Certificate file to write"},
			{Long: "days", Arg: "N", Help: "validity in days (default 365, at most 730)", Prompt: "Validity in days", Default: func(*mdSession, mdValues) string { return "365" }},
		},
		Run: mdSignCSR,
	}
	regen := &mdVerb{
		Name: "regen_certs", Menu: 24, Title: "regenerate the certificates of every node manager and instance (and the domain CA)",
		Help: "On the Admin Node Manager's host, with every node manager running: makes a new domain CA (unless\n" +
			"--retain_domain_cert) and gives every node manager and every instance of the domain a new key and\n" +
			"certificate. Each host generates its keys itself (they never leave it); the CA signs their requests.\n" +
			"Nothing changes anywhere until every host holds its new set; then the hosts switch, the Admin Node\n" +
			"Manager's last. Running processes use the new certificates from their next connection: nothing is\n" +
			"restarted, traffic is not touched. With a new CA, certificates signed with the old one (sign_csr)\n" +
			"are no longer accepted, and tools that pinned its fingerprint must take the new one.",
		Params: []mdParam{{Long: "retain_domain_cert", Help: "keep the domain CA; renew only the node managers' and instances' certificates"}},
		Run: func(ctx context.Context, s *mdSession, v mdValues) error {
			_, retain := v["retain_domain_cert"]
			return s.regenCerts(ctx, retain, nil)
		},
	}
	csrVerb := &mdVerb{
		Name: "domain_csr", Menu: 26, Title: "write a certificate request for the domain CA's key, for your own CA to sign",
		Help: "On the Admin Node Manager's host: writes a CSR (PEM) for the domain CA's key with the domain CA's\n" +
			"subject. Have your CA sign it as a CA certificate (basic constraints CA:TRUE, keyCertSign), then\n" +
			"give the certificate to submit_cert: the domain then chains to your PKI. The key never leaves this host.",
		Params: []mdParam{{Long: "csr_file", Arg: "F", Help: "where to write the CSR (PEM)", Required: true, Prompt: "CSR file to write"}},
		Run:    mdDomainCSR,
	}
	submit := &mdVerb{
		Name: "submit_cert", Menu: 26, Title: "submit the domain CA's certificate signed by your own CA",
		Help: "On the Admin Node Manager's host, with every node manager running: takes the certificate your CA\n" +
			"signed for domain_csr's request (it must be a CA certificate for the domain CA's key, valid for at\n" +
			"least 90 days) as the domain CA's certificate on every host, and reissues every node manager's and\n" +
			"instance's certificate under it (as regen_certs --retain_domain_cert). To use a CA of yours whose\n" +
			"key you hold instead, create the domain with -i --domain_cert F --domain_key F.",
		Params: []mdParam{{Long: "cert_file", Arg: "F", Help: "the domain CA's certificate signed by your CA (PEM)", Required: true, Prompt: "Certificate file"}},
		Run: func(ctx context.Context, s *mdSession, v mdValues) error {
			data, err := os.ReadFile(v["cert_file"])
			if err != nil {
				return fmt.Errorf("reading the certificate: %w", err)
			}
			cert, err := pki.ParseCertPEM(data)
			if err != nil {
				return err
			}
			if err := pki.CheckOperatorCA(cert); err != nil {
				return fmt.Errorf("%s cannot be the domain CA's certificate: %w", v["cert_file"], err)
			}
			return s.regenCerts(ctx, true, cert)
		},
	}
	// Each needs the domain CA's key: its passphrase first, when it has one.
	for _, v := range []*mdVerb{vb, regen, csrVerb, submit} {
		v.Params = append(v.Params, pCAPassphrase)
		v.Run = withCA(v.Run)
	}
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "menu" })
	if i < 0 {
		i = len(mdVerbs)
	}
	mdVerbs = slices.Insert(mdVerbs, i, vb, regen, csrVerb, submit)
}

// pCAPassphrase gives the domain CA's passphrase to a verb that uses its key.
var pCAPassphrase = mdParam{Long: "ca_passphrase_file", Arg: "F", Help: "when the domain CA has a passphrase: it, from file F (else asked)"}

// withCA opens the domain CA's scope (when it has a passphrase) before run.
func withCA(run func(context.Context, *mdSession, mdValues) error) func(context.Context, *mdSession, mdValues) error {
	return func(ctx context.Context, s *mdSession, v mdValues) error {
		if err := s.unlock(v, secret.ScopeCA, "ca_passphrase_file"); err != nil {
			return err
		}
		return run(ctx, s, v)
	}
}

// caHost checks that this host holds the domain CA's key and is the Admin
// Node Manager's, and returns the CA, the topology and this node manager's
// configuration.
func (s *mdSession) caHost(what string) (*pki.CA, *topology.Topology, domain.NodeManagerConf, error) {
	var nc domain.NodeManagerConf
	if err := s.home.CheckDomain(); err != nil {
		return nil, nil, nc, err
	}
	if _, err := os.Stat(pki.KeyFile(s.home)); err != nil {
		return nil, nil, nc, fmt.Errorf("the domain CA's key is not on this host (%s): %s on the Admin Node Manager's host", pki.KeyFile(s.home), what)
	}
	nc, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return nil, nil, nc, err
	}
	t, err := s.topology()
	if err != nil {
		return nil, nil, nc, err
	}
	anm, err := t.AdminNodeManager()
	if err != nil {
		return nil, nil, nc, err
	}
	if anm.HostID != nc.HostID {
		return nil, nil, nc, fmt.Errorf("this host (%s) is not the Admin Node Manager's (%s): %s there", nc.HostID, anm.HostID, what)
	}
	ca, err := pki.LoadCA(s.home)
	if err != nil {
		return nil, nil, nc, err
	}
	return ca, t, nc, nil
}

func mdDomainCSR(ctx context.Context, s *mdSession, v mdValues) error {
	ca, _, _, err := s.caHost("write the domain CA's request")
	if err != nil {
		return err
	}
	csr, err := ca.CSR()
	if err != nil {
		return err
	}
	if err := home.WriteFileAtomic(v["csr_file"], csr, 0o644); err != nil {
		return err
	}
	s.out("Wrote a certificate request for the domain CA's key (subject %q) to %s.\n", ca.Cert.Subject.String(), v["csr_file"])
	s.out("Have your CA sign it as a CA certificate, then: managedomain --submit_cert --cert_file CERT\n")
	return nil
}

// regenCerts gives every node manager and instance a new certificate:
// signed by a new domain CA, by the same one (retain), or by the same key
// under the certificate the operator's CA signed (submitted).
func (s *mdSession) regenCerts(ctx context.Context, retain bool, submitted *x509.Certificate) error {
	what := "regenerate the certificates"
	if submitted != nil {
		what = "submit the domain CA's certificate"
	}
	old, t, nc, err := s.caHost(what)
	if err != nil {
		return err
	}
	ca, newCA := old, false
	switch {
	case submitted != nil:
		if ca, err = old.WithCert(submitted); err != nil {
			return err
		}
	case !retain:
		if ca, err = pki.NewCA(t.DomainName); err != nil {
			return err
		}
		newCA = true
	}
	c, err := nodeapi.NewNodeClient(s.home)
	if err != nil {
		return err
	}
	defer c.Close()
	s.out("Regenerating the certificates of %d host(s) with the domain CA %q (%s):\n", len(nodeapi.Peers(t, "")), ca.Cert.Subject.CommonName, map[bool]string{true: "new", false: "kept"}[newCA])
	rep, rerr := nodeapi.RegenCerts(ctx, s.home, c, t, nodeapi.RegenOptions{
		CA: ca, NewCA: newCA, LocalHostID: nc.HostID, LocalAddr: nodeapi.LocalAddr(nc), LocalListen: nc.Address,
		Progress: func(line string) { s.out("%s\n", line) },
	})
	action := "regenerate certificates"
	if submitted != nil {
		action = "submit certificate"
	}
	e := audit.Entry{User: s.actor.User, Via: s.actor.Via, Remote: s.actor.Remote, Action: action,
		Detail: fmt.Sprintf("domain CA %q (%s), fingerprint %s; %d host(s) switched", ca.Cert.Subject.CommonName, map[bool]string{true: "new", false: "kept"}[newCA], ca.Fingerprint(), len(rep.Hosts))}
	if rerr == nil && len(rep.Failed) > 0 {
		e.Error = fmt.Sprintf("%d host(s) did not switch", len(rep.Failed))
	}
	if rerr != nil {
		e.Error = rerr.Error()
	}
	if _, aerr := audit.Open(s.home).Record(ctx, e); aerr != nil {
		fmt.Fprintf(s.env.Stderr, "managedomain: audit entry not written: %v\n", aerr)
	}
	if rerr != nil {
		return rerr
	}
	checked, err := nodeapi.CheckHosts(ctx, s.home, t, nc.HostID, nodeapi.LocalAddr(nc))
	if err != nil {
		return err
	}
	bad := 0
	for _, p := range nodeapi.Peers(t, "") {
		if err := checked[p.HostID]; err != nil {
			bad++
			s.out("  host %s: not reachable with the new certificates: %v\n", p.HostID, err)
		} else {
			s.out("  host %s: answers with its new certificate\n", p.HostID)
		}
	}
	if newCA || submitted != nil {
		s.out("The domain CA is now %s\n  SHA-256 fingerprint %s\n", pki.CertFile(s.home), ca.Fingerprint())
	}
	if newCA {
		s.out("Certificates that the old CA signed (sign_csr) are no longer accepted; clients that trusted it must take the new one.\n")
	}
	if bad > 0 || len(rep.Failed) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d host(s) did not take their new certificates: see docs/pki.md, \"When a host did not switch\"", max(bad, len(rep.Failed)))}
	}
	s.out("Every host answers with its new certificate.\n")
	return nil
}

func mdSignCSR(ctx context.Context, s *mdSession, v mdValues) error {
	days := 365
	if d := v["days"]; d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > int(pki.CertValidity/(24*time.Hour)) {
			return usagef("managedomain", "--days %q: want 1 to %d", d, int(pki.CertValidity/(24*time.Hour)))
		}
		days = n
	}
	if err := s.home.CheckDomain(); err != nil {
		return err
	}
	if _, err := os.Stat(pki.KeyFile(s.home)); err != nil {
		return fmt.Errorf("the domain CA's key is not on this host (%s): sign CSRs on the Admin Node Manager's host", pki.KeyFile(s.home))
	}
	data, err := os.ReadFile(v["csr_file"])
	if err != nil {
		return fmt.Errorf("reading the CSR: %w", err)
	}
	csr, err := pki.ParseCSR(data)
	if err != nil {
		return err
	}
	if len(csr.DNSNames)+len(csr.IPAddresses) > 0 {
		return fmt.Errorf("the CSR asks for host names or addresses (%v %v): the domain CA signs client certificates only, which name no host", csr.DNSNames, csr.IPAddresses)
	}
	ca, err := pki.LoadCA(s.home)
	if err != nil {
		return err
	}
	e := audit.Entry{User: s.actor.User, Via: s.actor.Via, Remote: s.actor.Remote, Action: "sign certificate"}
	cert, err := ca.IssueClient(csr.Subject.CommonName, csr.PublicKey, time.Duration(days)*24*time.Hour)
	if err == nil {
		e.Detail = fmt.Sprintf("client certificate %q, serial %x, %d days", cert.Subject.CommonName, cert.SerialNumber, days)
		err = home.WriteFileAtomic(v["cert_file"], pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
	}
	if err != nil {
		e.Error = err.Error()
	}
	if _, aerr := audit.Open(s.home).Record(ctx, e); aerr != nil {
		fmt.Fprintf(s.env.Stderr, "managedomain: audit entry not written: %v\n", aerr)
	}
	if err != nil {
		return err
	}
	s.out("Signed a client certificate for %q (serial %x, valid until %s): %s\n", cert.Subject.CommonName, cert.SerialNumber, cert.NotAfter.UTC().Format("2006-01-02"), v["cert_file"])
	return nil
}

// operatorCA is the CA of -i --domain_cert/--domain_key, nil without them.
func operatorCA(v mdValues) (*pki.CA, error) {
	if !v.has("domain_cert") && !v.has("domain_key") {
		return nil, nil
	}
	if !v.has("domain_cert") || !v.has("domain_key") {
		return nil, usagef(mdName, "--domain_cert and --domain_key go together: your CA's certificate and its key")
	}
	certPEM, err := os.ReadFile(v["domain_cert"])
	if err != nil {
		return nil, fmt.Errorf("--domain_cert: %w", err)
	}
	keyPEM, err := os.ReadFile(v["domain_key"])
	if err != nil {
		return nil, fmt.Errorf("--domain_key: %w", err)
	}
	defer secret.New(keyPEM).Wipe()
	ca, err := pki.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--domain_cert/--domain_key: %w", err)
	}
	if err := pki.CheckOperatorCA(ca.Cert); err != nil {
		return nil, fmt.Errorf("--domain_cert %s cannot be the domain CA: %w", v["domain_cert"], err)
	}
	return ca, nil
}
