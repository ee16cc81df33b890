package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// State is the bus's state (see the package comment for the order).
type State int

// The states of a bus.
const (
	StateOff      State = iota // no peers: nothing runs
	StateDown                  // peers known, the server could not start; retrying
	StateIsolated              // the server runs, no peer connected
	StateUp                    // the server runs, at least one peer connected
)

var stateNames = [...]string{"off", "down", "isolated", "up"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not a cluster bus state", b)
}

// PeerState is one peer as GET /cluster shows it.
type PeerState struct {
	ID         string    `json:"id,omitempty"`  // its instance id; "" for a manual peer not connected yet
	URL        string    `json:"url,omitempty"` // where it is dialled (host:port); "" for a peer that dialled in unasked
	State      string    `json:"state"`         // "up" or "down"
	Since      time.Time `json:"since,omitzero"`
	LastSeen   time.Time `json:"lastSeen,omitzero"` // the last time its route was seen connected
	Reconnects int64     `json:"reconnects"`        // times its route came back after it was lost
}

// Status is the bus as GET /cluster shows it.
type Status struct {
	InstanceID    string      `json:"instanceId"`
	GroupID       string      `json:"groupId"`
	State         State       `json:"state"`
	Since         time.Time   `json:"since"`
	Error         string      `json:"error,omitempty"`         // why it is down
	RouteListener string      `json:"routeListener,omitempty"` // host:port, while the server runs
	Peers         []PeerState `json:"peers"`
	MessagesIn    int64       `json:"messagesIn"`
	MessagesOut   int64       `json:"messagesOut"`
	Reconnects    int64       `json:"reconnects"`
}

// peerTrack is what the bus remembers of a peer it has seen connected.
type peerTrack struct {
	up         bool
	url        string // a URL of the wanted list it matched, when one did
	since      time.Time
	lastSeen   time.Time
	reconnects int64
}

// State returns the bus's state.
func (b *Bus) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// PeersUp is the number of peers connected now (cheap: for a caller that
// waits for every live peer's answer).
func (b *Bus) PeersUp() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, p := range b.peers {
		if p.up {
			n++
		}
	}
	return n
}

// Peers is Status().Peers.
func (b *Bus) Peers() []PeerState { return b.Status().Peers }

// Status reports the bus and its peers: every wanted peer (up or down) and
// every instance connected to this one.
func (b *Bus) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{
		InstanceID: b.opts.InstanceID, GroupID: b.opts.GroupID,
		State: b.state, Since: b.since, RouteListener: b.routeAddr,
		MessagesIn: b.msgsIn.Load(), MessagesOut: b.msgsOut.Load(), Reconnects: b.reconnects.Load(),
		Peers: []PeerState{},
	}
	if b.state == StateDown {
		st.Error = b.lastErr
	}
	known := map[string]string{} // URL → id, from the node manager's list
	byID := map[string]string{}  // id → URL
	for _, p := range append(slices.Clone(b.opts.Peers), b.fromNM...) {
		if u, err := peerURLs([]Peer{p}); err == nil && len(u) == 1 && p.ID != "" {
			known[u[0].Host], byID[p.ID] = p.ID, u[0].Host
		}
	}
	matched := map[string]bool{}
	ids := make([]string, 0, len(b.peers))
	for id := range b.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := b.peers[id]
		ps := PeerState{ID: id, URL: p.url, State: "down", Since: p.since, LastSeen: p.lastSeen, Reconnects: p.reconnects}
		if ps.URL == "" {
			ps.URL = byID[id]
		}
		if p.up {
			ps.State = "up"
		}
		if ps.URL != "" {
			matched[ps.URL] = true
		}
		st.Peers = append(st.Peers, ps)
	}
	// Wanted peers never seen connected.
	for _, u := range b.want {
		if matched[u.Host] {
			continue
		}
		if id := known[u.Host]; id != "" && b.peers[id] != nil {
			continue
		}
		st.Peers = append(st.Peers, PeerState{ID: known[u.Host], URL: u.Host, State: "down", Since: b.since})
	}
	return st
}

// setState moves the bus to s and logs the transition once.
func (b *Bus) setState(s State, why string) {
	b.mu.Lock()
	old := b.state
	changed := old != s || (s == StateDown && why != b.lastErr)
	b.state, b.lastErr = s, why
	if changed {
		b.since = time.Now()
	}
	b.mu.Unlock()
	if !changed {
		return
	}
	switch s {
	case StateDown:
		b.log.Warn("cluster bus down; the instance serves without it and retries", "from", old.String(), "error", why, "retryEvery", b.opts.RetryInterval.String())
	case StateUp:
		b.log.Info("cluster bus up", "from", old.String())
	case StateIsolated:
		b.log.Warn("cluster bus isolated: no peer connected", "from", old.String())
	case StateOff:
		b.log.Info("cluster bus off: no peers", "from", old.String())
	}
}

// loop inspects the routes every PollInterval (peers joining and leaving,
// the bus's state) and retries a server that could not start.
func (b *Bus) loop() {
	defer close(b.done)
	t := time.NewTicker(b.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			return
		case <-t.C:
		}
		b.mu.Lock()
		state, lastTry := b.state, b.lastTry
		b.mu.Unlock()
		if state == StateDown && time.Since(lastTry) >= b.opts.RetryInterval {
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.StartTimeout)
			_ = b.apply(ctx)
			cancel()
		}
		b.inspect()
	}
}

// inspect compares the connected routes with the last look, logs each peer
// that joined or left, and updates the bus's state.
func (b *Bus) inspect() {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return
	}
	rz, err := srv.Routez(&server.RoutezOptions{})
	if err != nil {
		return
	}
	now := time.Now()
	up := map[string]*server.RouteInfo{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			up[r.RemoteName] = r
		}
	}
	b.mu.Lock()
	if b.srv != srv { // stopped meanwhile
		b.mu.Unlock()
		return
	}
	type event struct {
		joined   bool
		id, addr string
		again    bool
	}
	var events []event
	for id, r := range up {
		p := b.peers[id]
		if p == nil {
			p = &peerTrack{}
			b.peers[id] = p
		}
		if r.DidSolicit && p.url == "" {
			p.url = b.wantedURL(r.IP, r.Port)
		}
		p.lastSeen = now
		if !p.up {
			again := !p.since.IsZero()
			if again {
				p.reconnects++
				b.reconnects.Add(1)
			}
			p.up, p.since = true, now
			events = append(events, event{joined: true, id: id, addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port)), again: again})
		}
	}
	for id, p := range b.peers {
		if p.up && up[id] == nil {
			p.up, p.since = false, now
			events = append(events, event{id: id})
		}
	}
	b.mu.Unlock()
	for _, e := range events {
		if e.joined {
			b.log.Info("cluster peer joined", "peer", e.id, "address", e.addr, "rejoined", e.again)
		} else {
			b.log.Warn("cluster peer left", "peer", e.id)
		}
	}
	if len(up) > 0 {
		b.setState(StateUp, "")
	} else {
		b.setState(StateIsolated, "")
	}
}

// wantedURL is the wanted peer URL whose address is ip:port, or "". b.mu is
// held.
func (b *Bus) wantedURL(ip string, port int) string {
	for _, u := range b.want {
		if u.Port() != strconv.Itoa(port) {
			continue
		}
		if h := u.Hostname(); h == ip || (h == "localhost" && net.ParseIP(ip).IsLoopback()) {
			return u.Host
		}
	}
	return ""
}
