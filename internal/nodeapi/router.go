package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Router limits (docs/management-api.md).
const (
	relayTotalTimeout = 60 * time.Second
	// MaxRelayResponseSize bounds a relayed answer.
	MaxRelayResponseSize = 32 << 20
)

// Router relays {serviceID}/{path...} to the management listener of an
// instance of this host, through the node manager's one client for them
// (supervisor.MgmtClient: mutual TLS with the domain CA). It serves the
// Admin Node Manager's /api/router/service/{serviceID}/{path...} for the
// instances of its host and every node manager's /nm/router for the ANM.
// Any method is relayed as it is (hop-by-hop headers removed, the
// Authorization and Cookie headers not passed on); the instance's answer
// comes back unchanged. It is safe for concurrent use.
type Router struct {
	log    *slog.Logger
	store  TopologySource
	hostID string
	proxy  *httputil.ReverseProxy
}

type relayTargetKey struct{}

type relayTarget struct {
	url     *url.URL
	service string
}

// NewRouter is the router of host hostID's instances; errors are answered
// and logged with log.
func NewRouter(log *slog.Logger, client *supervisor.MgmtClient, store TopologySource, hostID string) *Router {
	rl := &Router{log: log, store: store, hostID: hostID}
	rl.proxy = &httputil.ReverseProxy{
		Transport: client,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(relayTargetKey{}).(relayTarget)
			pr.Out.URL = t.url
			pr.Out.Host = t.url.Host
			// The administrator's credentials are for the node manager.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.ContentLength > MaxRelayResponseSize {
				return fmt.Errorf("the answer has %d bytes, more than the router's limit of %d", resp.ContentLength, MaxRelayResponseSize)
			}
			resp.Body = &CappedBody{rc: resp.Body, left: MaxRelayResponseSize}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t, _ := r.Context().Value(relayTargetKey{}).(relayTarget)
			code := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				code = http.StatusGatewayTimeout
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				apihttp.WriteError(w, r, log, err)
				return
			}
			apihttp.WriteError(w, r, log, &apihttp.Error{Code: code, Msg: fmt.Sprintf("the management listener of %s (%s) did not answer: %v", t.service, t.url.Host, err), Err: err})
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return rl
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// CappedBody fails a relayed answer that runs over MaxRelayResponseSize.
type CappedBody struct {
	rc   io.ReadCloser
	left int64
}

// NewCappedBody caps rc at MaxRelayResponseSize.
func NewCappedBody(rc io.ReadCloser) *CappedBody {
	return &CappedBody{rc: rc, left: MaxRelayResponseSize}
}

func (c *CappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("relayed answer is larger than %d bytes", MaxRelayResponseSize)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *CappedBody) Close() error { return c.rc.Close() }

// ServeHTTP relays r to the instance r.PathValue("serviceID") at
// r.PathValue("path").
func (rl *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := rl.store.Load()
	if err != nil {
		apihttp.WriteError(w, r, rl.log, err)
		return
	}
	id := r.PathValue("serviceID")
	var svc *topology.Service
	for gi := range t.Groups {
		for si := range t.Groups[gi].Services {
			if s := &t.Groups[gi].Services[si]; s.ID == id {
				svc = s
			}
		}
	}
	if svc == nil {
		ids := []string{}
		for _, ref := range t.Instances("") {
			ids = append(ids, ref.Service.ID)
		}
		apihttp.WriteError(w, r, rl.log, &topology.NotFoundError{Kind: "service", Name: id, Available: ids})
		return
	}
	if svc.Type != topology.TypeGateway {
		apihttp.WriteError(w, r, rl.log, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s is a %s; the router relays to gateway instances", svc.ID, svc.Type)})
		return
	}
	if svc.HostID != rl.hostID {
		// The ANM sends those to their node manager before the router
		// sees them.
		apihttp.WriteError(w, r, rl.log, &apihttp.Error{Code: http.StatusBadGateway, Msg: fmt.Sprintf("instance %s (%q) is on host %s; it is %s through that host's node manager, not here", svc.ID, svc.Name, HostLabel(t, svc.HostID), "reached through the router")})
		return
	}
	if svc.ManagementPort < 1 || svc.ManagementPort > 65535 {
		apihttp.WriteError(w, r, rl.log, &apihttp.Error{Code: http.StatusBadGateway, Msg: fmt.Sprintf("%s has no management port in the topology", svc.ID)})
		return
	}
	target := relayTarget{url: supervisor.InstanceURL(supervisor.LoopbackAddr(svc.ManagementPort), "/"+r.PathValue("path"), r.URL.RawQuery), service: svc.ID}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), relayTargetKey{}, target), relayTotalTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, apihttp.MaxBodyBytes)
	}
	rl.proxy.ServeHTTP(w, r)
}

// HostLabel names a host for messages: `host-2 ("second")`.
func HostLabel(t *topology.Topology, hostID string) string {
	if h, err := t.Host(hostID); err == nil {
		return fmt.Sprintf("%s (%q)", h.ID, h.Name)
	}
	return hostID
}
