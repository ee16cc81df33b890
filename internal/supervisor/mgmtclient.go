package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// Limits of the connections to instances' management listeners.
const (
	mgmtDialTimeout      = 5 * time.Second
	mgmtHandshakeTimeout = 5 * time.Second
	// mgmtHeaderTimeout: the answer's headers within 10 s (the router's
	// limit, docs/management-api.md).
	mgmtHeaderTimeout = 10 * time.Second
)

// errNoIdentity: the client is used before the node manager has its
// certificate (before SetIdentity).
var errNoIdentity = errors.New("the node manager has no certificate yet to present to instances")

// MgmtClient is the node manager's one client for the instances' management
// listeners, used by the supervisor (GET /status every 2 s) and by the
// Admin Node Manager's router (/api/router/service/{id}/…). It speaks
// mutual TLS inside the domain: it presents the node manager's certificate
// (nodeapi.NodeManagerCert), trusts only the domain CA, and verifies the instance's
// certificate and its name against the address dialled (instances'
// certificates name 127.0.0.1, ::1, localhost and their management
// address).
//
// Lifecycle: made by NewMgmtClient without an identity; SetIdentity is
// called once the node manager's certificate is loaded (when its listener
// starts). Until then every request fails with errNoIdentity. The identity
// is a pki.Live: when its files change (managedomain --regen_certs) the
// next request uses a new transport with the new certificate, and the
// connections made with the old one are closed once idle.
// It is an http.RoundTripper and safe for concurrent use.
type MgmtClient struct {
	live atomic.Pointer[pki.Live]

	mu sync.Mutex
	id *pki.Identity // what tr was made with
	tr *http.Transport
}

var _ http.RoundTripper = (*MgmtClient)(nil)

// NewMgmtClient makes a client without an identity.
func NewMgmtClient() *MgmtClient { return &MgmtClient{} }

// SetIdentity makes the client present live's certificate and trust its
// CA.
func (c *MgmtClient) SetIdentity(live *pki.Live) { c.live.Store(live) }

// transport is the transport for the current identity.
func (c *MgmtClient) transport() (*http.Transport, error) {
	live := c.live.Load()
	if live == nil {
		return nil, errNoIdentity
	}
	id, err := live.Load()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == id {
		return c.tr, nil
	}
	conf := pki.MutualTLSClient(id.Cert, id.CA)
	conf.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: mgmtDialTimeout}).DialContext,
		TLSClientConfig:       conf,
		TLSHandshakeTimeout:   mgmtHandshakeTimeout,
		ResponseHeaderTimeout: mgmtHeaderTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       60 * time.Second,
	}
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
	c.id, c.tr = id, tr
	return tr, nil
}

// RoundTrip sends req over mutual TLS (req's URL from InstanceURL).
func (c *MgmtClient) RoundTrip(req *http.Request) (*http.Response, error) {
	tr, err := c.transport()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return tr.RoundTrip(req)
}

// InstanceURL is where the management listener at hostPort answers path.
func InstanceURL(hostPort, path, rawQuery string) *url.URL {
	return &url.URL{Scheme: "https", Host: hostPort, Path: path, RawQuery: rawQuery}
}

// LoopbackAddr is port on 127.0.0.1, where this host's instances' management
// listeners are reached.
func LoopbackAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// instanceStatus is the part of an instance's GET /status the supervisor
// reads (instance.Status).
type instanceStatus struct {
	PID            int             `json:"pid"`
	Phase          string          `json:"phase"`
	ConfigChecksum string          `json:"configChecksum"`
	Deployment     *deployedStatus `json:"deployment"`
	InService      *bool           `json:"inService"`
	// OutOfServiceUntil: the end of an out-of-service lease.
	OutOfServiceUntil time.Time `json:"outOfServiceUntil"`
}

// status asks the management listener at addr (host:port) for GET /status,
// within statusTimeout.
func (c *MgmtClient) status(addr string) (instanceStatus, error) {
	var st instanceStatus
	hc := &http.Client{Transport: c, Timeout: statusTimeout}
	resp, err := hc.Get(InstanceURL(addr, "/status", "").String())
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return st, fmt.Errorf("GET /status: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
	return st, err
}
