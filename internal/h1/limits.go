package h1

import "errors"

var (
	// ErrMaxSent is the cause of a Forward refused or cut because the
	// request body is longer than the Upstream's MaxSentBytes (answer 413).
	ErrMaxSent = errors.New("request body larger than the upstream accepts")
	// ErrMaxReceived is the cause of a Forward refused (502, when the
	// declared length is over the limit) or aborted (the head was sent)
	// because the response body is longer than the Upstream's
	// MaxReceivedBytes.
	ErrMaxReceived = errors.New("response body larger than accepted from the upstream")
	// ErrLengthRequired is the cause of a Forward refused because a request
	// body of unknown length does not fit in memory for an HTTP/1.0
	// upstream, which cannot take chunked bodies (answer 411).
	ErrLengthRequired = errors.New("request body of unknown length for an http/1.0 upstream")
)
