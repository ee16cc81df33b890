package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/cache/ratelimit"
	"github.com/gatehouse-gw/gatehouse/internal/cluster"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// The instance's side of the group's cluster bus (docs/cluster.md): made at
// Start from the cluster settings (read at start only), it runs nothing
// until it has peers: the manual list (cluster.peers) or the node
// manager's (PUT /cluster/peers). A KPS change announced by another
// instance makes this one forget its cached look-ups of the row.

// startBus makes the bus at Start. With the domain's mutual TLS on the
// management listener (startinstance), routes take mutual TLS with the
// instance's certificate; without it (in-process tests) they are plain.
// A bus that cannot be made (a certificate that does not load) is logged
// and the instance runs without one.
func (i *Instance) startBus() {
	cfg := i.rt.Load().cfg
	cl := cfg.Cluster
	if !cl.Enabled {
		i.log.Info("cluster bus disabled (cluster.enabled is false)")
		return
	}
	o := cluster.Options{
		InstanceID: i.opts.InstanceID, GroupID: i.opts.GroupID,
		Address: cl.Address, Port: cfg.RoutePort(), Advertise: cl.Advertise, ClientPort: cl.ClientPort,
		PortSetting: "cluster.port",
		Logger:      i.lgWith("cluster"),
	}
	if cl.Port == 0 {
		o.PortSetting = "cluster.port, 0: management.port + 10000"
	}
	for _, p := range cl.Peers {
		o.Peers = append(o.Peers, cluster.Peer{URL: p})
	}
	if i.opts.ManagementTLS != nil {
		h, gid, iid := i.opts.Home, i.opts.GroupID, i.opts.InstanceID
		live, err := pki.NewLive(h, pki.InstanceCertFile(h, gid, iid), pki.InstanceKeyFile(h, gid, iid), pki.CertFile(h))
		if err == nil {
			o.TLS, err = cluster.RouteTLS(live, gid)
		}
		if err != nil {
			i.log.Error("cluster bus not started: the instance certificate does not load", "error", err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cluster.Start(ctx, o)
	if err != nil {
		i.log.Error("cluster bus not started", "error", err.Error())
		return
	}
	b.OnKPSChange(i.forgetKPS)
	i.rateLimits.Attach(ratelimit.BusTransport(b)) // ratelimits.go
	i.metrics.Registry().MustRegister(b.Collector())
	i.bus.Store(b)
	// The replicated caches (caches[].replicated) go over it; until it has
	// peers they behave as local ones.
	if i.caches != nil {
		i.cacheRepl = cluster.NewCacheReplicator(b, i.caches, i.lgWith("cache"))
		i.caches.SetReplicator(i.cacheRepl)
		i.metrics.Registry().MustRegister(i.cacheRepl.Collector())
	}
}

// swapCluster applies what a swapped configuration changes in the cluster
// section: a new manual peer list at once (in the background: starting the
// server may take a moment); the other settings take effect at the next
// start, which is logged.
func (i *Instance) swapCluster(prev, next *groupconf.Config) {
	b := i.bus.Load()
	pc, nc := prev.Cluster, next.Cluster
	if b != nil && !slices.Equal(pc.Peers, nc.Peers) {
		peers := make([]cluster.Peer, len(nc.Peers))
		for k, p := range nc.Peers {
			peers[k] = cluster.Peer{URL: p}
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.SetManualPeers(ctx, peers); err != nil {
				i.log.Error("cluster.peers not applied", "error", err.Error())
			}
		}()
	}
	pc.Peers, nc.Peers = nil, nil
	if !reflect.DeepEqual(pc, nc) || prev.RoutePort() != next.RoutePort() {
		i.log.Warn("cluster settings changed; they take effect when the instance is restarted (cluster.peers applies at once)")
	}
}

// closeBus stops the bus (at the end of a stop).
func (i *Instance) closeBus() {
	if i.cacheRepl != nil {
		i.caches.SetReplicator(nil)
		i.cacheRepl.Close()
	}
	if b := i.bus.Load(); b != nil {
		b.Close()
	}
}

// Bus returns the instance's cluster bus; nil when cluster.enabled is false
// or before Start.
func (i *Instance) Bus() *cluster.Bus { return i.bus.Load() }

// forgetKPS forgets the cached look-ups a KPS change may have made stale.
func (i *Instance) forgetKPS(c cluster.KPSChange) {
	if gs := i.rt.Load().kps; gs != nil {
		gs.cache.Forget(c.Table, c.Key)
	}
	if i.testHookKPSForget != nil {
		i.testHookKPSForget(c)
	}
	i.log.Debug("KPS change from the bus: cached look-ups forgotten", "table", c.Table, "latency", time.Since(c.At).String())
}

// KPSChanged forgets this instance's cached look-ups of the row and
// announces the change to the group's other instances. announced is false
// when there is no bus to announce it on (they see it within the cache's
// lifetime, kps.cache.ttl).
func (i *Instance) KPSChanged(table string, key any) (announced bool, err error) {
	c := cluster.KPSChange{Table: table, Key: key, At: time.Now()}
	if gs := i.rt.Load().kps; gs != nil {
		gs.cache.Forget(table, key)
	}
	b := i.bus.Load()
	if b == nil {
		return false, nil
	}
	switch err := b.PublishKPSChange(c); {
	case errors.Is(err, cluster.ErrNotRunning):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// maxClusterBody bounds the bodies of PUT /cluster/peers and POST
// /cluster/kps.
const maxClusterBody = 64 << 10

// PeersBody is what PUT /cluster/peers takes: the route listeners of the
// group's other instances, from the node manager.
type PeersBody struct {
	Peers []cluster.Peer `json:"peers"`
}

// KPSChangeBody is what POST /cluster/kps takes: a row of the group's KPS
// that changed (key: a string or an integer; absent: the whole table).
type KPSChangeBody struct {
	Table string `json:"table"`
	Key   any    `json:"key,omitempty"`
}

// clusterOff is GET /cluster without a bus.
type clusterOff struct {
	InstanceID string         `json:"instanceId"`
	GroupID    string         `json:"groupId"`
	State      string         `json:"state"`
	Error      string         `json:"error"`
	Peers      []cluster.Peer `json:"peers"`
}

// serveCluster answers GET /cluster, PUT /cluster/peers (node managers
// only) and POST /cluster/kps (node managers only).
func (h managementHandler) serveCluster(w http.ResponseWriter, r *http.Request) {
	i := h.i
	b := i.bus.Load()
	switch r.URL.Path {
	case "/cluster":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			proxy.WriteHTTPError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here")
			return
		}
		var v any
		if b != nil {
			v = b.Status()
		} else {
			v = clusterOff{InstanceID: i.opts.InstanceID, GroupID: i.opts.GroupID, State: "off", Peers: []cluster.Peer{},
				Error: "no cluster bus: cluster.enabled is false, or its certificate did not load (see the instance log)"}
		}
		writeJSON(w, http.StatusOK, v)
	case "/cluster/peers":
		if r.Method != http.MethodPut {
			w.Header().Set("Allow", "PUT")
			writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use PUT")
			return
		}
		if !h.fromNodeManager(w, r) {
			return
		}
		var body PeersBody
		if err := decodeStrict(http.MaxBytesReader(w, r.Body, maxClusterBody), &body); err != nil {
			writeJSONError(w, http.StatusBadRequest, `the body must be {"peers": [{"id": "instance-3", "url": "host:port"}, ...]}: `+err.Error())
			return
		}
		if b == nil {
			writeJSONError(w, http.StatusConflict, "no cluster bus on this instance (cluster.enabled is false, or its certificate did not load)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if err := b.SetPeers(ctx, body.Peers); err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, b.Status())
	case "/cluster/kps":
		if !h.postFromNodeManager(w, r) {
			return
		}
		var body KPSChangeBody
		if err := decodeStrict(http.MaxBytesReader(w, r.Body, maxClusterBody), &body); err != nil || body.Table == "" {
			if err == nil {
				err = errors.New("table is missing")
			}
			writeJSONError(w, http.StatusBadRequest, `the body must be {"table": "alias", "key": "k"|123}: `+err.Error())
			return
		}
		key, err := kpsKey(body.Key)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		announced, err := i.KPSChanged(body.Table, key)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Forgotten bool `json:"forgotten"`
			Announced bool `json:"announced"`
		}{true, announced})
	default:
		proxy.WriteHTTPError(w, http.StatusNotFound, "no such management resource; try /cluster")
	}
}

// kpsKey turns a JSON key (string or integral number) into a KPS key.
func kpsKey(k any) (any, error) {
	switch v := k.(type) {
	case nil, string:
		return v, nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return nil, fmt.Errorf("key %s is not an integer", v)
		}
		return n, nil
	}
	return nil, fmt.Errorf("key of JSON type %T: want a string or an integer", k)
}

// decodeStrict reads one JSON object into v: known fields only, numbers as
// json.Number, nothing after it.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the object")
	}
	return nil
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
