package instance

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
)

// Listeners and their generations.
//
// Each listener (traffic, management, sample) is a bound TCP socket whose
// accept loop hands every connection to the listener's current generation: a
// server (the h1 engine, the TLS front, or net/http) serving a chanListener.
// A configuration swap that changes a listener's settings starts a new
// generation and retires the old one:
//
//   - address or port changed: a new socket is bound first (a failure refuses
//     the whole swap), the new generation serves it, and the old socket is
//     closed (the old port refuses from then on);
//   - anything else changed (timeouts, header limits, TLS files, HTTP/2, PROXY
//     protocol): the socket is kept, new connections go to the new generation;
//   - either way the old generation drains in the background: it accepts
//     nothing more, its idle keep-alive connections are closed at once, its
//     requests in flight finish (their responses carry "Connection: close"),
//     and what is still open after zeroDowntime.shutdown.drainTimeout is
//     closed.
//
// A swap that changes no listener setting touches neither sockets nor
// connections.

// listenerSpec is what one listener is built from. Two specs with equal
// settings need no new generation; equal address and port keep the socket.
type listenerSpec struct {
	name     string // "traffic", "management" or "sample"
	address  string // as configured; "" is every interface
	port     int
	settings any // the settings that shape the server (compared with reflect.DeepEqual)
	l        groupconf.Listener
}

// listenerSpecs returns the listeners cfg asks for, in close order (traffic,
// management, sample).
func listenerSpecs(cfg *groupconf.Config) []listenerSpec {
	t := cfg.Traffic
	// Read from the runtime at each request or accept: no new server needed.
	t.TrustedProxies, t.ClientCertHeader = nil, ""
	specs := []listenerSpec{
		{name: "traffic", address: t.Address, port: t.Port, settings: t, l: t.Listener()},
		{name: "management", address: cfg.Management.Address, port: cfg.Management.Port, settings: cfg.Management, l: cfg.Management},
	}
	if s := cfg.Sample; s.Enabled {
		specs = append(specs, listenerSpec{name: "sample", address: s.Address, port: s.Port, settings: s, l: groupconf.Listener{
			Address: s.Address, Port: s.Port,
			ReadHeaderTimeout: groupconf.Seconds(10), IdleTimeout: groupconf.Seconds(60), MaxHeaderBytes: 32 << 10,
		}})
	}
	return specs
}

func (a listenerSpec) sameSettings(b listenerSpec) bool {
	return reflect.DeepEqual(a.settings, b.settings)
}
func (a listenerSpec) sameSocket(b listenerSpec) bool {
	return a.name == b.name && a.address == b.address && a.port == b.port
}

// socket is one bound listening socket and its accept loop. The loop hands
// each connection to the current generation's chanListener (target); with
// no target, or a target that closed, the connection is closed. mu is held
// while a connection is handed over, so that once setTarget returns no
// connection goes to the previous target any more.
type socket struct {
	name    string
	ln      net.Listener // the bound socket
	port    int          // the bound port
	closed  atomic.Bool
	once    sync.Once
	started bool // its accept loop runs; guarded by Instance.mu

	mu     sync.Mutex
	target *chanListener
}

// bindSocket binds the socket of spec; a port in use gives a
// *PortInUseError.
func bindSocket(spec listenerSpec) (*socket, error) {
	ln, err := listen(spec.name, spec.l)
	if err != nil {
		return nil, err
	}
	return &socket{name: spec.name, ln: ln, port: ln.Addr().(*net.TCPAddr).Port}, nil
}

// acceptLoop accepts until the socket is closed. Any other accept error that
// is not temporary is returned (the listener failed).
func (s *socket) acceptLoop() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) ||
				errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.hand(c)
	}
}

// hand gives c to the current generation, which takes it at once (its
// server is accepting) unless it is closed.
func (s *socket) hand(c net.Conn) {
	s.mu.Lock()
	ok := s.target != nil && s.target.push(c)
	s.mu.Unlock()
	if !ok {
		_ = c.Close()
	}
}

// setTarget makes cl the generation that gets the next connections. When it
// returns, the previous target gets no more.
func (s *socket) setTarget(cl *chanListener) {
	s.mu.Lock()
	s.target = cl
	s.mu.Unlock()
}

// close closes the socket: its port refuses from now on. Connections already
// handed over are not affected.
func (s *socket) close() {
	s.once.Do(func() {
		s.closed.Store(true)
		_ = s.ln.Close()
	})
}

// server is one generation of a listener: the socket it is fed from, its own
// listener, and what serves it (the h1 engine or the TLS front with HTTP/2 for
// traffic, net/http for management and sample).
type server struct {
	name string
	spec listenerSpec
	sock *socket
	cl   *chanListener // fed by sock while this generation is current
	ln   net.Listener  // cl, wrapped (PROXY protocol, management TLS)
	srv  servable
}

func (s *server) port() int { return s.sock.port }

// shutdown stops s gracefully within ctx: see servable.Shutdown. When ctx
// ends first the remaining connections are closed and ctx's error returned.
func (s *server) shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil && ctx.Err() != nil {
		_ = s.srv.Close()
	}
	return err
}
