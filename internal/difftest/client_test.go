package difftest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// response is one final response as a lenient client read it.
type response struct {
	Status int
	Header map[string][]string // lower-case names
	Body   []byte
	Raw    []byte
}

func (r *response) get(name string) string {
	if v := r.Header[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// forwarded reports whether the back end produced r.
func (r *response) forwarded() bool { return r.get("X-Backend-Seq") != "" }

// result is what one client connection got.
type result struct {
	Resps     []response // final responses in order (1xx left out)
	Closed    bool       // the proxy closed the connection
	TimedOut  bool       // waited for a response that did not come
	Truncated bool       // the connection ended inside a response
	Garbage   string     // bytes that are not a response
}

const (
	responseWait = 3 * time.Second       // longest wait for an expected response (generous: CI runs packages side by side under -race)
	quietAfter   = 60 * time.Millisecond // wait for unexpected extra responses
)

// exchange sends raw on a new connection to addr and reads responses until
// it has want of them and nothing more arrives for quietAfter, the proxy
// closes, or a response does not come within responseWait. head means the
// requests are HEAD (responses have no body).
func exchange(addr string, raw []byte, want int, head bool) result {
	var res result
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		res.Garbage = "dial: " + err.Error()
		return res
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(raw) // a proxy may refuse and close before reading it all: read what it answered
	var buf []byte
	tmp := make([]byte, 32<<10)
	c.SetReadDeadline(time.Now().Add(responseWait))
	for {
		for {
			r, n, err := readResponse(buf, head, false)
			if err == errNeedMore {
				break
			}
			if err != nil {
				res.Garbage = err.Error()
				return res
			}
			buf = buf[n:]
			if r.Status >= 100 && r.Status < 200 {
				continue
			}
			res.Resps = append(res.Resps, *r)
			if len(res.Resps) >= want {
				c.SetReadDeadline(time.Now().Add(quietAfter))
			} else {
				c.SetReadDeadline(time.Now().Add(responseWait))
			}
		}
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				res.TimedOut = len(res.Resps) < want
				return res
			}
			// EOF or reset: a close-delimited response ends here.
			if len(buf) > 0 {
				if r, n, perr := readResponse(buf, head, true); perr == nil && n == len(buf) {
					res.Resps = append(res.Resps, *r)
				} else {
					res.Truncated = true
				}
			}
			res.Closed = true
			return res
		}
	}
}

// readResponse reads one response from b leniently (LF or CRLF line ends,
// RFC 9112 §6.3 framing); atEOF ends a close-delimited body.
func readResponse(b []byte, head, atEOF bool) (*response, int, error) {
	headLen, pos := -1, 0
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			break
		}
		if pos > 0 && (i == 0 || i == 1 && b[pos] == '\r') {
			headLen = pos + i + 1
			break
		}
		pos += i + 1
	}
	if headLen < 0 {
		if len(b) >= 5 && !bytes.HasPrefix(b, []byte("HTTP/")) {
			return nil, 0, fmt.Errorf("not a response: %q", truncate(b, 60))
		}
		if len(b) > 256<<10 {
			return nil, 0, fmt.Errorf("response head too long")
		}
		return nil, 0, errNeedMore
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b[:pos]), "\r\n", "\n"), "\n"), "\n")
	sl := strings.SplitN(lines[0], " ", 3)
	if len(sl) < 2 || !strings.HasPrefix(sl[0], "HTTP/") {
		return nil, 0, fmt.Errorf("bad status line: %q", lines[0])
	}
	status, err := strconv.Atoi(sl[1])
	if err != nil {
		return nil, 0, fmt.Errorf("bad status line: %q", lines[0])
	}
	r := &response{Status: status, Header: map[string][]string{}}
	for _, l := range lines[1:] {
		if name, v, ok := strings.Cut(l, ":"); ok {
			n := strings.ToLower(strings.TrimSpace(name))
			r.Header[n] = append(r.Header[n], strings.TrimSpace(v))
		}
	}
	rest := b[headLen:]
	var n int
	switch {
	case head || status < 200 || status == 204 || status == 304:
	case strings.Contains(strings.ToLower(r.get("Transfer-Encoding")), "chunked"):
		body, used, err := readChunked(rest)
		if err != nil {
			return nil, 0, err
		}
		r.Body, n = body, used
	case r.get("Content-Length") != "":
		cl, err := strconv.Atoi(r.get("Content-Length"))
		if err != nil || cl < 0 {
			return nil, 0, fmt.Errorf("bad Content-Length %q", r.get("Content-Length"))
		}
		if len(rest) < cl {
			return nil, 0, errNeedMore
		}
		r.Body, n = rest[:cl], cl
	default:
		if !atEOF {
			return nil, 0, errNeedMore
		}
		r.Body, n = rest, len(rest)
	}
	r.Raw = b[:headLen+n]
	return r, headLen + n, nil
}

func readChunked(b []byte) ([]byte, int, error) {
	var body []byte
	i := 0
	for {
		eol := bytes.IndexByte(b[i:], '\n')
		if eol < 0 {
			return nil, 0, errNeedMore
		}
		line := strings.TrimSpace(string(b[i : i+eol]))
		if k := strings.IndexByte(line, ';'); k >= 0 {
			line = line[:k]
		}
		size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil || size < 0 {
			return nil, 0, fmt.Errorf("bad chunk line %q", line)
		}
		i += eol + 1
		if size == 0 {
			break
		}
		if int64(len(b)-i) < size+2 {
			return nil, 0, errNeedMore
		}
		body = append(body, b[i:i+int(size)]...)
		i += int(size) + 2
	}
	for {
		eol := bytes.IndexByte(b[i:], '\n')
		if eol < 0 {
			return nil, 0, errNeedMore
		}
		line := strings.TrimSpace(string(b[i : i+eol]))
		i += eol + 1
		if line == "" {
			return body, i, nil
		}
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// get sends a plain GET for path and returns what came back (for the
// response-side corpus's other clients).
func getPath(addr, path string) result {
	return exchange(addr, []byte("GET "+path+" HTTP/1.1\r\nHost: diff.test\r\n\r\n"), 1, false)
}
