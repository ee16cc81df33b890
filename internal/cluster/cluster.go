// Package cluster is the bus of a group's instances: an embedded NATS
// server (github.com/nats-io/nats-server/v2) in each instance, clustered
// with the group's other instances through NATS routes over mutual TLS with
// the domain's certificates, and an in-process client connection to it (its
// client listener, which NATS needs for routes, is on 127.0.0.1 behind a
// token made at each start). Caches, rate limits and KPS change events travel on
// it (docs/cluster.md).
//
// Lifecycle: Start → SetPeers (any number of times, from the node manager
// or a manual list) → Close. A Bus without peers runs nothing (a group with
// one instance has no bus); the first non-empty peer list starts the
// server, an empty one stops it, and a changed one is applied to the
// running server (its route list is reloaded; no restart). A server that
// cannot start (its route port is taken) leaves the bus down: the instance
// runs without it and the bus retries every Options.RetryInterval.
//
// States (State): off → down|isolated|up, and back:
//
//	off       no peers: nothing runs
//	down      peers are known but the server could not start; retrying
//	isolated  the server runs, no peer is connected
//	up        the server runs, at least one peer is connected
//
// Each transition of the bus and each peer that joins or leaves is logged
// once. Publish, Subscribe and Request work in isolated and up; Publish
// returns ErrNotRunning in off and down, and callers fall back to what they
// do without a bus (for KPS look-ups: the cache's lifetime).
//
// Subscriptions outlive the server: a handler given to Subscribe is
// subscribed again each time the server starts. A Bus is safe for
// concurrent use. Lock order: opMu, then mu.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Defaults of Options.
const (
	DefaultPollInterval  = 100 * time.Millisecond
	DefaultRetryInterval = 5 * time.Second
	DefaultStartTimeout  = 10 * time.Second
)

// Route liveness: a route whose peer answers no ping for RouteMaxPingsOut
// intervals is closed (and dialled again).
const (
	RoutePingInterval = 2 * time.Second
	RouteMaxPingsOut  = 3
)

// RandomPort in Options.Port makes the server pick a free route port
// (tests).
const RandomPort = -1

// ErrNotRunning is returned by Publish and Request while the bus has no
// server (state off or down).
var ErrNotRunning = errors.New("the cluster bus is not running")

// Peer is another instance of the group as the bus dials it.
type Peer struct {
	// ID is the peer's instance id ("instance-3"), when known (peers from
	// the topology); manual peers have none until their route connects.
	ID string `json:"id,omitempty"`
	// URL is where its route listener is: host:port, or
	// nats-route://host:port.
	URL string `json:"url"`
}

// Options configure a Bus.
type Options struct {
	InstanceID string // this instance: the NATS server's name, the peers' ID
	GroupID    string // the cluster's name; only the group's instances may join

	Address   string // route listener's IP address; "" is every interface
	Port      int    // route listener's port; RandomPort picks one
	Advertise string // host:port the peers are told to dial; "" is NATS's choice
	// ClientPort is the client listener's port on 127.0.0.1 (NATS needs
	// one for routes; clients of this process connect in-process, and any
	// other needs a token made at each start); 0 picks a free one.
	ClientPort int

	// PortSetting names the setting Port comes from, for error messages
	// ("cluster.port").
	PortSetting string

	// TLS is the routes' mutual TLS (RouteTLS). Nil runs routes in plain
	// TCP: in-process tests only.
	TLS *tls.Config

	// Peers is a manual list, always dialled besides the ones SetPeers
	// gives.
	Peers []Peer

	Logger        *slog.Logger
	PollInterval  time.Duration // how often routes are inspected for transitions; default 100 ms
	RetryInterval time.Duration // how often a server that could not start is tried again; default 5 s
	StartTimeout  time.Duration // how long a start waits for the server to be ready; default 10 s
}

// Msg is a message delivered to a Subscribe handler.
type Msg struct {
	Subject string
	Data    []byte
	Reply   string // the inbox of a Request; "" for a Publish
	nc      *nats.Conn
}

// Respond answers a Request.
func (m Msg) Respond(data []byte) error {
	if m.Reply == "" || m.nc == nil {
		return errors.New("responding: the message is not a request")
	}
	return m.nc.Publish(m.Reply, data)
}

type subscription struct {
	subject string
	fn      func(Msg)
	sub     *nats.Subscription // on the current connection; nil when none
}

// Bus is one instance's side of the group's bus.
type Bus struct {
	opts Options
	log  *slog.Logger

	opMu sync.Mutex // serializes starting, stopping and reloading the server

	mu        sync.Mutex // guards the fields below
	srv       *server.Server
	sopts     *server.Options // what srv was made with (the base of a reload)
	nc        *nats.Conn
	routeAddr string // the bound route listener, host:port
	fromNM    []Peer // the last SetPeers
	want      []*url.URL
	state     State
	since     time.Time
	lastErr   string // why the server is down
	lastTry   time.Time
	peers     map[string]*peerTrack // by instance id (the route's remote name)
	subs      []*subscription
	closed    bool

	msgsIn, msgsOut atomic.Int64
	reconnects      atomic.Int64

	quit chan struct{}
	done chan struct{}
}

// Start makes a Bus and starts watching it; it starts the server at once
// when Options.Peers is not empty (within ctx, or StartTimeout). A server
// that cannot start is not an error: the bus is down and retries (Status
// says why). Only invalid options are errors.
func Start(ctx context.Context, o Options) (*Bus, error) {
	if o.InstanceID == "" || o.GroupID == "" {
		return nil, errors.New("starting the cluster bus: instance and group ids are required")
	}
	if o.Port == 0 || o.Port < RandomPort || o.Port > 65535 {
		return nil, fmt.Errorf("starting the cluster bus: %s %d is not a port (1 to 65535)", o.portSetting(), o.Port)
	}
	if o.Address != "" {
		if _, err := netParseIP(o.Address); err != nil {
			return nil, fmt.Errorf("starting the cluster bus: address %q: %w", o.Address, err)
		}
	}
	if _, err := peerURLs(o.Peers); err != nil {
		return nil, fmt.Errorf("starting the cluster bus: manual peers: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	b := &Bus{
		opts: o, log: o.Logger,
		state: StateOff, since: time.Now(),
		peers: map[string]*peerTrack{},
		quit:  make(chan struct{}), done: make(chan struct{}),
	}
	if err := b.apply(ctx); err != nil {
		return nil, err
	}
	go b.loop()
	return b, nil
}

func (o Options) portSetting() string {
	if o.PortSetting != "" {
		return o.PortSetting
	}
	return "port"
}

// SetPeers replaces the peers given by the node manager (the manual ones
// stay). An empty list with no manual peers stops the server; the first
// non-empty one starts it; any other change reloads the route list of the
// running server. Peers whose URL names this instance's own route listener
// are dropped. ctx bounds a start.
func (b *Bus) SetPeers(ctx context.Context, peers []Peer) error {
	if _, err := peerURLs(peers); err != nil {
		return fmt.Errorf("cluster peers: %w", err)
	}
	b.mu.Lock()
	b.fromNM = slices.Clone(peers)
	b.mu.Unlock()
	return b.apply(ctx)
}

// SetManualPeers replaces the manual list (Options.Peers: a configuration
// reloaded with another cluster.peers), as SetPeers does the node
// manager's.
func (b *Bus) SetManualPeers(ctx context.Context, peers []Peer) error {
	if _, err := peerURLs(peers); err != nil {
		return fmt.Errorf("cluster peers: %w", err)
	}
	b.mu.Lock()
	b.opts.Peers = slices.Clone(peers)
	b.mu.Unlock()
	return b.apply(ctx)
}

// apply brings the server in line with the wanted peers: starts, stops or
// reloads it.
func (b *Bus) apply(ctx context.Context) error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("the cluster bus is closed")
	}
	all := append(slices.Clone(b.opts.Peers), b.fromNM...)
	srv := b.srv
	b.mu.Unlock()
	want, err := peerURLs(b.withoutSelf(all))
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.want = want
	b.mu.Unlock()
	switch {
	case len(want) == 0 && srv != nil:
		b.stopServer()
		b.setState(StateOff, "")
	case len(want) == 0:
		b.setState(StateOff, "")
	case srv == nil:
		b.startServer(ctx, want)
	default:
		b.mu.Lock()
		opts := b.sopts.Clone()
		b.mu.Unlock()
		if slices.Equal(urlStrings(opts.Routes), urlStrings(want)) {
			return nil // the same list again (a node manager that restarted)
		}
		opts.Routes = want
		kept := opts.Clone() // NATS keeps what it is given
		if err := srv.ReloadOptions(opts); err != nil {
			return fmt.Errorf("cluster peers: reloading the route list: %w", err)
		}
		b.mu.Lock()
		b.sopts = kept
		b.mu.Unlock()
		b.log.Info("cluster peers changed", "peers", urlStrings(want))
	}
	return nil
}

// withoutSelf drops the peers that are this instance (its id, or its own
// route listener's address).
func (b *Bus) withoutSelf(peers []Peer) []Peer {
	b.mu.Lock()
	self := b.routeAddr
	b.mu.Unlock()
	var out []Peer
	for _, p := range peers {
		if p.ID != "" && p.ID == b.opts.InstanceID {
			continue
		}
		if self != "" && strings.TrimPrefix(p.URL, "nats-route://") == self {
			continue
		}
		out = append(out, p)
	}
	return out
}

// startServer starts the embedded server with routes to want and connects
// to it in-process; on failure the bus is down and the loop retries.
func (b *Bus) startServer(ctx context.Context, want []*url.URL) {
	b.mu.Lock()
	b.lastTry = time.Now()
	b.mu.Unlock()
	srv, sopts, nc, addr, err := b.newServer(ctx, want)
	if err != nil {
		b.setState(StateDown, err.Error())
		return
	}
	b.mu.Lock()
	b.srv, b.sopts, b.nc, b.routeAddr = srv, sopts, nc, addr
	for _, s := range b.subs {
		s.sub = b.subscribeLocked(s)
	}
	b.mu.Unlock()
	b.setState(StateIsolated, "")
	b.log.Info("cluster bus started", "routeListener", addr, "peers", urlStrings(want))
}

func (b *Bus) newServer(ctx context.Context, want []*url.URL) (*server.Server, *server.Options, *nats.Conn, string, error) {
	o := b.opts
	port := o.Port
	if port != RandomPort {
		// NATS reports a route port in use through its logger only: check
		// first, to name the port and its setting.
		ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(port)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, nil, nil, "", fmt.Errorf("route listener: port %d on %s (%s) is in use", port, addrOrAny(o.Address), o.portSetting())
			}
			return nil, nil, nil, "", fmt.Errorf("route listener: listening on %s port %d (%s): %w", addrOrAny(o.Address), port, o.portSetting(), err)
		}
		ln.Close()
	}
	host := o.Address
	if host == "" {
		host = "0.0.0.0"
	}
	// The client listener: NATS v2.15 starts routing only once its client
	// accept loop runs (with DontListen it never does), so there is one, on
	// loopback, behind a token made for this start; this process connects
	// in-process.
	token, err := randomToken()
	if err != nil {
		return nil, nil, nil, "", err
	}
	clientPort := o.ClientPort
	if clientPort == 0 {
		clientPort = RandomPort
	}
	sopts := &server.Options{
		ServerName:    o.InstanceID,
		Host:          "127.0.0.1",
		Port:          clientPort,
		Authorization: token,
		NoSigs:        true,
		Cluster: server.ClusterOpts{
			Name:        clusterName(o.GroupID),
			Host:        host,
			Port:        port,
			Advertise:   o.Advertise,
			NoAdvertise: true, // no client URLs to gossip
			TLSConfig:   o.TLS,
			TLSTimeout:  2,
			PoolSize:    -1, // one route per peer
			// A peer that goes silent (host gone, network cut) is dropped
			// after three unanswered pings: within about 8 s.
			PingInterval: RoutePingInterval,
			MaxPingsOut:  RouteMaxPingsOut,
		},
		Routes: want,
	}
	kept := sopts.Clone() // the base of reloads; NATS keeps and changes what it is given
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, nil, nil, "", fmt.Errorf("creating the NATS server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{b.log}, false, false, false)
	srv.Start()
	timeout := o.StartTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		return nil, nil, nil, "", fmt.Errorf("the NATS server was not ready within %v (route listener on %s port %d, %s; client listener on 127.0.0.1 port %d)", timeout, addrOrAny(o.Address), port, o.portSetting(), o.ClientPort)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Token(token), nats.NoEcho(), nats.Name(o.InstanceID),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)) // a broken in-process connection is made again
	if err != nil {
		srv.Shutdown()
		return nil, nil, nil, "", fmt.Errorf("connecting to the NATS server in-process: %w", err)
	}
	addr := ""
	if a := srv.ClusterAddr(); a != nil {
		addr = net.JoinHostPort(o.Address, strconv.Itoa(a.Port))
		if o.Address == "" {
			addr = net.JoinHostPort("0.0.0.0", strconv.Itoa(a.Port))
		}
	}
	return srv, kept, nc, addr, nil
}

// stopServer closes the connection and shuts the server down.
func (b *Bus) stopServer() {
	b.mu.Lock()
	srv, nc := b.srv, b.nc
	b.srv, b.nc, b.routeAddr = nil, nil, ""
	for _, s := range b.subs {
		s.sub = nil
	}
	for id, p := range b.peers {
		if p.up {
			p.up = false
			p.since = time.Now()
			b.log.Warn("cluster peer left", "peer", id, "reason", "the bus stopped")
		}
	}
	b.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Close stops the server and the watching. Handlers are not called after
// it returns.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.quit)
	<-b.done
	b.opMu.Lock()
	b.stopServer()
	b.opMu.Unlock()
	return nil
}

// Publish sends data on subject to every subscriber of the group's other
// instances (not to this instance's own). It returns ErrNotRunning when
// there is no server. Delivery is at most once.
func (b *Bus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	nc := b.nc
	b.mu.Unlock()
	if nc == nil {
		return ErrNotRunning
	}
	if err := nc.Publish(subject, data); err != nil {
		return fmt.Errorf("publishing on %s: %w", subject, err)
	}
	b.msgsOut.Add(1)
	return nil
}

// Request publishes data on subject and waits, within ctx, for the first
// answer from another instance.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	b.mu.Lock()
	nc := b.nc
	b.mu.Unlock()
	if nc == nil {
		return nil, ErrNotRunning
	}
	b.msgsOut.Add(1)
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("request on %s: %w", subject, err)
	}
	b.msgsIn.Add(1)
	return m.Data, nil
}

// Subscribe calls fn for each message on subject (NATS wildcards allowed:
// "gatehouse.kps.changed.>") from the group's other instances, one message
// at a time, now and after every restart of the server. The returned
// function ends the subscription.
func (b *Bus) Subscribe(subject string, fn func(Msg)) (unsubscribe func()) {
	s := &subscription{subject: subject, fn: fn}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	if b.nc != nil {
		s.sub = b.subscribeLocked(s)
	}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs = slices.DeleteFunc(b.subs, func(x *subscription) bool { return x == s })
		if s.sub != nil {
			_ = s.sub.Unsubscribe()
			s.sub = nil
		}
	}
}

// subscribeLocked subscribes s on the current connection; b.mu is held.
func (b *Bus) subscribeLocked(s *subscription) *nats.Subscription {
	nc := b.nc
	sub, err := nc.Subscribe(s.subject, func(m *nats.Msg) {
		b.msgsIn.Add(1)
		s.fn(Msg{Subject: m.Subject, Data: m.Data, Reply: m.Reply, nc: nc})
	})
	if err != nil {
		b.log.Error("cluster bus: subscribing", "subject", s.subject, "error", err.Error())
		return nil
	}
	return sub
}

// randomToken is the client listener's token: 32 random bytes, hex.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("the bus's client token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// peerURLs parses the peers' URLs (host:port or nats-route://host:port).
func peerURLs(peers []Peer) ([]*url.URL, error) {
	var out []*url.URL
	seen := map[string]bool{}
	for _, p := range peers {
		raw := strings.TrimSpace(p.URL)
		if !strings.Contains(raw, "://") {
			raw = "nats-route://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "nats-route" || u.Hostname() == "" || u.Port() == "" || u.Path != "" {
			return nil, fmt.Errorf("peer %q: want host:port (or nats-route://host:port)", p.URL)
		}
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("peer %q: port %q is not 1 to 65535", p.URL, u.Port())
		}
		if seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		out = append(out, u)
	}
	return out, nil
}

func urlStrings(us []*url.URL) []string {
	s := make([]string, len(us))
	for i, u := range us {
		s[i] = u.Host
	}
	return s
}

// clusterName is the NATS cluster name of a group (no spaces allowed).
func clusterName(groupID string) string { return "gatehouse-" + groupID }

func addrOrAny(a string) string {
	if a == "" {
		return "every interface"
	}
	return a
}

func netParseIP(s string) (net.IP, error) {
	if ip := net.ParseIP(s); ip != nil {
		return ip, nil
	}
	return nil, errors.New("not an IP address")
}

// natsLogger hands the NATS server's log to slog at debug level: the bus
// logs its own transitions once each, and a peer that is down would
// otherwise be reported every second.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Errorf(f string, v ...any)  { l.log.Debug("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Debugf(f string, v ...any)  {}
func (l natsLogger) Tracef(f string, v ...any)  {}
func (l natsLogger) Fatalf(f string, v ...any)  { l.log.Error("nats: " + fmt.Sprintf(f, v...)) }
