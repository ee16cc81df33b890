package anm

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
)

// routerArea is /api/router/service/{serviceID}/{path...}: any method,
// relayed to the instance's management listener (docs/management-api.md).
func (a *API) routerArea() area {
	relayed := recorded("routeAny: the relayed change (method, path) and the instance's status")
	ops := map[string]op{}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		ops[m] = read(a.routeAny, "", "router.read", "router.write")
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		ops[m] = change(a.routeAny, "", relayed, "router.write")
	}
	return area{name: "router", routes: []route{
		{pattern: "/api/router/service/{serviceID}/{path...}", ops: ops, relay: a.routeAny},
	}}
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// routeAny is /api/router/service/{serviceID}/...: the instances of this
// host go to the router (nodeapi.Router), those of other hosts to their
// node manager's /nm/router.
func (a *API) routeAny(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A change through the router (taking an instance out of the load
		// balancer, a reload) is written to the audit log with the
		// instance's answer.
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			errMsg := ""
			if sw.status >= 400 || sw.status == 0 {
				errMsg = fmt.Sprintf("answered %d", sw.status)
			}
			a.record(r.Context(), actor(r), "router "+r.Method, []string{r.PathValue("serviceID")}, "/"+r.PathValue("path"), errMsg)
		}()
		w = sw
	}
	t, err := a.store.Load()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ref, err := t.FindInstanceID(r.PathValue("serviceID"))
	if err != nil || ref.Service.HostID == a.conf.HostID {
		a.router.ServeHTTP(w, r) // it answers unknown ids and node managers too
		return
	}
	peer, err := nodeapi.PeerOfHost(t, ref.Service.HostID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.net.Client()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	target := &url.URL{Scheme: "https", Host: peer.Addr, Path: "/nm/router/" + url.PathEscape(ref.Service.ID) + "/" + r.PathValue("path"), RawQuery: r.URL.RawQuery}
	doing := fmt.Sprintf("instance %s (%q) on host %s could not be reached through the router", ref.Service.ID, ref.Service.Name, nodeapi.HostLabel(t, ref.Service.HostID))
	rp := &httputil.ReverseProxy{
		Transport: c.Transport(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = nodeapi.NewCappedBody(resp.Body)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.fail(w, r, nodeapi.AsAPIError(&nodeapi.PeerError{Peer: peer, Err: err}, doing))
		},
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, apihttp.MaxBodyBytes)
	}
	rp.ServeHTTP(w, r)
}
