package h1

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"time"
)

// Request is one parsed HTTP/1.x request. Its byte slices point into the
// connection's buffer: they, and the Request itself, are valid only until the
// handler returns.
type Request struct {
	Method     []byte
	URI        []byte // request-target as received (origin-form, absolute-form, or "*")
	Path       []byte // URI up to '?', still percent-encoded ("/" for an absolute-form target without a path)
	Query      []byte // after '?', without it; nil if none
	ProtoMinor int    // 0 or 1 (HTTP/1.x)
	Host       []byte // the Host header (or authority of an absolute-form target)
	// Header holds every field as received, in order. The framing fields
	// (Content-Length, Transfer-Encoding) are kept too, already validated.
	Header        Header
	ContentLength int64 // -1 when chunked; 0 when no body
	Chunked       bool
	Close         bool   // the client asked to close after this request (Connection: close, or HTTP/1.0 without keep-alive)
	Upgrade       []byte // Upgrade header value when Connection contains "upgrade" (HTTP/1.1 only); nil otherwise
	// ExpectContinue is true for "Expect: 100-continue" (HTTP/1.1 only; any
	// other expectation is refused with 417).
	ExpectContinue bool
	// Body is the de-framed body (EOF at its end); never nil. Reading it sends
	// "100 Continue" first when the client asked for it and no response has
	// been started. Read errors: ErrBodyTooLarge past MaxBodyBytes,
	// *ProtocolError for bad chunking, io.ErrUnexpectedEOF for a truncated
	// body, timeouts (net.Error). After an error the connection is closed.
	Body io.Reader
	// MaxBodyBytes may be set by the handler before reading Body (a per-route
	// limit); 0 means no limit. When ContentLength > MaxBodyBytes the handler
	// should answer 413 without reading; reading fails with ErrBodyTooLarge.
	MaxBodyBytes int64
	RemoteAddr   netip.AddrPort
	LocalAddr    netip.AddrPort
	TLS          *tls.ConnectionState // nil on plain connections
	ReceivedAt   time.Time            // when the first byte of the request head arrived
}

// ResponseWriter writes the response to a Request. It is valid until the
// handler returns. Body.Read and the ResponseWriter may be used from two
// goroutines at once only after the first Body.Read has returned.
type ResponseWriter interface {
	// Header returns the response fields, to change before WriteHeader.
	Header() *Header
	// WriteHeader sends the status. Framing is chosen here: Content-Length
	// when set in Header, else chunked for HTTP/1.1 and close-delimited for
	// HTTP/1.0 (a response that ends before its first flush with no
	// Content-Length gets one computed); no body for HEAD, 1xx, 204 and 304.
	// 1xx other than 101 are sent at once as interim responses (HTTP/1.1).
	WriteHeader(status int)
	// Write writes body bytes; it implies WriteHeader(200).
	Write(p []byte) (int, error)
	// Flush pushes buffered bytes to the client now (server-sent events).
	Flush() error
	// Hijack takes the connection: after the handler wrote a 101 head (with
	// WriteHeader and Flush), or before writing anything. The reader holds
	// the bytes already read from the client after this request.
	Hijack() (net.Conn, *bufio.Reader, error)
	Written() int64 // body bytes written so far
	Status() int    // 0 until WriteHeader
}

// Aborter is implemented by the server's ResponseWriter: Abort ends the
// response abnormally (a chunked body gets no last chunk) and closes the
// connection after the handler returns. Forward calls it when a response
// fails after its head was sent.
type Aborter interface {
	Abort()
}

// Handler serves one request.
type Handler interface {
	ServeH1(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// ServeH1 calls f(w, r).
func (f HandlerFunc) ServeH1(w ResponseWriter, r *Request) { f(w, r) }

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
