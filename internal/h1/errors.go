package h1

import (
	"errors"
	"fmt"
)

// ProtocolError is a violation of HTTP/1.1 framing or syntax by the peer: a
// malformed request head, bad chunking, or (on the upstream side) a malformed
// response. Status is the status the server answers for it.
type ProtocolError struct {
	Status int
	Reason string // a short lowercase phrase, never containing peer data
}

func (e *ProtocolError) Error() string { return "http/1.1 protocol error: " + e.Reason }

func protoErr(status int, reason string) *ProtocolError {
	return &ProtocolError{Status: status, Reason: reason}
}

var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("h1: server closed")
	// ErrBodyTooLarge is returned by Request.Body.Read when the body is longer
	// than Request.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrBodyNotAllowed is returned by Write for a response that cannot have
	// a body (204, 304, 1xx).
	ErrBodyNotAllowed = errors.New("response status does not allow a body")
	// ErrContentLength is returned by Write past the declared Content-Length.
	ErrContentLength = errors.New("write past the declared content length")
	// ErrHijacked is returned by ResponseWriter methods after Hijack.
	ErrHijacked = errors.New("connection has been hijacked")
	// ErrAborted is returned by ResponseWriter methods after Abort.
	ErrAborted = errors.New("response aborted")
	// ErrNoConn is the cause of an ErrNoConnAvailable ForwardError: MaxConns
	// connections are open and none became free within ConnWait.
	ErrNoConn = errors.New("no upstream connection available")
)

// ErrKind classifies a Forward failure.
type ErrKind int

const (
	// ErrConnect: the upstream could not be reached or refused the
	// connection (answer 502).
	ErrConnect ErrKind = iota + 1
	// ErrTimeout: connecting or waiting for the response head took too long,
	// or the context's deadline passed (answer 504).
	ErrTimeout
	// ErrUpstreamProtocol: the upstream sent something that is not a valid
	// HTTP/1.1 response, or closed early (answer 502).
	ErrUpstreamProtocol
	// ErrClient: the client went away, its body was bad or too large
	// (errors.Is(err, ErrBodyTooLarge): answer 413), or ctx was cancelled.
	ErrClient
	// ErrNoConnAvailable: the upstream's MaxConns were all busy for ConnWait
	// (answer 503).
	ErrNoConnAvailable
)

func (k ErrKind) String() string {
	switch k {
	case ErrConnect:
		return "connect"
	case ErrTimeout:
		return "timeout"
	case ErrUpstreamProtocol:
		return "upstream protocol"
	case ErrClient:
		return "client"
	case ErrNoConnAvailable:
		return "no connection available"
	}
	return fmt.Sprintf("ErrKind(%d)", int(k))
}

// ForwardError is the error of Forward.
type ForwardError struct {
	Kind ErrKind
	// Responded is true when the response head was already sent to the
	// client: the caller must not write an error response; the response was
	// aborted (the client sees a truncated response and a closed connection).
	Responded bool
	Err       error
}

func (e *ForwardError) Error() string {
	return "forwarding: " + e.Kind.String() + ": " + e.Err.Error()
}

func (e *ForwardError) Unwrap() error { return e.Err }
