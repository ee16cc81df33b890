package instance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// Ports are the bound TCP ports of an instance; Sample is 0 without the
// sample service.
type Ports struct {
	Traffic    int `json:"traffic"`
	Management int `json:"management"`
	Sample     int `json:"sample,omitempty"`
}

// Status is what GET /status on the management listener answers.
type Status struct {
	GroupID        string    `json:"groupId"`
	InstanceID     string    `json:"instanceId"`
	GroupName      string    `json:"groupName"`
	InstanceName   string    `json:"instanceName"`
	PID            int       `json:"pid"`
	Phase          Phase     `json:"phase"`
	StartedAt      time.Time `json:"startedAt"`
	ConfigLoadedAt time.Time `json:"configLoadedAt"`
	ConfigChecksum string    `json:"configChecksum"` // SHA-256 of the effective configuration (groupconf.Settings.Checksum)
	InFlight       int64     `json:"inFlight"`       // requests being served on the traffic listener
	Ports          Ports     `json:"ports"`
	// Deployment is the archive the configuration was deployed from; nil
	// (omitted) when it was not deployed.
	Deployment *Deployment `json:"deployment,omitempty"`
	// InService is false while the instance is taken out of the load
	// balancer (POST /deployment/lb): /healthchecklb answers 503.
	InService bool `json:"inService"`
	// OutOfServiceUntil is when an out-of-service lease runs out and the
	// instance goes back in by itself (absent without a lease).
	OutOfServiceUntil time.Time `json:"outOfServiceUntil,omitzero"`
}

// Status reports the instance's state, as GET /status does.
func (i *Instance) Status() Status {
	i.mu.Lock()
	started := i.startedAt
	i.mu.Unlock()
	rt := i.rt.Load()
	return Status{
		GroupID:        i.opts.GroupID,
		InstanceID:     i.opts.InstanceID,
		GroupName:      i.opts.GroupName,
		InstanceName:   i.opts.InstanceName,
		PID:            os.Getpid(),
		Phase:          i.Phase(),
		StartedAt:      started,
		ConfigLoadedAt: rt.loadedAt,
		ConfigChecksum: rt.cfg.Checksum(),
		InFlight:       i.inFlight.Load(),
		Ports:          i.Ports(),
		Deployment:     deploymentOf(rt.cfg),
		InService:      i.inService.Load(),

		OutOfServiceUntil: i.OutOfServiceUntil(),
	}
}

// managementHandler serves the management listener: GET /status, GET
// /healthcheck, GET /metrics (Prometheus), GET /remotehosts, and for node
// managers POST /deployment/reload and POST /deployment/lb.
type managementHandler struct{ i *Instance }

func (h managementHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
		h.profile(w, r)
		return
	}
	if r.URL.Path == "/cluster" || strings.HasPrefix(r.URL.Path, "/cluster/") {
		h.serveCluster(w, r) // cluster.go
		return
	}
	switch r.URL.Path {
	case "/deployment/reload":
		if !h.postFromNodeManager(w, r) {
			return
		}
		if err := h.i.Reload(); err != nil {
			writeReloadError(w, err)
			return
		}
		h.writeStatus(w)
	case "/deployment/lb":
		if !h.postFromNodeManager(w, r) {
			return
		}
		on, lease, err := parseLBBody(http.MaxBytesReader(w, r.Body, maxLBBody))
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		h.i.SetInServiceFor(on, lease)
		h.writeStatus(w)
	case "/healthcheck":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteHTTPError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(healthOK)
		}
	case "/status":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteHTTPError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		h.writeStatus(w)
	case "/metrics":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteHTTPError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		h.i.metrics.ServeHTTP(w, r)
	case "/remotehosts":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteHTTPError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		b, err := json.MarshalIndent(h.i.remoteHosts.State(), "", "  ")
		if err != nil {
			h.i.log.Error("encoding remote hosts", "error", err.Error())
			proxy.WriteHTTPError(w, http.StatusInternalServerError, "internal error")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	default:
		proxy.WriteHTTPError(w, http.StatusNotFound, "no such management resource; try /status, /healthcheck, /metrics, /remotehosts or /cluster")
	}
}

func (h managementHandler) writeStatus(w http.ResponseWriter) {
	b, err := json.Marshal(h.i.Status())
	if err != nil {
		h.i.log.Error("encoding status", "error", err.Error())
		proxy.WriteHTTPError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// nodeManagerCNPrefix starts the subject common name of every node
// manager's certificate (pki.NodeManagerCNPrefix).
const nodeManagerCNPrefix = pki.NodeManagerCNPrefix

// postFromNodeManager lets a POST from this host's node manager through
// (Options.NodeManager; any node manager's when unset). Others get 405
// (another method) or 403 (a client certificate that is not a node
// manager's, or another host's node manager's). Without management TLS (in-process tests) nobody is known and
// every caller is let through.
func (h managementHandler) postFromNodeManager(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use POST")
		return false
	}
	return h.fromNodeManager(w, r)
}

// profile serves Go's profiles under /debug/pprof/ when profiling.enabled
// is set (404 otherwise): GET only, and with the domain's mutual TLS only
// to this host's node manager's certificate, as the changes are (a
// goroutine dump shows the instance's internals).
func (h managementHandler) profile(w http.ResponseWriter, r *http.Request) {
	if !h.i.rt.Load().cfg.Profiling.Enabled {
		writeJSONError(w, http.StatusNotFound, "profiling is off: set profiling.enabled in the instance's configuration (docs/performance.md#profiling)")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use GET")
		return
	}
	if !h.fromNodeManager(w, r) {
		return
	}
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index, and the named profiles (heap, goroutine, allocs, block, mutex, threadcreate)
	}
}

// fromNodeManager: with the domain's mutual TLS, the client certificate
// must be this host's node manager's (403 otherwise).
func (h managementHandler) fromNodeManager(w http.ResponseWriter, r *http.Request) bool {
	if h.i.opts.ManagementTLS == nil {
		return true
	}
	cn := ""
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	if !strings.HasPrefix(cn, nodeManagerCNPrefix) {
		h.i.log.Warn("management request refused: not a node manager", "path", r.URL.Path, "peer", r.RemoteAddr, "subject", cn)
		writeJSONError(w, http.StatusForbidden, "only node managers may "+r.Method+" "+r.URL.Path+"; the client certificate ("+strconv.Quote(cn)+") is not a node manager's")
		return false
	}
	if own := h.i.opts.NodeManager; own != "" && cn != own {
		h.i.log.Warn("management request refused: not this host's node manager", "path", r.URL.Path, "peer", r.RemoteAddr, "subject", cn)
		writeJSONError(w, http.StatusForbidden, "only this host's node manager ("+strconv.Quote(own)+") may "+r.Method+" "+r.URL.Path+"; the client certificate is "+strconv.Quote(cn))
		return false
	}
	return true
}

// maxLBBody bounds the body of POST /deployment/lb.
const maxLBBody = 1 << 10

// lbBodyShape is what POST /deployment/lb takes, for error messages.
const lbBodyShape = `the body must be {"inService": true|false} or {"inService": false, "leaseSeconds": N}`

// parseLBBody reads {"inService": true|false}, or {"inService": false,
// "leaseSeconds": N} (a whole number of seconds from 1 to MaxLease): those
// fields, nothing else.
func parseLBBody(r io.Reader) (on bool, lease time.Duration, err error) {
	var body struct {
		InService    *bool  `json:"inService"`
		LeaseSeconds *int64 `json:"leaseSeconds"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return false, 0, fmt.Errorf("%s: %v", lbBodyShape, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false, 0, errors.New(lbBodyShape + ": data after the object")
	}
	if body.InService == nil {
		return false, 0, errors.New(lbBodyShape + ": inService is missing")
	}
	if n := body.LeaseSeconds; n != nil {
		if *body.InService {
			return false, 0, errors.New(lbBodyShape + ": leaseSeconds goes with inService false only")
		}
		if *n < 1 || *n > int64(MaxLease/time.Second) {
			return false, 0, fmt.Errorf("%s: leaseSeconds %d: want 1 to %d", lbBodyShape, *n, int64(MaxLease/time.Second))
		}
		lease = time.Duration(*n) * time.Second
	}
	return *body.InService, lease, nil
}

// writeReloadError answers a refused reload: 422 for a configuration that
// does not load or validate, 409 for a listener that cannot be bound, 503
// while stopping; the body is {"error": "..."}.
func writeReloadError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrConfig):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, ErrListen):
		status = http.StatusConflict
	case errors.Is(err, ErrStopping):
		status = http.StatusServiceUnavailable
	}
	writeJSONError(w, status, err.Error())
}

// writeJSONError answers {"error": msg} with status.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
