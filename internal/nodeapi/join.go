package nodeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// The joining host's side of managedomain -a, and managedomain's client of
// the Admin Node Manager for the topology checks.

// ANMAddress is host:port from H or H:PORT (8090 when no port).
func ANMAddress(hostPort string) (string, error) {
	if hostPort == "" {
		return "", errors.New("no Admin Node Manager address")
	}
	if h, p, err := net.SplitHostPort(hostPort); err == nil {
		n, perr := strconv.Atoi(p)
		if h == "" || perr != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("Admin Node Manager address %q: want HOST or HOST:PORT (port 1 to 65535)", hostPort)
		}
		return hostPort, nil
	}
	if strings.Contains(hostPort, ":") && net.ParseIP(hostPort) == nil {
		return "", fmt.Errorf("Admin Node Manager address %q: want HOST or HOST:PORT", hostPort)
	}
	return net.JoinHostPort(hostPort, strconv.Itoa(domain.DefaultNodeManagerPort)), nil
}

// FetchDomainCA reads the domain CA certificate from the Admin Node Manager
// at addr (GET /nm/ca). The connection is not authenticated: the caller
// must decide whether to trust the certificate by its SHA-256 fingerprint.
// It also checks that the server's own certificate is signed by that CA.
func FetchDomainCA(ctx context.Context, addr string) (certPEM []byte, cert *x509.Certificate, err error) {
	var serverLeaf *x509.Certificate
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		CipherSuites:       pki.CipherSuites,
		InsecureSkipVerify: true, // the trust decision is the fingerprint, checked by the caller
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				serverLeaf = cs.PeerCertificates[0]
			}
			return nil
		},
	}
	c := newNodeClientTLS(tc)
	defer c.Close()
	var ans caAnswer
	if err := c.call(ctx, Peer{HostID: "the Admin Node Manager's host", NodeManagerID: "(Admin Node Manager)", Addr: addr}, http.MethodGet, "/nm/ca", nil, &ans); err != nil {
		return nil, nil, err
	}
	cert, err = pki.ParseCertPEM([]byte(ans.Certificate))
	if err != nil {
		return nil, nil, fmt.Errorf("the domain CA certificate from %s: %w", addr, err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("the certificate from %s is not a CA certificate", addr)
	}
	if serverLeaf == nil || pki.CheckPeerCA(serverLeaf, cert) != nil {
		return nil, nil, fmt.Errorf("the node manager at %s presents a certificate that its domain CA did not sign", addr)
	}
	return []byte(ans.Certificate), cert, nil
}

// RequestJoin sends req to the Admin Node Manager at addr (POST /nm/join)
// with an admin user's credentials, trusting only the domain CA caPEM.
func RequestJoin(ctx context.Context, addr string, caPEM []byte, user string, pw secret.Value, req JoinRequest) (JoinAnswer, error) {
	caCert, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		return JoinAnswer{}, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	c := newNodeClientTLS(&tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: pki.CipherSuites, RootCAs: pool})
	defer c.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return JoinAnswer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/nm/join", strings.NewReader(string(body)))
	if err != nil {
		return JoinAnswer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.SetBasicAuth(user, string(pw.Reveal()))
	resp, err := c.hc.Do(hr)
	if err != nil {
		return JoinAnswer{}, fmt.Errorf("the Admin Node Manager at %s cannot be reached: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxNMAnswer))
	if err != nil {
		return JoinAnswer{}, fmt.Errorf("reading the Admin Node Manager's answer: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		var eb apihttp.ErrorBody
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &eb) == nil && len(eb.Errors) > 0 {
			msg = eb.Errors[0].Message
		}
		return JoinAnswer{}, fmt.Errorf("the Admin Node Manager at %s refused the host (%d): %s", addr, resp.StatusCode, msg)
	}
	var env struct {
		Result JoinAnswer `json:"result"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return JoinAnswer{}, fmt.Errorf("the Admin Node Manager's answer: %w", err)
	}
	return env.Result, nil
}

// ANMClient is managedomain's client of the Admin Node Manager's /nm
// paths, with this host's node manager certificate.
type ANMClient struct {
	c    *NodeClient
	peer Peer
}

// NewANMClient connects to the Admin Node Manager of h's domain: the
// address in system/conf/nodemanager.yaml (anmAddress, anmPort), or this
// host's own node manager when it is the ANM.
func NewANMClient(h home.Home) (*ANMClient, error) {
	conf, err := domain.LoadNodeManagerConf(h)
	if err != nil {
		return nil, err
	}
	c, err := NewNodeClient(h)
	if err != nil {
		return nil, err
	}
	addr := LocalAddr(conf)
	if conf.ANMAddress != "" {
		port := conf.ANMPort
		if port == 0 {
			port = domain.DefaultNodeManagerPort
		}
		addr = net.JoinHostPort(conf.ANMAddress, strconv.Itoa(port))
	}
	return &ANMClient{c: c, peer: Peer{HostID: "the Admin Node Manager's host", NodeManagerID: "(Admin Node Manager)", Addr: addr}}, nil
}

// LocalAddr is where a tool of this host reaches its own node manager
// (conf): its listen address, or 127.0.0.1 when it listens on every
// interface, and its port.
func LocalAddr(conf domain.NodeManagerConf) string {
	addr, port := conf.Address, conf.Port
	if ip := net.ParseIP(addr); addr == "" || (ip != nil && ip.IsUnspecified()) {
		addr = "127.0.0.1"
	}
	if port == 0 {
		port = domain.DefaultNodeManagerPort
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// Addr is the Admin Node Manager's host:port.
func (a *ANMClient) Addr() string { return a.peer.Addr }

// Close closes idle connections.
func (a *ANMClient) Close() { a.c.Close() }

// CheckSync reads every host's topology version and checksum (GET /nm/sync).
func (a *ANMClient) CheckSync(ctx context.Context) (SyncReport, error) {
	var rep SyncReport
	err := a.c.call(ctx, a.peer, http.MethodGet, "/nm/sync", nil, &rep)
	return rep, err
}

// SyncAll has the ANM push its topology to every host (POST /nm/sync).
func (a *ANMClient) SyncAll(ctx context.Context) (SyncReport, error) {
	var rep SyncReport
	err := a.c.call(ctx, a.peer, http.MethodPost, "/nm/sync", nil, &rep)
	return rep, err
}

// Topology is the ANM's topology document (GET /nm/topology).
func (a *ANMClient) Topology(ctx context.Context) (*topology.Topology, error) {
	var t topology.Topology
	if err := a.c.call(ctx, a.peer, http.MethodGet, "/nm/topology", nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
