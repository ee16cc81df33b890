package nodeapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Instance certificates on a host without the domain CA key. When the
// Admin Node Manager creates an instance on another host, that host's node
// manager generates the instance's key (0600, it never leaves the host) and
// answers POST /nm/instances with a CSR; the ANM signs it with the domain
// CA (common name pki.InstanceCommonName, the names of
// pki.InstanceCertNames that the CSR carries) and sends the certificate
// with PUT /nm/instances/{instanceID}/certificate. startinstance then finds
// a certificate signed by the domain CA (domain.EnsureInstanceCert keeps
// it) and the instance's management listener serves mutual TLS.

// PrepareAnswer is the answer of POST /nm/instances.
type PrepareAnswer struct {
	InstanceID string `json:"instanceID"`
	HostID     string `json:"hostID"`
	CSR        string `json:"csr"` // PEM, for the instance's key generated on the host
}

// instanceCSR generates the key of instance iid of group gid on this host
// and returns a CSR for it.
func instanceCSR(h home.Home, gid, iid string) (string, error) {
	cfg, err := groupconf.LoadInstance(h, gid, iid, nil, nil)
	if err != nil {
		return "", err
	}
	dns, ips := pki.InstanceCertNames(cfg.Management.Address)
	csrPEM, keyPEM, err := pki.NewKeyAndCSR(pki.InstanceCommonName(gid, iid), dns, ips)
	if err != nil {
		return "", err
	}
	defer keyPEM.Wipe()
	keyFile := pki.InstanceKeyFile(h, gid, iid)
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(keyFile), err)
	}
	if err := secret.WriteFile(h, keyFile, keyPEM.Reveal(), 0o600); err != nil {
		return "", fmt.Errorf("saving the key of %s: %w", iid, err)
	}
	return string(csrPEM), nil
}

// instanceCertBody is the body of PUT /nm/instances/{instanceID}/certificate.
type instanceCertBody struct {
	Certificate string `json:"certificate"`
}

// putInstanceCert saves the certificate the ANM signed for a local
// instance, after checking that it is the domain CA's and fits the key
// generated here.
func (s *Server) putInstanceCert(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("instanceID")
	if r.PathValue("action") != "certificate" {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("PUT /nm/instances/%s/%s: only .../certificate is written", id, r.PathValue("action"))})
		return
	}
	t, err := s.store.Load()
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	var b instanceCertBody
	if err := apihttp.ReadBody(w, r, &b, `"certificate"`); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	gid, err := s.instanceGroup(t, id, r)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	h := s.h
	caCert, err := pki.LoadCACert(h)
	if err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	leaf, err := pki.ParseCertPEM([]byte(b.Certificate))
	if err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: err.Error()})
		return
	}
	if err := pki.CheckPeerCA(leaf, caCert); err != nil {
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the certificate is not signed by the domain CA: " + err.Error()})
		return
	}
	certFile := pki.InstanceCertFile(h, gid, id)
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	if err := home.WriteFileAtomic(certFile, []byte(b.Certificate), 0o644); err != nil {
		apihttp.WriteError(w, r, s.log, err)
		return
	}
	if _, err := pki.LoadKeyPair(h, certFile, pki.InstanceKeyFile(h, gid, id)); err != nil {
		os.Remove(certFile)
		apihttp.WriteError(w, r, s.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: "the certificate does not fit the instance's key on this host: " + err.Error()})
		return
	}
	s.log.Info("instance certificate received from the Admin Node Manager", "instanceId", id, "file", h.Rel(certFile), "notAfter", leaf.NotAfter)
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"instanceID": id})
}

// instanceGroup finds the group of instance id: in this host's topology,
// or — while the ANM is still creating it — the instance directory here.
func (s *Server) instanceGroup(t *topology.Topology, id string, r *http.Request) (string, error) {
	if ref, err := t.FindInstanceID(id); err == nil {
		if ref.Service.HostID != s.conf.HostID {
			return "", &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("instance %s is on host %s, not here", id, ref.Service.HostID)}
		}
		return ref.Group.ID, nil
	}
	if g := r.URL.Query().Get("group"); g != "" && topology.ValidateName("group", g) == nil {
		if _, err := os.Stat(pki.InstanceKeyFile(s.h, g, id)); err == nil {
			return g, nil
		}
	}
	return "", &topology.NotFoundError{Kind: "instance", Name: id, Scope: "on host " + s.conf.HostID}
}

// SignInstance signs, with the domain CA of this host, the instance CSR
// that peer answered to POST /nm/instances and sends the certificate back
// (PUT /nm/instances/{instanceID}/certificate): the ANM's side.
func (nn *Net) SignInstance(ctx context.Context, peer Peer, gid, iid, csrPEM string) error {
	csr, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		return fmt.Errorf("the instance certificate request from host %s: %w", peer.HostID, err)
	}
	ca, err := pki.LoadCA(nn.h)
	if err != nil {
		return fmt.Errorf("signing the certificate of %s: %w", iid, err)
	}
	certPEM, err := ca.SignCSR(csr, pki.InstanceCommonName(gid, iid), true)
	if err != nil {
		return err
	}
	return nn.Call(ctx, peer, http.MethodPut, "/nm/instances/"+url.PathEscape(iid)+"/certificate?group="+url.QueryEscape(gid), instanceCertBody{Certificate: string(certPEM)}, nil)
}
