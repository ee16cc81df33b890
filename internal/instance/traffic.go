package instance

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// trafficHandler serves the traffic listener: health checks, then routing,
// the policy chain and forwarding.
type trafficHandler struct{ i *Instance }

func (h trafficHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := h.i
	start := time.Now()
	i.inFlight.Add(1)
	rt := i.rt.Load()
	id := i.ids.accept(r.Header.Get(HeaderCorrelationID), start)
	r.Header.Set(HeaderCorrelationID, id)
	w.Header().Set(HeaderCorrelationID, id)
	phase := i.Phase()
	if phase >= PhaseDraining {
		// Served normally, but the client should reconnect (through the load
		// balancer, which no longer sends here).
		w.Header().Set("Connection", "close")
	}
	rec := &recorder{ResponseWriter: w}
	var matched *route.Route
	defer func() {
		i.inFlight.Add(-1)
		if rt.cfg.AccessLog.Enabled {
			i.logAccess(r, rec, start, id, matched)
		}
	}()
	if i.testHookRequest != nil {
		i.testHookRequest(r)
	}

	switch r.URL.Path {
	case "/healthcheck":
		healthCheck(rec, r, true)
		return
	case "/healthchecklb":
		healthCheck(rec, r, phase == PhaseServing)
		return
	}

	rt2, err := rt.table.Match(r.Method, r.Host, r.URL.EscapedPath())
	if err != nil {
		var me *route.MethodError
		switch {
		case errors.Is(err, route.ErrBadPath):
			proxy.WriteError(rec, http.StatusBadRequest, "the request path is not in canonical form (no '.', '..' or empty segments, no encoded '.', '/' or '\\')")
		case errors.As(err, &me):
			rec.Header().Set("Allow", strings.Join(me.Allow, ", "))
			proxy.WriteError(rec, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
		default:
			proxy.WriteError(rec, http.StatusNotFound, "no API matches this path")
		}
		return
	}
	matched = rt2
	if len(rt.chain) > 0 {
		ex := &policy.Exchange{W: rec, R: r, Route: rt2, CorrelationID: id, ClientAddr: clientIP(r.RemoteAddr)}
		if err := rt.chain.Apply(ex); err != nil {
			var pe *policy.Error
			switch {
			case errors.Is(err, policy.ErrHandled):
			case errors.As(err, &pe):
				if pe.Err != nil {
					i.log.Info("request rejected", "policy", pe.Policy, "status", pe.Status, "correlationId", id, "error", pe.Err.Error())
				}
				proxy.WriteError(rec, pe.Status, pe.Message)
			default:
				i.log.Error("policy failed", "correlationId", id, "api", rt2.Name, "error", err.Error())
				proxy.WriteError(rec, http.StatusInternalServerError, "internal error")
			}
			return
		}
	}
	rt.forwarders[rt2.Index].ServeHTTP(rec, r)
}

// healthCheck answers /healthcheck and /healthchecklb.
func healthCheck(w http.ResponseWriter, r *http.Request, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		proxy.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Cache-Control", "no-store")
	body, status := "<status>ok</status>", http.StatusOK
	if !ok {
		body, status = "<status>unavailable</status>", http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

// logAccess writes the access log line of a request. The path is written
// without its query string, which may hold secrets; no header is written.
func (i *Instance) logAccess(r *http.Request, rec *recorder, start time.Time, id string, rt *route.Route) {
	status := rec.status
	if status == 0 {
		if r.Context().Err() != nil {
			status = 499 // the client went away before an answer
		} else {
			status = http.StatusOK
		}
	}
	api, backend := "", ""
	if rt != nil {
		api, backend = rt.Name, rt.Backend
	}
	i.logs.access.LogAttrs(r.Context(), slog.LevelInfo, "",
		slog.String("correlationId", id),
		slog.String("client", clientIP(r.RemoteAddr)),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
		slog.String("api", api),
		slog.String("backend", backend),
	)
}

func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// recorder notes the status and size of a response. Unwrap lets
// http.ResponseController (used by ReverseProxy) reach Flush and Hijack.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
