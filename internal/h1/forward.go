package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Outgoing is the request Forward sends upstream.
type Outgoing struct {
	Method, Path, Query []byte // Path and Query already rewritten by the caller (escaped form); Query nil = no '?'
	Host                []byte // Host header to send (the Upstream's Addr when empty)
	// Header holds the end-to-end fields to send. Forward itself leaves out
	// the hop-by-hop ones (Connection and the fields it names, Keep-Alive,
	// Proxy-Connection, TE, Transfer-Encoding, Trailer, Upgrade), Host and
	// Content-Length, and writes the framing itself. Malformed fields are
	// left out too.
	Header        *Header
	Body          io.Reader // nil = no body
	ContentLength int64     // -1 = unknown length → chunked upstream (or a length, when the body is short)
	Upgrade       []byte    // non-nil: send Connection: upgrade and Upgrade: <this>
	// ModifyResponse, when set, is called with the upstream's status and the
	// response fields (already copied into w.Header(), hop-by-hop removed)
	// just before WriteHeader: for instance to replace a back end's own
	// correlation id.
	ModifyResponse func(status int, h *Header)
}

// Result describes a forwarded exchange.
type Result struct {
	Status   int   // the upstream's status (0 when none was received)
	BytesIn  int64 // response body bytes received from the upstream (and written to w); upgraded: upstream → client
	BytesOut int64 // request body bytes sent to the upstream; upgraded: client → upstream
	Upgraded bool  // a 101 was passed through and the connections spliced
	Reused   bool  // the exchange used a pooled connection
	Sent     bool  // request bytes were written to the upstream (some may have arrived)
	Received bool  // response bytes arrived from the upstream
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

var aLongTimeAgo = time.Unix(1, 0) // mutate:equivalent const any instant long past cuts a wait at once

// Forward sends out to u and streams the response to w: status, end-to-end
// fields (hop-by-hop removed), body with the framing chosen by w, flushing
// whenever the upstream has no more bytes buffered (so server-sent events and
// chunks reach the client as produced). For an upgrade request answered with
// 101 it writes the 101 head, hijacks w and splices both connections until
// either side closes. A pooled connection found closed by the upstream is
// retried once on another connection when the whole body is still at hand
// (no body, or a body that fitted in the first read).
//
// The request body is written while the response is read, so an upstream
// may answer early. Errors are *ForwardError.
func Forward(ctx context.Context, u *Upstream, w ResponseWriter, out *Outgoing) (Result, error) {
	var a Attempt
	if err := a.Begin(out); err != nil {
		return Result{}, err
	}
	defer a.End()
	return a.Try(ctx, u, w)
}

// Attempt is one request on its way upstream, which may be tried on several
// Upstreams in turn (a remote host's addresses): Begin reads the first part
// of the body (up to 32 KiB) into memory, Try forwards to one Upstream,
// Replayable tells whether another Try can still send the whole request, End
// releases the memory. An Attempt is used by one goroutine; the zero value
// is ready for Begin.
type Attempt struct {
	out      *Outgoing
	first    []byte
	bodyEOF  bool
	consumed bool // the body reader was read past first
	bufp     *[]byte
}

// Begin prepares out for forwarding. Its error is a *ForwardError of kind
// ErrClient (the client's body could not be read).
func (a *Attempt) Begin(out *Outgoing) error {
	*a = Attempt{out: out, bodyEOF: true}
	if out.Body == nil || out.ContentLength == 0 {
		return nil
	}
	a.bufp = copyBufPool.Get().(*[]byte)
	buf := *a.bufp
	if out.ContentLength > 0 { // mutate:equivalent boundary a length of 0 returned above
		// The client promised these bytes: wait for them.
		buf = buf[:min(out.ContentLength, int64(len(buf)))]
		n, err := io.ReadFull(out.Body, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return &ForwardError{Kind: ErrClient, Err: fmt.Errorf("reading request body: %w", err)}
		}
		a.first = buf[:n]
		a.bodyEOF = out.ContentLength == int64(n)
		return nil
	}
	// Unknown length: take what is at hand without waiting for more, so
	// that a streamed upload is not held back.
	n := 0
	a.bodyEOF = false
	for n < len(buf) {
		m, err := out.Body.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			a.bodyEOF = true
			break
		}
		if err != nil {
			return &ForwardError{Kind: ErrClient, Err: fmt.Errorf("reading request body: %w", err)}
		}
		if m == 0 || !moreAtHand(out.Body) {
			break
		}
	}
	a.first = buf[:n]
	return nil
}

// End releases what Begin took. The Attempt may be reused after it.
func (a *Attempt) End() {
	if a.bufp != nil {
		copyBufPool.Put(a.bufp) // mutate:equivalent delete-stmt giving the buffer back to the pool only saves an allocation
	}
	*a = Attempt{}
}

// Replayable reports whether another Try can send the whole request: the
// body has not been read past what Begin kept in memory.
func (a *Attempt) Replayable() bool { return !a.consumed }

// Try forwards the request to u (see Forward). Result.Sent and
// Result.Received tell the caller whether a failed Try may be repeated on
// another upstream.
func (a *Attempt) Try(ctx context.Context, u *Upstream, w ResponseWriter) (Result, error) {
	out := a.out
	if u.MaxSentBytes > 0 && out.Body != nil && (out.ContentLength > u.MaxSentBytes || int64(len(a.first)) > u.MaxSentBytes) {
		return Result{}, &ForwardError{Kind: ErrClient, Err: ErrMaxSent}
	}
	if u.HTTP10 && out.Body != nil && !a.bodyEOF && out.ContentLength < 0 { // mutate:equivalent boundary,const a length of 0 has bodyEOF (Begin takes nothing)
		return Result{}, &ForwardError{Kind: ErrClient, Err: ErrLengthRequired}
	}
	if a.consumed {
		return Result{}, &ForwardError{Kind: ErrClient, Err: errors.New("request body already sent")}
	}
	for attempt := 0; ; attempt++ {
		pc, err := u.get(ctx)
		if err != nil {
			var fe *ForwardError
			if !errors.As(err, &fe) {
				fe = &ForwardError{Kind: ErrConnect, Err: err} // mutate:equivalent delete-stmt unreachable: every error of get is a *ForwardError (dialError, ctxError, noConn)
			}
			return Result{}, fe
		}
		res, retry, err := pc.roundTrip(ctx, w, a)
		if retry && attempt == 0 {
			continue // once only: the next connection may be a stale pooled one too
		}
		if err != nil {
			return res, err
		}
		return res, nil
	}
}

// idempotent reports whether the request may be sent twice: its method is
// idempotent (RFC 9110, 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or
// it carries an Idempotency-Key (or X-Idempotency-Key) field, as net/http
// decides which requests to retry.
func (o *Outgoing) idempotent() bool {
	switch string(o.Method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return o.Header != nil && (o.Header.Has("Idempotency-Key") || o.Header.Has("X-Idempotency-Key"))
}

// errStale marks a reused connection that the upstream had closed.
var errStale = errors.New("pooled connection closed by the upstream")

// roundTrip does one exchange on pc. It consumes pc (pools or closes it).
// retry is true when pc was a stale pooled connection and nothing is lost by
// trying again; err is then the failure to report if no retry is made.
func (pc *upConn) roundTrip(ctx context.Context, w ResponseWriter, a *Attempt) (res Result, retry bool, err error) {
	u := pc.u
	out, first, bodyEOF := a.out, a.first, a.bodyEOF
	res.Reused = pc.reused
	pc.clientFailed.Store(false)
	keep := true
	// The transaction deadline bounds everything on this connection; the
	// active timeout bounds each wait for upstream bytes within it.
	var txDeadline time.Time
	if u.TransactionTimeout > 0 {
		txDeadline = time.Now().Add(u.TransactionTimeout)
	}
	pc.txDeadline = txDeadline // before the body goroutine reads it
	pc.cutW, pc.cutR = false, false
	if u.TransactionTimeout > 0 || pc.deadlined { // mutate:equivalent boundary at 0 txDeadline is zero and, deadlined false, no deadline is set: clearing them changes nothing
		pc.c.SetDeadline(txDeadline)
	}
	// Deadlines set during this exchange (here, or by armHead and armWrite
	// in the body goroutine) are cleared at the start of the next one.
	pc.deadlined = u.TransactionTimeout > 0 || u.ActiveTimeout > 0 || u.ResponseHeaderTimeout > 0 // mutate:equivalent boundary,const deadlined true for no timeout only clears deadlines that are not set; a timeout of 1 ns fails this exchange (its first wait), so its connection carries no next one
	armRead := func() {
		if u.ActiveTimeout > 0 { // mutate:equivalent const a 1 ns ActiveTimeout ends the head's read first (armHead, before any body read is armed): the exchange fails either way
			d := time.Now().Add(u.ActiveTimeout)
			if !txDeadline.IsZero() && txDeadline.Before(d) {
				d = txDeadline
			}
			pc.setRead(d)
		}
	}
	defer func() {
		if keep {
			u.put(pc)
		} else {
			pc.close()
		}
	}()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, pc.cutAll)
		defer func() {
			if !stop() {
				keep = false
			}
		}()
	}
	cl := out.ContentLength
	switch {
	case out.Body == nil:
		cl = 0
	case bodyEOF:
		cl = int64(len(first))
	}
	if perr := pc.writeHead(out, cl); perr != nil {
		keep = false // mutate:equivalent delete-stmt writeHead refuses before it writes anything: the connection is clean either way
		return res, false, perr
	}
	res.Sent = true
	if cl != 0 && len(first) > 0 {
		if cl < 0 { // mutate:equivalent boundary,const cl is not 0 here (inside cl != 0): < 0, <= 0 and < 1 agree
			pc.bw.Write(appendChunkHeader(pc.scratch[:0], len(first)))
		}
		pc.bw.Write(first)
		if cl < 0 { // mutate:equivalent boundary,const cl is not 0 here (inside cl != 0): < 0, <= 0 and < 1 agree
			pc.bw.WriteString("\r\n")
		}
		res.BytesOut = int64(len(first))
	}
	if bodyEOF && cl < 0 {
		pc.bw.WriteString("0\r\n\r\n") // mutate:equivalent delete-stmt unreachable: with bodyEOF, cl is len(first) (set above)
	}
	if err := pc.bw.Flush(); err != nil {
		keep = false
		// The error goes with the retry: it is the result when the
		// retry is not made (this was the retry already).
		return res, pc.reused && bodyEOF, pc.upErr(ctx, ErrConnect, fmt.Errorf("writing request: %w", err))
	}
	// The rest of a long body goes in its own goroutine while the response
	// is read here.
	var wdone chan bodyResult
	if !bodyEOF {
		a.consumed = true
		pc.bodySent, pc.headDone = false, false
		wdone = make(chan bodyResult, 1)
		go func(ch chan<- bodyResult, body io.Reader, cl, sent int64) {
			ch <- pc.writeRest(body, cl, sent)
		}(wdone, out.Body, cl, int64(len(first)))
	}
	// waitBody takes the body goroutine's result once the response is
	// read, so that an upstream that answered as soon as it had the whole
	// body leaves a connection that can be pooled: at once if the result
	// is there; by waiting for it if the goroutine has sent everything
	// (bodySent: it is returning); else for at most bodyReportWait, the
	// moment between the last write reaching the upstream and the
	// goroutine noting it. A goroutine still sending after that means the
	// upstream answered before taking the whole body: no result.
	waitBody := func() (bodyResult, bool) {
		if wdone == nil {
			return bodyResult{}, true
		}
		take := func(r bodyResult) (bodyResult, bool) {
			wdone = nil
			res.BytesOut += r.n
			return r, true
		}
		select {
		case r := <-wdone:
			return take(r)
		default:
		}
		pc.dmu.Lock()
		sent := pc.bodySent
		pc.dmu.Unlock()
		if sent {
			return take(<-wdone)
		}
		t := time.NewTimer(bodyReportWait)
		defer t.Stop()
		select {
		case r := <-wdone:
			return take(r)
		case <-t.C:
			return bodyResult{}, false
		}
	}
	finishBody := func() bodyResult {
		if wdone == nil {
			return bodyResult{}
		}
		pc.cutAll()
		keep = false
		r := <-wdone
		wdone = nil
		res.BytesOut += r.n
		return r
	}
	defer finishBody()

	// Response head, skipping interim responses. The wait for it is timed
	// (ActiveTimeout, else ResponseHeaderTimeout) from the end of the
	// request: while the body goroutine still sends a long body, a slow
	// client must not make the upstream look slow; the goroutine arms the
	// head's deadline when the body is sent (see headArmed).
	headTimeout := u.ResponseHeaderTimeout > 0 && u.ActiveTimeout <= 0 // mutate:equivalent bool,const with an ActiveTimeout armRead times each body read anyway, a 1 ns timeout ends the head's read first, and clearing no deadline changes nothing
	var rh respHead
	for interim := 0; ; interim++ {
		if wdone == nil {
			pc.armHead()
		} else {
			pc.dmu.Lock()
			if pc.bodySent {
				pc.armHead()
			}
			pc.dmu.Unlock()
		}
		rh, err = pc.readHead(string(out.Method) == "HEAD")
		if len(pc.scratch) > 0 {
			res.Received = true
		}
		if err != nil {
			keep = false
			if pc.clientFailed.Load() {
				// The body goroutine gave up on the client's body and
				// cut this read short: the client's fault, not the
				// upstream's, whatever the read returned.
				return res, false, finishBody().forwardErr(ctx, pc)
			}
			if br := finishBodyIfClientErr(wdone, finishBody); br != nil {
				return res, false, br
			}
			// The whole request went out: the upstream may have acted on it
			// before closing. Only a request that may be sent twice is.
			return res, errors.Is(err, errStale) && pc.reused && bodyEOF && out.idempotent(), pc.upErr(ctx, ErrUpstreamProtocol, err)
		}
		if rh.status >= 200 || rh.status == 101 {
			break
		}
		if interim >= 8 {
			keep = false
			return res, false, pc.upErr(ctx, ErrUpstreamProtocol, errors.New("too many interim responses"))
		}
	}
	if wdone != nil {
		pc.dmu.Lock()
		pc.headDone = true
		pc.dmu.Unlock()
	}
	if headTimeout {
		pc.setRead(txDeadline)
	}
	res.Status = rh.status
	if rh.status == 101 {
		keep = false
		if out.Upgrade == nil {
			return res, false, pc.upErr(ctx, ErrUpstreamProtocol, errors.New("101 switching protocols without an upgrade request"))
		}
		if br := finishBody(); br.err != nil {
			return res, false, br.forwardErr(ctx, pc)
		}
		return pc.splice(ctx, w, &rh, res)
	}
	if rh.close || u.MaxIdle <= 0 || u.HTTP10 || rh.framing == frameClose { // mutate:equivalent boundary with MaxIdle 0 a connection kept here is closed by put (MaxIdle <= 0 there)
		keep = false
	}
	if u.MaxReceivedBytes > 0 && rh.cl > u.MaxReceivedBytes && rh.framing == frameLength {
		keep = false
		return res, false, &ForwardError{Kind: ErrUpstreamProtocol, Err: fmt.Errorf("%w (content-length %d)", ErrMaxReceived, rh.cl)}
	}

	// Response head to the client.
	wh := w.Header()
	copyEndToEnd(wh, &pc.hdr, false)
	if rh.cl >= 0 && rh.status != 204 {
		wh.SetContentLength(rh.cl)
	}
	if out.ModifyResponse != nil {
		out.ModifyResponse(rh.status, wh)
	}
	w.WriteHeader(rh.status)
	abort := func(kind ErrKind, err error) (Result, bool, error) {
		keep = false
		if a, ok := w.(Aborter); ok {
			a.Abort()
		}
		fe := pc.upErr(ctx, kind, err)
		fe.Responded = true
		return res, false, fe
	}

	// Body.
	var bufp *[]byte
	defer func() {
		if bufp != nil {
			copyBufPool.Put(bufp) // mutate:equivalent delete-stmt a buffer not given back to the pool is only an allocation more
		}
	}()
	getBuf := func() []byte {
		if bufp == nil {
			bufp = copyBufPool.Get().(*[]byte)
		}
		return *bufp
	}
	switch rh.framing {
	case frameLength:
		for remaining := rh.cl; remaining > 0; {
			var chunk []byte
			peeked := false
			if n := pc.br.Buffered(); n > 0 { // mutate:equivalent const with one byte buffered br.Read below returns it: the same bytes pass
				chunk, _ = pc.br.Peek(int(min(int64(n), remaining)))
				peeked = true
			} else {
				buf := getBuf()
				armRead()
				n, err := pc.br.Read(buf[:min(int64(len(buf)), remaining)])
				if n == 0 && err != nil {
					if errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					return abort(pc.readErrKind(), fmt.Errorf("reading response body: %w", err))
				}
				chunk = buf[:n]
			}
			if _, err := w.Write(chunk); err != nil {
				return abort(ErrClient, fmt.Errorf("writing response body: %w", err))
			}
			if peeked {
				pc.br.Discard(len(chunk))
			}
			remaining -= int64(len(chunk))
			res.BytesIn += int64(len(chunk))
			if remaining > 0 && pc.br.Buffered() == 0 {
				if err := w.Flush(); err != nil {
					return abort(ErrClient, fmt.Errorf("flushing response: %w", err))
				}
			}
		}
	case frameChunked, frameClose:
		var src io.Reader = pc.br
		if rh.framing == frameChunked {
			pc.cr.reset(pc.br, u.maxHead())
			src = &pc.cr
		}
		buf := getBuf()
		for {
			if pc.br.Buffered() == 0 {
				armRead()
			}
			n, err := src.Read(buf)
			if n > 0 { // mutate:equivalent boundary with n 0 nothing is counted or written (a Write of no bytes sends nothing, no chunk either)
				if u.MaxReceivedBytes > 0 && res.BytesIn+int64(n) > u.MaxReceivedBytes {
					return abort(ErrUpstreamProtocol, fmt.Errorf("%w (more than %d bytes)", ErrMaxReceived, u.MaxReceivedBytes))
				}
				if _, werr := w.Write(buf[:n]); werr != nil {
					return abort(ErrClient, fmt.Errorf("writing response body: %w", werr))
				}
				res.BytesIn += int64(n)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return abort(pc.readErrKind(), fmt.Errorf("reading response body: %w", err))
			}
			if pc.br.Buffered() == 0 {
				if err := w.Flush(); err != nil {
					return abort(ErrClient, fmt.Errorf("flushing response: %w", err))
				}
			}
		}
	}
	if r, ok := waitBody(); !ok {
		// The upstream answered before taking the whole body: the
		// connection cannot carry another request.
		keep = false // mutate:equivalent delete-stmt finishBody, deferred after the pooling and so run before it, sets keep = false while the body goroutine runs
	} else if r.err != nil {
		keep = false
		if r.clientErr {
			// The response is complete; the client's body was bad.
			return res, false, r.forwardErr(ctx, pc)
		}
	}
	if keep && pc.br.Buffered() > 0 {
		// Bytes beyond the response's framing (a second response, a body
		// on 204/304/HEAD, bytes after the last chunk): never let the next
		// request read them as its answer.
		keep = false
		u.noteUnsolicited()
	}
	return res, false, nil
}

// bodyReportWait bounds how long a complete response waits for the body
// goroutine to report (see waitBody).
const bodyReportWait = 5 * time.Millisecond

func finishBodyIfClientErr(wdone chan bodyResult, finish func() bodyResult) *ForwardError {
	if wdone == nil {
		return nil // mutate:equivalent delete-stmt with wdone nil the select below takes its default and returns nil too
	}
	select {
	case r := <-wdone:
		// Put it back for finish to account.
		wdone <- r
		if r.clientErr {
			return &ForwardError{Kind: ErrClient, Err: r.err}
		}
	default:
	}
	return nil
}

type bodyResult struct {
	n         int64
	err       error
	clientErr bool // reading the client's body failed (vs writing upstream)
}

func (r bodyResult) forwardErr(ctx context.Context, pc *upConn) *ForwardError {
	if r.clientErr {
		return &ForwardError{Kind: ErrClient, Err: r.err}
	}
	return pc.upErr(ctx, ErrConnect, r.err)
}

// writeRest copies the rest of a long body upstream (cl bytes in all, or
// chunked when cl < 0), sent already bytes already written.
func (pc *upConn) writeRest(body io.Reader, cl, sent int64) bodyResult {
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	buf := *bufp
	var r bodyResult
	var hdr [20]byte
	for {
		want := buf
		if cl >= 0 { // mutate:equivalent boundary,const cl is never 0 in writeRest (a body of length 0 ends in Begin: bodyEOF): the comparisons with 0 and 1 agree
			left := cl - sent - r.n
			if left == 0 {
				break
			}
			want = buf[:min(int64(len(buf)), left)]
		}
		n, err := body.Read(want)
		if n > 0 && cl < 0 && pc.u.MaxSentBytes > 0 && sent+r.n+int64(n) > pc.u.MaxSentBytes {
			r.err, r.clientErr = fmt.Errorf("request body: %w", ErrMaxSent), true
			pc.clientGaveUp()
			return r
		}
		if n > 0 {
			var werr error
			if cl < 0 { // mutate:equivalent boundary,const cl is never 0 in writeRest (a body of length 0 ends in Begin: bodyEOF): the comparisons with 0 and 1 agree
				pc.bw.Write(appendChunkHeader(hdr[:0], n))
			}
			pc.bw.Write(want[:n])
			if cl < 0 { // mutate:equivalent boundary,const cl is never 0 in writeRest (a body of length 0 ends in Begin: bodyEOF): the comparisons with 0 and 1 agree
				pc.bw.WriteString("\r\n")
			}
			pc.armWrite()
			werr = pc.bw.Flush()
			if werr != nil {
				r.err = fmt.Errorf("writing request body: %w", werr)
				pc.upstreamStalled(werr)
				return r
			}
			r.n += int64(n)
		}
		if errors.Is(err, io.EOF) {
			if cl >= 0 { // mutate:equivalent boundary,const cl is never 0 in writeRest (a body of length 0 ends in Begin: bodyEOF): the comparisons with 0 and 1 agree
				r.err, r.clientErr = fmt.Errorf("reading request body: %w", io.ErrUnexpectedEOF), true
				pc.clientGaveUp()
				return r
			}
			break
		}
		if err != nil {
			r.err, r.clientErr = fmt.Errorf("reading request body: %w", err), true
			pc.clientGaveUp()
			return r
		}
	}
	if cl < 0 { // mutate:equivalent boundary,const cl is never 0 in writeRest (a body of length 0 ends in Begin: bodyEOF): the comparisons with 0 and 1 agree
		pc.bw.WriteString("0\r\n\r\n")
	}
	pc.armWrite()
	if err := pc.bw.Flush(); err != nil {
		r.err = fmt.Errorf("writing request body: %w", err)
		pc.upstreamStalled(err)
		return r
	}
	// The request is sent: from now on the upstream is timed.
	pc.dmu.Lock()
	pc.bodySent = true
	if !pc.headDone {
		pc.armHead()
	}
	pc.dmu.Unlock()
	return r
}

// armHead sets the read deadline for the response head: ActiveTimeout,
// else ResponseHeaderTimeout, from now, within the transaction's deadline.
func (pc *upConn) armHead() {
	u := pc.u
	var d time.Time
	switch {
	case u.ActiveTimeout > 0:
		d = time.Now().Add(u.ActiveTimeout)
	case u.ResponseHeaderTimeout > 0:
		d = time.Now().Add(u.ResponseHeaderTimeout)
	default:
		return
	}
	if !pc.txDeadline.IsZero() && pc.txDeadline.Before(d) {
		d = pc.txDeadline
	}
	pc.setRead(d)
}

// armWrite bounds the next write of the request body: an upstream that
// takes no bytes for ActiveTimeout has stalled.
func (pc *upConn) armWrite() {
	u := pc.u
	if u.ActiveTimeout <= 0 {
		return
	}
	d := time.Now().Add(u.ActiveTimeout)
	if !pc.txDeadline.IsZero() && pc.txDeadline.Before(d) {
		d = pc.txDeadline // mutate:equivalent delete-stmt the reads for the response are bounded by the transaction deadline too (set at the start; armHead and armRead cap at it) and their end cuts the writes (finishBody): a write deadline past it ends nothing later
	}
	pc.setWrite(d)
}

// upstreamStalled ends the wait for the response when the upstream stopped
// taking the body for ActiveTimeout (the reader then fails with a timeout,
// the upstream's fault). Other write errors leave the reader alone: an
// upstream that answered early and closed still has its answer read.
func (pc *upConn) upstreamStalled(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !pc.clientFailed.Load() {
		pc.cutRead(time.Now())
	}
}

// clientGaveUp stops the wait for the response after the client's body
// failed. The flag is set before the read is cut short, so the reader that
// sees its read fail finds it and blames the client, never the upstream.
func (pc *upConn) clientGaveUp() {
	pc.clientFailed.Store(true)
	pc.cutRead(aLongTimeAgo)
}

// readErrKind is the kind of a failed read from the upstream: the client's
// when the body goroutine cut the read short, else the upstream's.
func (pc *upConn) readErrKind() ErrKind {
	if pc.clientFailed.Load() {
		return ErrClient
	}
	return ErrUpstreamProtocol
}

func (pc *upConn) upErr(ctx context.Context, kind ErrKind, err error) *ForwardError {
	if ctx.Err() != nil {
		return ctxError(ctx, err)
	}
	var ne net.Error
	if kind != ErrClient && errors.As(err, &ne) && ne.Timeout() {
		kind = ErrTimeout
	}
	return &ForwardError{Kind: kind, Err: err}
}

// writeHead writes the request line and fields to pc.bw (not flushed).
func (pc *upConn) writeHead(out *Outgoing, cl int64) *ForwardError {
	bw := pc.bw
	if !validFieldName(out.Method) {
		return &ForwardError{Kind: ErrClient, Err: errors.New("invalid method")}
	}
	for _, c := range out.Path {
		if !tgtchar[c] {
			return &ForwardError{Kind: ErrClient, Err: errors.New("invalid byte in path")}
		}
	}
	for _, c := range out.Query {
		if !tgtchar[c] {
			return &ForwardError{Kind: ErrClient, Err: errors.New("invalid byte in query")}
		}
	}
	host := out.Host
	if len(host) == 0 {
		host = bytesOf(pc.u.Addr)
	}
	if !validHost(host) {
		return &ForwardError{Kind: ErrClient, Err: errors.New("invalid host")}
	}
	bw.Write(out.Method)
	bw.WriteByte(' ')
	if len(out.Path) == 0 {
		bw.WriteByte('/')
	}
	bw.Write(out.Path)
	if out.Query != nil {
		bw.WriteByte('?')
		bw.Write(out.Query)
	}
	if pc.u.HTTP10 {
		bw.WriteString(" HTTP/1.0\r\nHost: ")
	} else {
		bw.WriteString(" HTTP/1.1\r\nHost: ")
	}
	bw.Write(host)
	bw.WriteString("\r\n")
	if out.Header != nil {
		writeEndToEnd(bw, out.Header)
	}
	switch {
	case cl > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(pc.scratch[:0], cl, 10))
		bw.WriteString("\r\n")
	case cl < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case needsZeroLength(out.Method):
		bw.WriteString("Content-Length: 0\r\n")
	}
	switch {
	case out.Upgrade != nil:
		bw.WriteString("Connection: upgrade\r\nUpgrade: ")
		if validFieldValue(out.Upgrade) {
			bw.Write(out.Upgrade)
		}
		bw.WriteString("\r\n")
	case pc.u.MaxIdle <= 0 || pc.u.HTTP10:
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	return nil
}

func needsZeroLength(m []byte) bool {
	s := string(m)
	return s == "POST" || s == "PUT" || s == "PATCH"
}

// hopByHop reports whether name is a hop-by-hop field (or one Forward writes
// itself).
func hopByHop(name []byte, upgrade bool) bool {
	switch len(name) {
	case 2:
		return EqualFoldString(name, "te")
	case 4:
		return EqualFoldString(name, "host")
	case 7:
		return EqualFoldString(name, "trailer") || !upgrade && EqualFoldString(name, "upgrade")
	case 10:
		return EqualFoldString(name, "connection") || EqualFoldString(name, "keep-alive")
	case 14:
		return EqualFoldString(name, "content-length")
	case 16:
		return EqualFoldString(name, "proxy-connection")
	case 17:
		return EqualFoldString(name, "transfer-encoding")
	}
	return false
}

// connectionNamed reports whether name is listed in a Connection field of h.
func connectionNamed(h *Header, name []byte) bool {
	for i := range h.f {
		if len(h.f[i].name) == 10 && EqualFoldString(h.f[i].name, "connection") {
			v := h.f[i].value
			for more := true; more; {
				var e []byte
				e, v, more = nextElem(v)
				if equalFold(e, name) {
					return true
				}
			}
		}
	}
	return false
}

func hasConnectionField(h *Header) bool {
	for i := range h.f {
		if len(h.f[i].name) == 10 && EqualFoldString(h.f[i].name, "connection") { // mutate:equivalent bool true for more fields only spares less: connectionNamed still finds only what a Connection field names, and RemoveConnectionNamed's loops keep every field when none is a Connection field
			return true
		}
	}
	return false
}

func writeEndToEnd(bw *bufio.Writer, h *Header) {
	named := hasConnectionField(h)
	for i := range h.f {
		name, v := h.f[i].name, h.f[i].value
		if hopByHop(name, false) || named && connectionNamed(h, name) ||
			!validFieldName(name) || !validFieldValue(v) {
			continue
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(v)
		bw.WriteString("\r\n")
	}
}

// copyEndToEnd copies the end-to-end fields of src into dst (copying bytes).
func copyEndToEnd(dst, src *Header, upgrade bool) {
	named := hasConnectionField(src)
	for i := range src.f {
		name := src.f[i].name
		if hopByHop(name, upgrade) || named && connectionNamed(src, name) && !(upgrade && EqualFoldString(name, "upgrade")) {
			continue
		}
		dst.AddCopy(name, src.f[i].value)
	}
}

const (
	frameNone uint8 = iota
	frameLength
	frameChunked
	frameClose
)

type respHead struct {
	status  int
	framing uint8
	cl      int64 // Content-Length when present, else -1
	close   bool
}

func (u *Upstream) maxHead() int {
	if u.MaxResponseHeaderBytes > 0 {
		return u.MaxResponseHeaderBytes
	}
	return DefaultMaxResponseHeaderBytes
}

// readHead reads one response head into pc.scratch and pc.hdr.
func (pc *upConn) readHead(isHead bool) (respHead, error) {
	limit := pc.u.maxHead()
	pc.scratch = pc.scratch[:0]
	pc.hdr.Reset()
	statusEnd := -1
	for {
		lineStart := len(pc.scratch)
		for {
			b, err := pc.br.ReadSlice('\n')
			pc.scratch = append(pc.scratch, b...)
			if len(pc.scratch) > limit {
				return respHead{}, protoErr(502, "response head too large")
			}
			if err == nil {
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if len(pc.scratch) == 0 && (errors.Is(err, io.EOF) || isReset(err)) {
				return respHead{}, fmt.Errorf("%w: %w", errStale, err)
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return respHead{}, fmt.Errorf("reading response head: %w", err)
		}
		line := pc.scratch[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return respHead{}, protoErr(502, "bare lf in response head")
		}
		if statusEnd < 0 { // mutate:equivalent boundary,const statusEnd is -1 or the end of a line of at least 2 bytes: < 0, <= 0 and < 1 agree
			statusEnd = len(pc.scratch)
			continue
		}
		if len(line) == 2 {
			return parseResponseHead(pc.scratch[:statusEnd-2], pc.scratch[statusEnd:lineStart], &pc.hdr, isHead)
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// parseResponseHead parses a status line and field lines (each ending in
// CRLF) strictly.
func parseResponseHead(statusLine, fields []byte, h *Header, isHead bool) (respHead, error) {
	rh := respHead{cl: -1}
	l := statusLine
	if len(l) < 12 || string(l[:7]) != "HTTP/1." || (l[7] != '0' && l[7] != '1') || l[8] != ' ' ||
		!isDigit(l[9]) || !isDigit(l[10]) || !isDigit(l[11]) || l[9] == '0' {
		return rh, protoErr(502, "malformed status line")
	}
	minor := l[7] - '0'
	rh.status = int(l[9]-'0')*100 + int(l[10]-'0')*10 + int(l[11]-'0')
	if len(l) > 12 {
		if l[12] != ' ' {
			return rh, protoErr(502, "malformed status line")
		}
		for _, c := range l[13:] {
			if !vchar[c] {
				return rh, protoErr(502, "invalid byte in reason phrase")
			}
		}
	}
	if perr := parseFields(fields, h); perr != nil {
		return rh, protoErr(502, perr.Reason)
	}
	var (
		te     teState
		clSeen bool
		ka     bool
	)
	for i := range h.f {
		name, v := h.f[i].name, h.f[i].value
		switch len(name) {
		case 10:
			if EqualFoldString(name, "connection") {
				if hasToken(v, "close") {
					rh.close = true
				}
				if hasToken(v, "keep-alive") {
					ka = true
				}
			}
		case 14:
			if EqualFoldString(name, "content-length") {
				n := parseContentLength(v)
				if n < 0 || clSeen && n != rh.cl {
					return rh, protoErr(502, "invalid content-length in response")
				}
				clSeen, rh.cl = true, n
			}
		case 17:
			if EqualFoldString(name, "transfer-encoding") {
				te.add(v)
			}
		}
	}
	if minor == 0 && !ka {
		rh.close = true
	}
	switch {
	case rh.status < 200 || rh.status == 204 || rh.status == 304 || isHead:
		rh.framing = frameNone
		if rh.status < 200 || rh.status == 204 { // mutate:equivalent bool the length of a 1xx or 204 is used nowhere (no length is passed on for a 204, a 101 is spliced)
			rh.cl = -1 // mutate:equivalent const,delete-stmt only a 1xx or a 204 get here, whose length is used nowhere (see the mark above)
		}
	case te.present:
		if clSeen {
			return rh, protoErr(502, "both content-length and transfer-encoding in response")
		}
		if minor == 0 {
			return rh, protoErr(502, "transfer-encoding in an http/1.0 response")
		}
		if perr := te.check(); perr != nil {
			return rh, protoErr(502, perr.Reason)
		}
		rh.framing = frameChunked
	case clSeen:
		rh.framing = frameLength
	default:
		rh.framing = frameClose
		rh.close = true
	}
	return rh, nil
}

// splice passes a 101 response to the client, takes its connection and
// copies bytes both ways until either side closes.
func (pc *upConn) splice(ctx context.Context, w ResponseWriter, rh *respHead, res Result) (Result, bool, error) {
	wh := w.Header()
	copyEndToEnd(wh, &pc.hdr, true)
	wh.SetString("Connection", "Upgrade")
	w.WriteHeader(101)
	if err := w.Flush(); err != nil {
		return res, false, &ForwardError{Kind: ErrClient, Responded: true, Err: fmt.Errorf("writing 101 response: %w", err)}
	}
	cc, cbr, err := w.Hijack()
	if err != nil {
		return res, false, &ForwardError{Kind: ErrClient, Responded: true, Err: fmt.Errorf("taking the client connection: %w", err)}
	}
	res.Upgraded = true
	pc.c.SetDeadline(time.Time{})
	uc := pc.c
	var once sync.Once
	closeBoth := func() { once.Do(func() { cc.Close(); uc.Close() }) }
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, closeBoth)
		defer stop()
	}
	done := make(chan int64, 1) // mutate:equivalent const the one value is always received (after the copy below): the capacity only lets the goroutine end sooner
	go func() {
		n, _ := io.Copy(uc, cbr)
		closeBoth()
		done <- n
	}()
	var in int64
	if n := pc.br.Buffered(); n > 0 { // mutate:equivalent boundary with nothing buffered, Peek(0) and a Write of no bytes send nothing
		b, _ := pc.br.Peek(n)
		m, _ := cc.Write(b)
		in += int64(m)
	}
	n, _ := io.Copy(cc, uc)
	in += n
	closeBoth()
	res.BytesOut += <-done
	res.BytesIn = in
	return res, false, nil
}

// moreAtHand reports whether reading r again will not wait for the network:
// true for the server's own body reader when bytes are buffered or the body
// has ended.
func moreAtHand(r io.Reader) bool {
	b, ok := r.(*bodyReader)
	return ok && b.err == nil && (b.done || b.ex.r < b.ex.w)
}

// Deadlines that end an exchange (the context cancelled, the client's body
// failed, the upstream stalled) stick: a later arming of the ordinary
// timeouts (armHead, armRead, armWrite) must not undo them. smu orders the
// two.

// cutAll ends every wait on the connection.
func (pc *upConn) cutAll() {
	pc.smu.Lock()
	pc.cutR, pc.cutW = true, true
	pc.c.SetDeadline(aLongTimeAgo)
	pc.smu.Unlock()
}

// cutRead ends the wait for the upstream at d.
func (pc *upConn) cutRead(d time.Time) {
	pc.smu.Lock()
	pc.cutR = true
	pc.c.SetReadDeadline(d)
	pc.smu.Unlock()
}

// setRead sets the read deadline unless the reads were cut.
func (pc *upConn) setRead(d time.Time) {
	pc.smu.Lock()
	if !pc.cutR {
		pc.c.SetReadDeadline(d)
	}
	pc.smu.Unlock()
}

// setWrite sets the write deadline unless the writes were cut.
func (pc *upConn) setWrite(d time.Time) {
	pc.smu.Lock()
	if !pc.cutW {
		pc.c.SetWriteDeadline(d)
	}
	pc.smu.Unlock()
}
