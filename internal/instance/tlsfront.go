package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/h2"
	"github.com/gatehouse-gw/gatehouse/internal/h2bridge"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// tlsFront serves the traffic listener with TLS: it accepts connections,
// runs the TLS handshake (bounded by readHeaderTimeout) and hands each
// connection to the HTTP/1.1 engine, or, when the client negotiated "h2"
// through ALPN, to the HTTP/2 engine of traffic.http2Engine: the gateway's
// own (internal/h2), or net/http's HTTP/2 server, whose requests reach the
// same handler through h2bridge. Shutdown stops both gracefully (HTTP/2
// clients get a GOAWAY).
type tlsFront struct {
	config  *tls.Config
	h1      *h1.Server
	h2e     *h2.Server // traffic.http2Engine gatehouse; nil for go
	h2      *http.Server
	h2ln    *chanListener
	hsTime  time.Duration
	log     *slog.Logger
	mu      sync.Mutex
	ln      net.Listener
	closed  bool
	h2wg    sync.WaitGroup
	pending sync.WaitGroup // handshakes in progress
	onStop  func()         // called once when it stops accepting (detaches the ticket keys); may be nil
	stopped sync.Once
}

// loadTLS builds the server TLS configuration of the traffic listener.
func loadTLS(h home.Home, t groupconf.Traffic) (*tls.Config, error) {
	path := func(p string) string {
		if p == "" || p[0] == '/' {
			return p
		}
		return h.Path(p)
	}
	// The key is opened with the group's passphrase when it is sealed (a
	// file under groups/<group-id>/conf/secrets/ of a group that has one).
	certPEM, err := os.ReadFile(path(t.TLS.CertFile))
	if err != nil {
		return nil, fmt.Errorf("traffic listener: loading traffic.tls certificate: %w", err)
	}
	keyPEM, err := secret.ReadFile(h, path(t.TLS.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("traffic listener: loading traffic.tls key: %w", err)
	}
	defer secret.New(keyPEM).Wipe()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("traffic listener: loading traffic.tls certificate and key: %w", err)
	}
	protos := []string{"http/1.1"}
	if t.HTTP2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   protos,
		MinVersion:   tls.VersionTLS12,
		CipherSuites: pki.CipherSuites,
	}, nil
}

func newTLSFront(cfg *tls.Config, h1s *h1.Server, handler h1.Handler, t groupconf.Traffic, log *slog.Logger) *tlsFront {
	f := &tlsFront{config: cfg, h1: h1s, hsTime: t.ReadHeaderTimeout.D(), log: log}
	if f.hsTime <= 0 {
		f.hsTime = 10 * time.Second
	}
	f.h2ln = newChanListener(nil)
	if t.HTTP2Engine == "gatehouse" {
		f.h2e = &h2.Server{
			Handler:           handler,
			MaxHeaderBytes:    t.MaxHeaderBytes,
			MaxHeaderCount:    t.MaxHeaderCount,
			ReadHeaderTimeout: t.ReadHeaderTimeout.D(),
			IdleTimeout:       t.IdleTimeout.D(),
			WriteTimeout:      t.WriteTimeout.D(),
			BodyIdleTimeout:   t.BodyIdleTimeout.D(),
			ReadTimeout:       t.ReadTimeout.D(),
			Logger:            log.With("engine", "h2"),
			OnReject:          h1s.OnReject,
			ErrorBody:         h1s.ErrorBody,
		}
	}
	f.h2 = &http.Server{
		Handler:           h2bridge.HandlerWith(handler, h2bridge.Options{ErrorBody: h1s.ErrorBody, OnReject: h1s.OnReject}),
		ReadHeaderTimeout: t.ReadHeaderTimeout.D(),
		ReadTimeout:       t.ReadTimeout.D(),
		WriteTimeout:      t.WriteTimeout.D(),
		IdleTimeout:       t.IdleTimeout.D(),
		MaxHeaderBytes:    t.MaxHeaderBytes,
		TLSConfig:         cfg,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return f
}

// Serve accepts on ln until Shutdown or Close.
func (f *tlsFront) Serve(ln net.Listener) error {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.h2wg.Add(1)
	go func() {
		defer f.h2wg.Done()
		_ = f.h2.Serve(f.h2ln)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed {
				return h1.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			return h1.ErrServerClosed
		}
		f.pending.Add(1)
		f.mu.Unlock()
		go f.handshake(c)
	}
}

// handshake runs the TLS handshake of c and hands it to the engine its
// client chose. The handshake counts as pending (Shutdown waits for it); the
// connection's life afterwards belongs to the engine.
func (f *tlsFront) handshake(c net.Conn) {
	tc := tls.Server(c, f.config)
	ctx, cancel := context.WithTimeout(context.Background(), f.hsTime)
	err := tc.HandshakeContext(ctx)
	cancel()
	f.pending.Done()
	if err != nil {
		f.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err.Error())
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if f.h2e != nil {
			_ = f.h2e.ServeConn(tc)
			return
		}
		if !f.h2ln.push(tc) {
			_ = tc.Close()
		}
		return
	}
	f.h1.ServeConn(tc)
}

// Shutdown stops accepting and drains both engines within ctx.
func (f *tlsFront) Shutdown(ctx context.Context) error {
	f.stopAccepting()
	f.pending.Wait()
	errc := make(chan error, 3)
	go func() { errc <- f.h1.Shutdown(ctx) }()
	go func() { errc <- f.h2.Shutdown(ctx) }()
	go func() {
		if f.h2e == nil {
			errc <- nil
			return
		}
		errc <- f.h2e.Shutdown(ctx)
	}()
	err1, err2, err3 := <-errc, <-errc, <-errc
	f.h2ln.Close()
	return errors.Join(err1, err2, err3)
}

// Close closes everything now.
func (f *tlsFront) Close() error {
	f.stopAccepting()
	err := errors.Join(f.h1.Close(), f.h2.Close())
	if f.h2e != nil {
		err = errors.Join(err, f.h2e.Close())
	}
	f.h2ln.Close()
	return err
}

// SetDraining asks HTTP/1.1 clients to reconnect elsewhere, and HTTP/2
// clients of the gatehouse engine (GOAWAY).
func (f *tlsFront) SetDraining(on bool) {
	f.h1.SetDraining(on)
	if f.h2e != nil {
		f.h2e.SetDraining(on)
	}
}

func (f *tlsFront) stopAccepting() {
	f.mu.Lock()
	f.closed = true
	ln := f.ln
	f.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	if f.onStop != nil {
		f.stopped.Do(f.onStop)
	}
}

// chanListener is a net.Listener fed with connections by someone else: by
// the TLS front with connections whose client chose HTTP/2, and by a
// listener's socket with the connections of its current generation
// (socket.go).
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

// newChanListener returns a listener whose Addr is addr (nil: 0.0.0.0:0).
func newChanListener(addr net.Addr) *chanListener {
	if addr == nil {
		addr = &net.TCPAddr{IP: net.IPv4zero}
	}
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
