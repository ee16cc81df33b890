package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/route"
)

// fuzzRig is a gateway (h1.Server + Forwarder) in front of an upstream that
// parses what it receives with net/http, an independent parser. Built once
// per fuzz process.
type fuzzRig struct {
	gw       string
	accepted atomic.Int64 // requests the gateway's handler accepted
	mu       sync.Mutex
	bad      []string     // what the upstream could not parse
	received atomic.Int64 // complete requests the upstream parsed
}

var (
	rigOnce sync.Once
	rig     *fuzzRig
	rigErr  error
)

func getRig() (*fuzzRig, error) {
	rigOnce.Do(func() {
		r := &fuzzRig{}
		up, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rigErr = err
			return
		}
		go func() {
			for {
				c, err := up.Accept()
				if err != nil {
					return
				}
				go r.upstream(c)
			}
		}()
		be, err := NewBackend(groupconf.Backend{Name: "up", URL: "http://" + up.Addr().String(), ConnectTimeout: groupconf.Seconds(2), Timeout: groupconf.Seconds(2), MaxIdleConns: 4, IdleTimeout: groupconf.Seconds(5)}, groupconf.Sample{})
		if err != nil {
			rigErr = err
			return
		}
		f := NewForwarder(be, &route.Route{Name: "api", Prefix: "/"}, Options{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rigErr = err
			return
		}
		srv := &h1.Server{
			ReadHeaderTimeout: 2 * time.Second, BodyIdleTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second,
			MaxHeaderBytes: 8 << 10,
			Handler: h1.HandlerFunc(func(w h1.ResponseWriter, req *h1.Request) {
				r.accepted.Add(1)
				req.MaxBodyBytes = 1 << 20
				f.Forward(context.Background(), w, req, &Scratch{})
			}),
		}
		go srv.Serve(ln)
		r.gw = ln.Addr().String()
		rig = r
	})
	return rig, rigErr
}

// upstream reads requests with net/http. A head it cannot parse, or framing
// it finds ambiguous, is recorded. A body cut short is fine: the gateway
// drops the upstream connection when the client's body turns out malformed.
func (r *fuzzRig) upstream(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			if err != io.EOF && !isConnEnd(err) {
				r.record(fmt.Sprintf("unparsable request head: %v", err))
			}
			return
		}
		if len(req.TransferEncoding) > 0 && req.Header.Get("Content-Length") != "" {
			r.record("both Transfer-Encoding and Content-Length forwarded")
		}
		if len(req.Header.Values("Host")) > 1 {
			r.record("several Host fields forwarded")
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return // cut short by the gateway: the connection ends here
		}
		r.received.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func isConnEnd(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "use of closed") || strings.Contains(s, "unexpected EOF") || strings.Contains(s, "i/o timeout")
}

func (r *fuzzRig) record(s string) {
	r.mu.Lock()
	r.bad = append(r.bad, s)
	r.mu.Unlock()
}

// FuzzGateway feeds raw bytes, as one client connection, to a gateway that
// forwards what it accepts to an upstream parsing with net/http. It checks
// that nothing panics, that the upstream never receives a request it cannot
// parse or whose framing is ambiguous (so nothing can be smuggled past the
// gateway), and that the upstream never completes more requests than the
// gateway accepted.
func FuzzGateway(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /y HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloGET /admin HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := getRig()
		if err != nil {
			t.Fatal(err)
		}
		acceptedBefore, receivedBefore := r.accepted.Load(), r.received.Load()
		c, err := net.Dial("tcp", r.gw)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
		r.mu.Lock()
		bad := r.bad
		r.bad = nil
		r.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("the upstream received a bad request: %v", bad)
		}
		// Requests of this input still in flight upstream finish within the
		// client's exchange; allow for the upstream lagging by reading again.
		if got, max := r.received.Load()-receivedBefore, r.accepted.Load()-acceptedBefore; got > max {
			t.Fatalf("the upstream completed %d requests, the gateway accepted %d", got, max)
		}
	})
}
