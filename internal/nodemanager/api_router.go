package nodemanager

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

	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// Router limits (docs/management-api.md).
const (
	relayHeaderTimeout   = 10 * time.Second
	relayTotalTimeout    = 60 * time.Second
	maxRelayResponseSize = 32 << 20
)

// relay forwards /api/router/service/{serviceID}/<path> to an instance's
// management listener, through the node manager's one client for them
// (mgmtClient: mutual TLS with the domain CA).
type relay struct {
	log   *slog.Logger
	proxy *httputil.ReverseProxy
}

type relayTargetKey struct{}

type relayTarget struct {
	url     *url.URL
	service string
}

func newRelay(log *slog.Logger, client *mgmtClient) *relay {
	rl := &relay{log: log}
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
			if resp.ContentLength > maxRelayResponseSize {
				return fmt.Errorf("the answer has %d bytes, more than the router's limit of %d", resp.ContentLength, maxRelayResponseSize)
			}
			resp.Body = &cappedBody{rc: resp.Body, left: maxRelayResponseSize}
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
				writeError(w, r, log, err)
				return
			}
			writeError(w, r, log, &apiError{Code: code, Msg: fmt.Sprintf("the management listener of %s (%s) did not answer: %v", t.service, t.url.Host, err), Err: err})
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return rl
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// cappedBody fails a relayed answer that runs over the limit.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("relayed answer is larger than %d bytes", maxRelayResponseSize)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error { return c.rc.Close() }

// /api/router/service/{serviceID}/<path>: any method, relayed as it is
// (hop-by-hop headers removed, the Authorization header not passed on);
// the instance's answer comes back unchanged.
func (a *api) route(w http.ResponseWriter, r *http.Request) {
	t, err := a.n.store.Load()
	if err != nil {
		a.fail(w, r, err)
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
		a.fail(w, r, &topology.NotFoundError{Kind: "service", Name: id, Available: ids})
		return
	}
	if svc.Type != topology.TypeGateway {
		a.fail(w, r, &apiError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s is a %s; the router relays to gateway instances", svc.ID, svc.Type)})
		return
	}
	if err := a.remoteHostError(t, svc, "reached through the router"); err != nil {
		a.fail(w, r, err)
		return
	}
	if svc.ManagementPort < 1 || svc.ManagementPort > 65535 {
		a.fail(w, r, &apiError{Code: http.StatusBadGateway, Msg: fmt.Sprintf("%s has no management port in the topology", svc.ID)})
		return
	}
	target := relayTarget{url: instanceURL(loopbackAddr(svc.ManagementPort), "/"+r.PathValue("path"), r.URL.RawQuery), service: svc.ID}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), relayTargetKey{}, target), relayTotalTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	}
	a.relay.proxy.ServeHTTP(w, r)
}
