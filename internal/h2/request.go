package h2

import (
	"strings"
	"time"
	"unsafe"

	"golang.org/x/net/http2"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// refusal is the outcome of checking a request: either nothing (status 0,
// reset false), a response with status and reason (the h2bridge refusals,
// answered before the handler runs), or a malformed request that RFC 9113
// section 8.1.1 says to reset with PROTOCOL_ERROR.
type refusal struct {
	status int
	reason string
	reset  bool
}

func malformed(reason string) refusal { return refusal{reset: true, reason: reason} }

// buildRequest checks the request head of f, one rule at a time, and fills
// st.req. The pseudo-header order, duplicates, unknown pseudo-headers and
// the bytes of names and values were checked by the Framer already.
func (c *conn) buildRequest(st *stream, f *http2.MetaHeadersFrame) refusal {
	if f.Truncated {
		return refusal{status: 431, reason: "request header list too large"}
	}
	var method, scheme, path, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		default: // :status, :protocol (extended CONNECT is not offered)
			return malformed("pseudo-header " + hf.Name + " in a request")
		}
	}
	if method == "" {
		return malformed("missing :method")
	}
	if method == "CONNECT" {
		if scheme != "" || path != "" || authority == "" {
			return malformed("malformed connect")
		}
		return refusal{status: 405, reason: "connect is not supported over http/2"}
	}
	if scheme == "" || path == "" {
		return malformed("missing :scheme or :path")
	}
	regular := f.RegularFields()
	if len(regular) > c.s.maxHeaderCount() {
		return refusal{status: 431, reason: "too many header fields"}
	}
	req := &st.req
	var host string
	var cl []string
	var cookies []string
	for _, hf := range regular {
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return malformed("connection-specific field " + hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return malformed("te other than trailers")
			}
		case "host":
			if host != "" {
				return refusal{status: 400, reason: "more than one host field"}
			}
			host = hf.Value
			continue
		case "content-length":
			cl = append(cl, hf.Value)
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		case "expect":
			st.expectContinue = strings.EqualFold(hf.Value, "100-continue")
		}
		req.Header.AddString(hf.Name, hf.Value)
	}
	if len(cookies) == 1 {
		req.Header.AddString("cookie", cookies[0])
	} else if len(cookies) > 1 {
		// RFC 9113 section 8.2.3: cookie crumbs are joined for HTTP/1.1.
		req.Header.AddString("cookie", strings.Join(cookies, "; "))
	}
	switch {
	case authority == "" && host == "":
		return refusal{status: 400, reason: "missing :authority"}
	case authority == "":
		authority = host
	case host != "" && host != authority:
		return refusal{status: 400, reason: "host differs from :authority"}
	}
	if strings.ContainsAny(authority, " \t@/?#\\") || !h1.ValidTarget(authority) {
		return refusal{status: 400, reason: "invalid :authority"}
	}
	switch {
	case path == "*":
		if method != "OPTIONS" {
			return refusal{status: 400, reason: "asterisk :path outside options"}
		}
	case path[0] != '/':
		return refusal{status: 400, reason: "invalid :path"}
	case !h1.ValidTarget(path):
		return refusal{status: 400, reason: "invalid byte in :path"}
	}
	st.declared = -1
	if cl != nil {
		n, ok := h1.ContentLengthValues(cl)
		if !ok {
			return refusal{status: 400, reason: "invalid or conflicting content-length"}
		}
		if f.StreamEnded() && n > 0 {
			return refusal{status: 400, reason: "content-length without a body"}
		}
		st.declared = n
	}
	// Views of the decoded strings, which nothing else holds: no copy
	// (the handler does not write through a Request's byte slices).
	req.Method = bytesOf(method)
	req.URI = bytesOf(path)
	req.Path = req.URI
	if i := strings.IndexByte(path, '?'); i >= 0 {
		req.Path, req.Query = req.URI[:i:i], req.URI[i+1:]
	}
	req.ProtoMinor = 1
	req.Host = bytesOf(authority)
	req.Header.SetString("Host", authority)
	req.RemoteAddr, req.LocalAddr, req.TLS = c.remote, c.local, c.tls
	req.ReceivedAt = time.Now()
	switch {
	case f.StreamEnded():
		req.ContentLength = 0
		req.Body = emptyBody{}
	case st.declared == 0:
		// The stream's end must come before any byte of body: the
		// request waits for it (see conn.onData).
		req.ContentLength = 0
		req.Body = emptyBody{}
		st.waitEnd = true
	default:
		req.ContentLength = st.declared // -1 when not declared
		req.Body = &st.body
	}
	return refusal{}
}

func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, eof }
