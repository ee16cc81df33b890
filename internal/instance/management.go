package instance

import (
	"encoding/json"
	"net/http"
	"os"
	"time"

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
	}
}

// managementHandler serves the management listener: GET /status, GET
// /healthcheck and GET /metrics (Prometheus).
type managementHandler struct{ i *Instance }

func (h managementHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
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
		b, err := json.Marshal(h.i.Status())
		if err != nil {
			h.i.log.Error("encoding status", "error", err.Error())
			proxy.WriteHTTPError(w, http.StatusInternalServerError, "internal error")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
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
		proxy.WriteHTTPError(w, http.StatusNotFound, "no such management resource; try /status, /healthcheck or /metrics")
	}
}
