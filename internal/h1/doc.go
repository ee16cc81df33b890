// Package h1 is a strict HTTP/1.1 server and upstream client: the fast path of
// the gateway's data plane for plain and TLS HTTP/1.x connections. (HTTP/2
// over TLS is served by internal/h2, or by Go's http2 server through
// internal/h2bridge, with the same Handler.)
//
// The server parses request heads in place, in a per-connection buffer taken
// from a pool, and hands the handler a *Request whose fields are byte slices
// into that buffer: a keep-alive GET through the server allocates nothing.
// While a connection waits for its next request with nothing buffered it holds
// no buffer at all; once it has waited 50 ms it is parked: on Linux in an
// epoll set of the package's own, with no goroutine (about 2 KiB per idle
// connection in all), elsewhere in a goroutine with the smallest stack.
// See "Idle connections and memory" in docs/h1.md.
//
// Parsing is strict on purpose: everything that could let the gateway and a
// back end disagree about where a request ends (request smuggling) is refused
// with a 4xx/5xx status, a "Connection: close" and a closed connection, and
// never reaches the handler. See docs/h1.md for the rules, one by one.
//
// Forward sends a request to an Upstream (one back-end address with its own
// pool of keep-alive connections) and streams the response back through a
// ResponseWriter, with the same strictness on the response head.
//
// Ownership: a *Request, its Header and its byte slices, and the
// ResponseWriter are valid only until the handler returns; the server reuses
// them for the next request.
package h1
