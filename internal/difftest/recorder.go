package difftest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// EventKind says what a recorder event is.
type EventKind int

// Kinds of events.
const (
	EvRequest    EventKind = iota // a complete request, answered
	EvAmbiguous                   // bytes the strict reader cannot frame; the connection was closed unanswered
	EvIncomplete                  // the peer closed the connection in the middle of a request
	EvPending                     // a partial request waited past Settle; the connection was closed
	EvExtraSent                   // the late extra bytes of a response mode were written
)

func (k EventKind) String() string {
	return [...]string{"request", "ambiguous", "incomplete", "pending", "extra-sent"}[k]
}

// Event is one thing the recorder saw or did, in order.
type Event struct {
	Kind   EventKind
	Conn   int      // connection number, from 1
	Seq    int      // EvRequest, EvExtraSent: the request's number, from 1
	Req    *Request // EvRequest
	Reason string   // EvAmbiguous
	Raw    []byte   // EvRequest: the request's bytes; others: the unparsed bytes
}

// Smuggled is the second response that the "extra bytes" response modes
// append after answering request seq: its body, "SMUGGLED after SEQ", may
// reach the client that sent request seq (on its own connection) and no
// other.
func Smuggled(seq int) string {
	body := fmt.Sprintf("SMUGGLED after %d\n", seq)
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Smuggled: %d\r\nContent-Length: %d\r\n\r\n%s", seq, len(body), body)
}

// ResponseModes are the response-side corpus: a request to /resp/MODE[/…]
// is answered as described. Those marked extra are followed by Smuggled(seq).
var ResponseModes = []struct{ Name, What string }{
	{"extra-after-cl", "a complete Content-Length response and, in the same write, a second response"},
	{"extra-after-cl-late", "a complete Content-Length response; 20 ms later, a second response on the idle connection"},
	{"body-on-204", "204 followed by bytes (a second response) as if it had a body"},
	{"body-on-304", "304 followed by bytes (a second response) as if it had a body"},
	{"body-on-head", "an answer to HEAD with Content-Length and that many body bytes (a second response)"},
	{"extra-after-last-chunk", "a chunked response; after the last chunk 0 CRLF CRLF, a second response"},
	{"continue-then-extra", "100 Continue, the final response, then a second response"},
	{"conflicting-cl", "two differing Content-Length fields; the longer covers a second response"},
	{"cl-and-te", "Content-Length: 0 and Transfer-Encoding: chunked, then a second response"},
	{"bare-lf-head", "a head with bare LF line ends, then a second response"},
	{"obs-fold", "a folded field line, then a second response"},
	{"chunk-ext-bare-lf", "a chunk line ending in a bare LF (Funky chunks), then a second response"},
	{"long-header", "a 70 KiB field in the head"},
	{"no-reason", "status line HTTP/1.1 200 without reason phrase (valid)"},
	{"http10-no-length", "an HTTP/1.0 response without length, delimited by closing"},
	{"short-body-close", "Content-Length 100 more than sent, then close"},
}

// Recorder is the recording back end: a raw TCP server on 127.0.0.1 that
// logs every byte of every connection, parses requests strictly
// (ParseRequest with zero Options) and answers each one with markers. It is
// safe for concurrent use.
type Recorder struct {
	ln net.Listener
	wg sync.WaitGroup

	// Lock order: a connection's mu before the recorder's mu.
	mu     sync.Mutex // guards the fields below
	events []Event
	conns  map[int]*recConn // open connections
	every  map[int]*recConn // every connection so far, for Transcript
	nconn  int
	seq    int
	last   time.Time // last accept or read
	closed bool
}

type recConn struct {
	id int
	c  net.Conn

	mu     sync.Mutex // guards buf, all, killed and writes to c
	buf    []byte     // not yet parsed
	all    []byte     // everything received
	killed bool       // closed by Settle or Close: no incomplete event
}

// NewRecorder starts a recorder on a random port of 127.0.0.1.
func NewRecorder() (*Recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Recorder{ln: ln, conns: map[int]*recConn{}, every: map[int]*recConn{}, last: time.Now()}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the listening address.
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// Port is the listening port.
func (r *Recorder) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// Close stops the recorder and closes every connection.
func (r *Recorder) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	for _, c := range r.connList() {
		c.mu.Lock()
		c.killed = true
		c.c.Close()
		c.mu.Unlock()
	}
	r.ln.Close()
	r.wg.Wait()
}

// Mark returns the position of the next event, for Since.
func (r *Recorder) Mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Since returns a copy of the events from mark on.
func (r *Recorder) Since(mark int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events[mark:]...)
}

// Settle waits until nothing arrived for quiet and no connection holds a
// partial request, for at most max. Connections still holding a partial
// request then are closed and recorded as EvPending.
func (r *Recorder) Settle(quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		var pending []*recConn
		for _, c := range r.connList() {
			c.mu.Lock()
			if len(c.buf) > 0 {
				pending = append(pending, c)
			}
			c.mu.Unlock()
		}
		r.mu.Lock()
		idle := time.Since(r.last)
		r.mu.Unlock()
		if idle >= quiet && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, c := range pending {
				c.mu.Lock()
				if len(c.buf) > 0 && !c.killed {
					c.killed = true
					r.add(Event{Kind: EvPending, Conn: c.id, Raw: append([]byte(nil), c.buf...)})
					c.c.Close()
				}
				c.mu.Unlock()
			}
			return
		}
		time.Sleep(5 * time.Millisecond) // polling for quiet, with a deadline
	}
}

// CloseIdle closes every connection that holds no partial request (between
// response cases, so that each starts on fresh connections).
func (r *Recorder) CloseIdle() {
	for _, c := range r.connList() {
		c.mu.Lock()
		if len(c.buf) == 0 {
			c.killed = true
			c.c.Close()
		}
		c.mu.Unlock()
	}
}

// Transcript returns a copy of every byte received on connection id.
func (r *Recorder) Transcript(id int) []byte {
	r.mu.Lock()
	c := r.every[id]
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.all...)
}

// WaitExtra waits until the late extra bytes of the request to path were
// written, for at most max; it reports whether they were.
func (r *Recorder) WaitExtra(path string, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		seqs := map[int]bool{}
		for _, e := range r.events {
			switch {
			case e.Kind == EvRequest && e.Req.Path() == path:
				seqs[e.Seq] = true
			case e.Kind == EvExtraSent && seqs[e.Seq]:
				r.mu.Unlock()
				return true
			}
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond) // polling for an event, with a deadline
	}
	return false
}

func (r *Recorder) connList() []*recConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l []*recConn
	for _, c := range r.conns {
		l = append(l, c)
	}
	return l
}

// add appends an event; r.mu must not be held.
func (r *Recorder) add(e Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Kind == EvRequest {
		r.seq++
		e.Seq = r.seq
	}
	r.events = append(r.events, e)
	r.last = time.Now()
	return e.Seq
}

func (r *Recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.nconn++
		rc := &recConn{id: r.nconn, c: c}
		r.conns[rc.id] = rc
		r.every[rc.id] = rc
		r.last = time.Now()
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(rc)
	}
}

func (r *Recorder) serve(c *recConn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c.id)
		r.mu.Unlock()
		c.c.Close()
	}()
	tmp := make([]byte, 64<<10)
	sent100 := false
	for {
		n, err := c.c.Read(tmp)
		c.mu.Lock()
		if c.killed {
			c.mu.Unlock()
			return
		}
		if n > 0 {
			c.buf = append(c.buf, tmp[:n]...)
			c.all = append(c.all, tmp[:n]...)
			r.mu.Lock()
			r.last = time.Now()
			r.mu.Unlock()
		}
		for len(c.buf) > 0 {
			req, used, perr := ParseRequest(c.buf, Options{})
			if perr == errNeedMore {
				if req != nil && !sent100 && strings.EqualFold(req.Get("Expect"), "100-continue") {
					c.c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
					sent100 = true
				}
				break
			}
			var amb *Ambiguity
			if errors.As(perr, &amb) {
				r.add(Event{Kind: EvAmbiguous, Conn: c.id, Reason: amb.Reason, Raw: append([]byte(nil), c.buf...)})
				c.killed = true
				c.mu.Unlock()
				return
			}
			req.Raw = append([]byte(nil), req.Raw...)
			req.Body = append([]byte(nil), req.Body...)
			c.buf = append(c.buf[:0], c.buf[used:]...)
			sent100 = false
			seq := r.add(Event{Kind: EvRequest, Conn: c.id, Req: req, Raw: req.Raw})
			if closeAfter := r.respond(c, req, seq); closeAfter {
				c.killed = true
				c.mu.Unlock()
				return
			}
		}
		if err != nil {
			if len(c.buf) > 0 {
				r.add(Event{Kind: EvIncomplete, Conn: c.id, Raw: append([]byte(nil), c.buf...)})
			}
			c.killed = true
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// markers are the fields that tie a response to the request it answers.
func markers(seq int, req *Request) (head, body string) {
	sum := sha256.Sum256(req.Body)
	head = fmt.Sprintf("X-Backend-Seq: %d\r\nX-Backend-Path: %s\r\nX-Backend-Body: len=%d sha=%s\r\n",
		seq, req.Path(), len(req.Body), hex.EncodeToString(sum[:8]))
	return head, fmt.Sprintf("seq=%d path=%s\n", seq, req.Path())
}

// BodyDigest is the value of X-Backend-Body for body.
func BodyDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("len=%d sha=%s", len(body), hex.EncodeToString(sum[:8]))
}

// respond answers req on c (c.mu held) and reports whether to close.
func (r *Recorder) respond(c *recConn, req *Request, seq int) (closeAfter bool) {
	marks, body := markers(seq, req)
	closeAfter = req.Version == "HTTP/1.0" && !strings.EqualFold(req.Get("Connection"), "keep-alive")
	for _, v := range req.Values("Connection") {
		for _, e := range strings.Split(v, ",") {
			closeAfter = closeAfter || strings.EqualFold(trimOWS(e), "close")
		}
	}
	conn := ""
	if closeAfter {
		conn = "Connection: close\r\n"
	}
	normal := func(status string) string {
		return "HTTP/1.1 " + status + "\r\n" + marks + conn + fmt.Sprintf("Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	}
	mode, ok := strings.CutPrefix(req.Path(), "/resp/")
	if !ok {
		out := normal("200 OK")
		if req.Method == "HEAD" {
			out = strings.TrimSuffix(out, body)
		}
		c.c.Write([]byte(out))
		return closeAfter
	}
	mode, _, _ = strings.Cut(mode, "/")
	smuggled := Smuggled(seq)
	var out string
	switch mode {
	case "extra-after-cl":
		out = normal("200 OK") + smuggled
	case "extra-after-cl-late":
		out = normal("200 OK")
		time.AfterFunc(20*time.Millisecond, func() {
			c.mu.Lock()
			c.c.Write([]byte(smuggled))
			c.mu.Unlock()
			r.add(Event{Kind: EvExtraSent, Conn: c.id, Seq: seq})
		})
	case "body-on-204":
		out = "HTTP/1.1 204 No Content\r\n" + marks + "\r\n" + smuggled
	case "body-on-304":
		out = "HTTP/1.1 304 Not Modified\r\n" + marks + "\r\n" + smuggled
	case "body-on-head":
		out = "HTTP/1.1 200 OK\r\n" + marks + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled)) + smuggled
	case "extra-after-last-chunk":
		out = "HTTP/1.1 200 OK\r\n" + marks + "Transfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) + smuggled
	case "continue-then-extra":
		out = "HTTP/1.1 100 Continue\r\n\r\n" + normal("200 OK") + smuggled
	case "conflicting-cl":
		out = "HTTP/1.1 200 OK\r\n" + marks + fmt.Sprintf("Content-Length: %d\r\nContent-Length: %d\r\n\r\n", len(body), len(body)+len(smuggled)) + body + smuggled
	case "cl-and-te":
		out = "HTTP/1.1 200 OK\r\n" + marks + "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) + smuggled
	case "bare-lf-head":
		out = strings.ReplaceAll("HTTP/1.1 200 OK\r\n"+marks+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)), "\r\n", "\n") + body + smuggled
	case "obs-fold":
		out = "HTTP/1.1 200 OK\r\n" + marks + "X-Folded: a\r\n b\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body + smuggled
	case "chunk-ext-bare-lf":
		out = "HTTP/1.1 200 OK\r\n" + marks + "Transfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x;x\n%s\r\n0\r\n\r\n", len(body), body) + smuggled
	case "long-header":
		out = "HTTP/1.1 200 OK\r\n" + marks + "X-Long: " + strings.Repeat("a", 70<<10) + "\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	case "no-reason":
		out = "HTTP/1.1 200\r\n" + marks + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	case "http10-no-length":
		out, closeAfter = "HTTP/1.0 200 OK\r\n"+marks+"\r\n"+body, true
	case "short-body-close":
		out, closeAfter = "HTTP/1.1 200 OK\r\n"+marks+fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)+100)+body, true
	default:
		out = "HTTP/1.1 404 Not Found\r\n" + marks + "Content-Length: 0\r\n\r\n"
	}
	c.c.Write([]byte(out))
	return closeAfter
}
