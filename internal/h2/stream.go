package h2

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// ErrHijack is returned by Hijack on an HTTP/2 stream.
var ErrHijack = errors.New("hijacking is not possible over HTTP/2")

// stream is one request and its response.
type stream struct {
	c  *conn
	id uint32

	// Under c.mu.
	state      streamState
	reset      bool // RST_STREAM sent or received, or the connection ended
	sentEnd    bool // the response ended (END_STREAM sent)
	sendWin    int64
	recvWin    int64
	recvCredit int64
	buf        []byte // request body received and not yet read
	off        int
	bodyErr    error // io.EOF after the end of the body
	bodyCond   sync.Cond
	declared   int64 // Content-Length, -1 when none
	received   int64
	discard    bool // the body is not read (refused request)
	released   bool // its place among the concurrent streams is free
	// expectContinue: the client asked for "100 Continue" before its
	// body; the first Read sends it (handler goroutine only).
	expectContinue bool
	waitEnd        bool // dispatch waits for END_STREAM (declared length 0)

	rejectStatus int
	rejectReason string

	req  h1.Request
	body body
	rw   responseWriter
}

// streams are reused: a stream goes back once its handler has returned
// and it is out of its connection's map (stream.run), so that nothing
// refers to it any more.
var streams = sync.Pool{New: func() any { return new(stream) }}

func newStream(c *conn, id uint32) *stream {
	st := streams.Get().(*stream)
	reqHdr, rwHdr, buf := st.req.Header, st.rw.hdr, st.buf
	reqHdr.Reset()
	rwHdr.Reset()
	*st = stream{c: c, id: id, recvWin: streamWindow, declared: -1, buf: buf[:0]}
	st.req.Header, st.rw.hdr = reqHdr, rwHdr
	st.bodyCond.L = &c.mu
	st.body.st = st
	st.rw.st = st
	st.rw.cl = -1
	return st
}

func (st *stream) setBodyErrLocked(err error) {
	if st.bodyErr == nil {
		st.bodyErr = err
	}
	st.bodyCond.Broadcast()
}

// streamCreditLocked returns the stream window increment to send now.
func (st *stream) streamCreditLocked() uint32 {
	if st.recvCredit < streamWindow/4 {
		return 0
	}
	inc := st.recvCredit
	st.recvCredit = 0
	st.recvWin += inc
	return uint32(inc)
}

// run runs the handler (or answers the refusal), ends the response and
// frees the stream.
func (st *stream) run() {
	c := st.c
	defer c.s.handlers.Done()
	rw := &st.rw
	if st.rejectStatus != 0 {
		st.reject()
	} else {
		st.serve()
	}
	rw.finish()
	rw.release()
	c.mu.Lock()
	rst := false
	if !st.reset {
		if st.state == stateOpen && rw.sentEnd {
			// The response is complete before the request: the client
			// need not send the rest (RFC 9113 section 8.1).
			rst = true
			c.closeStreamLocked(st, errStreamReset)
		} else if rw.sentEnd {
			c.removeLocked(st)
		}
	}
	c.removeLocked(st) // out of the map in every case, before it is reused
	if !st.released {
		st.released = true
		c.releaseLocked()
	}
	c.mu.Unlock()
	if rst {
		c.lockWrite()
		c.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		c.unlockWrite()
	}
	if cap(st.buf) > 64<<10 {
		st.buf = nil // a large upload's buffer is not kept
	}
	streams.Put(st)
}

func (st *stream) serve() {
	defer func() {
		if v := recover(); v != nil {
			st.rw.Abort()
			if l := st.c.s.Logger; l != nil && v != h1.ErrAbortHandler {
				l.Error("handler panicked", "panic", fmt.Sprint(v), "remote", st.c.remote.String(),
					"stream", st.id, "stack", string(debug.Stack()))
			}
		}
	}()
	st.c.s.Handler.ServeH1(&st.rw, &st.req)
}

func (st *stream) reject() {
	s := st.c.s
	if s.OnReject != nil {
		s.OnReject(st.rejectStatus, st.rejectReason, st.c.remote)
	}
	ctype, b := "text/plain; charset=utf-8", []byte(http.StatusText(st.rejectStatus)+"\n")
	if s.ErrorBody != nil {
		ctype, b = s.ErrorBody(st.rejectStatus, st.rejectReason)
	}
	rw := &st.rw
	rw.hdr.SetString("Content-Type", ctype)
	rw.hdr.SetContentLength(int64(len(b)))
	rw.WriteHeader(st.rejectStatus)
	rw.Write(b)
}

// body is the request body as the handler reads it: what the reader
// goroutine received, with flow-control credit returned as it is read.
type body struct {
	st   *stream
	read int64
}

func (b *body) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	if st.expectContinue {
		// The first Read comes before any concurrent use of the
		// ResponseWriter (h1.ResponseWriter's contract).
		st.expectContinue = false
		if st.rw.status == 0 && !st.rw.headerSent {
			var none h1.Header
			c.writeHead(st, 100, &none, -1, false, nil)
		}
	}
	c.mu.Lock()
	if rt := c.s.ReadTimeout; rt > 0 && st.bodyErr == nil && time.Since(st.req.ReceivedAt) > rt {
		st.bodyErr = errBodyTimeout
		c.mu.Unlock()
		c.resetStream(st.id, http2.ErrCodeCancel) // returns the unread bytes to the window
		return 0, errBodyTimeout
	}
	var timer *time.Timer
	var deadline time.Time
	for st.off == len(st.buf) && st.bodyErr == nil {
		if timer == nil {
			now := time.Now()
			d := orDefault(c.s.BodyIdleTimeout, DefaultBodyIdleTimeout)
			if rt := c.s.ReadTimeout; rt > 0 {
				// The whole request within ReadTimeout of its head.
				d = max(min(d, st.req.ReceivedAt.Add(rt).Sub(now)), 0)
			}
			deadline = now.Add(d)
			timer = time.AfterFunc(d, func() {
				c.mu.Lock()
				st.bodyCond.Broadcast()
				c.mu.Unlock()
			})
		} else if !time.Now().Before(deadline) {
			st.bodyErr = errBodyTimeout
			break
		}
		st.bodyCond.Wait()
	}
	if timer != nil {
		timer.Stop()
	}
	if st.off == len(st.buf) {
		err := st.bodyErr
		c.mu.Unlock()
		if err == errBodyTimeout {
			c.resetStream(st.id, http2.ErrCodeCancel)
		}
		return 0, err
	}
	n := copy(p, st.buf[st.off:])
	st.off += n
	if st.off == len(st.buf) {
		st.buf, st.off = st.buf[:0], 0
	}
	c.recvCredit += int64(n)
	connInc := c.connCreditLocked()
	var streamInc uint32
	if st.state == stateOpen && !st.reset {
		st.recvCredit += int64(n)
		streamInc = st.streamCreditLocked()
	}
	c.mu.Unlock()
	c.sendWindowUpdates(connInc, st.id, streamInc)
	b.read += int64(n)
	if max := st.req.MaxBodyBytes; max > 0 && b.read > max {
		return n, h1.ErrBodyTooLarge
	}
	return n, nil
}

const respBufSize = 16 << 10

var respBufs = sync.Pool{New: func() any { b := make([]byte, 0, respBufSize); return &b }}

// responseWriter is the h1.ResponseWriter of a stream. The response is
// buffered up to respBufSize, so that a small response leaves as one
// HEADERS and one DATA frame, written together.
type responseWriter struct {
	st         *stream
	hdr        h1.Header
	status     int
	headerSent bool
	sentEnd    bool
	noBody     bool
	isHead     bool
	aborted    bool
	cl         int64 // declared Content-Length, or -1
	written    int64
	buf        *[]byte
	err        error
}

var (
	_ h1.ResponseWriter = (*responseWriter)(nil)
	_ h1.Aborter        = (*responseWriter)(nil)
)

func (rw *responseWriter) Header() *h1.Header { return &rw.hdr }
func (rw *responseWriter) Written() int64     { return rw.written }
func (rw *responseWriter) Status() int        { return rw.status }

func (rw *responseWriter) Hijack() (net.Conn, *bufio.Reader, error) { return nil, nil, ErrHijack }

// Abort ends the response abnormally: the stream is reset, so that the
// client cannot take a truncated body for a whole one.
func (rw *responseWriter) Abort() { rw.aborted = true }

func (rw *responseWriter) WriteHeader(status int) {
	if rw.status != 0 || rw.aborted {
		return
	}
	if status < 100 || status > 999 {
		status = 500
	}
	if status < 200 {
		if status != 101 {
			// Interim responses (100, 103) are sent at once.
			rw.err = rw.st.c.writeHead(rw.st, status, &rw.hdr, -1, false, nil)
			rw.hdr.Reset()
			return
		}
		status = 502 // 101 cannot happen over HTTP/2
	}
	rw.status = status
	rw.isHead = string(rw.st.req.Method) == "HEAD"
	rw.noBody = rw.isHead || status == 204 || status == 304
	if status != 204 {
		if v := rw.hdr.Get("Content-Length"); v != nil {
			rw.cl = parseLength(v)
		}
	}
}

func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.aborted {
		return 0, h1.ErrAborted
	}
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.status == 0 {
		rw.WriteHeader(200)
	}
	if rw.noBody {
		if rw.isHead {
			return len(p), nil
		}
		return 0, h1.ErrBodyNotAllowed
	}
	var tooLong error
	if rw.cl >= 0 && rw.written+int64(len(p)) > rw.cl {
		p = p[:rw.cl-rw.written]
		tooLong = h1.ErrContentLength
	}
	if rw.buf == nil {
		rw.buf = respBufs.Get().(*[]byte)
	}
	n := len(p)
	for len(p) > 0 {
		b := *rw.buf
		k := copy(b[len(b):cap(b)], p)
		*rw.buf = b[:len(b)+k]
		p = p[k:]
		if len(*rw.buf) == cap(*rw.buf) {
			if err := rw.send(false); err != nil {
				rw.err = err
				return n - len(p), err
			}
		}
	}
	rw.written += int64(n)
	return n, tooLong
}

func (rw *responseWriter) Flush() error {
	if rw.aborted {
		return h1.ErrAborted
	}
	if rw.err != nil {
		return rw.err
	}
	if rw.status == 0 {
		rw.WriteHeader(200)
	}
	rw.err = rw.send(false)
	return rw.err
}

// finish ends the response after the handler returned.
func (rw *responseWriter) finish() {
	st := rw.st
	st.c.mu.Lock()
	gone := st.reset
	st.c.mu.Unlock()
	if rw.aborted || rw.err != nil || rw.status == 0 && gone {
		rw.resetUnlessEnded()
		return
	}
	if rw.status == 0 {
		rw.WriteHeader(200)
	}
	if !rw.headerSent && rw.cl < 0 && !rw.noBody {
		rw.cl = rw.written
	}
	if rw.cl >= 0 && rw.written < rw.cl && !rw.noBody {
		// Shorter than declared: what there is goes out, and a reset
		// instead of END_STREAM, so that the client cannot take it for
		// the whole body.
		rw.send(false)
		rw.resetUnlessEnded()
		return
	}
	if err := rw.send(true); err != nil {
		rw.resetUnlessEnded()
	}
}

// resetUnlessEnded resets the stream unless its response ended or it was
// reset already.
func (rw *responseWriter) resetUnlessEnded() {
	c := rw.st.c
	c.mu.Lock()
	skip := rw.sentEnd || rw.st.reset || c.closed
	c.mu.Unlock()
	if !skip {
		c.resetStream(rw.st.id, http2.ErrCodeInternal)
	}
}

func (rw *responseWriter) release() {
	if rw.buf != nil {
		*rw.buf = (*rw.buf)[:0]
		respBufs.Put(rw.buf)
		rw.buf = nil
	}
}

// send writes the head when not yet sent and the buffered body; end ends
// the stream.
func (rw *responseWriter) send(end bool) error {
	st := rw.st
	c := st.c
	var data []byte
	if rw.buf != nil {
		data = *rw.buf
	}
	if !rw.headerSent {
		rw.headerSent = true
		n := 0
		if len(data) > 0 {
			n = c.tryReserve(st, len(data))
		}
		last := end && n == len(data)
		if last {
			// Marked before the frame leaves: the client may answer it
			// at once, and must find the stream closed.
			rw.markEnded()
		}
		if err := c.writeHead(st, rw.status, &rw.hdr, rw.cl, last, data[:n]); err != nil {
			return err
		}
		if last {
			rw.truncate()
			return nil
		}
		data = data[n:]
	}
	for len(data) > 0 || end {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = c.reserve(st, len(data)); err != nil {
				return err
			}
		}
		last := end && n == len(data)
		if last {
			rw.markEnded()
		}
		c.lockWrite()
		c.fr.WriteData(st.id, last, data[:n])
		c.dataSent.Add(1)
		err := c.unlockWriteYield()
		if err != nil {
			return err
		}
		data = data[n:]
		if last {
			break
		}
	}
	rw.truncate()
	return nil
}

func (rw *responseWriter) truncate() {
	if rw.buf != nil {
		*rw.buf = (*rw.buf)[:0]
	}
}

func (rw *responseWriter) markEnded() {
	rw.sentEnd = true
	c := rw.st.c
	c.mu.Lock()
	st := rw.st
	st.sentEnd = true
	if st.state == stateHalfClosedRemote {
		// Closed, both sides ended: the client may open the next stream
		// as soon as it reads this frame, so the place is free now (the
		// handler has returned or is returning).
		c.removeLocked(st)
		if !st.released {
			st.released = true
			c.releaseLocked()
		}
	}
	c.mu.Unlock()
}

// tryReserve takes what send window there is now, without waiting.
func (c *conn) tryReserve(st *stream, want int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || st.reset || c.ackPending {
		return 0
	}
	n := min(int64(min(want, c.peerMaxFrame)), c.sendWin, st.sendWin)
	if n <= 0 {
		return 0
	}
	c.sendWin -= n
	st.sendWin -= n
	return int(n)
}

// writeHead writes a response head (HEADERS and CONTINUATION frames) and,
// in the same flush, a first DATA frame with data (whose window is
// reserved). cl >= 0 adds a content-length field. endStream ends the
// stream: on the DATA frame when there is data, else on the HEADERS.
func (c *conn) writeHead(st *stream, status int, h *h1.Header, cl int64, endStream bool, data []byte) error {
	c.mu.Lock()
	gone := st.reset || c.closed
	c.mu.Unlock()
	if gone {
		return errStreamReset
	}
	final := status >= 200
	c.lockWrite()
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	hasDate := false
	h.Each(func(name, value []byte) bool {
		n, ok := c.lowerName(name)
		if !ok || !validValue(value) {
			return true
		}
		switch n {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length":
			return true
		case "date":
			hasDate = true
		}
		c.henc.WriteField(hpack.HeaderField{Name: n, Value: c.intern(value)})
		return true
	})
	if final && !hasDate {
		c.henc.WriteField(hpack.HeaderField{Name: "date", Value: dateNow()})
	}
	if cl >= 0 && final && status != 204 && status != 304 || status == 304 && cl >= 0 && h.Has("Content-Length") {
		c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(cl, 10)})
	}
	block := c.hbuf.Bytes()
	max := c.peerMaxFrameSize()
	first := block
	if len(first) > max {
		first = block[:max]
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: first, EndStream: endStream && len(data) == 0, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; len(rest) > 0; {
		k := min(len(rest), max)
		c.fr.WriteContinuation(st.id, k == len(rest), rest[:k])
		rest = rest[k:]
	}
	if len(data) > 0 {
		c.fr.WriteData(st.id, endStream, data)
		c.dataSent.Add(1)
	}
	return c.unlockWriteYield()
}

func (c *conn) peerMaxFrameSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerMaxFrame
}

// commonNames are the lower-case forms of frequent response field names,
// so that lowering them allocates nothing.
var commonNames = map[string]string{}

func init() {
	for _, n := range []string{"content-type", "content-length", "date", "server", "cache-control", "etag",
		"last-modified", "expires", "vary", "location", "set-cookie", "content-encoding", "accept-ranges",
		"age", "x-request-id", "x-correlation-id", "strict-transport-security", "access-control-allow-origin",
		"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "www-authenticate",
		"content-language", "content-disposition", "retry-after", "x-content-type-options", "x-frame-options",
		"link", "pragma", "alt-svc"} {
		commonNames[n] = n
	}
}

// maxInterned bounds the strings a connection keeps for reuse, names and
// values each.
const maxInterned = 64

// intern returns b as a string, the same one each time for the short
// values a connection repeats (content types, cache directives), which
// then cost no allocation. Called under wmu.
func (c *conn) intern(b []byte) string {
	if len(b) > 64 {
		return string(b)
	}
	if s, ok := c.values[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.values) < maxInterned {
		if c.values == nil {
			c.values = make(map[string]string)
		}
		c.values[s] = s
	}
	return s
}

// lowerName is lowerName for a connection: the names it sent before (as
// the handler wrote them) are not lowered nor allocated again. Called
// under wmu.
func (c *conn) lowerName(name []byte) (string, bool) {
	if s, ok := c.names[string(name)]; ok {
		return s, true
	}
	n, ok := lowerName(name)
	if ok && len(c.names) < maxInterned {
		if c.names == nil {
			c.names = make(map[string]string)
		}
		c.names[string(name)] = n
	}
	return n, ok
}

// lowerName returns name in lower case (HTTP/2 field names are), and false
// when it is not a valid field name.
func lowerName(name []byte) (string, bool) {
	if len(name) == 0 || len(name) > 256 {
		return "", false
	}
	var b [256]byte
	for i, ch := range name {
		if !tokenChar(ch) {
			return "", false
		}
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b[i] = ch
	}
	if s, ok := commonNames[string(b[:len(name)])]; ok {
		return s, true
	}
	return string(b[:len(name)]), true
}

func tokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var statusTexts [1000]string

func statusText(code int) string {
	if s := statusTexts[code]; s != "" {
		return s
	}
	return strconv.Itoa(code)
}

func init() {
	for i := 100; i < 600; i++ {
		statusTexts[i] = strconv.Itoa(i)
	}
}

type dateCache struct {
	sec int64
	s   string
}

var cachedDate atomic.Pointer[dateCache]

func dateNow() string {
	now := time.Now()
	d := cachedDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateCache{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
		cachedDate.Store(d)
	}
	return d.s
}
