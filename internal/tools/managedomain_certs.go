package tools

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
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
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "menu" })
	if i < 0 {
		i = len(mdVerbs)
	}
	mdVerbs = slices.Insert(mdVerbs, i, vb)
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
