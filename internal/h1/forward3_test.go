package h1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
)

// TestForwardStatusLines: the status an upstream sends reaches the client
// as it is (every digit counts); a reason phrase with a control byte, its
// first included, is refused as the upstream's fault.
func TestForwardStatusLines(t *testing.T) {
	for _, c := range []struct {
		resp   string
		status int
	}{
		{"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n", 418},
		{"HTTP/1.1 299 x\r\nContent-Length: 0\r\n\r\n", 299},
		{"HTTP/1.1 299 \x01x\r\nContent-Length: 0\r\n\r\n", 0},
		{"HTTP/1.1 299 x\x01\r\nContent-Length: 0\r\n\r\n", 0},
	} {
		u, _ := recordingUpstream(t, c.resp)
		rec := newRecorder()
		_, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		var fe *ForwardError
		switch {
		case c.status != 0 && (err != nil || rec.status != c.status):
			t.Errorf("%q: got %d and %v, want %d", c.resp, rec.status, err, c.status)
		case c.status == 0 && (!errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol):
			t.Errorf("%q: got %d and %v, want ErrUpstreamProtocol", c.resp, rec.status, err)
		}
	}
}

// TestForwardHeadTooLarge: a response head over MaxResponseHeaderBytes (1
// byte here: any head) is the upstream's protocol error, a
// *ProtocolError whose Status is 502.
func TestForwardHeadTooLarge(t *testing.T) {
	u, _ := recordingUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	u.MaxResponseHeaderBytes = 1
	_, err := forwardWithin(t, u, newRecorder(), &Outgoing{Method: []byte("GET"), Path: []byte("/")})
	var fe *ForwardError
	var pe *ProtocolError
	if !errors.As(err, &fe) || fe.Kind != ErrUpstreamProtocol || !errors.As(err, &pe) || pe.Status != 502 || pe.Reason != "response head too large" {
		t.Errorf("got %v, want ErrUpstreamProtocol with a 502 ProtocolError", err)
	}
}

// TestForward204KeepAlive: a 204 without a length ends with its head: it is
// passed on at once and its connection is reused (nothing waits for the
// upstream to close).
func TestForward204KeepAlive(t *testing.T) {
	u, _ := recordingUpstream(t, "HTTP/1.1 204 No Content\r\n\r\n")
	for i := range 2 {
		rec := newRecorder()
		res, err := forwardWithin(t, u, rec, &Outgoing{Method: []byte("GET"), Path: []byte("/")})
		if err != nil || rec.status != 204 || res.Reused != (i == 1) {
			t.Errorf("request %d: got %d %v %+v, want 204, reused the second time", i, rec.status, err, res)
		}
	}
}

// TestForwardUpgradeOneByteAtHand: a single byte the upstream sent right
// after its 101 reaches the client first.
func TestForwardUpgradeOneByteAtHand(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		c.SetDeadline(soon(t))
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nh")
		io.Copy(c, br) // echo
	})
	c := dial(t, proxyServer(t, u, nil))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResponse(t, br, false); r.status != 101 {
		t.Fatalf("got %q, want 101", r.raw)
	}
	io.WriteString(c, "i")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "hi" {
		t.Errorf("got %q %v, want the upstream's byte, then the echo", buf, err)
	}
}
