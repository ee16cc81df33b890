package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	eof             = io.EOF
	errStreamReset  = errors.New("h2: stream reset")
	errConnClosed   = errors.New("h2: connection closed")
	errWriteTimeout = errors.New("h2: write timed out waiting for the client's flow-control window")
	errBodyTimeout  = errors.New("h2: request body idle for too long")
	errFrameFlood   = errors.New("h2: too many bytes in one frame or header block")
	errBodyLength   = errors.New("h2: request body length differs from its content-length")
	errDone         = errors.New("h2: connection done")
)

func calm() error { return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm) }

const maxWindow = 1<<31 - 1

type streamState uint8

const (
	stateOpen             streamState = iota // the client may send more
	stateHalfClosedRemote                    // the client sent END_STREAM
)

// conn is one HTTP/2 connection.
type conn struct {
	s            *Server
	nc           net.Conn
	br           *bufio.Reader
	fl           frameLimit
	fr           *http2.Framer
	remote       netip.AddrPort
	local        netip.AddrPort
	tls          *tls.ConnectionState
	writeTimeout time.Duration
	idleTimeout  time.Duration

	// Write side, under wmu: every frame goes through bw; the writer that
	// brings queued to 0 flushes.
	wmu    sync.Mutex
	queued atomic.Int32
	bw     *bufio.Writer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	werr   error
	names  map[string]string // response field names as written → lower case (lowerName)
	values map[string]string // short response values (intern)

	// Stream and flow-control state, under mu.
	mu           sync.Mutex
	sendCond     sync.Cond // a send window grew, a stream closed, or the connection did
	streams      map[uint32]*stream
	maxID        uint32 // highest stream opened by the client
	active       int    // streams counted against MaxConcurrentStreams
	sendWin      int64  // connection send window
	peerInitWin  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame int
	recvWin      int64          // what the client may still send on the connection
	recvCredit   int64          // bytes consumed and not yet returned with WINDOW_UPDATE
	ackPending   bool           // a client SETTINGS is applied and its ack not yet written
	goingAway    bool           // no new streams (our GOAWAY or the client's)
	idle         []chan *stream // workers waiting for a stream (see work)
	sentGoAway   bool
	closed       bool

	dataSent atomic.Int64 // DATA frames written

	// Reader goroutine only.
	sawSettings   bool
	resets        counter
	control       counter
	emptyData     counter
	windowUpdates counter
	wuBase        int64
}

// counter counts events in windows of floodWindow.
type counter struct {
	start time.Time
	n     int
}

// add counts one event and reports whether the window's count is within
// limit.
func (k *counter) add(limit int) bool {
	now := time.Now()
	if now.Sub(k.start) > floodWindow {
		k.start, k.n = now, 0
	}
	k.n++
	return k.n <= limit
}

// frameLimit bounds the bytes the Framer may read for one ReadFrame call
// (a frame, or a header block with its CONTINUATION frames): an endless
// run of empty CONTINUATION frames ends there.
//
// It also bounds the time: once a frame has begun, a read that would wait
// for the network arms a deadline of ReadHeaderTimeout for the rest of it
// (a header block sent byte by byte, or left without its END_HEADERS,
// while other streams keep the connection from being idle).
type frameLimit struct {
	r     *bufio.Reader
	nc    net.Conn
	d     time.Duration
	n     int
	max   int
	armed bool // a mid-frame deadline is set
}

func (l *frameLimit) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errFrameFlood
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	if l.n > 0 && !l.armed && l.r.Buffered() == 0 {
		l.armed = true
		l.nc.SetReadDeadline(time.Now().Add(l.d))
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:            s,
		nc:           nc,
		remote:       addrPort(nc.RemoteAddr()),
		local:        addrPort(nc.LocalAddr()),
		tls:          connState(nc),
		writeTimeout: orDefault(s.WriteTimeout, DefaultWriteTimeout),
		idleTimeout:  orDefault(s.IdleTimeout, DefaultIdleTimeout),
		streams:      make(map[uint32]*stream),
		sendWin:      65535,
		peerInitWin:  65535,
		peerMaxFrame: 16384,
		recvWin:      connWindow,
	}
	c.sendCond.L = &c.mu
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.bw = bufio.NewWriterSize(writerFunc(c.writeConn), 16<<10)
	c.fl = frameLimit{r: c.br, nc: nc, d: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout), max: 4*s.maxHeaderBytes() + 32<<10}
	c.fr = http2.NewFramer(c.bw, &c.fl)
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = uint32(s.maxHeaderBytes())
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writeConn writes to the connection within the write timeout.
func (c *conn) writeConn(p []byte) (int, error) {
	c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.nc.Write(p)
}

// lockWrite takes the writer; unlockWrite releases it and flushes when no
// other writer is queued.
func (c *conn) lockWrite() {
	c.queued.Add(1)
	c.wmu.Lock()
}

func (c *conn) unlockWrite() error {
	if c.queued.Add(-1) == 0 && c.werr == nil && c.bw.Buffered() > 0 {
		c.flushLocked()
	}
	err := c.werr
	c.wmu.Unlock()
	return err
}

func (c *conn) flushLocked() {
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		c.nc.Close()
	}
}

// unlockWriteYield is unlockWrite for the handlers' writes: before
// flushing, it lets the other goroutines that are ready run first (with
// GOMAXPROCS=1, the other handlers whose back ends answered in the same
// poll), so that their frames leave in the same flush, one TLS record and
// one system call for all.
func (c *conn) unlockWriteYield() error {
	if c.queued.Add(-1) != 0 || c.werr != nil || c.bw.Buffered() == 0 {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	c.wmu.Unlock()
	runtime.Gosched()
	c.lockWrite()
	return c.unlockWrite()
}

// unlockWriteLazy releases the writer without flushing: the reader uses it
// while more frames are buffered, and flushes before it blocks.
func (c *conn) unlockWriteLazy() {
	c.queued.Add(-1)
	c.wmu.Unlock()
}

func (c *conn) flush() error {
	c.lockWrite()
	return c.unlockWrite()
}

// serve runs the reader: it reads and processes every frame of the
// connection until it ends, then closes it.
func (c *conn) serve() error {
	defer c.teardown()
	c.nc.SetReadDeadline(time.Now().Add(orDefault(c.s.ReadHeaderTimeout, DefaultReadHeaderTimeout)))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil {
		return nil
	}
	if string(pre[:]) != http2.ClientPreface {
		c.goAway(http2.ErrCodeProtocol, false)
		return nil
	}
	c.lockWrite()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.s.maxStreams()},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.s.maxHeaderBytes())},
	)
	c.fr.WriteWindowUpdate(0, connWindow-65535)
	if err := c.unlockWrite(); err != nil {
		return nil
	}
	for {
		if c.br.Buffered() == 0 {
			if c.flush() != nil {
				return nil
			}
		}
		c.fl.n = 0
		f, err := c.fr.ReadFrame()
		if c.fl.armed {
			c.fl.armed = false
			c.restoreDeadline()
		}
		if err == nil {
			if !c.sawSettings {
				if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
					err = http2.ConnectionError(http2.ErrCodeProtocol)
				} else {
					c.sawSettings = true
					c.nc.SetReadDeadline(time.Now().Add(c.idleTimeout))
				}
			}
			if err == nil {
				err = c.process(f)
			}
		}
		if err != nil && c.failed(err) {
			return nil
		}
	}
}

// restoreDeadline puts back the read deadline of the connection's state
// after a mid-frame one: the idle timeout without streams, none with.
func (c *conn) restoreDeadline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.sawSettings:
	case c.active == 0 && c.goingAway && c.sentGoAway:
		c.linger()
	case c.active == 0:
		c.nc.SetReadDeadline(time.Now().Add(c.idleTimeout))
	default:
		c.nc.SetReadDeadline(time.Time{})
	}
}

// failed handles an error of reading or processing a frame and reports
// whether the connection is done.
func (c *conn) failed(err error) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		c.mu.Lock()
		if se.StreamID > c.maxID && se.StreamID%2 == 1 {
			c.maxID = se.StreamID
		}
		c.mu.Unlock()
		// Every stream error counts with the client's resets: each makes
		// the server write a RST_STREAM (frames on closed streams, refused
		// streams, malformed requests).
		if !c.resets.add(maxResets) {
			c.goAway(http2.ErrCodeEnhanceYourCalm, false)
			return true
		}
		c.resetStream(se.StreamID, se.Code)
		return false
	case errors.As(err, &ce):
		c.goAway(http2.ErrCode(ce), false)
	case errors.Is(err, errFrameFlood):
		c.goAway(http2.ErrCodeEnhanceYourCalm, false)
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize, false)
	case errors.As(err, &ne) && ne.Timeout() && c.sawSettings:
		c.goAway(http2.ErrCodeNo, false) // idle
	}
	return true
}

// teardown ends every stream and closes the connection.
func (c *conn) teardown() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		c.closeStreamLocked(st, errConnClosed)
	}
	c.s.adoptSpares(c.idle)
	c.idle = nil
	c.sendCond.Broadcast()
	sent := c.sentGoAway
	c.mu.Unlock()
	if sent {
		c.lingerClose()
	}
	c.nc.Close()
}

// lingerClose closes the sending side and reads what the client still
// sends, for a little while: closing a TCP connection with unread bytes
// resets it, and the client could lose the GOAWAY that says why.
func (c *conn) lingerClose() {
	if c.flush() != nil {
		return
	}
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
	io.CopyN(io.Discard, c.br, 1<<20)
}

// goAway sends a GOAWAY naming the last stream the server serves. A
// graceful GOAWAY (Shutdown) lets the open streams finish and closes the
// connection after the last; otherwise the connection is closed at once.
func (c *conn) goAway(code http2.ErrCode, graceful bool) {
	c.mu.Lock()
	if c.sentGoAway {
		c.mu.Unlock()
		if !graceful {
			c.nc.Close()
		}
		return
	}
	c.sentGoAway, c.goingAway = true, true
	last, idle := c.maxID, c.active == 0
	c.mu.Unlock()
	c.lockWrite()
	c.fr.WriteGoAway(last, code, nil)
	c.unlockWrite()
	if graceful && idle {
		c.linger()
	}
	// A GOAWAY for an error is sent by the reader, which then returns:
	// teardown closes the connection.
}

// goAwayLinger is how long a connection that sent a graceful GOAWAY and
// has no stream left keeps reading before it closes: requests the client
// sent before the GOAWAY reached it are ignored (the client retries them),
// and closing with unread bytes would reset the TCP connection, and the
// GOAWAY with it.
const goAwayLinger = time.Second

func (c *conn) linger() {
	c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
}

// process handles one frame; a StreamError resets that stream, a
// ConnectionError ends the connection.
func (c *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if !c.control.add(maxControl) {
			return calm()
		}
		c.lockWrite()
		c.fr.WritePing(true, f.Data)
		c.unlockWriteLazy()
		return nil
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if !c.control.add(maxControl) {
			return calm()
		}
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.goingAway = true
		idle := c.active == 0
		c.mu.Unlock()
		if idle {
			return errDone
		}
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil // unknown frame types are ignored (RFC 9113 section 4.1)
}

func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		// Trailers: they end the stream and carry no pseudo-header. They
		// are checked and dropped (h1.Request has no trailers).
		var err error
		switch {
		case st.state != stateOpen:
			err = http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
		case !f.StreamEnded() || len(f.PseudoFields()) > 0:
			err = http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		default:
			err = c.endBodyLocked(st)
		}
		c.mu.Unlock()
		return err
	}
	if id <= c.maxID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxID = id
	if c.goingAway {
		c.mu.Unlock()
		return nil
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if c.active >= int(c.s.maxStreams()) {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	st := newStream(c, id)
	st.sendWin = c.peerInitWin
	if f.StreamEnded() {
		st.state = stateHalfClosedRemote
	}
	c.streams[id] = st
	c.active++
	if c.active == 1 {
		c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()

	r := c.buildRequest(st, f)
	if r.reset {
		c.resetStream(id, http2.ErrCodeProtocol)
		c.mu.Lock()
		c.releaseLocked()
		c.mu.Unlock()
		if !c.resets.add(maxResets) {
			return calm()
		}
		return nil
	}
	c.mu.Lock()
	if r.status != 0 {
		st.rejectStatus, st.rejectReason = r.status, r.reason
		st.discard = true
		st.waitEnd = false
	}
	if !st.waitEnd {
		c.dispatchLocked(st)
	}
	c.mu.Unlock()
	if c.s.draining.Load() {
		c.goAway(http2.ErrCodeNo, true) // this stream is served, the next go elsewhere
	}
	return nil
}

// dispatchLocked starts the stream's handler (or its refusal), on an
// idle worker of the connection when there is one, else on a spare worker
// of the server, else on a new goroutine.
func (c *conn) dispatchLocked(st *stream) {
	c.s.handlers.Add(1)
	if n := len(c.idle); n > 0 {
		w := c.idle[n-1]
		c.idle = c.idle[:n-1]
		w <- st // buffered: never blocks
		return
	}
	if w := c.s.takeSpare(); w != nil {
		w <- st
		return
	}
	go work(st)
}

// maxIdleWorkers bounds the handler goroutines a connection keeps between
// its streams.
const maxIdleWorkers = 16

// work runs streams: st, then those handed to it while it waits idle, so
// that goroutines (and their grown stacks) are reused. A worker waits for
// its connection's next stream while the connection has streams; once the
// connection has none (or closes) the worker becomes a spare of the server
// (see Server.spare), which any connection's next stream may take, or
// returns when the server keeps enough spares. Without the spares, a client
// that sends its streams in waves (h2load -m10, a browser loading a page)
// found no worker after each wave, and every new goroutine grew its stack
// again: 7 % of the CPU under h2load in runtime.morestack.
func work(st *stream) {
	ch := make(chan *stream, 1)
	for {
		c := st.c
		st.run() // st is back in the pool after this: only c is kept
		c.mu.Lock()
		if c.closed || c.active == 0 || len(c.idle) >= maxIdleWorkers {
			c.mu.Unlock()
			if !c.s.putSpare(ch) {
				return
			}
		} else {
			c.idle = append(c.idle, ch)
			c.mu.Unlock()
		}
		if st = <-ch; st == nil {
			return // the server closed
		}
	}
}

// releaseLocked frees a stream's place among the concurrent streams.
func (c *conn) releaseLocked() {
	c.active--
	if c.active == 0 {
		c.s.adoptSpares(c.idle)
		c.idle = c.idle[:0]
		if c.goingAway && c.sentGoAway {
			c.linger()
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(c.idleTimeout))
	}
}

func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Header().Length)
	data := f.Data()
	if len(data) == 0 && !f.StreamEnded() && !c.emptyData.add(maxEmptyData) {
		return calm()
	}
	c.mu.Lock()
	if n > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	st := c.streams[id]
	if st == nil || st.state != stateOpen {
		idle := st == nil && id > c.maxID
		c.recvCredit += n
		inc := c.connCreditLocked()
		c.mu.Unlock()
		c.sendWindowUpdates(inc, 0, 0)
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > st.recvWin {
		c.recvCredit += n
		inc := c.connCreditLocked()
		c.mu.Unlock()
		c.sendWindowUpdates(inc, 0, 0)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWin -= n
	// Padding is returned at once; the data when the handler reads it.
	credit := n - int64(len(data))
	st.received += int64(len(data))
	var err error
	switch {
	case st.declared >= 0 && st.received > st.declared && !st.waitEnd:
		credit = n
		st.setBodyErrLocked(errBodyLength)
		err = http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	case st.waitEnd && len(data) > 0:
		// A body after a declared length of 0: refused before anything
		// reaches the handler, as h2bridge did.
		credit = n
		st.waitEnd = false
		st.discard = true
		st.rejectStatus, st.rejectReason = 400, "request body longer than its content-length"
		c.dispatchLocked(st)
	case st.discard:
		credit = n
	default:
		st.buf = append(st.buf, data...)
		st.bodyCond.Signal()
	}
	if err == nil && f.StreamEnded() {
		err = c.endBodyLocked(st)
	}
	var connInc, streamInc uint32
	if credit > 0 {
		c.recvCredit += credit
		connInc = c.connCreditLocked()
		if st.state == stateOpen && err == nil {
			st.recvCredit += credit
			streamInc = st.streamCreditLocked()
		}
	}
	c.mu.Unlock()
	c.sendWindowUpdates(connInc, id, streamInc)
	return err
}

// endBodyLocked marks the end of the request from the client.
func (c *conn) endBodyLocked(st *stream) error {
	st.state = stateHalfClosedRemote
	if st.declared >= 0 && st.received != st.declared && !st.discard {
		st.setBodyErrLocked(errBodyLength)
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	st.setBodyErrLocked(eof)
	if st.waitEnd {
		st.waitEnd = false
		c.dispatchLocked(st)
	}
	if st.sentEnd {
		c.removeLocked(st)
	}
	return nil
}

// connCreditLocked returns the connection window increment to send now, if
// enough was consumed to be worth a frame.
func (c *conn) connCreditLocked() uint32 {
	if c.recvCredit < connWindow/4 {
		return 0
	}
	inc := c.recvCredit
	c.recvCredit = 0
	c.recvWin += inc
	return uint32(inc)
}

func (c *conn) sendWindowUpdates(connInc, id, streamInc uint32) {
	if connInc == 0 && streamInc == 0 {
		return
	}
	c.lockWrite()
	if connInc > 0 {
		c.fr.WriteWindowUpdate(0, connInc)
	}
	if streamInc > 0 {
		c.fr.WriteWindowUpdate(id, streamInc)
	}
	c.unlockWrite()
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if !c.windowUpdates.add(maxWindowExtra + int(c.dataSent.Load()-c.wuBase)) {
		return calm()
	}
	if c.windowUpdates.n == 1 {
		c.wuBase = c.dataSent.Load()
	}
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWin += inc
		if c.sendWin > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.sendCond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.sendWin += inc
	if st.sendWin > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	c.sendCond.Broadcast()
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if !c.control.add(maxControl) || f.NumSettings() > 64 {
		return calm()
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		return err
	}
	tableSize := int64(-1)
	c.mu.Lock()
	c.ackPending = true // no DATA until the ack is written (reserve)
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			tableSize = int64(s.Val)
		}
		return nil
	})
	if err != nil {
		c.ackPending = false
		c.sendCond.Broadcast()
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.lockWrite()
	if tableSize >= 0 {
		c.henc.SetMaxDynamicTableSize(uint32(min(tableSize, 4096)))
	}
	c.fr.WriteSettingsAck()
	c.unlockWriteLazy()
	// The handlers waiting for window go on only now: the ack leaves
	// before the DATA the new settings allow.
	c.mu.Lock()
	c.ackPending = false
	c.sendCond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	if st == nil {
		idle := f.StreamID > c.maxID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	c.closeStreamLocked(st, errStreamReset)
	c.mu.Unlock()
	if !c.resets.add(maxResets) {
		return calm()
	}
	return nil
}

// resetStream sends RST_STREAM for id and ends the stream.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.closeStreamLocked(st, errStreamReset)
	}
	c.mu.Unlock()
	c.lockWrite()
	c.fr.WriteRSTStream(id, code)
	c.unlockWrite()
}

// closeStreamLocked ends a stream abnormally: reads of its body and writes
// of its response fail with err; its unread body is returned to the
// connection window.
func (c *conn) closeStreamLocked(st *stream, err error) {
	if st.waitEnd {
		// Never dispatched (it waited for its end): no handler will free
		// its place.
		st.waitEnd = false
		if c.streams[st.id] == st {
			c.releaseLocked()
		}
	}
	st.reset = true
	if st.bodyErr == nil || st.bodyErr == eof {
		st.bodyErr = err
	}
	c.recvCredit += int64(len(st.buf) - st.off)
	st.buf, st.off = st.buf[:0], 0
	st.bodyCond.Broadcast()
	c.sendCond.Broadcast()
	c.removeLocked(st)
}

func (c *conn) removeLocked(st *stream) {
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
}

// reserve takes up to want bytes of send window for st, waiting (at most
// the write timeout) until there is some.
func (c *conn) reserve(st *stream, want int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var deadline time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		switch {
		case c.closed:
			return 0, errConnClosed
		case st.reset:
			return 0, errStreamReset
		}
		n := int64(min(want, c.peerMaxFrame))
		n = min(n, c.sendWin, st.sendWin)
		if n > 0 && !c.ackPending {
			c.sendWin -= n
			st.sendWin -= n
			return int(n), nil
		}
		if timer == nil {
			deadline = time.Now().Add(c.writeTimeout)
			timer = time.AfterFunc(c.writeTimeout, func() {
				c.mu.Lock()
				c.sendCond.Broadcast()
				c.mu.Unlock()
			})
		} else if !time.Now().Before(deadline) {
			return 0, errWriteTimeout
		}
		c.sendCond.Wait()
	}
}
