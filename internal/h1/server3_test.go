package h1

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// bodyRead is one Read of a request body as a handler saw it.
type bodyRead struct {
	n     int
	data  string
	err   error
	reads int // the connection's Reads so far (with a fakeConn)
}

// readSteps reads r's body with a small buffer (never as large as the
// server's read buffer) until an error, at most 20 times.
func readSteps(r *Request, fc *fakeConn) []bodyRead { return readStepsBuf(r, fc, 100) }

// readStepsBuf is readSteps with a buffer of size bytes.
func readStepsBuf(r *Request, fc *fakeConn, size int) []bodyRead {
	var steps []bodyRead
	buf := make([]byte, size)
	read := func() error {
		n, err := r.Body.Read(buf)
		st := bodyRead{n: n, data: string(buf[:n]), err: err}
		if fc != nil {
			fc.mu.Lock()
			st.reads = fc.reads
			fc.mu.Unlock()
		}
		steps = append(steps, st)
		return err
	}
	for range 20 {
		if read() != nil {
			read() // one more: the error is sticky
			return steps
		}
	}
	return steps
}

// TestBodyReadErrors: what each Read of a request body returns when the body
// fails: the bytes before the failure with a nil error, then (0, err), and
// the same error (the same value) on every later Read, without reading the
// connection again. A failure the server can answer (413, 400) is answered
// when the handler did not answer; one it cannot (the client gone) is not.
func TestBodyReadErrors(t *testing.T) {
	const post = "POST / HTTP/1.1\r\nHost: a\r\n"
	for _, c := range []struct {
		name   string
		script []fakeRead
		max    int64 // MaxBodyBytes set by the handler
		// failWrites: the client's side refuses writes from the start
		// of the handler.
		failWrites bool
		want       []string // each Read: n, data, and the error's text
		is         error    // what the error must be (errors.Is)
		same       bool     // the error is the value itself, unwrapped
		status     int      // the server's answer (0: none)
	}{
		{
			name:   "a declared length cut short",
			script: []fakeRead{{data: post + "Content-Length: 5\r\n\r\nabcd"}},
			want:   []string{`4 "abcd" <nil>`, `0 "" reading request body: unexpected EOF`},
			is:     io.ErrUnexpectedEOF,
		},
		{
			name:   "a declared length over MaxBodyBytes",
			script: []fakeRead{{data: post + "Content-Length: 2\r\n\r\nab"}},
			max:    1,
			want:   []string{`0 "" request body too large`},
			is:     ErrBodyTooLarge, same: true, status: 413,
		},
		{
			name:   "a chunked body over MaxBodyBytes",
			script: []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}},
			max:    1,
			want:   []string{`1 "a" request body too large`},
			is:     ErrBodyTooLarge, same: true, status: 413,
		},
		{
			name:   "a chunked body over MaxBodyBytes in its second chunk",
			script: []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"}},
			max:    4,
			want:   []string{`3 "abc" <nil>`, `1 "d" request body too large`},
			is:     ErrBodyTooLarge, same: true, status: 413,
		},
		{
			name:   "a malformed chunk size",
			script: []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\nZ\r\n"}},
			want:   []string{`0 "" http/1.1 protocol error: invalid chunk size`},
			status: 400,
		},
		{
			name:   "a chunk cut short",
			script: []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n5\r\nab"}},
			want:   []string{`2 "ab" <nil>`, `0 "" reading request body: unexpected EOF`},
			is:     io.ErrUnexpectedEOF,
		},
		{
			name:   "a chunk size cut short",
			script: []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n5"}},
			want:   []string{`0 "" reading request body: unexpected EOF`},
			is:     io.ErrUnexpectedEOF,
		},
		{
			// A Read of the connection that returns nothing and no error
			// is no progress: the body fails rather than the server
			// reading again and again.
			name:   "a connection Read returning nothing",
			script: []fakeRead{{data: post + "Content-Length: 5\r\n\r\nab"}, {}, {data: "cde"}},
			want:   []string{`2 "ab" <nil>`, `0 "" reading request body: multiple Read calls return no data or error`},
			is:     io.ErrNoProgress,
		},
		{
			name:       "100-continue that cannot be sent",
			script:     []fakeRead{{data: post + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"}},
			failWrites: true,
			want:       []string{`0 "" sending 100 continue: fake: broken pipe`},
			is:         errWrite,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConn(c.script...)
			var steps []bodyRead
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				if c.failWrites {
					fc.setWriteErr(errWrite)
				}
				r.MaxBodyBytes = c.max
				steps = readSteps(r, fc)
			})}
			out := serveFake(t, s, fc)()
			var got []string
			for _, st := range steps[:len(steps)-1] {
				got = append(got, fmt.Sprintf("%d %q %v", st.n, st.data, st.err))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("reads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			first, again := steps[len(steps)-2], steps[len(steps)-1]
			if again.n != 0 || again.err != first.err {
				t.Errorf("the Read after the error returned (%d, %v), want (0, the same error %v)", again.n, again.err, first.err)
			}
			if again.reads != first.reads {
				t.Errorf("the Read after the error read the connection %d times, want none", again.reads-first.reads)
			}
			if c.is != nil && !errors.Is(first.err, c.is) {
				t.Errorf("got %v, want %v", first.err, c.is)
			}
			if c.same && first.err != c.is {
				t.Errorf("got %#v, want %v itself", first.err, c.is)
			}
			if c.status == 400 {
				if _, ok := first.err.(*ProtocolError); !ok {
					t.Errorf("got %#v, want the *ProtocolError itself", first.err)
				}
			}
			var want []int
			if c.status != 0 {
				want = []int{c.status}
			}
			if got := statuses(t, out); !sameInts(got, want) {
				t.Errorf("answered %v, want %v (%q)", got, want, out)
			}
		})
	}
}

// TestBodyReadEnds: the Read after a body's last bytes returns (0, io.EOF),
// for a body by length and a chunked one, including one that comes a byte
// at a time.
func TestBodyReadEnds(t *testing.T) {
	const post = "POST / HTTP/1.1\r\nHost: a\r\n"
	byByte := func(s string) []fakeRead {
		var r []fakeRead
		for i := range len(s) {
			r = append(r, fakeRead{data: s[i : i+1]})
		}
		return r
	}
	big := strings.Repeat("b", 5000)
	for _, c := range []struct {
		name   string
		script []fakeRead
		want   []string
	}{
		{"by length", []fakeRead{{data: post + "Content-Length: 3\r\n\r\nabc"}}, []string{`3 "abc" <nil>`, `0 "" EOF`}},
		// A Read as large as the server's buffer goes to the connection
		// directly: its last bytes may come with io.EOF.
		{"by length, the last bytes with io.EOF", []fakeRead{{data: post + "Content-Length: 5000\r\n\r\n"}, {big, io.EOF}},
			[]string{fmt.Sprintf("5000 %q <nil>", big), `0 "" EOF`}},
		{"chunked", []fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}}, []string{`3 "abc" <nil>`, `0 "" EOF`}},
		{"by length, a byte at a time", append([]fakeRead{{data: post + "Content-Length: 3\r\n\r\n"}}, byByte("abc")...),
			[]string{`1 "a" <nil>`, `1 "b" <nil>`, `1 "c" <nil>`, `0 "" EOF`}},
		{"chunked, a byte at a time", append([]fakeRead{{data: post + "Transfer-Encoding: chunked\r\n\r\n"}}, byByte("2\r\nab\r\n0\r\n\r\n")...),
			[]string{`1 "a" <nil>`, `1 "b" <nil>`, `0 "" EOF`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConn(c.script...)
			var steps []bodyRead
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				steps = readStepsBuf(r, nil, 8192)
				w.Write([]byte("ok"))
			})}
			out := serveFake(t, s, fc)()
			var got []string
			for _, st := range steps[:len(steps)-1] {
				got = append(got, fmt.Sprintf("%d %q %v", st.n, st.data, st.err))
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("reads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			if got := statuses(t, out); !sameInts(got, []int{200}) {
				t.Errorf("answered %v, want [200]", got)
			}
		})
	}
}

// TestOddConnReads: a connection whose Reads do what a socket does not
// (bytes with io.EOF, nothing and no error) or whose deadline cannot be
// set.
func TestOddConnReads(t *testing.T) {
	handled := 0
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		handled++
		w.Write([]byte("ok"))
	})
	t.Run("bytes with io.EOF are served", func(t *testing.T) {
		handled = 0
		fc := newFakeConn(fakeRead{"G", io.EOF}, fakeRead{"ET / HTTP/1.1\r\nHost: a\r\n\r\n", io.EOF})
		out := serveFake(t, &Server{Handler: h}, fc)()
		if got := statuses(t, out); !sameInts(got, []int{200}) || handled != 1 {
			t.Errorf("answered %v after %d handler calls, want [200] after 1", got, handled)
		}
	})
	t.Run("nothing and no error while idle closes the connection", func(t *testing.T) {
		handled = 0
		fc := newFakeConn(fakeRead{}, fakeRead{data: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"})
		out := serveFake(t, &Server{Handler: h}, fc)()
		if out != "" || handled != 0 {
			t.Errorf("answered %q after %d handler calls, want nothing", out, handled)
		}
	})
	t.Run("nothing and no error within the head is read again", func(t *testing.T) {
		handled = 0
		fc := newFakeConn(fakeRead{data: "GET / HT"}, fakeRead{}, fakeRead{data: "TP/1.1\r\nHost: a\r\n\r\n"})
		out := serveFake(t, &Server{Handler: h}, fc)()
		if got := statuses(t, out); !sameInts(got, []int{200}) || handled != 1 {
			t.Errorf("answered %v after %d handler calls, want [200] after 1", got, handled)
		}
	})
	t.Run("a deadline that cannot be set closes the connection unread", func(t *testing.T) {
		handled = 0
		fc := newFakeConn(fakeRead{data: "GET / HTTP/1.1\r\nHost: a\r\n\r\n"})
		fc.readDeadlineErr = errors.New("fake: no deadlines")
		out := serveFake(t, &Server{Handler: h}, fc)()
		if out != "" || handled != 0 || fc.reads != 0 || !fc.closed {
			t.Errorf("answered %q after %d handler calls and %d reads (closed: %v), want nothing, no read, closed", out, handled, fc.reads, fc.closed)
		}
	})
}

// TestRefusedNeverHandled: a request the server refuses reaches no handler,
// gets one answer, and ends the connection (what follows it is not read as
// a request).
func TestRefusedNeverHandled(t *testing.T) {
	for _, c := range []struct {
		name, in string
		status   int
	}{
		{"a malformed request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"a malformed field", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"a request line too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 414},
	} {
		t.Run(c.name, func(t *testing.T) {
			handled := 0
			fc := newFakeConn(fakeRead{data: c.in})
			out := serveFake(t, &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) { handled++ })}, fc)()
			if got := statuses(t, out); !sameInts(got, []int{c.status}) || handled != 0 {
				t.Errorf("answered %v after %d handler calls, want [%d] after none", got, handled, c.status)
			}
		})
	}
}

// TestLingerClose: after a refusal the server half-closes the connection
// and reads what the client still sends, for at most 64 MiB (a read
// deadline of 500 ms each time, 5 s in all), and stops at the first read
// error; without a half-close (it fails) it does not linger.
func TestLingerClose(t *testing.T) {
	const bad = "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n"
	for _, c := range []struct {
		name          string
		chunk         int // bytes per Read the client still sends
		failAfter     int // Reads that succeed before one fails (0: never)
		closeWriteErr error
		wantBytes     int64
		wantReads     int
	}{
		// 64 MiB in 4 KiB reads: exactly the limit, not a read more.
		{name: "64 MiB", chunk: 4096, wantBytes: 64 << 20, wantReads: 16384},
		// 2731 divides 64 MiB - 1: the last read passes the limit.
		{name: "64 MiB and a read", chunk: 2731, wantBytes: 24574 * 2731, wantReads: 24574},
		{name: "a read error ends it", chunk: 10, failAfter: 3, wantBytes: 30, wantReads: 4},
		{name: "no half-close, no lingering", chunk: 10, closeWriteErr: errors.New("fake: not connected"), wantBytes: 0, wantReads: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConn(fakeRead{data: bad})
			fc.closeWriteErr = c.closeWriteErr
			calls := 0
			fc.after = func(p []byte) (int, error) {
				calls++
				if c.failAfter > 0 && calls > c.failAfter {
					return 0, errors.New("fake: connection reset")
				}
				return min(len(p), c.chunk), nil
			}
			out := serveFake(t, &Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {})}, fc)()
			if got := statuses(t, out); !sameInts(got, []int{400}) {
				t.Errorf("answered %v, want [400]", got)
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if fc.closeWrites != 1 || fc.bytesAfterW != c.wantBytes || fc.readsAfterW != c.wantReads {
				t.Errorf("half-closed %d times, then read %d bytes in %d reads, want once, %d bytes in %d reads",
					fc.closeWrites, fc.bytesAfterW, fc.readsAfterW, c.wantBytes, c.wantReads)
			}
			// The refusal's write deadline: 5 s.
			if len(fc.wdl) == 0 {
				t.Fatal("no write deadline set for the refusal")
			}
			if w := fc.wdl[len(fc.wdl)-1]; w.d.Sub(w.at) > 5*time.Second || w.d.Sub(w.at) < 4900*time.Millisecond {
				t.Errorf("the refusal's write deadline is %v after the call, want 5s", w.d.Sub(w.at))
			}
			if c.wantReads == 0 {
				return
			}
			// The lingering reads' deadlines: 500 ms after each read's
			// start (the longest of many measured within a millisecond).
			lr := fc.rdl[len(fc.rdl)-c.wantReads:]
			longest := time.Duration(0)
			for _, r := range lr {
				if r.d.Sub(r.at) > 500*time.Millisecond {
					t.Fatalf("a lingering read's deadline is %v after the call, want at most 500ms", r.d.Sub(r.at))
				}
				longest = max(longest, r.d.Sub(r.at))
			}
			if c.wantReads > 1000 && longest <= 499*time.Millisecond {
				t.Errorf("the lingering reads' deadlines are at most %v after the call, want 500ms", longest)
			}
		})
	}
}

// TestLingerCloseTotal: the lingering close ends 5 s after it started even
// when the client keeps sending within each read's 500 ms.
func TestLingerCloseTotal(t *testing.T) {
	if testing.Short() {
		t.Skip("5 seconds")
	}
	t.Parallel()
	fc := newFakeConn(fakeRead{data: "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n"})
	var first time.Time
	fc.after = func(p []byte) (int, error) {
		// Called with fc.mu held: a byte every 50 ms, within each read's
		// deadline, until the deadline set for this read has passed.
		d := fc.rdl[len(fc.rdl)-1]
		if first.IsZero() {
			first = d.at
		}
		time.Sleep(50 * time.Millisecond)
		if time.Now().After(d.d) {
			return 0, errTimeoutFake
		}
		return 1, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Server{Handler: HandlerFunc(func(ResponseWriter, *Request) {})}).ServeConn(fc)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the lingering close did not end within 10s")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	last := fc.rdl[len(fc.rdl)-1]
	if got := last.d.Sub(first); got > 5*time.Second || got < 4900*time.Millisecond {
		t.Errorf("the last lingering read's deadline is %v after the first read, want 5s", got)
	}
}

var errTimeoutFake = errors.New("fake: i/o timeout")

// TestKeepOrClose: after each request, whether the connection carries the
// next one (a pipelined request answered), is closed at once, or is closed
// after a lingering read (half-close once, then reads).
func TestKeepOrClose(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, c := range []struct {
		name    string
		in      string
		handler func(w ResponseWriter, r *Request)
		want    []int
		linger  bool
	}{
		{
			name: "the body read, Connection: close from the handler",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + next,
			handler: func(w ResponseWriter, r *Request) {
				io.ReadAll(r.Body)
				w.Header().SetString("Connection", "close")
				w.Write([]byte("ok"))
			},
			want: []int{200},
		},
		{
			name: "the body read",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + next,
			handler: func(w ResponseWriter, r *Request) {
				io.ReadAll(r.Body)
				w.Write([]byte("ok"))
			},
			want: []int{200, 200},
		},
		{
			name: "a bad chunk after the handler answered",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n" + next,
			handler: func(w ResponseWriter, r *Request) {
				io.ReadAll(r.Body)
				w.Write([]byte("ok"))
			},
			want: []int{200}, linger: true,
		},
		{
			name: "100-continue never sent: the body is not waited for",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
			handler: func(w ResponseWriter, r *Request) {
				w.Write([]byte("no"))
			},
			want: []int{200}, linger: true,
		},
		{
			name: "Connection: close with the body unread",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + next,
			handler: func(w ResponseWriter, r *Request) {
				w.Header().SetString("Connection", "close")
				w.Write([]byte("no"))
			},
			want: []int{200}, linger: true,
		},
		{
			name: "an unread chunked body of 256 KiB is drained",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40000\r\n" + strings.Repeat("a", 256<<10) + "\r\n0\r\n\r\n" + next,
			handler: func(w ResponseWriter, r *Request) {
				w.Write([]byte("ok"))
			},
			want: []int{200, 200},
		},
		{
			name: "an unread chunked body of 256 KiB and a byte is not",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40001\r\n" + strings.Repeat("a", 256<<10+1) + "\r\n0\r\n\r\n" + next,
			handler: func(w ResponseWriter, r *Request) {
				w.Write([]byte("ok"))
			},
			want: []int{200}, linger: true,
		},
		{
			name: "an unread malformed chunked body is not",
			in:   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZ\r\n" + next,
			handler: func(w ResponseWriter, r *Request) {
				w.Write([]byte("ok"))
			},
			want: []int{200}, linger: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConn(fakeRead{data: c.in})
			out := serveFake(t, &Server{Handler: HandlerFunc(c.handler)}, fc)()
			if got := statuses(t, out); !sameInts(got, c.want) {
				t.Errorf("answered %v, want %v", got, c.want)
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if c.linger && (fc.closeWrites != 1 || fc.readsAfterW == 0) {
				t.Errorf("half-closed %d times and read %d times after, want a lingering close", fc.closeWrites, fc.readsAfterW)
			}
			if !c.linger && fc.closeWrites != 0 {
				t.Errorf("half-closed %d times, want a plain close", fc.closeWrites)
			}
			if !fc.closed {
				t.Error("the connection is not closed")
			}
		})
	}
}

// TestHeadLimitsAsBytesArrive: the head's limits are judged on the bytes at
// hand: a request line not ended yet is refused (414) as soon as it is
// longer than 8 KiB, and waited for up to that; a head not ended yet as
// soon as it is longer than MaxHeaderBytes (431), and waited for up to that,
// also when its last line ended exactly there; and the first limit passed
// decides the refusal.
func TestHeadLimitsAsBytesArrive(t *testing.T) {
	const reqLine = "GET / HTTP/1.1\r\n"
	for _, c := range []struct {
		name     string
		maxHead  int
		maxCount int
		in       string // all at once; the server must then wait
		more     string // then this: the server must answer
		status   int
		reason   string
	}{
		{name: "a request line of 8 KiB", in: "GET /" + strings.Repeat("a", 8192-5), more: "a", status: 414, reason: "request line too long"},
		{name: "a head of MaxHeaderBytes", maxHead: 200, in: reqLine + "A: " + strings.Repeat("a", 200-len(reqLine)-3), more: "a", status: 431, reason: "request head too large"},
		{name: "a head of MaxHeaderBytes ending a line", maxHead: 200, in: reqLine + "A: " + strings.Repeat("a", 200-len(reqLine)-5) + "\r\n", more: "B", status: 431, reason: "request head too large"},
		{name: "a line past MaxHeaderBytes before too many fields", maxHead: 200, maxCount: 1,
			more: reqLine + "A: " + strings.Repeat("a", 200-len(reqLine)-4) + "\r\nB: b\r\n\r\n", status: 431, reason: "request head too large"},
		{name: "a head of MaxHeaderBytes and a bare LF", maxHead: 200, in: reqLine + "A: " + strings.Repeat("a", 200-len(reqLine)-5) + "\r\n", more: "\n", status: 400, reason: "bare lf in request head"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConn(fakeRead{data: c.in})
			fc.hold = c.in != ""
			if c.in == "" {
				fc.script = []fakeRead{{data: c.more}}
			}
			var reasons []string
			s := &Server{
				Handler:        HandlerFunc(func(w ResponseWriter, r *Request) { t.Error("the handler was called") }),
				MaxHeaderBytes: c.maxHead, MaxHeaderCount: c.maxCount,
				OnReject: func(status int, reason string, _ netip.AddrPort) { reasons = append(reasons, reason) },
			}
			wait := serveFake(t, s, fc)
			if c.in != "" {
				if out := fc.waitIdle(t, 0); out != "" {
					t.Fatalf("answered %q before the head passed a limit, want a wait for more", out)
				}
				fc.mu.Lock()
				w := fc.waiting
				fc.mu.Unlock()
				fc.push(fakeRead{data: c.more})
				fc.waitFor(t, "an answer", func() bool { return fc.out.Len() > 0 || fc.waiting > w })
				fc.Close()
			}
			out := wait()
			if got := statuses(t, out); !sameInts(got, []int{c.status}) || len(reasons) != 1 || reasons[0] != c.reason {
				t.Errorf("answered %v for %q, want [%d] for %q", got, reasons, c.status, c.reason)
			}
		})
	}
}

// TestHeadKeptWhileBodyRead: the request's method, path and fields stay
// intact while the handler reads the body, whichever buffer the head
// filled: a head that leaves less than 512 bytes of its buffer (the body
// goes to another), one that outgrew the first buffer after empty lines
// before it (moved to its front), and one that outgrew it from its start
// (moved to a larger buffer); the request after it is read whole too.
func TestHeadKeptWhileBodyRead(t *testing.T) {
	body := strings.Repeat("0123456789", 200)
	for _, c := range []struct {
		name    string
		leading string
		size    int // the head's length
		split   int // the first Read ends here (from the start of the input)
	}{
		{"a head leaving 296 bytes", "", 3800, 3800},
		{"a head leaving 1 byte", "", 4095, 4095},
		{"a head filling the buffer", "", 4096, 4096},
		{"a head filling the buffer after empty lines", "\r\n\r\n", 4500, 4096},
		{"a head outgrowing the buffer", "", 4500, 4096},
		{"two heads leaving 1 byte", "", 4095, 4095},
		{"two heads filling the buffer", "", 4096, 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			head := "POST /path?q HTTP/1.1\r\nHost: a\r\nX-A: first\r\nX-Pad: \r\nX-B: last\r\nContent-Length: 2000\r\n\r\n"
			pad := strings.Repeat("p", c.size-len(head))
			head = strings.Replace(head, "X-Pad: ", "X-Pad: "+pad, 1)
			in := c.leading + head + body + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
			script := []fakeRead{{data: in[:c.split]}, {data: in[c.split:]}}
			twice := strings.HasPrefix(c.name, "two")
			if twice {
				// The same request again after the first, in the same
				// way: its head fills the buffer the first one left.
				in = c.leading + head + body + c.leading + head + body + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
				script = []fakeRead{{data: in[:c.split]}, {data: body}, {data: head}, {data: in[2*c.split+len(body):]}}
			}
			fc := newFakeConn(script...)
			var got []string
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil || string(b) != string(body[:len(b)]) || len(b) != int(r.ContentLength) {
					t.Errorf("%s: read %d bytes of the body and %v", r.Path, len(b), err)
				}
				x := func(name string) string { return string(r.Header.Get(name)) }
				got = append(got, fmt.Sprintf("%s %s %s %s %d", r.Method, r.Path, x("X-A"), x("X-B"), len(x("X-Pad"))))
				w.Write([]byte("ok"))
			})}
			out := serveFake(t, s, fc)()
			want := []string{fmt.Sprintf("POST /path first last %d", len(pad)), "GET /next   0"}
			if twice {
				want = append(want[:1], want...)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("the handler saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if st := statuses(t, out); len(st) != len(want) {
				t.Errorf("answered %v, want %d times 200", st, len(want))
			}
		})
	}
}

// TestPooledExchangeKeepsNothing: an exchange given back to the pool keeps
// nothing of its connection: its own small buffer (a larger one and an old
// one go back to their pool), no offsets, no connection.
func TestPooledExchangeKeepsNothing(t *testing.T) {
	s := &Server{}
	for _, c := range []struct {
		name     string
		big, old bool
	}{
		{"small buffer", false, false},
		{"large buffer", true, false},
		{"old buffer", false, true},
		{"both", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ex := s.getExchange(&conn{s: s})
			small := ex.small
			if c.big {
				ex.rbuf = s.getBig()
			}
			if c.old {
				ex.oldBuf = s.getBig()
			}
			ex.r, ex.w, ex.base = 3, 5, 2
			s.putExchange(ex)
			if &ex.rbuf[0] != &small[0] || len(ex.rbuf) != smallBufSize || ex.oldBuf != nil || ex.r != 0 || ex.w != 0 || ex.base != 0 || ex.c != nil {
				t.Errorf("pooled with a buffer of %d (its own: %v), old buffer %v, offsets %d %d %d, connection %v",
					len(ex.rbuf), &ex.rbuf[0] == &small[0], ex.oldBuf != nil, ex.r, ex.w, ex.base, ex.c != nil)
			}
		})
	}
}

// TestHijackPendingBytes: the bytes the client sent after the head of the
// request whose handler hijacks the connection come first from the reader
// Hijack returns, once each, then what the client sends next; a single
// pending byte too.
func TestHijackPendingBytes(t *testing.T) {
	for _, pending := range []string{"X", "XY"} {
		fc := newFakeConn(fakeRead{data: "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + pending}, fakeRead{data: "Z"})
		var got string
		var err error
		s := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			var br io.Reader
			_, br, err = w.Hijack()
			if err == nil {
				var b []byte
				b, err = io.ReadAll(io.LimitReader(br, 10)) // a reader that repeats stops at 10
				got = string(b)
			}
		})}
		serveFake(t, s, fc)()
		if err != nil || got != pending+"Z" {
			t.Errorf("pending %q: read %q (%v), want %q", pending, got, err, pending+"Z")
		}
	}
}
