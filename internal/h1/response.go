package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// response is the server's ResponseWriter.
type response struct {
	ex          *exchange
	hdr         Header
	status      int
	wroteHeader bool // the final status is chosen
	committed   bool // the head is in wbuf (or sent)
	noBody      bool
	isHead      bool
	chunked     bool
	closeDelim  bool
	cl          int64 // declared Content-Length, or -1
	written     int64
	closeAfter  bool
	hijacked    bool
	aborted     bool
	err         error // sticky write error
}

var (
	_ ResponseWriter = (*response)(nil)
	_ Aborter        = (*response)(nil)
)

func (r *response) reset() {
	hdr := r.hdr
	hdr.Reset()
	*r = response{ex: r.ex, hdr: hdr, cl: -1}
}

func (r *response) Header() *Header { return &r.hdr }
func (r *response) Written() int64  { return r.written }
func (r *response) Status() int     { return r.status }

// Abort ends the response abnormally: nothing more is sent, a chunked body
// gets no last chunk, and the connection closes after the handler returns.
func (r *response) Abort() {
	r.aborted = true
	r.closeAfter = true
}

func (r *response) WriteHeader(status int) {
	if r.hijacked || r.aborted || r.wroteHeader {
		return
	}
	if status < 100 || status > 999 {
		status = 500
	}
	if status < 200 && status != 101 {
		r.writeInterim(status)
		return
	}
	r.wroteHeader = true
	r.status = status
	req := &r.ex.req
	r.isHead = string(req.Method) == "HEAD"
	r.noBody = r.isHead || status == 204 || status == 304 || status == 101
	r.cl = -1
	if status != 204 && status != 101 {
		if v := r.hdr.Get("Content-Length"); v != nil {
			r.cl = parseContentLength(v)
		}
	}
}

// writeInterim sends a 1xx interim response with the current fields.
func (r *response) writeInterim(status int) {
	ex := r.ex
	if ex.req.ProtoMinor == 0 || r.committed || len(ex.wbuf) > 0 {
		return
	}
	if status == 100 {
		if ex.continueSent {
			return
		}
		ex.continueSent = true
	}
	w := appendStatusLine(ex.wbuf[:0], status)
	w, _, _ = appendFields(w, &r.hdr, false)
	w = append(w, '\r', '\n')
	ex.wbuf = w
	r.flushBuf()
}

func (r *response) Write(p []byte) (int, error) {
	if r.hijacked {
		return 0, ErrHijacked
	}
	if r.aborted {
		return 0, ErrAborted
	}
	if r.err != nil {
		return 0, r.err
	}
	if !r.wroteHeader {
		r.WriteHeader(200)
	}
	if r.noBody {
		if r.isHead {
			return len(p), nil
		}
		return 0, ErrBodyNotAllowed
	}
	var tooLong error
	if r.cl >= 0 && r.written+int64(len(p)) > r.cl {
		p = p[:r.cl-r.written]
		tooLong = ErrContentLength
	}
	ex := r.ex
	if !r.committed {
		if len(ex.wbuf)+len(p) <= cap(ex.wbuf)-512 {
			ex.wbuf = append(ex.wbuf, p...)
			r.written += int64(len(p))
			return len(p), tooLong
		}
		r.commit(false)
	}
	if err := r.writeBody(p); err != nil {
		return 0, err
	}
	r.written += int64(len(p))
	return len(p), tooLong
}

// writeBody writes p with the response's framing; the head is committed.
func (r *response) writeBody(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	ex := r.ex
	if r.chunked {
		ex.wbuf = appendChunkHeader(ex.wbuf, len(p))
		if len(ex.wbuf)+len(p)+2 <= cap(ex.wbuf) {
			ex.wbuf = append(ex.wbuf, p...)
			ex.wbuf = append(ex.wbuf, '\r', '\n')
			return nil
		}
		if err := r.writev(p); err != nil {
			return err
		}
		ex.wbuf = append(ex.wbuf, '\r', '\n')
		return nil
	}
	if len(ex.wbuf)+len(p) <= cap(ex.wbuf) {
		ex.wbuf = append(ex.wbuf, p...)
		return nil
	}
	return r.writev(p)
}

// writev sends wbuf then p in one system call where possible.
func (r *response) writev(p []byte) error {
	ex := r.ex
	ex.iov[0], ex.iov[1] = ex.wbuf, p
	ex.bufs = ex.iov[:]
	_, err := ex.bufs.WriteTo(ex.c.c)
	ex.iov = [2][]byte{}
	ex.bufs = nil
	ex.wbuf = ex.wbuf[:0]
	if err != nil {
		r.err, r.closeAfter = err, true
	}
	return r.err
}

func (r *response) flushBuf() error {
	ex := r.ex
	if r.err != nil {
		return r.err
	}
	if len(ex.wbuf) == 0 {
		return nil
	}
	_, err := ex.c.c.Write(ex.wbuf)
	ex.wbuf = ex.wbuf[:0]
	if err != nil {
		r.err, r.closeAfter = err, true
	}
	return r.err
}

func (r *response) Flush() error {
	if r.hijacked {
		return ErrHijacked
	}
	if r.aborted {
		return ErrAborted
	}
	if !r.wroteHeader {
		r.WriteHeader(200)
	}
	if !r.committed {
		r.commit(false)
	}
	return r.flushBuf()
}

func (r *response) Hijack() (net.Conn, *bufio.Reader, error) {
	if r.hijacked {
		return nil, nil, ErrHijacked
	}
	if r.wroteHeader && r.status != 101 {
		return nil, nil, errors.New("h1: cannot hijack a connection after a non-101 response started")
	}
	if r.wroteHeader && !r.committed {
		r.commit(false)
	}
	if err := r.flushBuf(); err != nil {
		return nil, nil, err
	}
	ex := r.ex
	c := ex.c
	c.c.SetDeadline(time.Time{})
	c.rdl = time.Time{}
	r.hijacked = true
	c.hijacked = true
	return c.c, newHijackReader(ex.rbuf[ex.r:ex.w], c.c), nil
}

// finish completes the response after the handler returned.
func (r *response) finish() {
	if r.hijacked || r.aborted {
		return
	}
	if !r.wroteHeader {
		r.WriteHeader(200)
	}
	if !r.committed {
		r.commit(true)
	}
	if r.chunked {
		r.ex.wbuf = append(r.ex.wbuf, "0\r\n\r\n"...)
	}
	if r.cl >= 0 && r.written < r.cl && !r.noBody { // mutate:equivalent const with cl 0, written < cl cannot hold
		r.closeAfter = true // the client sees a truncated body and a close
	}
	r.flushBuf()
}

// commit puts the response head in front of the body bytes already in wbuf.
// final means the handler has returned, so that the length is known.
func (r *response) commit(final bool) {
	ex := r.ex
	s := ex.s
	req := &ex.req
	r.committed = true
	deferred := len(ex.wbuf)
	switch {
	case r.noBody:
	case r.cl >= 0:
	case final:
		r.cl = int64(deferred)
	case req.ProtoMinor == 1:
		r.chunked = true
	default:
		r.closeDelim = true
	}
	if req.Close || r.closeDelim || s.draining.Load() || s.closing.Load() {
		r.closeAfter = true
	}
	h := appendStatusLine(ex.hbuf[:0], r.status)
	h, hasDate, wantsClose := appendFields(h, &r.hdr, r.status == 101)
	if wantsClose {
		r.closeAfter = true
	}
	if !hasDate {
		h = append(h, "Date: "...)
		h = appendDate(h, req.ReceivedAt)
		h = append(h, '\r', '\n')
	}
	switch {
	case r.status == 101: // mutate:equivalent const a 101 matches none of the cases below either: noBody (no chunking) and cl stays -1 (WriteHeader reads no length for it)
	case r.chunked:
		h = append(h, "Transfer-Encoding: chunked\r\n"...)
	case r.cl >= 0 && (r.status != 304 || r.hdr.Has("Content-Length")):
		h = append(h, "Content-Length: "...)
		h = strconv.AppendInt(h, r.cl, 10)
		h = append(h, '\r', '\n')
	}
	switch {
	case r.status == 101:
	case r.closeAfter:
		h = append(h, "Connection: close\r\n"...)
	case req.ProtoMinor == 0:
		h = append(h, "Connection: keep-alive\r\n"...)
	}
	h = append(h, '\r', '\n')
	if r.chunked && deferred > 0 {
		h = appendChunkHeader(h, deferred)
	}
	ex.hbuf = h
	// Insert the head before the deferred body bytes.
	need := len(h) + deferred
	if r.chunked && deferred > 0 { // mutate:equivalent * need only sizes the buffer: the append below grows it when short
		need += 2 // mutate:equivalent * need only sizes the buffer: the append below grows it when short
	}
	if need > cap(ex.wbuf) { // mutate:equivalent boundary growing a buffer that is just large enough changes nothing but the allocation
		nb := make([]byte, len(ex.wbuf), need+writeBufSize)
		copy(nb, ex.wbuf)
		ex.wbuf = nb
	}
	w := ex.wbuf[:len(h)+deferred]
	copy(w[len(h):], w[:deferred])
	copy(w, h)
	if r.chunked && deferred > 0 {
		w = append(w, '\r', '\n')
	}
	ex.wbuf = w
}

// appendFields appends the handler's fields, leaving out those the server
// writes itself (framing, connection management) and any that are not
// well-formed. For a 101 response Connection and Upgrade pass through.
func appendFields(dst []byte, h *Header, upgrade bool) (out []byte, hasDate, wantsClose bool) {
	for i := range h.f {
		name, v := h.f[i].name, h.f[i].value
		if !validFieldName(name) || !validFieldValue(v) {
			continue
		}
		switch len(name) {
		case 4:
			if EqualFoldString(name, "date") {
				hasDate = true
			}
		case 7:
			if !upgrade && EqualFoldString(name, "upgrade") || EqualFoldString(name, "trailer") {
				continue
			}
		case 10:
			if EqualFoldString(name, "connection") {
				if hasToken(v, "close") {
					wantsClose = true
				}
				if !upgrade {
					continue
				}
			}
			if EqualFoldString(name, "keep-alive") {
				continue
			}
		case 14:
			if EqualFoldString(name, "content-length") {
				continue
			}
		case 16:
			if EqualFoldString(name, "proxy-connection") {
				continue
			}
		case 17:
			if EqualFoldString(name, "transfer-encoding") {
				continue
			}
		}
		dst = append(dst, name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, v...)
		dst = append(dst, '\r', '\n')
	}
	return dst, hasDate, wantsClose
}

func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

func validFieldValue(b []byte) bool {
	for _, c := range b {
		if !vchar[c] {
			return false
		}
	}
	return true
}

func statusText(code int) string {
	return http.StatusText(code)
}

func appendStatusLine(dst []byte, code int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(code)...)
	return append(dst, '\r', '\n')
}

type dateCache struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateCache]

// appendDate appends the IMF-fixdate of now, formatted once per second.
func appendDate(dst []byte, now time.Time) []byte {
	sec := now.Unix()
	d := cachedDate.Load()
	if d == nil || d.sec != sec {
		d = &dateCache{sec: sec, b: now.UTC().AppendFormat(make([]byte, 0, 29), http.TimeFormat)}
		cachedDate.Store(d) // mutate:equivalent delete-stmt the cache only saves formatting: without it each call formats the date
	}
	return append(dst, d.b...)
}
