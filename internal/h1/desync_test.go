package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// smuggled is the body of every response that an upstream sends beyond
// what was asked: no client may ever receive it.
const smuggled = "SMUGGLED"

// desyncUpstream answers each request on a connection with its own path as
// the body, except the path /evil, which gets evil (the written bytes
// follow, after late, by lateExtra: bytes that arrive after the response
// looked complete).
func desyncUpstream(t *testing.T, evil, lateExtra string) *Upstream {
	extraResp := "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + smuggled
	return rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			lines, err := readRequestHead(br)
			if err != nil || len(lines) == 0 {
				return
			}
			path := strings.Fields(lines[0])[1]
			if path == "/evil" {
				io.WriteString(c, strings.ReplaceAll(evil, "EXTRA", extraResp))
				if lateExtra != "" {
					time.Sleep(20 * time.Millisecond)
					io.WriteString(c, strings.ReplaceAll(lateExtra, "EXTRA", extraResp))
				}
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(path), path)
		}
	})
}

// TestForwardDesync: an upstream that sends more than its response's
// framing declares must not have the rest served to the next client. Each
// variant sends the extra bytes with the response (buffered) or a little
// later (only visible on the socket when the connection leaves the pool).
func TestForwardDesync(t *testing.T) {
	cases := []struct {
		name, method, evil, late string
	}{
		{"second response after content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", ""},
		{"second response after content-length, late", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "EXTRA"},
		{"body on 204", "GET", "HTTP/1.1 204 No Content\r\n\r\nEXTRA", ""},
		{"body on 204, late", "GET", "HTTP/1.1 204 No Content\r\n\r\n", "EXTRA"},
		{"body on 304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 35\r\n\r\nEXTRA", ""},
		{"body answering head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 35\r\n\r\nEXTRA", ""},
		{"bytes after the last chunk", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA", ""},
		{"bytes after the last chunk, late", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "EXTRA"},
		{"100 followed by more", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", ""},
		{"garbage after the response", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := desyncUpstream(t, tc.evil, tc.late)
			addr := proxyServer(t, u, nil)
			a := dial(t, addr)
			fmt.Fprintf(a, "%s /evil HTTP/1.1\r\nHost: a\r\n\r\n", tc.method)
			abr := bufio.NewReader(a)
			if r := readResponse(t, abr, tc.method == "HEAD"); strings.Contains(r.body, smuggled) {
				t.Fatalf("client A got the extra response: %q", r.raw+r.body)
			}
			if tc.late != "" {
				time.Sleep(100 * time.Millisecond) // the late bytes are on the pooled socket by now
			}
			// Other clients, on other connections, one after the other
			// and then at once: each gets the answer to its own request.
			check := func(name string) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for i := range 3 {
					path := fmt.Sprintf("/%s-%d", name, i)
					fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path)
					line, err := br.ReadString('\n')
					if err != nil {
						t.Errorf("%s: %v", path, err)
						return
					}
					r := readResponseAfter(t, br, line)
					if r.body != path {
						t.Errorf("client %s asked %s and got %d %q: the answer to another request", name, path, r.status, r.body)
					}
				}
			}
			check("B")
			var wg sync.WaitGroup
			for _, n := range []string{"C", "D", "E"} {
				wg.Add(1)
				go func() { defer wg.Done(); check(n) }()
			}
			wg.Wait()
			// A's own connection goes on too.
			fmt.Fprintf(a, "GET /A-next HTTP/1.1\r\nHost: a\r\n\r\n")
			if r := readResponse(t, abr, false); r.body != "/A-next" {
				t.Errorf("client A's next request got %q", r.body)
			}
			if n := u.Unsolicited(); n < 1 {
				t.Errorf("Unsolicited() = %d, want at least 1 connection closed for its extra bytes", n)
			}
		})
	}
}

// readResponseAfter is readResponse for a status line already read.
func readResponseAfter(t *testing.T, br *bufio.Reader, statusLine string) testResp {
	t.Helper()
	return readResponse(t, bufio.NewReader(io.MultiReader(strings.NewReader(statusLine), br)), false)
}

// TestUpstreamClosedWhileIdle: a pooled connection that the upstream
// closed is noticed when it leaves the pool (no stale retry needed), and
// is not counted as unsolicited bytes.
func TestUpstreamClosedWhileIdle(t *testing.T) {
	u := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	addr := proxyServer(t, u, nil)
	for i := range 3 {
		got := roundTripRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("request %d: got %q", i, got)
		}
		time.Sleep(20 * time.Millisecond) // the upstream's FIN arrives
	}
	if _, dials := u.Stats(); dials != 3 {
		t.Errorf("got %d dials, want 3", dials)
	}
	if n := u.Unsolicited(); n != 0 {
		t.Errorf("Unsolicited() = %d, want 0 for a plain close", n)
	}
}
