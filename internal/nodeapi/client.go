package nodeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Node-to-node client limits (docs/adding-a-host.md).
const (
	nmDialTimeout = 3 * time.Second
	// HeaderTimeout bounds the wait for an answer's headers: a start or
	// stop waits for the instance.
	HeaderTimeout = 60 * time.Second
	// CallTimeout bounds a whole call.
	CallTimeout = 90 * time.Second
	// StatusTimeout bounds the states shown in GET /api/topology.
	StatusTimeout = 3 * time.Second
	maxNMAnswer   = 8 << 20
)

// NodeClient calls the /nm paths of node managers with this host's node
// manager certificate (system/conf/certs), and trusts only servers whose
// certificate the domain CA signed. The Admin Node Manager uses one to
// start, stop, create and relay on other hosts and to push the topology;
// managedomain uses one for the topology checks (options 14 to 16). It is
// safe for concurrent use.
type NodeClient struct {
	tr *http.Transport
	hc *http.Client
}

// NewNodeClient loads this host's node manager certificate and the domain
// CA certificate of h. They are read again when their files change
// (pki.Live), so that a long-lived client (the node manager's own) uses the
// certificates that managedomain --regen_certs put in place.
func NewNodeClient(h home.Home) (*NodeClient, error) {
	if _, err := pki.LoadCACert(h); err != nil {
		return nil, err
	}
	live, err := pki.NewLive(h, pki.NodeManagerCertFile(h), pki.NodeManagerKeyFile(h), pki.CertFile(h))
	if err != nil {
		return nil, fmt.Errorf("this host's node manager certificate: %w (the node manager issues it on its first start on the Admin Node Manager's host; managedomain -a brings it elsewhere)", err)
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: pki.CipherSuites}
	return newNodeClient(base, func() (*tls.Config, error) {
		id, err := live.Load()
		if err != nil {
			return nil, err
		}
		tc := base.Clone()
		tc.RootCAs, tc.Certificates = id.Pool(), []tls.Certificate{id.Cert}
		return tc, nil
	}), nil
}

// newNodeClientTLS is a client with the fixed configuration tc.
func newNodeClientTLS(tc *tls.Config) *NodeClient {
	tc = tc.Clone()
	return newNodeClient(tc, func() (*tls.Config, error) { return tc, nil })
}

// newNodeClient is a client whose every connection takes the
// configuration that conf returns then (base: what the transport keeps).
func newNodeClient(base *tls.Config, conf func() (*tls.Config, error)) *NodeClient {
	base = base.Clone()
	if len(base.NextProtos) == 0 {
		base.NextProtos = []string{"h2", "http/1.1"}
	}
	d := &net.Dialer{Timeout: nmDialTimeout}
	tr := &http.Transport{
		Proxy:       nil,
		DialContext: d.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := conf()
			if err != nil {
				return nil, err
			}
			if len(tc.NextProtos) == 0 {
				tc = tc.Clone()
				tc.NextProtos = base.NextProtos
			}
			return dialPeer(ctx, d, tc, network, addr)
		},
		TLSClientConfig:       base,
		TLSHandshakeTimeout:   nmDialTimeout,
		ResponseHeaderTimeout: HeaderTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       60 * time.Second,
	}
	return &NodeClient{tr: tr, hc: &http.Client{Transport: tr, Timeout: CallTimeout}}
}

type peerKey struct{}

// withPeer makes the calls of ctx accept only p's certificate, when p is
// a node manager of the topology (not the ANM that a joining host only
// knows by its address and the CA's fingerprint).
func withPeer(ctx context.Context, p Peer) context.Context {
	if !isID(p.NodeManagerID, topology.KindNodeManager) || !isID(p.HostID, topology.KindHost) {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// isID reports whether id is a topology id of kind: kind-N.
func isID(id, kind string) bool {
	n, ok := strings.CutPrefix(id, kind+"-")
	_, err := strconv.Atoi(n)
	return ok && err == nil
}

// dialPeer connects and shakes hands with the server at addr, which must
// present a certificate of the domain CA (tc's roots) for addr, and, when
// the call says which node manager it meant to reach (withPeer), that node
// manager's: a certificate of another node of the domain is refused, so
// that no node can pose as another, whatever names it holds.
func dialPeer(ctx context.Context, d *net.Dialer, tc *tls.Config, network, addr string) (net.Conn, error) {
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cfg := tc.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	c := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, nmDialTimeout)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	if p, ok := ctx.Value(peerKey{}).(Peer); ok {
		got := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		if want := pki.NodeManagerCommonName(p.NodeManagerID, p.HostID); got != want {
			c.Close()
			return nil, fmt.Errorf("the server at %s is %q, not the node manager %s of %s that the topology places there", addr, got, p.NodeManagerID, p.HostID)
		}
	}
	return c, nil
}

// Close closes idle connections.
func (c *NodeClient) Close() { c.tr.CloseIdleConnections() }

// Transport is the client's transport (for a reverse proxy to /nm/router).
func (c *NodeClient) Transport() http.RoundTripper { return c.tr }

// PeerError is a node manager that could not be reached (connection
// refused, TLS failure, timeout): its host's state is unknown.
type PeerError struct {
	Peer Peer
	Err  error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("the node manager %s of host %s at %s cannot be reached: %v", e.Peer.NodeManagerID, e.Peer.hostLabel(), e.Peer.Addr, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// RemoteError is an error answer of a node manager, with its status and
// message.
type RemoteError struct {
	Peer Peer
	Code int
	Msg  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("host %s: %s", e.Peer.hostLabel(), e.Msg)
}

// Peer is a node manager to call.
type Peer struct {
	HostID, HostName, NodeManagerID string
	Addr                            string // host:port
}

func (p Peer) hostLabel() string {
	if p.HostName != "" {
		return fmt.Sprintf("%s (%q)", p.HostID, p.HostName)
	}
	return p.HostID
}

// Peers lists the node managers of t other than except's host, with the
// address each is dialled at: the service's TagAddress, or its host's
// name, and its management port.
func Peers(t *topology.Topology, exceptHostID string) []Peer {
	var out []Peer
	for _, g := range t.Groups {
		for _, s := range g.Services {
			if s.Type != topology.TypeNodeManager || s.HostID == exceptHostID {
				continue
			}
			out = append(out, PeerOf(t, &s))
		}
	}
	return out
}

// PeerOf is node manager s of t.
func PeerOf(t *topology.Topology, s *topology.Service) Peer {
	p := Peer{HostID: s.HostID, NodeManagerID: s.ID}
	addr := s.Tags[domain.TagAddress]
	if h, err := t.Host(s.HostID); err == nil {
		p.HostName = h.Name
		if addr == "" {
			addr = h.Name
		}
	}
	port := s.ManagementPort
	if port == 0 {
		port = domain.DefaultNodeManagerPort
	}
	p.Addr = net.JoinHostPort(addr, strconv.Itoa(port))
	return p
}

// PeerOfHost is the node manager of hostID.
func PeerOfHost(t *topology.Topology, hostID string) (Peer, error) {
	for _, p := range Peers(t, "") {
		if p.HostID == hostID {
			return p, nil
		}
	}
	if _, err := t.Host(hostID); err != nil {
		return Peer{}, err
	}
	return Peer{}, fmt.Errorf("host %s has no node manager in the topology: %w", hostID, topology.ErrNotFound)
}

// call sends method path to p with body (JSON, when not nil) and decodes
// the envelope's result into out (when not nil). A transport failure is a
// *PeerError; an error answer a *RemoteError.
func (c *NodeClient) call(ctx context.Context, p Peer, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request to %s: %w", p.Addr, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(withPeer(ctx, p), method, "https://"+p.Addr+path, rd)
	if err != nil {
		return &PeerError{Peer: p, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &PeerError{Peer: p, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxNMAnswer+1))
	if err != nil {
		return &PeerError{Peer: p, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if len(data) > maxNMAnswer {
		return &PeerError{Peer: p, Err: fmt.Errorf("answer larger than %d bytes", maxNMAnswer)}
	}
	if resp.StatusCode >= 300 {
		return remoteError(p, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return &PeerError{Peer: p, Err: fmt.Errorf("not a node manager answer: %w", err)}
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return &PeerError{Peer: p, Err: fmt.Errorf("decoding the answer: %w", err)}
	}
	return nil
}

// remoteError is the error answer data of p: its message when it is the
// API's error envelope, else the body.
func remoteError(p Peer, code int, data []byte) *RemoteError {
	var eb apihttp.ErrorBody
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &eb) == nil && len(eb.Errors) > 0 {
		msg = eb.Errors[0].Message
	}
	return &RemoteError{Peer: p, Code: code, Msg: msg}
}

// AsAPIError maps a node-to-node failure to the management API's answer:
// an unreachable node manager is 502 naming the host; a node manager's own
// error keeps its status, its message prefixed with the host.
func AsAPIError(err error, doing string) error {
	var pe *PeerError
	var re *RemoteError
	switch {
	case errors.As(err, &pe):
		return &apihttp.Error{Code: http.StatusBadGateway, Msg: fmt.Sprintf("%s: %s; the state of its instances is unknown", doing, pe.Error()), Err: err}
	case errors.As(err, &re):
		code := re.Code
		if code < 400 || code > 599 {
			code = http.StatusBadGateway
		}
		return &apihttp.Error{Code: code, Msg: fmt.Sprintf("%s: %s", doing, re.Error()), Err: err}
	}
	return err
}

// ---- the node manager's own client ---------------------------------------

// Net is the node manager's side of the node-to-node protocol: its client
// (made on first use, after the listener has its certificate) and, on the
// Admin Node Manager, the topology pusher (push.go). It is safe for
// concurrent use.
type Net struct {
	h      home.Home
	hostID string
	store  TopologySource
	log    *slog.Logger

	mu     sync.Mutex
	client *NodeClient

	// Push keeps the other hosts' topologies in step (the ANM starts it).
	Push *Pusher
}

// TopologySource reads the domain's topology (a *topology.Store).
type TopologySource interface {
	Load() (*topology.Topology, error)
}

// NewNet is the client side of node manager hostID of h.
func NewNet(h home.Home, hostID string, store TopologySource, log *slog.Logger) *Net {
	nn := &Net{h: h, hostID: hostID, store: store, log: log}
	nn.Push = newPusher(nn)
	return nn
}

// Client is the node manager's NodeClient.
func (nn *Net) Client() (*NodeClient, error) {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	if nn.client == nil {
		c, err := NewNodeClient(nn.h)
		if err != nil {
			return nil, err
		}
		nn.client = c
	}
	return nn.client, nil
}

// Call sends method path to p with body (JSON, when not nil) and decodes
// the envelope's result into out (when not nil). A transport failure is a
// *PeerError; an error answer a *RemoteError.
func (nn *Net) Call(ctx context.Context, p Peer, method, path string, body, out any) error {
	c, err := nn.Client()
	if err != nil {
		return err
	}
	return c.call(ctx, p, method, path, body, out)
}

// Close closes the client's idle connections.
func (nn *Net) Close() {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	if nn.client != nil {
		nn.client.Close()
	}
}
