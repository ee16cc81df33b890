package nodeapi

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

// pushInterval is how often the Admin Node Manager retries pushing the
// topology to node managers that do not have its version yet (a variable
// for tests).
var pushInterval = 5 * time.Second

// HostSync is one host's topology as the Admin Node Manager sees it: the
// answer of GET and POST /nm/sync (managedomain options 14 and 16).
type HostSync struct {
	HostID        string `json:"hostID"`
	HostName      string `json:"hostName"`
	NodeManagerID string `json:"nodeManagerID"`
	Address       string `json:"address"`
	Version       int64  `json:"version"`
	Checksum      string `json:"checksum"`
	InSync        bool   `json:"inSync"`
	// Pushed is set by a sync when this call sent the topology.
	Pushed bool   `json:"pushed,omitempty"`
	Error  string `json:"error,omitempty"`
}

// SyncReport is the Admin Node Manager's topology and every host's.
type SyncReport struct {
	Version  int64      `json:"version"`
	Checksum string     `json:"checksum"`
	Hosts    []HostSync `json:"hosts"`
}

// Pusher keeps every node manager's topology in step with the Admin Node
// Manager's: the management API pushes after each change it makes
// (PushAll), and a loop retries, every pushInterval, the hosts that have
// not taken the current version (down, or changed by a local tool on the
// ANM's host). A node manager accepts a push only from the ANM's
// certificate and only when its version is higher (PUT /nm/topology).
type Pusher struct {
	nn *Net

	mu     sync.Mutex
	pushed map[string]int64 // host → the version it is known to hold
	failed map[string]bool  // host → the last push failed (logged once)

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newPusher(nn *Net) *Pusher {
	return &Pusher{nn: nn, pushed: map[string]int64{}, failed: map[string]bool{}, quit: make(chan struct{})}
}

// Start runs the retry loop (the Admin Node Manager only).
func (p *Pusher) Start() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tk := time.NewTicker(pushInterval)
		defer tk.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), pushInterval*4)
			p.PushAll(ctx, false)
			cancel()
			select {
			case <-p.quit:
				return
			case <-tk.C:
			}
		}
	}()
}

// Stop ends the retry loop and waits for it.
func (p *Pusher) Stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// PushAll sends the current topology to every other node manager that is
// not known to hold it (all of them with force), concurrently, and reports
// each host.
func (p *Pusher) PushAll(ctx context.Context, force bool) SyncReport {
	n := p.nn
	t, err := n.store.Load()
	if err != nil {
		n.log.Warn("topology push: reading the topology", "err", err)
		return SyncReport{}
	}
	rep := SyncReport{Version: t.Version, Checksum: t.Checksum()}
	ps := Peers(t, n.hostID)
	rep.Hosts = make([]HostSync, len(ps))
	var wg sync.WaitGroup
	for i, peer := range ps {
		hs := &rep.Hosts[i]
		*hs = HostSync{HostID: peer.HostID, HostName: peer.HostName, NodeManagerID: peer.NodeManagerID, Address: peer.Addr}
		p.mu.Lock()
		have := p.pushed[peer.HostID]
		p.mu.Unlock()
		if !force && have >= t.Version {
			hs.Version, hs.Checksum, hs.InSync = t.Version, rep.Checksum, true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got TopologyState
			err := p.nn.Call(ctx, peer, "PUT", "/nm/topology", t, &got)
			var re *RemoteError
			if errors.As(err, &re) && re.Code == 409 {
				// Not newer than what it has: read what it has.
				err = p.nn.Call(ctx, peer, "GET", "/nm/topology/state", nil, &got)
			} else if err == nil {
				hs.Pushed = true
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				hs.Error = err.Error()
				if !p.failed[peer.HostID] {
					n.log.Warn("topology push failed; retried every interval", "host", peer.HostID, "nodeManager", peer.NodeManagerID, "address", peer.Addr, "version", t.Version, "err", err)
				}
				p.failed[peer.HostID] = true
				return
			}
			if p.failed[peer.HostID] {
				n.log.Info("topology push succeeds again", "host", peer.HostID)
			}
			delete(p.failed, peer.HostID)
			hs.Version, hs.Checksum = got.Version, got.Checksum
			hs.InSync = got.Version == t.Version && got.Checksum == rep.Checksum
			if hs.InSync {
				p.pushed[peer.HostID] = got.Version
			}
		}()
	}
	wg.Wait()
	return rep
}

// Check reads every node manager's topology version and checksum without
// changing anything (managedomain option 14).
func (p *Pusher) Check(ctx context.Context) SyncReport {
	n := p.nn
	t, err := n.store.Load()
	if err != nil {
		return SyncReport{}
	}
	rep := SyncReport{Version: t.Version, Checksum: t.Checksum()}
	ps := Peers(t, n.hostID)
	rep.Hosts = make([]HostSync, len(ps))
	var wg sync.WaitGroup
	for i, peer := range ps {
		hs := &rep.Hosts[i]
		*hs = HostSync{HostID: peer.HostID, HostName: peer.HostName, NodeManagerID: peer.NodeManagerID, Address: peer.Addr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got TopologyState
			if err := p.nn.Call(ctx, peer, "GET", "/nm/topology/state", nil, &got); err != nil {
				hs.Error = err.Error()
				return
			}
			hs.Version, hs.Checksum = got.Version, got.Checksum
			hs.InSync = got.Version == t.Version && got.Checksum == rep.Checksum
		}()
	}
	wg.Wait()
	return rep
}

// TopologyState is a host's topology version and checksum (GET
// /nm/topology/state).
type TopologyState struct {
	HostID   string `json:"hostID"`
	Version  int64  `json:"version"`
	Checksum string `json:"checksum"`
}

// StateOf is t's state on host hostID.
func StateOf(hostID string, t *topology.Topology) TopologyState {
	return TopologyState{HostID: hostID, Version: t.Version, Checksum: t.Checksum()}
}
