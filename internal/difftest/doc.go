// Package difftest is the differential test of the traffic engine: the same
// corpus of raw HTTP/1.1 requests is sent to a Gatehouse instance and to
// nginx and HAProxy configured as reverse proxies, each in front of its own
// recording back end (Recorder), and the test compares what each proxy
// answered with what its back end received.
//
// The Recorder is a raw TCP server that keeps every byte of every connection
// and parses requests strictly (RFC 9112: request line, CRLF only, field
// lines, Content-Length and chunked framing). Anything a back end could read
// in more than one way is recorded as an ambiguity instead of being
// interpreted. Each request it parses is answered with a marker
// (X-Backend-Seq, the path and the body's length and SHA-256), so that the
// test can tell which back-end request produced which client response. A
// request to /resp/MODE is answered with a malformed or over-long response
// (the response-side corpus, see ResponseModes); the "extra bytes" modes
// carry a second, smuggled response whose body is "SMUGGLED after SEQ".
//
// For Gatehouse the test (difftest_test.go) asserts, for every request case:
// the expected outcome; no ambiguity in what its back end received; exactly
// the requests it answered from the back end were received there, with the
// bodies the client sent; and that its refusals differ from the peers' only
// where the tables of deliberate differences say so. For every response
// case it asserts that no other client ever gets a response, or a part of
// one, that was meant for the client that asked. The peers' outcomes are
// reported, not asserted.
//
// nginx and HAProxy are found on PATH or in /usr/sbin (scripts/test installs
// them); without them the test is skipped.
package difftest
