package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of an Upstream.
const (
	DefaultDialTimeout            = 10 * time.Second
	DefaultUpstreamIdleTimeout    = 90 * time.Second
	DefaultMaxResponseHeaderBytes = 64 << 10

	upReadBufSize  = 8 << 10
	upWriteBufSize = 4 << 10
	copyBufSize    = 32 << 10
)

// Upstream is one back-end address with its pool of keep-alive connections.
// It is safe for concurrent use; set its fields before the first Forward and
// do not copy it after.
type Upstream struct {
	Addr                  string        // host:port to dial
	TLS                   *tls.Config   // nil = plain; ServerName defaults to Addr's host
	DialTimeout           time.Duration // connecting and the TLS handshake (default 10s)
	ResponseHeaderTimeout time.Duration // from the end of the request head to the end of the response head; 0 = no limit
	IdleTimeout           time.Duration // idle pooled connections are closed after this (default 90s)
	MaxIdle               int           // idle connections kept (LIFO); 0 keeps none (every request sends Connection: close)
	MaxConns              int           // open connections, busy or idle; 0 = unlimited
	ConnWait              time.Duration // when MaxConns are open and busy, wait this long for one, then ErrNoConnAvailable
	// MaxResponseHeaderBytes bounds the response head (default 64 KiB).
	MaxResponseHeaderBytes int

	// ActiveTimeout bounds every wait for the next bytes from the upstream
	// once the request is sent: the response head and each read of the
	// body (0 = none; ResponseHeaderTimeout then still bounds the head).
	ActiveTimeout time.Duration
	// TransactionTimeout bounds one whole exchange on a connection, from
	// taking the connection to the end of the response body (0 = none).
	TransactionTimeout time.Duration
	// MaxSentBytes bounds the request body (0 = none): a longer declared
	// length is refused before anything is sent, a chunked body growing
	// past it is cut (ErrMaxSent).
	MaxSentBytes int64
	// MaxReceivedBytes bounds the response body (0 = none): a longer
	// declared length is refused before the head is passed on; a body
	// growing past it aborts the response (ErrMaxReceived).
	MaxReceivedBytes int64
	// ReadBufferSize and WriteBufferSize size the connection's buffers
	// (defaults 8 KiB and 4 KiB).
	ReadBufferSize, WriteBufferSize int
	// HTTP10 sends HTTP/1.0 requests with Connection: close (one request
	// per connection). A request body of unknown length that does not fit
	// in the first read (32 KiB) is refused with ErrLengthRequired.
	HTTP10 bool
	// OnUnsolicited, when set, is called each time a connection is closed
	// instead of reused because the upstream sent bytes beyond the end of a
	// response (a desync attempt or a broken back end: those bytes must
	// never be read as the answer to another request). It must be cheap
	// and safe for concurrent use.
	OnUnsolicited func()

	once    sync.Once
	tlsConf *tls.Config
	sem     chan struct{} // a token per open connection when MaxConns > 0
	handoff chan *upConn  // connections handed straight to waiters
	mu      sync.Mutex    // guards idle, waiting, reaper, closed
	idle    []*upConn     // oldest first; the top is reused first
	waiting int
	reaper  *time.Timer
	open    atomic.Int64
	dials   atomic.Int64
	unsolic atomic.Int64
}

// upConn is one pooled connection.
type upConn struct {
	u      *Upstream
	c      net.Conn
	raw    syscall.RawConn // the TCP socket under c (nil when unavailable), for the idle check
	peek   func(fd uintptr) bool
	peekN  int // result of peek: bytes readable (1), 0 at EOF, -1 nothing yet
	peekB  [1]byte
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	// deadlined: a deadline may be set on c (cleared before the next
	// exchange that sets none)
	deadlined bool
	// The head's deadline while a body goroutine runs: dmu guards bodySent
	// (the goroutine sent the whole body) and headDone (the reader has the
	// head), so that exactly one of them arms the head's deadline and
	// neither clobbers the body's.
	dmu        sync.Mutex
	bodySent   bool
	headDone   bool
	txDeadline time.Time
	// clientFailed: the body goroutine failed reading the client's body
	// and cut the response wait short (see clientGaveUp).
	clientFailed atomic.Bool
	// smu guards cutR and cutW: the reads or writes of the exchange were
	// cut short and must stay so (see cutAll).
	smu        sync.Mutex
	cutR, cutW bool
	scratch    []byte // the response head
	hdr        Header
	cr         chunkedReader
}

func (u *Upstream) init() {
	u.once.Do(func() {
		if u.TLS != nil {
			u.tlsConf = u.TLS.Clone()
			if u.tlsConf.ServerName == "" {
				host, _, err := net.SplitHostPort(u.Addr)
				if err != nil {
					host = u.Addr // mutate:equivalent delete-stmt an address without a port cannot be dialled: no handshake uses this name
				}
				u.tlsConf.ServerName = host
			}
			if len(u.tlsConf.NextProtos) == 0 {
				u.tlsConf.NextProtos = []string{"http/1.1"}
			}
		}
		if u.MaxConns > 0 {
			u.sem = make(chan struct{}, u.MaxConns)
			u.handoff = make(chan *upConn, u.MaxConns)
		}
	})
}

func (u *Upstream) idleTimeout() time.Duration {
	if u.IdleTimeout > 0 {
		return u.IdleTimeout
	}
	return DefaultUpstreamIdleTimeout
}

// Stats returns the number of open connections (busy or idle) and the number
// of connections dialled since the start.
func (u *Upstream) Stats() (open, dials int64) { return u.open.Load(), u.dials.Load() }

// Unsolicited returns how many connections were closed instead of reused
// because the upstream sent bytes beyond the end of a response.
func (u *Upstream) Unsolicited() int64 { return u.unsolic.Load() }

func (u *Upstream) noteUnsolicited() {
	u.unsolic.Add(1)
	if u.OnUnsolicited != nil {
		u.OnUnsolicited()
	}
}

// CloseIdle closes the idle connections. Busy ones are closed or pooled when
// their exchange ends.
func (u *Upstream) CloseIdle() {
	u.init()
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
	for u.handoff != nil {
		select {
		case pc := <-u.handoff:
			pc.close()
		default:
			return
		}
	}
}

// get returns a pooled connection, or dials one.
func (u *Upstream) get(ctx context.Context) (*upConn, error) {
	u.init()
	for {
		pc := u.popIdle()
		if pc == nil {
			break
		}
		if pc.idleClean() {
			return pc, nil
		}
		pc.close()
	}
	if u.sem != nil {
		select {
		case u.sem <- struct{}{}:
		default:
			if pc, err := u.wait(ctx); pc != nil || err != nil {
				return pc, err
			}
		}
	}
	pc, err := u.dial(ctx)
	if err != nil {
		if u.sem != nil {
			<-u.sem
		}
		return nil, err
	}
	return pc, nil
}

// wait waits for a connection (handed over) or a token (to dial) for up to
// ConnWait. It returns (nil, nil) when it got a token.
func (u *Upstream) wait(ctx context.Context) (*upConn, error) {
	noConn := &ForwardError{Kind: ErrNoConnAvailable, Err: fmt.Errorf("%d connections busy: %w", u.MaxConns, ErrNoConn)}
	if u.ConnWait <= 0 {
		return nil, noConn
	}
	u.mu.Lock()
	u.waiting++
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.waiting--
		u.mu.Unlock()
	}()
	for {
		pc := u.popIdle()
		if pc == nil {
			break
		}
		if pc.idleClean() {
			return pc, nil
		}
		pc.close()
	}
	t := time.NewTimer(u.ConnWait)
	defer t.Stop()
	for {
		select {
		case pc := <-u.handoff:
			if !pc.idleClean() {
				pc.close() // frees a token: the next turn may take it
				continue
			}
			pc.reused = true
			return pc, nil
		case u.sem <- struct{}{}:
			return nil, nil
		case <-t.C:
			return nil, noConn
		case <-ctx.Done():
			return nil, ctxError(ctx, nil)
		}
	}
}

func (u *Upstream) popIdle() *upConn {
	if u.handoff != nil {
		select {
		case pc := <-u.handoff:
			pc.reused = true
			return pc
		default:
		}
	}
	u.mu.Lock()
	n := len(u.idle)
	if n == 0 {
		u.mu.Unlock()
		return nil
	}
	pc := u.idle[n-1]
	u.idle[n-1] = nil
	u.idle = u.idle[:n-1]
	u.mu.Unlock()
	if time.Since(pc.idleAt) > u.idleTimeout() { // mutate:equivalent boundary an idle time equal to IdleTimeout to the nanosecond cannot be arranged
		// The top is the youngest: all the others are older still.
		u.mu.Lock()
		old := u.idle
		u.idle = nil
		u.mu.Unlock()
		pc.close()
		for _, o := range old {
			o.close()
		}
		return nil
	}
	pc.reused = true
	return pc
}

// put returns a connection whose exchange ended cleanly to the pool.
func (u *Upstream) put(pc *upConn) {
	if u.MaxIdle <= 0 || u.HTTP10 { // mutate:equivalent bool,boundary roundTrip puts a connection back only with MaxIdle > 0 and not HTTP10 (keep is false otherwise)
		pc.close() // mutate:equivalent delete-stmt unreachable: roundTrip puts a connection back only with MaxIdle > 0 and not HTTP10
		return     // mutate:equivalent delete-stmt unreachable: roundTrip puts a connection back only with MaxIdle > 0 and not HTTP10
	}
	pc.hdr.Reset()
	u.mu.Lock()
	if u.waiting > 0 {
		select {
		case u.handoff <- pc:
			u.mu.Unlock()
			return
		default:
		}
	}
	if len(u.idle) >= u.MaxIdle {
		u.mu.Unlock()
		pc.close()
		return
	}
	pc.idleAt = time.Now()
	u.idle = append(u.idle, pc)
	if u.reaper == nil {
		u.reaper = time.AfterFunc(u.idleTimeout(), u.reap)
	} else if len(u.idle) == 1 {
		u.reaper.Reset(u.idleTimeout())
	}
	u.mu.Unlock()
}

// reap closes the connections idle for longer than IdleTimeout.
func (u *Upstream) reap() {
	timeout := u.idleTimeout()
	now := time.Now()
	u.mu.Lock()
	n := 0
	for n < len(u.idle) && now.Sub(u.idle[n].idleAt) >= timeout {
		n++
	}
	expired := append([]*upConn(nil), u.idle[:n]...)
	k := copy(u.idle, u.idle[n:])
	clear(u.idle[k:])
	u.idle = u.idle[:k]
	if k > 0 {
		u.reaper.Reset(timeout - now.Sub(u.idle[0].idleAt))
	}
	u.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

func (u *Upstream) dial(ctx context.Context) (*upConn, error) {
	timeout := u.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", u.Addr)
	if err != nil {
		return nil, dialError(ctx, err)
	}
	tcp := c
	if u.tlsConf != nil {
		tc := tls.Client(c, u.tlsConf)
		if err := tc.HandshakeContext(dctx); err != nil {
			c.Close()
			return nil, dialError(ctx, fmt.Errorf("tls handshake: %w", err))
		}
		c = tc
	}
	u.open.Add(1)
	u.dials.Add(1)
	pc := &upConn{
		u:  u,
		c:  c,
		br: bufio.NewReaderSize(c, orDefault(u.ReadBufferSize, upReadBufSize)),
		bw: bufio.NewWriterSize(c, orDefault(u.WriteBufferSize, upWriteBufSize)),
	}
	pc.initPeek(tcp)
	return pc, nil
}

func orDefault(n, d int) int {
	if n > 0 {
		return n
	}
	return d
}

func dialError(ctx context.Context, err error) *ForwardError {
	if ctx.Err() != nil {
		return ctxError(ctx, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &ForwardError{Kind: ErrTimeout, Err: fmt.Errorf("connecting: %w", err)}
	}
	return &ForwardError{Kind: ErrConnect, Err: fmt.Errorf("connecting: %w", err)}
}

func ctxError(ctx context.Context, err error) *ForwardError {
	cause := ctx.Err()
	if err != nil {
		cause = fmt.Errorf("%w (%w)", cause, err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &ForwardError{Kind: ErrTimeout, Err: cause}
	}
	return &ForwardError{Kind: ErrClient, Err: cause}
}

func (pc *upConn) close() {
	pc.c.Close()
	pc.u.open.Add(-1)
	if pc.u.sem != nil {
		<-pc.u.sem
	}
}

// initPeek prepares the idle check on the TCP socket under the connection.
func (pc *upConn) initPeek(tcp net.Conn) {
	sc, ok := tcp.(syscall.Conn)
	if !ok {
		return // mutate:equivalent delete-stmt unreachable: dial gives a *net.TCPConn, a syscall.Conn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return // mutate:equivalent delete-stmt unreachable: a just-dialled TCP connection gives its RawConn
	}
	pc.raw = raw
	pc.peek = func(fd uintptr) bool {
		pc.peekN = peekSocket(fd, pc.peekB[:])
		return true // never wait
	}
}

// idleClean reports whether a pooled connection may carry a new request:
// nothing is buffered and nothing is readable on its socket. A byte there
// is either the upstream closing (EOF) or data that no request asked for
// (counted: see OnUnsolicited); either way the connection must not be
// reused, or the next client would read it as its answer.
func (pc *upConn) idleClean() bool {
	if pc.br.Buffered() > 0 { // mutate:equivalent const roundTrip pools no connection with bytes buffered, and nothing reads an idle one: Buffered() is 0 here
		pc.u.noteUnsolicited() // mutate:equivalent delete-stmt roundTrip pools no connection with bytes buffered, and nothing reads an idle one: Buffered() is 0 here
		return false           // mutate:equivalent delete-stmt roundTrip pools no connection with bytes buffered, and nothing reads an idle one: Buffered() is 0 here
	}
	if pc.raw == nil {
		return true // mutate:equivalent delete-stmt unreachable: initPeek sets raw for every dialled TCP connection
	}
	pc.peekN = -1 // mutate:equivalent const raw.Read either runs the peek, which sets peekN, or fails (and peekN is not read)
	if err := pc.raw.Read(pc.peek); err != nil {
		return false // mutate:equivalent delete-stmt unreachable: raw.Read fails only on a closed socket, and a connection is closed only after it has left the pool
	}
	switch {
	case pc.peekN > 0:
		pc.u.noteUnsolicited()
		return false
	case pc.peekN == 0:
		return false // closed by the upstream
	}
	return true
}
