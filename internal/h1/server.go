package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the Server's limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyIdleTimeout   = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultMaxHeaderCount    = 100

	maxRequestLine  = 8 << 10   // longer request lines get 414
	maxLeadingCRLF  = 8         // empty lines (CRLF or LF) tolerated before a request line
	maxDrain        = 256 << 10 // unread body bytes drained to keep a connection
	smallBufSize    = 4 << 10   // mutate:equivalent const a buffer size: a head that outgrows it moves to the big buffer (bigSize, at least twice as large), a Read as large goes to the socket: what is read does not change
	writeBufSize    = 4 << 10
	lingerTimeout   = 500 * time.Millisecond
	lingerTotal     = 5 * time.Second // longest lingering close
	maxLinger       = 64 << 20        // most bytes discarded by a lingering close
	rejectTimeout   = 5 * time.Second
	minBodyReadRoom = 512 // mutate:equivalent const the least room for a body read: another one changes when the buffer is compacted or moved, not what is read
)

// Server serves HTTP/1.x connections. Set its fields before the first Serve or
// ServeConn; do not copy it after.
type Server struct {
	Handler           Handler
	ReadHeaderTimeout time.Duration // first byte of a request to the end of its head (default 10s); also bounds the wait for the first request of a new connection
	ReadTimeout       time.Duration // whole request incl. body; 0 = no limit
	BodyIdleTimeout   time.Duration // longest wait for the next body bytes (default 30s)
	WriteTimeout      time.Duration // from the end of the head to the end of the response; 0 = no limit
	IdleTimeout       time.Duration // keep-alive idle (default 60s)
	MaxHeaderBytes    int           // request line + fields (default 32 KiB); over → 431 (request line alone over 8 KiB → 414)
	MaxHeaderCount    int           // fields (default 100); over → 431
	Logger            *slog.Logger  // refused requests at debug level, with the reason (never header values); handler panics at error level
	// OnReject is called for every request the server refuses itself (for
	// access logs and metrics), before the answer is written.
	OnReject func(status int, reason string, remote netip.AddrPort)
	// ErrorBody, when set, gives the body of the server's own refusals
	// (default: text/plain with the status text).
	ErrorBody func(status int, reason string) (contentType string, body []byte)

	mu            sync.Mutex
	listeners     map[net.Listener]struct{}
	conns         map[*conn]struct{}
	closing       atomic.Bool
	draining      atomic.Bool
	exPool        sync.Pool     // *exchange
	bigPool       sync.Pool     // *[]byte of bigSize()
	parkAfter     time.Duration // idleParkAfter unless set (tests)
	parkGoroutine bool          // park in a goroutine even where the poller could hold the connection (tests)
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return DefaultReadHeaderTimeout
}

func (s *Server) bodyIdleTimeout() time.Duration {
	if s.BodyIdleTimeout > 0 {
		return s.BodyIdleTimeout
	}
	return DefaultBodyIdleTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) parkAfterIdle() time.Duration {
	if s.parkAfter > 0 {
		return s.parkAfter
	}
	return idleParkAfter
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

func (s *Server) bigSize() int { return max(s.maxHeaderBytes()+1024, 2*smallBufSize) } // mutate:equivalent const the big buffer's size: each of these holds a head of MaxHeaderBytes with its leading empty lines (a fuller buffer is refused first), and with MaxHeaderBytes up to 3 KiB no big buffer is ever taken (a head leaves 1 KiB of the small one): how much a read takes changes, not what is read

// Serve accepts connections on ln and serves each in its own goroutine. It
// returns ErrServerClosed after Shutdown or Close, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) ||
				errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", "error", err.Error(), "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		delay = 0 // mutate:equivalent const any delay up to 2.5 ms starts the next retry at the 5 ms floor
		go s.serveConn(nc, true)
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ServeConn serves one already-accepted connection (plain, or TLS whose
// negotiated protocol is http/1.1 or none) and returns when it is closed or
// hijacked. It closes nc unless hijacked.
func (s *Server) ServeConn(nc net.Conn) { s.serveConn(nc, false) }

// serveConn serves nc. With park (connections Serve accepted), a keep-alive
// connection idle for idleParkAfter is parked (in the poller, or in a fresh
// goroutine with a small stack), and serveConn returns while the connection
// stays open (see conn.await).
func (s *Server) serveConn(nc net.Conn, park bool) {
	c := &conn{s: s, c: nc}
	c.remote = addrPort(nc.RemoteAddr())
	c.local = addrPort(nc.LocalAddr())
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tlsState = &cs
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
			c.rawFn = c.rawRead
			c.canPark = park && canPark
		}
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.serve(s.readHeaderTimeout())
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// SetDraining turns draining on or off: while on, responses carry
// "Connection: close" and their connections close after them.
func (s *Server) SetDraining(on bool) { s.draining.Store(on) }

// ActiveConns returns the number of open connections (idle ones included).
func (s *Server) ActiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, closes idle connections at once and waits for
// the others to finish their current request (their responses carry
// "Connection: close"). When ctx ends first, it closes the rest and returns
// ctx.Err(). Hijacked connections still inside their handler are waited for
// too, and closed when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeListeners()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 100*time.Millisecond) // mutate:equivalent const how often Shutdown looks again: it changes how soon it sees the last connection go, not what it returns
			t.Reset(wait)
		}
	}
}

// Close closes the listeners and every connection now.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Swap(stateClosed) == stateParked {
			c.closeParked() // no goroutine to end it
			continue
		}
		c.c.Close()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// closeIdle closes idle connections and returns how many remain open.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.c.Close()
		} else if c.state.CompareAndSwap(stateParked, stateClosed) {
			c.closeParked() // no goroutine to end it
		}
	}
	return len(s.conns)
}

func (s *Server) getExchange(c *conn) *exchange {
	ex, _ := s.exPool.Get().(*exchange)
	if ex == nil {
		ex = &exchange{s: s, small: make([]byte, smallBufSize), wbuf: make([]byte, 0, writeBufSize)}
		ex.rbuf = ex.small
		ex.req.Header.f = make([]field, 0, 16) // mutate:equivalent const,delete-stmt a capacity: the fields are parsed after Header.Reset, appended to whatever slice is here
		ex.resp.hdr.f = make([]field, 0, 16)   // mutate:equivalent const,delete-stmt a capacity: the response resets its fields before a handler sees them
		ex.resp.ex = ex
		ex.body.ex = ex
	}
	ex.c = c
	ex.req.RemoteAddr, ex.req.LocalAddr, ex.req.TLS = c.remote, c.local, c.tlsState
	return ex
}

func (s *Server) putExchange(ex *exchange) {
	if ex.oldBuf != nil {
		s.putBig(ex.oldBuf) // mutate:equivalent delete-stmt giving the buffer back to the pool only saves an allocation
		ex.oldBuf = nil
	}
	if len(ex.rbuf) != len(ex.small) {
		s.putBig(ex.rbuf) // mutate:equivalent delete-stmt giving the buffer back to the pool only saves an allocation
		ex.rbuf = ex.small
	}
	ex.r, ex.w, ex.base = 0, 0, 0
	ex.c = nil
	ex.req = Request{Header: ex.req.Header}
	ex.req.Header.Reset()
	ex.resp.hdr.Reset()
	ex.wbuf = ex.wbuf[:0]
	ex.iov = [2][]byte{}
	s.exPool.Put(ex)
}

func (s *Server) getBig() []byte {
	if p, _ := s.bigPool.Get().(*[]byte); p != nil {
		return *p // mutate:equivalent delete-stmt without the pooled buffer getBig makes a new one of the same size: only an allocation
	}
	return make([]byte, s.bigSize())
}

func (s *Server) putBig(b []byte) {
	if len(b) == s.bigSize() {
		s.bigPool.Put(&b) // mutate:equivalent delete-stmt a buffer not given back to the pool is only an allocation more
	}
}

const (
	stateNew int32 = iota
	stateActive
	stateIdle
	stateClosed
	stateParked // waiting in the poller, without a goroutine (park_linux.go)
)

// conn is one client connection. While idle it holds no buffer: c.ex is nil.
type conn struct {
	s         *Server
	c         net.Conn
	rc        syscall.RawConn
	rawFn     func(uintptr) bool
	rerr      error
	ex        *exchange
	state     atomic.Int32
	remote    netip.AddrPort
	local     netip.AddrPort
	tlsState  *tls.ConnectionState
	hijacked  bool
	canPark   bool         // a long idle wait may move to a fresh goroutine (see await)
	peeking   bool         // rawRead only looks at the socket (in park)
	ev        *parkedEvent // the poller's hold on the connection while it waits without a goroutine
	idleUntil time.Time    // end of the current idle wait (for the poller)
	// rdl is the read deadline await set and that is still in force; zero
	// once any other read deadline was set (setRead). See idleDeadline.
	rdl time.Time
	one [1]byte
}

// exchange is the per-request state of a connection, pooled: the read and
// write buffers, the request, the response writer and the body reader.
type exchange struct {
	s      *Server
	c      *conn
	rbuf   []byte // read buffer; len == cap
	small  []byte // this exchange's own small read buffer
	oldBuf []byte // a read buffer replaced while the handler runs (fields still point into it)
	r, w   int    // unread bytes are rbuf[r:w]
	base   int    // reads never move bytes below this (the current head)
	wbuf   []byte
	hbuf   []byte
	iov    [2][]byte
	bufs   net.Buffers

	readDeadline time.Time // absolute end of the request (ReadTimeout), or zero
	continueSent bool
	req          Request
	resp         response
	body         bodyReader
}

// rawRead is the callback of RawConn.Read while a connection is idle: it
// takes a buffer only when there are bytes to read and gives it back when
// the socket would block, so that a waiting connection holds none.
func (c *conn) rawRead(fd uintptr) bool {
	if c.peeking {
		return peekSocket(fd, c.one[:]) >= 0 // bytes, EOF or an error: park hands over to await
	}
	if c.ex == nil {
		c.ex = c.s.getExchange(c)
	}
	ex := c.ex
	for {
		n, err := syscall.Read(int(fd), ex.rbuf[ex.w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			c.s.putExchange(ex) // mutate:equivalent delete-stmt the exchange is dropped (c.ex = nil) instead of pooled: only an allocation more
			c.ex = nil
			return false
		}
		if n > 0 { // mutate:equivalent boundary n == 0 adds nothing: ex.w stays 0, which await takes as io.EOF
			ex.w += n
			c.rerr = nil // mutate:equivalent delete-stmt await sets rerr to nil before the read
		} else if err == nil { // mutate:equivalent negate-if,negate-cmp any error ends the connection alike: serve only tests await's error against nil
			c.rerr = io.EOF // mutate:equivalent delete-stmt with rerr nil and ex.w 0, await returns io.EOF
		} else {
			c.rerr = os.NewSyscallError("read", err)
		}
		return true
	}
}

// idleParkAfter is how long a connection waits for its next request in the
// goroutine that served it before it is parked (see await). Short, because
// until then the connection keeps the stack its request grew (4 KiB or more,
// more on the gateway's proxy path): 10,000 clients connecting within a second hold
// as many of those stacks at once as connect within this time, and the
// runtime keeps the memory they leave. Long enough that a connection carrying
// requests back to back (a load balancer's, a benchmark's) never parks.
const idleParkAfter = 50 * time.Millisecond

// errParked is await's answer when the connection was handed to park.
var errParked = errors.New("h1: connection parked")

// await waits for the first byte of the next request with no buffer held.
// On return with nil error, c.ex holds at least one unread byte.
//
// A connection that may park (c.canPark) waits here for idleParkAfter only;
// when no byte has come by then, await sets the rest of the wait as the read
// deadline and returns errParked, and the caller parks the connection and
// returns, ending the goroutine whose stack grew to what a request needs (4
// KiB or more; the runtime shrinks a stack only while less than a quarter of
// it is used, so a goroutine waiting deep in serve keeps it). On Linux the
// poller holds a parked connection without any goroutine (park_linux.go);
// elsewhere, or when the poller cannot take it, park waits in a fresh
// goroutine whose small frame keeps the runtime's smallest stack (2 KiB, or
// whatever the runtime's adaptive stack start chooses then). A connection
// busy with requests less than idleParkAfter apart never parks: the hot
// path pays no goroutine and no system call per request.
func (c *conn) await(timeout time.Duration) error {
	if c.ex != nil {
		c.s.putExchange(c.ex)
		c.ex = nil
	}
	now := time.Now()
	deadline := now.Add(timeout)
	first := deadline
	parkAfter := c.s.parkAfterIdle()
	park := c.canPark && timeout > parkAfter
	if park {
		first = now.Add(parkAfter)
	}
	if err := c.idleDeadline(now, first); err != nil {
		return err
	}
	if !c.state.CompareAndSwap(stateNew, stateIdle) && !c.state.CompareAndSwap(stateActive, stateIdle) {
		return net.ErrClosed // mutate:equivalent delete-stmt only Close and Shutdown set the state to closed, and they close the connection too: the read fails and the check after it returns net.ErrClosed
	}
	var err error
	if c.rc != nil {
		c.rerr = nil // mutate:equivalent delete-stmt rerr is nil here: an await that left it set ended the connection
		err = c.rc.Read(c.rawFn)
		if park && errors.Is(err, os.ErrDeadlineExceeded) {
			// Still idle: the rest of the wait goes to park. The state
			// stays idle, so Shutdown can close the connection
			// meanwhile (park's read then fails).
			if c.setRead(deadline) == nil {
				c.idleUntil = deadline
				return errParked
			}
		}
		if err == nil { // mutate:equivalent negate-if,negate-cmp,delete-stmt rawRead sets rerr only with ex.w 0, which is io.EOF below
			err = c.rerr // mutate:equivalent delete-stmt rawRead sets rerr only with ex.w 0, which is io.EOF below
		}
	} else {
		var n int
		n, err = c.c.Read(c.one[:])
		if n == 1 {
			c.ex = c.s.getExchange(c)
			c.ex.rbuf[0] = c.one[0]
			c.ex.w = 1
			err = nil
		}
	}
	return c.woke(err)
}

// woke ends an idle wait that returned err: the connection becomes active,
// unless Shutdown or Close took it meanwhile.
func (c *conn) woke(err error) error {
	if !c.state.CompareAndSwap(stateIdle, stateActive) {
		return net.ErrClosed // closed by Shutdown
	}
	if err == nil && (c.ex == nil || c.ex.w == 0) {
		err = io.EOF
	}
	return err
}

// idleDeadline makes the read deadline of an idle wait want (from now). A
// deadline that an earlier wait set is kept when it is not before want and
// at most an eighth of the wait (at most a second) after it: a busy
// connection then re-arms its deadline every few requests instead of at
// each one (setting a deadline reads the clock twice and moves a timer of
// the runtime). The wait ends a little later than asked, never earlier.
func (c *conn) idleDeadline(now, want time.Time) error {
	slack := min(want.Sub(now)/8, time.Second)
	if !c.rdl.Before(want) && c.rdl.Sub(want) <= slack {
		return nil
	}
	c.rdl = want.Add(slack)
	if err := c.c.SetReadDeadline(c.rdl); err != nil {
		c.rdl = time.Time{}
		return err
	}
	return nil
}

// setRead sets the connection's read deadline to d (other than an idle
// wait's: see idleDeadline, whose deadline it forgets).
func (c *conn) setRead(d time.Time) error {
	c.rdl = time.Time{}
	return c.c.SetReadDeadline(d)
}

// park waits, in a goroutine of its own started by serve, for the next
// request of a connection that await found idle, then serves it. Its frame
// is small on purpose: while it waits, the goroutine's stack is the smallest
// the runtime gives. The wait only peeks at the socket (no buffer is taken
// and the stack does not grow before there is something to read); the read
// itself is await's, with a stack that grows as the request needs.
func (c *conn) park() {
	c.peeking = true
	err := c.rc.Read(c.rawFn)
	c.peeking = false
	if err == nil {
		c.rerr = nil
		err = c.rc.Read(c.rawFn) // the peek saw bytes, EOF or an error: this read returns at once
		if err == nil {
			err = c.rerr
		}
	}
	if c.woke(err) != nil {
		c.finish()
		return
	}
	c.serve(c.s.idleTimeout())
}

// serve runs the connection's request loop in the calling goroutine, the
// first wait with timeout. It returns once the connection is closed or
// hijacked, or handed to park.
func (c *conn) serve(timeout time.Duration) {
	parked := false
	defer func() {
		if !parked {
			c.finish()
		}
	}()
	for {
		if c.ex == nil || c.ex.r == c.ex.w {
			if err := c.await(timeout); err != nil {
				if err == errParked {
					parked = true
					if !c.s.parkGoroutine && c.parkEvent() {
						return // waits in the poller, no goroutine (park_linux.go)
					}
					go c.park()
				}
				return
			}
		} else if !c.state.CompareAndSwap(stateIdle, stateActive) && c.state.Load() != stateActive {
			return
		}
		if !c.serveOne() || c.s.closing.Load() {
			return
		}
		timeout = c.s.idleTimeout()
	}
}

// finish ends the connection: the exchange back to its pool, the connection
// closed unless hijacked, and forgotten by the server.
func (c *conn) finish() {
	if c.ex != nil {
		c.s.putExchange(c.ex) // mutate:equivalent delete-stmt the exchange is dropped instead of pooled: only an allocation more (the connection is done)
		c.ex = nil            // mutate:equivalent delete-stmt the connection is done: nothing reads c.ex after serve returns
	}
	if !c.hijacked {
		c.c.Close()
	}
	s := c.s
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serveOne reads and answers one request. It reports whether the
// connection can carry another.
func (c *conn) serveOne() bool {
	s, ex := c.s, c.ex
	req := &ex.req
	req.ReceivedAt = time.Now()
	ex.readDeadline = time.Time{}
	if s.ReadTimeout > 0 {
		ex.readDeadline = req.ReceivedAt.Add(s.ReadTimeout)
	}
	perr, err := ex.readHead()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.reject(408, "request head not received in time")
		}
		return false
	}
	if perr != nil {
		c.reject(perr.Status, perr.Reason)
		return false
	}
	req.MaxBodyBytes = 0
	ex.continueSent = false
	b := &ex.body
	b.err, b.done, b.read = nil, false, 0
	switch {
	case req.Chunked:
		b.kind = bodyChunked
		b.cr.reset(ex, s.maxHeaderBytes())
		req.Body = b
	case req.ContentLength > 0:
		b.kind, b.remaining = bodyLength, req.ContentLength
		req.Body = b
	default:
		b.kind, b.done = bodyNone, true
		req.Body = noBody{}
	}
	if s.WriteTimeout > 0 {
		c.c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
	}
	ex.resp.reset()
	c.callHandler()
	if c.hijacked {
		return false
	}
	resp := &ex.resp
	if b.err != nil && !resp.wroteHeader && !resp.aborted {
		status, reason := 0, ""
		var pe *ProtocolError
		var ne net.Error
		switch {
		case errors.As(b.err, &pe):
			status, reason = pe.Status, pe.Reason
		case errors.Is(b.err, ErrBodyTooLarge):
			status, reason = 413, "request body too large"
		case errors.As(b.err, &ne) && ne.Timeout():
			status, reason = 408, "request body not received in time"
		}
		if status != 0 {
			c.reject(status, reason)
		}
		return false
	}
	resp.finish()
	if b.err != nil {
		c.lingerClose() // the client may still be sending
		return false
	}
	if resp.aborted || resp.err != nil {
		return false
	}
	keep := !resp.closeAfter
	if keep && !b.done {
		if req.ExpectContinue && !ex.continueSent {
			keep = false // the client may never send the body
		} else {
			keep = ex.drainBody()
		}
	}
	if !keep {
		if !b.done {
			c.lingerClose()
		}
		return false
	}
	ex.endRequest()
	return true
}

func (c *conn) callHandler() {
	defer func() {
		if v := recover(); v != nil {
			c.ex.resp.aborted = true
			if v != ErrAbortHandler {
				c.s.logger().Error("handler panicked", "panic", fmt.Sprint(v), "remote", c.remote.String(), "stack", string(debug.Stack()))
			}
		}
	}()
	c.s.Handler.ServeH1(&c.ex.resp, &c.ex.req)
}

// ErrAbortHandler, as a panic value, aborts the response without logging.
var ErrAbortHandler = errors.New("h1: abort handler")

// reject answers status with "Connection: close" and closes the connection
// gracefully (the caller returns false so that serve closes it).
func (c *conn) reject(status int, reason string) {
	s := c.s
	s.logger().Debug("request refused", "status", status, "reason", reason, "remote", c.remote.String())
	if s.OnReject != nil {
		s.OnReject(status, reason, c.remote)
	}
	ctype, body := "text/plain; charset=utf-8", []byte(nil)
	if s.ErrorBody != nil {
		ctype, body = s.ErrorBody(status, reason)
	} else {
		body = append(body, strconv.Itoa(status)+" "+statusText(status)+"\n"...)
	}
	ex := c.ex
	w := ex.wbuf[:0]
	w = appendStatusLine(w, status)
	w = append(w, "Content-Type: "...)
	w = append(w, ctype...)
	w = append(w, "\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\nConnection: close\r\nDate: "...)
	w = appendDate(w, time.Now())
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	ex.wbuf = w[:0] // mutate:equivalent const the connection closes after a refusal and putExchange empties wbuf before the exchange is used again
	c.c.SetWriteDeadline(time.Now().Add(rejectTimeout))
	c.c.Write(w)
	c.lingerClose()
}

// lingerClose half-closes the connection and discards what the client still
// sends for a short while, so that the client reads our answer instead of a
// reset caused by unread bytes.
func (c *conn) lingerClose() {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.c.(closeWriter)
	if !ok {
		return
	}
	if cw.CloseWrite() != nil {
		return
	}
	// Like nginx's lingering close: keep reading while the client keeps
	// sending (each read within lingerTimeout), for at most lingerTotal and
	// maxLinger bytes, so that a client still uploading a refused body (413)
	// gets to read the answer.
	buf := c.ex.rbuf
	deadline := time.Now().Add(lingerTotal)
	for total := 0; total < maxLinger; {
		next := time.Now().Add(lingerTimeout)
		if next.After(deadline) {
			next = deadline
		}
		c.setRead(next)
		n, err := c.c.Read(buf)
		total += n
		if err != nil {
			return
		}
	}
}

// readHead reads and parses the request head. A non-nil *ProtocolError is a
// refusal; a non-nil error is a connection error (EOF, timeout).
func (ex *exchange) readHead() (*ProtocolError, error) {
	s := ex.s
	maxHead := s.maxHeaderBytes()
	maxLine := min(maxRequestLine, maxHead)
	maxCount := s.maxHeaderCount()
	req := &ex.req
	start := ex.r
	pos, lineStart := start, start
	reqEnd := -1 // index of the CR that ends the request line
	leading, count := 0, 0
	moved, deadlineSet := false, false
	for {
		for pos < ex.w { // mutate:equivalent boundary with pos == ex.w the search finds no LF in no bytes and breaks with pos = ex.w
			i := bytes.IndexByte(ex.rbuf[pos:ex.w], '\n')
			if i < 0 {
				pos = ex.w // mutate:equivalent delete-stmt the next search starts again at the old pos: the same bytes are searched again and the same LF found
				break
			}
			lf := pos + i
			if reqEnd < 0 && lf == lineStart { // mutate:equivalent boundary,const reqEnd is -1 or the index of the CR after a non-empty request line, never 0
				// An empty line ended by a bare LF before the request
				// line: ignored like CRLF (RFC 9112 §2.2; it carries
				// nothing that could be read two ways).
				leading++
				if leading > maxLeadingCRLF {
					return protoErr(400, "too many empty lines before the request line"), nil
				}
				start = lf + 1
				pos, lineStart = lf+1, lf+1
				continue
			}
			if lf == lineStart || ex.rbuf[lf-1] != '\r' {
				return protoErr(400, "bare lf in request head"), nil
			}
			n := lf - 1 - lineStart
			if bytes.IndexByte(ex.rbuf[lineStart:lf-1], '\r') >= 0 {
				return protoErr(400, "bare cr in request head"), nil
			}
			switch {
			case reqEnd < 0 && n == 0: // mutate:equivalent boundary reqEnd is -1 or the index of the CR after a non-empty request line, never 0
				leading++
				if leading > maxLeadingCRLF {
					return protoErr(400, "too many empty lines before the request line"), nil
				}
				start = lf + 1
			case reqEnd < 0: // mutate:equivalent boundary,const reqEnd is -1 or the index of the CR after a non-empty request line, never 0
				if n > maxLine {
					return protoErr(414, "request line too long"), nil
				}
				reqEnd = lf - 1
				if perr := parseRequestLine(ex.rbuf[lineStart:reqEnd], req); perr != nil {
					return perr, nil
				}
			case n == 0:
				if lf+1-start > maxHead {
					return protoErr(431, "request head too large"), nil
				}
				if moved {
					parseRequestLine(ex.rbuf[start:reqEnd], req)
				}
				req.Header.Reset()
				if perr := parseFields(ex.rbuf[reqEnd+2:lineStart], &req.Header); perr != nil {
					return perr, nil
				}
				ex.r, ex.base = lf+1, lf+1
				return req.interpret(), nil
			default:
				count++
				if count > maxCount {
					return protoErr(431, "too many header fields"), nil
				}
			}
			pos, lineStart = lf+1, lf+1
			if pos-start > maxHead {
				return protoErr(431, "request head too large"), nil
			}
		}
		if reqEnd < 0 && ex.w-lineStart > maxLine {
			return protoErr(414, "request line too long"), nil
		}
		if ex.w-start > maxHead {
			if reqEnd < 0 { // mutate:equivalent delete-stmt,boundary,const unreachable with reqEnd < 0: lineStart is start then and maxLine <= maxHead, so the 414 check above has refused already; reqEnd is never 0
				return protoErr(414, "request line too long"), nil // mutate:equivalent * unreachable: see the mark above (reqEnd < 0 here is refused by the 414 check before)
			}
			return protoErr(431, "request head too large"), nil
		}
		if ex.w == len(ex.rbuf) {
			switch {
			case start > 0: // mutate:equivalent const start 1 moves the head to the big buffer instead of the front of this one: the same bytes are read (in the big buffer, start > 0 cannot be reached: the head would be over maxHead)
				n := copy(ex.rbuf, ex.rbuf[start:ex.w])
				pos, lineStart = pos-start, lineStart-start
				if reqEnd >= 0 { // mutate:equivalent boundary,const reqEnd is -1 or the index of the CR after a non-empty request line, never 0
					reqEnd -= start
				}
				start, ex.r, ex.w = 0, 0, n
			case len(ex.rbuf) == len(ex.small):
				big := s.getBig()
				ex.w = copy(big, ex.rbuf[:ex.w])
				ex.rbuf = big
			default:
				return protoErr(431, "request head too large"), nil // mutate:equivalent const unreachable: a full big buffer from start 0 holds more than maxHead bytes, refused by the 414/431 checks above
			}
			moved = true
		}
		if !deadlineSet {
			d := ex.req.ReceivedAt.Add(s.readHeaderTimeout())
			if !ex.readDeadline.IsZero() && ex.readDeadline.Before(d) {
				d = ex.readDeadline
			}
			ex.c.setRead(d)
			deadlineSet = true // mutate:equivalent delete-stmt setting the same absolute deadline again at each read changes nothing
		}
		n, err := ex.c.c.Read(ex.rbuf[ex.w:])
		ex.w += n
		if n == 0 && err != nil {
			return nil, err
		}
	}
}

// endRequest makes the buffer ready for the next request on the connection:
// pipelined bytes move to the front.
func (ex *exchange) endRequest() {
	if ex.oldBuf != nil {
		ex.s.putBig(ex.oldBuf) // mutate:equivalent delete-stmt a buffer not given back to the pool is only an allocation more
		ex.oldBuf = nil
	}
	n := ex.w - ex.r
	if len(ex.rbuf) != len(ex.small) && n <= len(ex.small) { // mutate:equivalent boundary a buffer of exactly 4 KiB pending fits the small buffer or stays in the big one: the same bytes, only which buffer
		copy(ex.small, ex.rbuf[ex.r:ex.w])
		ex.s.putBig(ex.rbuf) // mutate:equivalent delete-stmt a buffer not given back to the pool is only an allocation more
		ex.rbuf = ex.small
	} else {
		copy(ex.rbuf, ex.rbuf[ex.r:ex.w])
	}
	ex.r, ex.w, ex.base = 0, n, 0
	ex.req.Header.Reset()
	ex.resp.hdr.Reset()
}

// bodyRead reads from the connection for the body, with its deadlines.
func (ex *exchange) bodyRead(p []byte) (int, error) {
	d := time.Now().Add(ex.s.bodyIdleTimeout())
	if !ex.readDeadline.IsZero() && ex.readDeadline.Before(d) {
		d = ex.readDeadline
	}
	ex.c.setRead(d)
	return ex.c.c.Read(p)
}

// fill reads more body bytes into the buffer, above ex.base.
func (ex *exchange) fill() error {
	if ex.r == ex.w { // mutate:equivalent negate-if,negate-cmp fill is called only with r == w: without this reset the compaction below or the next read keeps the same bytes
		ex.r, ex.w = ex.base, ex.base // mutate:equivalent delete-stmt fill is called only with r == w: without this reset the compaction below or the next read keeps the same bytes
	}
	if len(ex.rbuf)-ex.w < minBodyReadRoom { // mutate:equivalent boundary the least room for a body read (see minBodyReadRoom): one byte more room changes which buffer, not what is read
		if ex.r > ex.base { // mutate:equivalent * r == base here (fill is called with r == w, reset above): there is nothing to move
			ex.w = ex.base + copy(ex.rbuf[ex.base:], ex.rbuf[ex.r:ex.w]) // mutate:equivalent delete-stmt r == base here (fill is called with r == w, reset above): there is nothing to move
			ex.r = ex.base                                               // mutate:equivalent delete-stmt r == base here (fill is called with r == w, reset above): there is nothing to move
		}
		if len(ex.rbuf)-ex.w < minBodyReadRoom && ex.oldBuf == nil { // mutate:equivalent bool,boundary which buffer the body is read into, not what is read: the old one is kept for the head either way
			// The head fills the buffer: move the unread bytes to a new
			// one and keep the old one, which the fields point into.
			big := ex.s.getBig()
			n := copy(big, ex.rbuf[ex.r:ex.w])
			ex.oldBuf, ex.rbuf = ex.rbuf, big
			ex.r, ex.w, ex.base = 0, n, 0
		}
	}
	n, err := ex.bodyRead(ex.rbuf[ex.w:])
	ex.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Buffered returns the number of unread bytes in the buffer.
func (ex *exchange) Buffered() int { return ex.w - ex.r }

// ReadByte and Read make the exchange the chunked decoder's byteSource.
func (ex *exchange) ReadByte() (byte, error) {
	if ex.r == ex.w {
		if err := ex.fill(); err != nil {
			return 0, err // mutate:equivalent const the byte returned with an error is never looked at
		}
	}
	b := ex.rbuf[ex.r]
	ex.r++
	return b, nil
}

func (ex *exchange) Read(p []byte) (int, error) {
	if ex.r == ex.w {
		if len(p) >= smallBufSize {
			return ex.bodyRead(p)
		}
		if err := ex.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, ex.rbuf[ex.r:ex.w])
	ex.r += n
	return n, nil
}

const (
	bodyNone uint8 = iota
	bodyLength
	bodyChunked
)

// bodyReader is Request.Body for requests with a body.
type bodyReader struct {
	ex        *exchange
	kind      uint8
	done      bool
	remaining int64 // bodyLength: bytes left
	read      int64 // bytes returned so far
	cr        chunkedReader
	err       error // sticky
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	ex := b.ex
	req := &ex.req
	if req.ExpectContinue && !ex.continueSent {
		ex.continueSent = true
		if !ex.resp.wroteHeader {
			if _, err := ex.c.c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
				b.err = fmt.Errorf("sending 100 continue: %w", err)
				return 0, b.err
			}
		}
	}
	max := req.MaxBodyBytes
	switch b.kind {
	case bodyLength:
		if max > 0 && req.ContentLength > max {
			b.err = ErrBodyTooLarge
			return 0, b.err
		}
		if int64(len(p)) > b.remaining { // mutate:equivalent boundary p[:b.remaining] with len(p) == b.remaining is p
			p = p[:b.remaining]
		}
		n, err := ex.Read(p)
		b.remaining -= int64(n)
		b.read += int64(n)
		if b.remaining == 0 {
			b.done = true
			return n, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			b.err = fmt.Errorf("reading request body: %w", err)
			return n, b.err
		}
		return n, nil
	default:
		n, err := b.cr.Read(p)
		b.read += int64(n)
		if max > 0 && b.read > max {
			n -= int(b.read - max)
			if n < 0 { // mutate:equivalent delete-stmt,boundary,const n is never below 0: the read before this one was within max (or the error would be sticky), so b.read - max <= n
				n = 0 // mutate:equivalent * unreachable: n is never below 0 (see the mark above)
			}
			b.err = ErrBodyTooLarge
			return n, b.err
		}
		if err == io.EOF {
			b.done = true
			return n, io.EOF
		}
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				err = fmt.Errorf("reading request body: %w", err)
			}
			b.err = err
		}
		return n, err
	}
}

// drainBody reads and discards what the handler left of the body, up to
// maxDrain bytes. It reports whether the body ended cleanly.
func (ex *exchange) drainBody() bool {
	b := &ex.body
	if b.kind == bodyLength && b.remaining > maxDrain {
		return false
	}
	ex.req.MaxBodyBytes = 0
	buf := ex.wbuf[:cap(ex.wbuf)]
	for total := 0; total <= maxDrain; {
		n, err := b.Read(buf)
		total += n
		if b.done {
			return b.err == nil
		}
		if err != nil {
			return false
		}
	}
	return false
}

// Hijack support: the bytes already read from the client come first.
type prefixConnReader struct {
	pending []byte
	c       net.Conn
}

func (p *prefixConnReader) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.c.Read(b)
}

func newHijackReader(pending []byte, c net.Conn) *bufio.Reader {
	return bufio.NewReader(&prefixConnReader{pending: bytes.Clone(pending), c: c})
}
