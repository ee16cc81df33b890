package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// Defaults of the Server's limits.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultMaxHeaderBytes       = 32 << 10
	DefaultMaxHeaderCount       = 100
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultIdleTimeout          = 60 * time.Second
	DefaultWriteTimeout         = 30 * time.Second
	DefaultBodyIdleTimeout      = 30 * time.Second

	// streamWindow and connWindow are the receive windows the server
	// offers: what one stream, and the whole connection, may have buffered
	// and unread by the handlers.
	streamWindow = 1 << 20
	connWindow   = 1 << 20

	// Flood limits, per connection and per floodWindow.
	floodWindow    = 10 * time.Second
	maxResets      = 1000 // RST_STREAM from the client, and stream errors (refused streams, rapid reset)
	maxControl     = 1000 // PING, SETTINGS and PRIORITY frames
	maxEmptyData   = 1000 // DATA frames with neither payload nor END_STREAM
	maxWindowExtra = 1000 // WINDOW_UPDATE frames beyond one per DATA frame sent
)

// ErrServerClosed is returned by ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("h2: server closed")

// Server serves HTTP/2 connections with an h1.Handler. Set its fields
// before the first ServeConn; they are not changed afterwards.
type Server struct {
	Handler h1.Handler
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: streams
	// beyond it are refused with REFUSED_STREAM. A stream counts until its
	// handler has returned, even when the client reset it. 0: 100.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's header list (RFC 9113 size: names,
	// values and 32 bytes a field); it is SETTINGS_MAX_HEADER_LIST_SIZE and
	// a longer list is answered 431. 0: 32 KiB.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the fields of a request (431 above). 0: 100.
	MaxHeaderCount int
	// ReadHeaderTimeout bounds the wait for the client's preface and first
	// SETTINGS. 0: 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes (with GOAWAY) a connection with no open stream
	// for that long. 0: 60s.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the connection: a client that
	// stops reading for that long loses its connection. 0: 30s.
	WriteTimeout time.Duration
	// BodyIdleTimeout bounds the wait of a handler for the next bytes of
	// a request body; the stream is then reset. 0: 30s.
	BodyIdleTimeout time.Duration
	// ReadTimeout bounds the whole request, body included, from its
	// head: a body not received by then resets the stream. 0: no limit.
	ReadTimeout time.Duration
	// Logger receives the panics of handlers (with their stack); nil
	// discards them.
	Logger *slog.Logger
	// OnReject is called for each request the server refuses itself with
	// a status (as h1.Server.OnReject).
	OnReject func(status int, reason string, remote netip.AddrPort)
	// ErrorBody makes the body of those refusals (as h1.Server.ErrorBody);
	// nil answers plain text.
	ErrorBody func(status int, reason string) (contentType string, body []byte)

	draining atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	handlers sync.WaitGroup

	// spare holds the workers that wait for any connection's next stream
	// (see work), at most maxSpareWorkers; nil channels once the server is
	// closed (spareClosed). Under spareMu, which is taken after a
	// connection's mu, never before.
	spareMu     sync.Mutex
	spare       []chan *stream
	spareClosed bool
}

// maxSpareWorkers bounds the handler goroutines the server keeps waiting
// for a stream of any connection: their stacks, some KiB each, are what an
// idle server holds beyond its connections.
const maxSpareWorkers = 128 // mutate:equivalent const the value is a choice: TestSpareWorkersBounded checks that the bound holds, whatever it is

// takeSpare returns a spare worker's channel, or nil when none waits.
func (s *Server) takeSpare() chan *stream {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	n := len(s.spare)
	if n == 0 {
		return nil
	}
	w := s.spare[n-1]
	s.spare[n-1] = nil
	s.spare = s.spare[:n-1]
	return w
}

// putSpare keeps ch's worker as a spare; false when the server keeps
// enough, or is closed, and the worker should return.
func (s *Server) putSpare(ch chan *stream) bool {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	if s.spareClosed || len(s.spare) >= maxSpareWorkers {
		return false
	}
	s.spare = append(s.spare, ch)
	return true
}

// adoptSpares takes the idle workers of a connection that has no stream
// left as spares; those beyond the bound are told to return.
func (s *Server) adoptSpares(idle []chan *stream) {
	for _, w := range idle {
		if !s.putSpare(w) {
			close(w)
		}
	}
}

// closeSpares tells every spare worker to return, and those that finish
// later not to stay.
func (s *Server) closeSpares() {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	s.spareClosed = true
	for _, w := range s.spare {
		close(w)
	}
	s.spare = nil
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	return DefaultMaxConcurrentStreams
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

func (s *Server) maxHeaderCount() int {
	if s.MaxHeaderCount > 0 {
		return s.MaxHeaderCount
	}
	return DefaultMaxHeaderCount
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ServeConn serves the HTTP/2 connection nc (whose TLS handshake, if any,
// is done) until the client or the server closes it, and closes it. It
// returns ErrServerClosed when the server was shut down before.
func (s *Server) ServeConn(nc net.Conn) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		if nc != nil {
			nc.Close()
		}
		return ErrServerClosed
	}
	c := newConn(s, nc)
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	return c.serve()
}

// Shutdown stops the server gracefully: every connection gets a GOAWAY
// naming the last stream it will serve, new streams are no longer
// accepted, and each connection closes once its streams are done.
// Shutdown returns when all are closed and their handlers have returned,
// or, when ctx ends first, closes what remains and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo, true) // a write: not under s.mu
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			s.mu.Lock()
			n := len(s.conns)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		s.handlers.Wait()
		s.closeSpares()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// SetDraining turns draining on or off (the instance's drain state, as
// h1.Server.SetDraining): while on, every connection gets a graceful
// GOAWAY, those open now at once and new ones after their first stream,
// so that clients open their next streams on a new connection (through
// the load balancer, elsewhere). The streams already accepted are served.
func (s *Server) SetDraining(on bool) {
	s.draining.Store(on)
	if !on {
		return
	}
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo, true)
	}
}

// Close closes every connection now; handlers still running see their
// writes fail.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown = true
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.closeSpares()
	return nil
}

func connState(nc net.Conn) *tls.ConnectionState {
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
