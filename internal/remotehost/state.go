package remotehost

import (
	"time"
)

// State is the JSON answer of GET /remotehosts on the management listener.
type State struct {
	RemoteHosts []HostState `json:"remoteHosts"`
}

// HostState is one remote host of the current configuration.
type HostState struct {
	Name          string   `json:"name"`     // host:port (host alone for an entry for every port), or "sample"
	Backends      []string `json:"backends"` // the back ends using it
	LoadBalancing string   `json:"loadBalancing"`
	Watchdog      bool     `json:"watchdog"`
	DNS           bool     `json:"dns"` // addresses come from DNS
	// Fallback: every address is skipped after failures, and requests go
	// to them anyway (least recently failed first).
	Fallback  bool           `json:"fallback"`
	Addresses []AddressState `json:"addresses"`
}

// AddressState is one address and what the gateway knows of it.
type AddressState struct {
	Address       string  `json:"address"` // ip:port
	Scheme        string  `json:"scheme"`
	Priority      int     `json:"priority"`
	Up            bool    `json:"up"`
	DownReason    string  `json:"downReason,omitempty"` // "failed" (skipped after a failure) or "watchdog"
	AvgResponseMs float64 `json:"avgResponseMs"`        // decaying average; 0 before the first response
	InFlight      int64   `json:"inFlight"`
	Requests      uint64  `json:"requests"`
	Failures      uint64  `json:"failures"`
	// FallbackRequests were sent to the address while it was skipped,
	// because every address of the remote host was.
	FallbackRequests uint64 `json:"fallbackRequests"`
	// UnsolicitedCloses counts connections closed instead of reused
	// because the back end sent bytes beyond the end of a response.
	UnsolicitedCloses uint64     `json:"unsolicitedCloses"`
	LastError         string     `json:"lastError,omitempty"`
	LastErrorAt       *time.Time `json:"lastErrorAt,omitempty"`
}

// State returns the state of the current configuration's remote hosts.
func (r *Registry) State() State {
	r.mu.Lock()
	s := r.current
	r.mu.Unlock()
	out := State{RemoteHosts: []HostState{}}
	if s == nil {
		return out
	}
	now := mono()
	index := map[string]int{}
	for _, h := range s.hosts {
		if i, ok := index[h.Name]; ok {
			out.RemoteHosts[i].Backends = append(out.RemoteHosts[i].Backends, h.Backend)
			continue
		}
		hs := HostState{Name: h.Name, Backends: []string{h.Backend}, LoadBalancing: h.Settings.LoadBalancing,
			Watchdog: h.Settings.Watchdog.Enabled, DNS: len(h.Settings.Addresses) == 0, Fallback: h.inFallback.Load(), Addresses: []AddressState{}}
		if g := h.groups.Load(); g != nil {
			for _, a := range g.all {
				st := a.st
				as := AddressState{
					Address: st.addr, Scheme: h.scheme, Priority: a.Priority,
					DownReason: st.down(now), AvgResponseMs: st.avg() * 1000,
					InFlight: st.inFlight.Load(), Requests: st.requests.Load(), Failures: st.failures.Load(),
					FallbackRequests: st.fallback.Load(), UnsolicitedCloses: st.unsolicited.Load(),
				}
				as.Up = as.DownReason == ""
				if le := st.lastErr.Load(); le != nil {
					at := le.at
					as.LastError, as.LastErrorAt = le.msg, &at
				}
				hs.Addresses = append(hs.Addresses, as)
			}
		}
		index[h.Name] = len(out.RemoteHosts)
		out.RemoteHosts = append(out.RemoteHosts, hs)
	}
	return out
}

// AddressMetrics is one address for the metrics exporter.
type AddressMetrics struct {
	RemoteHost, Address string
	Up                  bool
	InFlight            int64
	AvgResponseSeconds  float64
	Requests, Failures  uint64
	Fallback            uint64 // requests sent while skipped (every address was)
	Unsolicited         uint64 // connections closed for bytes beyond a response
}

// AppendMetrics appends one entry per address of the current configuration
// (an address shared by several back ends once) to dst.
func (r *Registry) AppendMetrics(dst []AddressMetrics) []AddressMetrics {
	r.mu.Lock()
	s := r.current
	r.mu.Unlock()
	if s == nil {
		return dst
	}
	now := mono()
	seen := map[*addrState]bool{}
	for _, h := range s.hosts {
		g := h.groups.Load()
		if g == nil {
			continue
		}
		for _, a := range g.all {
			st := a.st
			if seen[st] {
				continue
			}
			seen[st] = true
			dst = append(dst, AddressMetrics{
				RemoteHost: h.Name, Address: st.addr, Up: st.down(now) == "",
				InFlight: st.inFlight.Load(), AvgResponseSeconds: st.avg(),
				Requests: st.requests.Load(), Failures: st.failures.Load(),
				Fallback: st.fallback.Load(), Unsolicited: st.unsolicited.Load(),
			})
		}
	}
	return dst
}
