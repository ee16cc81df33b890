// Package h2 is Gatehouse's own HTTP/2 server engine (RFC 9113, over TLS
// with ALPN "h2"): it serves an h1.Handler directly, without net/http, so
// that HTTP/2 requests take the gateway's one request path at the cost of
// the protocol and little more.
//
// Frames are read and written with golang.org/x/net/http2's Framer and
// header blocks coded with its hpack package; this package holds the
// connection and stream state machines, flow control, the request checks
// and the protections.
//
// Per connection: one goroutine reads and processes every frame (the
// caller of ServeConn); each request's handler runs in its own goroutine,
// since it blocks on the back end. Frames are written through one buffered
// writer under a mutex, flushed by the last writer when no other write is
// queued, so that responses finishing together leave in one TLS record.
//
// Strictness: everything that h2bridge refused before a request reached
// the handler is refused the same way (a 4xx reported through
// Server.OnReject, with Server.ErrorBody), and every malformed request of
// RFC 9113 section 8.1.1 is reset with PROTOCOL_ERROR. See docs/h2.md.
//
// Locks: Server.mu is never held with a connection's locks; a
// connection's mu (streams, windows) and wmu (the writer) are never held
// together.
//
// Ownership: the *h1.Request, its Header and the ResponseWriter are valid
// only until the handler returns.
package h2
