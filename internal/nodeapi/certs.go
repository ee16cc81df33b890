package nodeapi

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Regenerating the domain's certificates (managedomain --regen_certs,
// --submit_cert; docs/pki.md). Every node manager, the ANM's included, is
// asked in three steps, each only from the Admin Node Manager's
// certificate:
//
//	POST   /nm/certs/renew    {"caCertificate": PEM}: new keys for the node manager and
//	                          every local instance (pki.Pending), answered with their CSRs
//	PUT    /nm/certs/pending  the certificates the domain CA signed for them
//	POST   /nm/certs/commit   put the set in place; the node manager, its client and the
//	                          instances' management listeners use it from their next handshake
//	DELETE /nm/certs/pending  drop a set not committed (a regeneration that failed)
//
// Nothing changes on any host until every host holds a complete set; then
// the other hosts commit, and the ANM's host last (with a new CA, a host
// that committed no longer trusts the old one).

// CertsRenewRequest is the body of POST /nm/certs/renew.
type CertsRenewRequest struct {
	CACertificate string `json:"caCertificate"`
}

// InstanceCSR is an instance's new key's CSR.
type InstanceCSR struct {
	GroupID    string `json:"groupID"`
	InstanceID string `json:"instanceID"`
	CSR        string `json:"csr"`
}

// CertsRenewAnswer is the answer of POST /nm/certs/renew.
type CertsRenewAnswer struct {
	HostID         string        `json:"hostID"`
	NodeManagerCSR string        `json:"nodeManagerCSR"`
	Instances      []InstanceCSR `json:"instances"`
}

// InstanceCert is an instance's new certificate.
type InstanceCert struct {
	GroupID     string `json:"groupID"`
	InstanceID  string `json:"instanceID"`
	Certificate string `json:"certificate"`
}

// CertsPutRequest is the body of PUT /nm/certs/pending.
type CertsPutRequest struct {
	NodeManagerCertificate string         `json:"nodeManagerCertificate"`
	Instances              []InstanceCert `json:"instances"`
}

// CertsCommitAnswer is the answer of POST /nm/certs/commit.
type CertsCommitAnswer struct {
	HostID      string   `json:"hostID"`
	NodeManager bool     `json:"nodeManager"`
	Instances   []string `json:"instances"`
}

// localInstances are the gateway instances of this host in t.
func (s *Server) localInstances(t *topology.Topology) []*topology.Service {
	var out []*topology.Service
	for gi := range t.Groups {
		for si := range t.Groups[gi].Services {
			sv := &t.Groups[gi].Services[si]
			if sv.Type == topology.TypeGateway && sv.HostID == s.conf.HostID {
				out = append(out, sv)
			}
		}
	}
	return out
}

// POST /nm/certs/renew.
func (s *Server) renewCerts(w http.ResponseWriter, r *http.Request) {
	var b CertsRenewRequest
	if err := apihttp.ReadBody(w, r, &b, `"caCertificate"`); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	t, err := s.store.Load()
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	p := pki.PendingFor(s.h)
	if err := p.Begin([]byte(b.CACertificate)); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "caCertificate: " + err.Error()})
		return
	}
	ans := CertsRenewAnswer{HostID: s.conf.HostID, Instances: []InstanceCSR{}}
	hostName := ""
	if hh, err := t.Host(s.conf.HostID); err == nil {
		hostName = hh.Name
	}
	dns, ips := CertNames(hostName, s.conf.Address)
	if ans.NodeManagerCSR, err = p.NodeManagerCSR(pki.NodeManagerCommonName(s.conf.NodeManagerID, s.conf.HostID), dns, ips); err != nil {
		p.Discard()
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	for _, sv := range s.localInstances(t) {
		gid := groupOf(t, sv.ID)
		cfg, err := groupconf.LoadInstance(s.h, gid, sv.ID, nil, nil)
		if err != nil {
			p.Discard()
			apihttp.WriteError(w, r, s.log, fmt.Errorf("instance %s: %w", sv.ID, err))
			return
		}
		idns, iips := pki.InstanceCertNames(cfg.Management.Address)
		csr, err := p.InstanceCSR(gid, sv.ID, idns, iips)
		if err != nil {
			p.Discard()
			apihttp.WriteError(w, r, s.log, err)
			return
		}
		ans.Instances = append(ans.Instances, InstanceCSR{GroupID: gid, InstanceID: sv.ID, CSR: csr})
	}
	s.log.Info("new keys generated for a certificate regeneration", "instances", len(ans.Instances))
	apihttp.WriteResult(w, http.StatusOK, ans)
}

// groupOf is the id of the group of service id in t.
func groupOf(t *topology.Topology, id string) string {
	if ref, err := t.FindInstanceID(id); err == nil {
		return ref.Group.ID
	}
	return ""
}

// PUT and DELETE /nm/certs/pending.
func (s *Server) pendingCerts(w http.ResponseWriter, r *http.Request) {
	p := pki.PendingFor(s.h)
	if r.Method == http.MethodDelete {
		if err := p.Discard(); err != nil {
			apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: err.Error()})
			return
		}
		apihttp.WriteResult(w, http.StatusOK, map[string]string{"hostID": s.conf.HostID})
		return
	}
	var b CertsPutRequest
	if err := apihttp.ReadBody(w, r, &b, `"nodeManagerCertificate", "instances"`); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	bad := func(err error) {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()})
	}
	if _, err := p.CA(); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: "no certificate regeneration is pending here (POST /nm/certs/renew first): " + err.Error()})
		return
	}
	if err := p.PutNodeManagerCert(pki.NodeManagerCommonName(s.conf.NodeManagerID, s.conf.HostID), []byte(b.NodeManagerCertificate)); err != nil {
		bad(fmt.Errorf("nodeManagerCertificate: %w", err))
		return
	}
	for _, ic := range b.Instances {
		if topology.ValidateName("group", ic.GroupID) != nil || !isID(ic.InstanceID, topology.KindInstance) {
			bad(fmt.Errorf("instances: %q of %q is not an instance id", ic.InstanceID, ic.GroupID))
			return
		}
		if err := p.PutInstanceCert(ic.GroupID, ic.InstanceID, []byte(ic.Certificate)); err != nil {
			bad(fmt.Errorf("instance %s: %w", ic.InstanceID, err))
			return
		}
	}
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"hostID": s.conf.HostID})
}

// POST /nm/certs/commit.
func (s *Server) commitCerts(w http.ResponseWriter, r *http.Request) {
	p := pki.PendingFor(s.h)
	nm, insts, err := p.Summary()
	if err == nil && !nm {
		err = errors.New("the node manager's new certificate is missing (PUT /nm/certs/pending first)")
	}
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusConflict, Msg: err.Error()})
		return
	}
	if err := p.Commit(); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	s.log.Info("new certificates put in place", "instances", strings.Join(insts, ","))
	if insts == nil {
		insts = []string{}
	}
	apihttp.WriteResult(w, http.StatusOK, CertsCommitAnswer{HostID: s.conf.HostID, NodeManager: nm, Instances: insts})
}

// RegenOptions are the parameters of RegenCerts.
type RegenOptions struct {
	// CA signs the new certificates; NewCA says it is not the one the
	// domain trusts today (its key is put in place on this host with the
	// rest).
	CA    *pki.CA
	NewCA bool
	// LocalHostID is the ANM's host (this one): called at LocalAddr
	// (LocalAddr of its configuration) and committed last.
	LocalHostID string
	LocalAddr   string
	// LocalListen is the address in this host's nodemanager.yaml, which
	// its certificate names (the ANM's node manager has no address tag).
	LocalListen string
	// Progress is told each step ("" when nil).
	Progress func(string)
}

// RegenReport is what RegenCerts did on each host.
type RegenReport struct {
	Hosts []CertsCommitAnswer
	// Failed are hosts that did not commit after others had: they must
	// join the domain again (docs/pki.md).
	Failed map[string]error
}

// RegenCerts renews the certificates of every node manager of t and of
// its instances with o.CA, from the ANM's host with this host's node
// manager client c (see the comment at the top of this file). Before any
// host commits, a failure leaves every host as it was (the sets are
// dropped) and is returned.
func RegenCerts(ctx context.Context, h home.Home, c *NodeClient, t *topology.Topology, o RegenOptions) (RegenReport, error) {
	say := func(f string, a ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(f, a...))
		}
	}
	var peers []Peer
	var local *Peer
	for _, p := range Peers(t, "") {
		if p.HostID == o.LocalHostID {
			p.Addr = o.LocalAddr
			lp := p
			local = &lp
			continue
		}
		peers = append(peers, p)
	}
	if local == nil {
		return RegenReport{}, fmt.Errorf("this host (%s) has no node manager in the topology", o.LocalHostID)
	}
	all := append(peers, *local) // the ANM's host last
	var started []Peer
	abort := func(err error) (RegenReport, error) {
		for _, p := range started {
			if derr := c.call(ctx, p, http.MethodDelete, "/nm/certs/pending", nil, nil); derr != nil {
				say("  host %s: the new keys could not be dropped: %v", p.hostLabel(), derr)
			}
		}
		return RegenReport{}, fmt.Errorf("%w; nothing was changed", err)
	}
	caPEM := string(o.CA.CertPEM())
	for _, p := range all {
		var ans CertsRenewAnswer
		if err := c.call(ctx, p, http.MethodPost, "/nm/certs/renew", CertsRenewRequest{CACertificate: caPEM}, &ans); err != nil {
			return abort(err)
		}
		started = append(started, p)
		hostName, addr := "", ""
		if hh, err := t.Host(p.HostID); err == nil {
			hostName = hh.Name
		}
		for _, g := range t.Groups {
			for _, sv := range g.Services {
				if sv.ID == p.NodeManagerID {
					addr = sv.Tags[domain.TagAddress]
				}
			}
		}
		if addr == "" && p.HostID == o.LocalHostID {
			addr = o.LocalListen
		}
		csr, dns, ips, err := checkJoinCSR([]byte(ans.NodeManagerCSR), hostName, addr)
		if err != nil {
			return abort(fmt.Errorf("host %s: %w", p.hostLabel(), err))
		}
		cert, err := o.CA.Issue(pki.NodeManagerCommonName(p.NodeManagerID, p.HostID), dns, ips, csr.PublicKey, true)
		if err != nil {
			return abort(err)
		}
		put := CertsPutRequest{NodeManagerCertificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), Instances: []InstanceCert{}}
		for _, ic := range ans.Instances {
			ref, err := t.FindInstanceID(ic.InstanceID)
			if err != nil || ref.Group.ID != ic.GroupID || ref.Service.HostID != p.HostID {
				return abort(fmt.Errorf("host %s asked for a certificate for %s of %s, which is not one of its instances", p.hostLabel(), ic.InstanceID, ic.GroupID))
			}
			icsr, err := pki.ParseCSR([]byte(ic.CSR))
			if err != nil {
				return abort(fmt.Errorf("host %s, instance %s: %w", p.hostLabel(), ic.InstanceID, err))
			}
			certPEM, err := o.CA.SignCSR(icsr, pki.InstanceCommonName(ic.GroupID, ic.InstanceID), true)
			if err != nil {
				return abort(err)
			}
			put.Instances = append(put.Instances, InstanceCert{GroupID: ic.GroupID, InstanceID: ic.InstanceID, Certificate: string(certPEM)})
		}
		if err := c.call(ctx, p, http.MethodPut, "/nm/certs/pending", put, nil); err != nil {
			return abort(err)
		}
		say("  host %s: new keys and certificates ready (node manager and %d instances)", p.hostLabel(), len(put.Instances))
	}
	if o.NewCA {
		if err := pki.PendingFor(h).PutCAKey(o.CA); err != nil {
			return abort(fmt.Errorf("keeping the new CA's key: %w", err))
		}
	}
	rep := RegenReport{Failed: map[string]error{}}
	for _, p := range all {
		var ans CertsCommitAnswer
		if err := c.call(ctx, p, http.MethodPost, "/nm/certs/commit", nil, &ans); err != nil {
			if len(rep.Hosts) == 0 {
				return abort(err) // no host has switched yet
			}
			rep.Failed[p.HostID] = err
			say("  host %s: FAILED to put its new certificates in place: %v", p.hostLabel(), err)
			continue
		}
		rep.Hosts = append(rep.Hosts, ans)
		say("  host %s: new certificates in place (node manager and %d instances)", p.hostLabel(), len(ans.Instances))
	}
	return rep, nil
}

// CheckHosts calls GET /nm/status on every node manager of t (the local
// one, localHostID, at localAddr) with a new client of h, that
// is with this host's certificates as they are on disk now, and returns
// each host's error (nil: it answered). It shows that a regeneration left
// the domain working.
func CheckHosts(ctx context.Context, h home.Home, t *topology.Topology, localHostID, localAddr string) (map[string]error, error) {
	c, err := NewNodeClient(h)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]error{}
	for _, p := range Peers(t, "") {
		if p.HostID == localHostID {
			p.Addr = localAddr
		}
		out[p.HostID] = c.call(ctx, p, http.MethodGet, "/nm/status", nil, nil)
	}
	return out, nil
}
