package difftest

import (
	"fmt"
	"strings"
)

// The request corpus. Every case is written for this test, from two kinds of
// source (the src field of a case names one):
//
//   - the grammar of RFC 9110 (semantics: fields, Connection, Expect, Host)
//     and RFC 9112 (message syntax: §2.2 message parsing and line ends,
//     §3 request line, §5 field syntax and obs-fold, §6.1 Transfer-Encoding,
//     §6.2 Content-Length, §6.3 message body length, §7.1 chunked coding,
//     §9.3 persistence and pipelining);
//   - the classes of cases that public request-smuggling research documents:
//     C. Linhart, A. Klein, R. Heled, S. Orrin, "HTTP Request Smuggling",
//     Watchfire, 2005 (CL.CL, CL.TE, duplicate fields, GET with a body);
//     A. Klein, "HTTP Message Splitting, Smuggling and Other Animals", 2006,
//     and "HTTP Request Smuggling in 2020" (Black Hat USA 2020: header
//     names with spaces, Transfer-Encoding variants, chunk-size oddities);
//     J. Kettle, "HTTP Desync Attacks: Request Smuggling Reborn", 2019
//     (CL.TE, TE.CL, TE.TE obfuscation: xchunked, whitespace, tab, vertical
//     tab, obs-fold, duplicate Transfer-Encoding); J. Kettle, "HTTP/2: The
//     Sequel is Always Worse", 2021 (header injection with CR, LF and NUL,
//     request-line and method tricks); J. Miller, "h2c Smuggling", Bishop
//     Fox, 2020 (Upgrade: h2c); J. Kettle, "Browser-Powered
//     Desync Attacks", 2022 (CL.0: bodies the back end ignores, pipelining,
//     Expect); B. Kallus, P. Anantharaman, M. Locasto, S. Smith, "The HTTP
//     Garden: Discovering Parsing Vulnerabilities in HTTP/1.1
//     Implementations by Differential Fuzzing of Request Streams", 2024
//     (versions, empty lines, whitespace, NUL, bare CR); and "Funky chunks:
//     abusing ambiguous chunk line terminators for request smuggling", 2025
//     (bare LF in chunk extensions and chunk lines: TERM.EXT, EXT.TERM, the
//     one-byte chunk with a bare-LF data terminator).
//
// raw uses {P} for the case's path (/c/NAME) and {P2} for a second request's
// path; bodies never contain them, so lengths are fixed.
type reqCase struct {
	name string
	raw  string
	n    int    // requests a strict reading finds; 0 means 1
	head bool   // HEAD requests: responses have no body
	gw   string // Gatehouse's expected outcome (see outcome)
	src  string
	// check, when set, looks further at what the back end received from
	// Gatehouse (the requests of the case, in order).
	check func(reqs []*Request) error
}

const (
	host = "Host: diff.test\r\n"
	// smug is the request a smuggling payload hides in a body.
	smug = "GET /smuggled HTTP/1.1\r\n" + host + "\r\n"
	// chunked5 is "hello" as a chunked body.
	chunked5 = "5\r\nhello\r\n0\r\n\r\n"
)

func get(extra string) string { return "GET {P} HTTP/1.1\r\n" + host + extra + "\r\n" }

func post(extra, body string) string { return "POST {P} HTTP/1.1\r\n" + host + extra + "\r\n" + body }

func postCL(extra, body string) string {
	return post(fmt.Sprintf("%sContent-Length: %d\r\n", extra, len(body)), body)
}

func cl(n int) string { return fmt.Sprintf("Content-Length: %d\r\n", n) }

// requestCorpus builds the request corpus.
func requestCorpus() []reqCase {
	var cs []reqCase
	add := func(name, src, gw, raw string) *reqCase {
		cs = append(cs, reqCase{name: name, src: src, gw: gw, raw: raw})
		return &cs[len(cs)-1]
	}

	// Valid messages: every proxy must forward these unchanged in meaning.
	add("get", "9112§3", "fwd", get(""))
	add("get-query", "9112§3.2.1", "fwd", strings.Replace(get(""), "{P}", "{P}?a=1&b=%20", 1))
	add("head", "9110§9.3.2", "fwd", strings.Replace(get(""), "GET", "HEAD", 1))
	add("post-cl", "9112§6.2", "fwd", postCL("", "hello"))
	add("post-cl-zero", "9112§6.2", "fwd", postCL("", ""))
	add("post-cl-leading-zeros", "9112§6.2", "fwd", post("Content-Length: 005\r\n", "hello"))
	add("post-chunked", "9112§7.1", "fwd", post("Transfer-Encoding: chunked\r\n", chunked5))
	add("post-chunked-uppercase-hex", "9112§7.1", "fwd", post("Transfer-Encoding: chunked\r\n", "A\r\n0123456789\r\n0\r\n\r\n"))
	add("post-chunked-leading-zeros", "9112§7.1", "fwd", post("Transfer-Encoding: chunked\r\n", "0005\r\nhello\r\n0\r\n\r\n"))
	add("post-chunked-16-digits", "9112§7.1", "fwd", post("Transfer-Encoding: chunked\r\n", "0000000000000005\r\nhello\r\n0\r\n\r\n"))
	add("post-chunked-many", "9112§7.1", "fwd", post("Transfer-Encoding: chunked\r\n", strings.Repeat("1\r\nx\r\n", 100)+"0\r\n\r\n"))
	add("post-chunked-ext", "9112§7.1.1", "fwd", post("Transfer-Encoding: chunked\r\n", "5;name=value\r\nhello\r\n0\r\n\r\n"))
	add("post-chunked-ext-quoted", "9112§7.1.1", "fwd", post("Transfer-Encoding: chunked\r\n", "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"))
	add("post-chunked-ext-bare", "9112§7.1.1", "fwd", post("Transfer-Encoding: chunked\r\n", "5;x\r\nhello\r\n0;y\r\n\r\n"))
	add("post-chunked-ext-3k", "9112§7.1.1", "fwd", post("Transfer-Encoding: chunked\r\n", "5;x="+strings.Repeat("a", 3000)+"\r\nhello\r\n0\r\n\r\n"))
	add("post-chunked-trailer", "9112§7.1.2", "fwd", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"))
	add("post-chunked-trailer-cl", "9110§6.5.1", "fwd", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"))
	add("get-chunked-body", "kettle22 CL.0", "fwd", "GET {P} HTTP/1.1\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n"+chunked5)
	add("get-cl-body", "watchfire GET body; kettle22 CL.0", "fwd", "GET {P} HTTP/1.1\r\n"+host+cl(len(smug))+"\r\n"+smug)
	add("post-cl-body-is-request", "kettle22 CL.0", "fwd", postCL("", smug))
	add("http10", "9112§2.3", "fwd", "GET {P} HTTP/1.0\r\n\r\n")
	add("http10-host", "9112§2.3", "fwd", "GET {P} HTTP/1.0\r\n"+host+"\r\n")
	add("http10-keepalive", "9112§9.3", "fwd", "GET {P} HTTP/1.0\r\n"+host+"Connection: keep-alive\r\n\r\n")
	add("http10-post-cl", "9112§6.2", "fwd", "POST {P} HTTP/1.0\r\n"+host+cl(5)+"\r\nhello")
	add("te-uppercase", "9112§7 (case-insensitive coding)", "fwd", post("Transfer-Encoding: CHUNKED\r\n", chunked5))
	add("te-no-space", "9112§5.1", "fwd", post("Transfer-Encoding:chunked\r\n", chunked5))
	add("te-tab-before", "9112§5.1 OWS; kettle19", "fwd", post("Transfer-Encoding:\tchunked\r\n", chunked5))
	add("te-spaces-around", "9112§5.1 OWS", "fwd", post("Transfer-Encoding:   chunked  \r\n", chunked5))
	add("cl-list-identical", "9110§8.6", "fwd", post("Content-Length: 5, 5\r\n", "hello"))
	add("cl-dup-identical", "9110§8.6; watchfire", "fwd", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"))
	add("cl-tab-before", "9112§5.1 OWS", "fwd", post("Content-Length:\t5\r\n", "hello"))
	add("cl-space-before", "9112§5.1 OWS", "fwd", post("Content-Length:  5\r\n", "hello"))
	add("absolute-form-same-host", "9112§3.2.2", "fwd", "GET http://diff.test{P} HTTP/1.1\r\n"+host+"\r\n")
	add("obs-text-value", "9110§5.5 obs-text", "fwd", get("X-Text: caf\xe9\r\n"))
	add("tab-in-value", "9110§5.5", "fwd", get("X-Text: a\tb\r\n"))
	add("value-whitespace-around", "9110§5.5", "fwd", get("X-Text:  \t a \t \r\n"))
	add("empty-value", "9110§5.5", "fwd", get("X-Empty:\r\n"))
	add("method-lowercase", "9110§9.1 (case-sensitive token)", "fwd", strings.Replace(get(""), "GET", "get", 1))
	add("method-unknown", "9110§9.1", "fwd", strings.Replace(get(""), "GET", "FOO", 1))
	add("method-token-chars", "9110§5.6.2", "fwd", strings.Replace(get(""), "GET", "M-1.X!~", 1))
	add("options", "9110§9.3.7", "fwd", strings.Replace(get(""), "GET", "OPTIONS", 1))
	add("header-name-8k", "9110§5.1", "fwd", get(strings.Repeat("N", 8000)+": 1\r\n"))
	add("header-value-20k", "9110§5.5", "fwd", get("X-Long: "+strings.Repeat("v", 20000)+"\r\n"))
	add("host-with-port", "9110§7.2", "fwd", "GET {P} HTTP/1.1\r\nHost: diff.test:8080\r\n\r\n")
	add("host-ipv6", "9110§7.2", "fwd", "GET {P} HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
	add("xff-from-client", "gateway: client X-Forwarded-For replaced", "fwd", get("X-Forwarded-For: 6.6.6.6\r\n")).check = wantForwardedFields
	add("te-trailers", "9110§10.1.4", "fwd", get("TE: trailers\r\n"))
	add("keep-alive-field", "9112§9.3", "fwd", get("Keep-Alive: timeout=5\r\n"))
	add("proxy-connection", "9112§9.3 (obsolete)", "fwd", get("Proxy-Connection: keep-alive\r\n"))
	add("connection-close", "9112§9.6", "fwd", get("Connection: close\r\n"))
	add("connection-names-field", "9110§7.6.1", "fwd", get("Connection: X-Hop\r\nX-Hop: 1\r\n")).check = wantNoField("X-Hop")
	add("upgrade-h2c", "miller 2020 h2c smuggling", "fwd", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"))
	add("upgrade-websocket-no-101", "9110§7.8", "fwd", get("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))

	// Fix (2): a client's Connection must not remove the fields the
	// gateway adds; naming a framing field in Connection is refused.
	add("connection-xff", "9110§7.6.1; fix 2", "fwd", get("Connection: X-Forwarded-For\r\n")).check = wantForwardedFields
	add("connection-gateway-fields", "9110§7.6.1; fix 2", "fwd", get("Connection: keep-alive, X-Forwarded-Proto, X-Forwarded-Host, X-CorrelationID\r\n")).check = wantForwardedFields
	add("connection-content-length", "9110§7.6.1 hop-by-hop abuse; fix 2", "400", post("Connection: Content-Length\r\n"+cl(5), "hello"))
	add("connection-close-content-length", "9110§7.6.1 hop-by-hop abuse; fix 2", "400", post("Connection: close, Content-Length\r\n"+cl(5), "hello"))
	add("connection-transfer-encoding", "9110§7.6.1 hop-by-hop abuse; fix 2", "400", post("Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", chunked5))
	add("connection-host", "9110§7.6.1 hop-by-hop abuse; fix 2", "400", get("Connection: Host\r\n"))

	// Empty lines before the request line (RFC 9112 §2.2; fix 6).
	add("leading-crlf-1", "9112§2.2; garden", "fwd", "\r\n"+get(""))
	add("leading-crlf-4", "9112§2.2; garden", "fwd", strings.Repeat("\r\n", 4)+get(""))
	add("leading-crlf-8", "9112§2.2; fix 6", "fwd", strings.Repeat("\r\n", 8)+get(""))
	add("leading-crlf-9", "9112§2.2 (Gatehouse bound: 8)", "400", strings.Repeat("\r\n", 9)+get(""))
	add("leading-bare-lf", "9112§2.2 (MAY accept LF); garden", "fwd", "\n"+get(""))
	add("leading-mixed-empty-lines", "9112§2.2; garden", "fwd", "\n\r\n\n"+get(""))
	add("leading-space", "9112§3; garden", "400", " "+get(""))
	add("crlf-between-pipelined", "9112§2.2 (after a body)", "fwd", postCL("", "hello")+"\r\n"+strings.Replace(get(""), "{P}", "{P2}", 1)).n = 2

	// Request line (RFC 9112 §3).
	add("version-1.2", "9112§2.3 (HTTP/1.x is 1.1); fix 6", "fwd", strings.Replace(get(""), "HTTP/1.1", "HTTP/1.2", 1))
	add("version-1.9", "9112§2.3; fix 6", "fwd", strings.Replace(get(""), "HTTP/1.1", "HTTP/1.9", 1))
	add("version-2.0", "9112§2.3; kettle21", "505", strings.Replace(get(""), "HTTP/1.1", "HTTP/2.0", 1))
	add("version-3.0", "9112§2.3", "505", strings.Replace(get(""), "HTTP/1.1", "HTTP/3.0", 1))
	add("version-0.9", "9112§2.3; garden", "505", strings.Replace(get(""), "HTTP/1.1", "HTTP/0.9", 1))
	add("version-1.10", "9112§2.3 DIGIT.DIGIT", "400", strings.Replace(get(""), "HTTP/1.1", "HTTP/1.10", 1))
	add("version-lowercase", "9112§2.3 (case-sensitive); garden", "400", strings.Replace(get(""), "HTTP/1.1", "http/1.1", 1))
	add("version-missing", "HTTP/0.9 simple request; garden", "400", "GET {P}\r\n"+host+"\r\n")
	add("version-11-no-dot", "9112§2.3", "400", strings.Replace(get(""), "HTTP/1.1", "HTTP/11", 1))
	add("version-trailing-space", "9112§3", "400", strings.Replace(get(""), "HTTP/1.1", "HTTP/1.1 ", 1))
	add("h2-preface", "9113§3.4 (h2c prior knowledge)", "505", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	add("two-spaces-after-method", "9112§3; garden", "400", strings.Replace(get(""), "GET ", "GET  ", 1))
	add("two-spaces-before-version", "9112§3; garden", "400", strings.Replace(get(""), " HTTP/1.1", "  HTTP/1.1", 1))
	add("tab-separator", "9112§3; garden", "400", strings.Replace(get(""), "GET ", "GET\t", 1))
	add("space-in-target", "9112§3.2", "400", strings.Replace(get(""), "{P}", "{P}/a b", 1))
	add("fragment-in-target", "9112§3.2", "400", strings.Replace(get(""), "{P}", "{P}#f", 1))
	add("ctl-in-target", "9112§3.2", "400", strings.Replace(get(""), "{P}", "{P}\x01", 1))
	add("del-in-target", "9112§3.2", "400", strings.Replace(get(""), "{P}", "{P}\x7f", 1))
	add("high-byte-in-target", "9112§3.2", "400", strings.Replace(get(""), "{P}", "{P}\xff", 1))
	add("bad-percent-in-target", "3986§2.1", "400", strings.Replace(get(""), "{P}", "{P}%zz", 1))
	add("target-no-slash", "9112§3.2", "400", strings.Replace(get(""), "{P}", "c/x", 1))
	add("target-asterisk-get", "9112§3.2.4", "400", "GET * HTTP/1.1\r\n"+host+"\r\n")
	add("absolute-form-other-host", "9112§3.2.2; kettle19 (routing)", "400", "GET http://other.test{P} HTTP/1.1\r\n"+host+"\r\n")
	add("absolute-form-userinfo", "9110§4.2.4", "400", "GET http://a@diff.test{P} HTTP/1.1\r\n"+host+"\r\n")
	add("authority-form-connect", "9112§3.2.3", "400", "CONNECT diff.test:443 HTTP/1.1\r\n"+host+"\r\n")
	add("target-9k", "9112§3 (length)", "414", strings.Replace(get(""), "{P}", "{P}/"+strings.Repeat("a", 9000), 1))
	add("method-non-token", "9110§9.1", "400", strings.Replace(get(""), "GET", "G(T", 1))
	add("method-empty", "9112§3", "400", strings.Replace(get(""), "GET", "", 1))
	add("method-nul", "kettle21", "400", strings.Replace(get(""), "GET", "G\x00ET", 1))
	add("request-line-bare-cr", "9112§2.2; garden", "400", strings.Replace(get(""), "HTTP/1.1\r\n", "HTTP/1.1\r", 1))

	// Line ends and field syntax (RFC 9112 §2.2, §5).
	add("bare-lf-everywhere", "9112§2.2; garden", "400", strings.ReplaceAll(get("X-A: 1\r\n"), "\r\n", "\n"))
	add("bare-lf-after-request-line", "9112§2.2", "400", strings.Replace(get(""), "HTTP/1.1\r\n", "HTTP/1.1\n", 1))
	add("bare-lf-end-of-head", "9112§2.2", "400", strings.TrimSuffix(get(""), "\r\n")+"\n")
	add("bare-lf-field-line", "9112§2.2", "400", get("X-A: 1\nX-B: 2\r\n"))
	add("bare-cr-field-line", "9112§2.2; garden", "400", get("X-A: 1\rX-B: 2\r\n"))
	add("bare-cr-in-value", "9112§2.2; kettle21", "400", get("X-A: a\rb\r\n"))
	add("lf-in-value-cl", "kettle21 (header injection)", "400", post("X-A: a\nContent-Length: 5\r\n", "hello"))
	add("nul-in-value", "9110§5.5; garden", "400", get("X-A: a\x00b\r\n"))
	add("nul-in-name", "9110§5.1; garden", "400", get("X-\x00A: b\r\n"))
	add("del-in-value", "9110§5.5", "400", get("X-A: a\x7fb\r\n"))
	add("vt-in-value", "9110§5.5", "400", get("X-A: a\vb\r\n"))
	add("ff-in-value", "9110§5.5", "400", get("X-A: a\fb\r\n"))
	add("obs-fold", "9112§5.2; watchfire", "400", get("X-A: a\r\n b\r\n"))
	add("obs-fold-tab", "9112§5.2", "400", get("X-A: a\r\n\tb\r\n"))
	add("obs-fold-first-line", "9112§5.2; kettle19", "400", get(" X-A: a\r\n"))
	add("space-before-colon", "9112§5.1; klein 2020", "400", get("X-A : 1\r\n"))
	add("tab-before-colon", "9112§5.1", "400", get("X-A\t: 1\r\n"))
	add("line-without-colon", "9112§5.1", "400", get("X-A 1\r\n"))
	add("empty-name", "9112§5.1", "400", get(": 1\r\n"))
	add("name-non-token", "9110§5.1", "400", get("X(A): 1\r\n"))
	add("name-utf8", "9110§5.1", "400", get("X-\xc3\xa9: 1\r\n"))
	add("header-section-40k", "9112§2.3 (length)", "431", get(strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", 40)))
	add("header-name-40k", "9112§2.3 (length)", "431", get(strings.Repeat("N", 40000)+": 1\r\n"))
	add("fields-150", "count bound", "431", get(strings.Repeat("X-F: 1\r\n", 150)))

	// Host (RFC 9110 §7.2, RFC 9112 §3.2).
	add("host-missing", "9112§3.2", "400", "GET {P} HTTP/1.1\r\n\r\n")
	add("host-dup-same", "9112§3.2", "400", get(host))
	add("host-dup-different", "9112§3.2; kettle19", "400", get("Host: other.test\r\n"))
	add("host-space-inside", "9110§7.2", "400", "GET {P} HTTP/1.1\r\nHost: diff test\r\n\r\n")
	add("host-slash", "9110§7.2", "400", "GET {P} HTTP/1.1\r\nHost: diff.test/x\r\n\r\n")
	add("host-userinfo", "9110§4.2.4", "400", "GET {P} HTTP/1.1\r\nHost: a@diff.test\r\n\r\n")
	add("host-space-before-colon", "9112§5.1", "400", "GET {P} HTTP/1.1\r\nHost : diff.test\r\n\r\n")
	add("host-absolute-no-host", "9112§3.2", "400", "GET http://diff.test{P} HTTP/1.1\r\n\r\n")

	// Content-Length (RFC 9110 §8.6, RFC 9112 §6.2, §6.3).
	for _, v := range []struct{ name, value string }{
		{"plus", "+5"}, {"minus", "-5"}, {"hex", "0x5"}, {"decimal", "5.0"}, {"space-inside", "5 5"},
		{"empty", ""}, {"19-digits", "0000000000000000005"}, {"overflow", "99999999999999999999"},
		{"list-different", "5, 6"}, {"list-empty-element", "5,"}, {"letter", "5a"}, {"vt", "\v5"},
		{"underscore-digits", "5_0"}, {"unicode-digit", "\xd9\xa5"},
	} {
		add("cl-"+v.name, "9112§6.2; watchfire, klein 2020", "400", post("Content-Length: "+v.value+"\r\n", "hello"))
	}
	add("cl-dup-different", "9112§6.3; watchfire CL.CL", "400", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"))
	add("cl-dup-different-smuggle", "watchfire CL.CL", "400", post(cl(0)+cl(len(smug)), smug))
	add("cl-space-before-colon", "9112§5.1; klein 2020", "400", post("Content-Length : 5\r\n", "hello"))
	add("cl-obs-fold", "9112§5.2", "400", post("Content-Length:\r\n 5\r\n", "hello"))
	// The rest of the body is the start of a next request line that never
	// ends: one response, then the proxy waits.
	add("cl-short-body-follows", "9112§6.3 (rest is the next request)", "fwd", post(cl(3), "hello"))
	add("cl-underscore-name", "header name normalisation (garden)", "fwd", post("Content_Length: 5\r\n", "hello"))
	add("cl-huge", "9112§6.2 (body over the API's limit)", "413", post("Content-Length: 100000000000\r\n", "hello"))
	add("http10-cl-te", "9112§6.1", "400", "POST {P} HTTP/1.0\r\n"+host+cl(5)+"Transfer-Encoding: chunked\r\n\r\n"+chunked5)

	// Transfer-Encoding (RFC 9112 §6.1, §6.3; Kettle 2019 TE.TE
	// obfuscations). Each variant alone with a chunked body, and with a
	// Content-Length that covers a smuggled request (CL.TE / TE.CL).
	teVariants := []struct{ name, fields, alone string }{
		{"xchunked", "Transfer-Encoding: xchunked\r\n", "501"},
		{"chunk", "Transfer-Encoding: chunk\r\n", "501"},
		{"identity", "Transfer-Encoding: identity\r\n", "501"},
		{"chunked-identity", "Transfer-Encoding: chunked, identity\r\n", "501"},
		{"identity-chunked", "Transfer-Encoding: identity, chunked\r\n", "501"},
		{"gzip-chunked", "Transfer-Encoding: gzip, chunked\r\n", "501"},
		{"chunked-chunked", "Transfer-Encoding: chunked, chunked\r\n", "400"},
		{"two-fields-chunked", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "400"},
		{"two-fields-x-chunked", "Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n", "501"},
		{"two-fields-chunked-identity", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", "501"},
		{"chunked-semicolon", "Transfer-Encoding: chunked;x\r\n", "400"},
		{"chunked-trailing-comma", "Transfer-Encoding: chunked,\r\n", "400"},
		{"leading-comma", "Transfer-Encoding: , chunked\r\n", "400"},
		{"empty", "Transfer-Encoding: \r\n", "400"},
		{"quoted", "Transfer-Encoding: \"chunked\"\r\n", "400"},
		{"vt-before", "Transfer-Encoding:\vchunked\r\n", "400"},
		{"ff-before", "Transfer-Encoding:\fchunked\r\n", "400"},
		{"nul-after", "Transfer-Encoding: chunked\x00\r\n", "400"},
		{"cr-after", "Transfer-Encoding: chunked\r\r\n", "400"},
		{"space-before-colon", "Transfer-Encoding : chunked\r\n", "400"},
		{"tab-before-colon", "Transfer-Encoding\t: chunked\r\n", "400"},
		{"obs-fold", "Transfer-Encoding:\r\n chunked\r\n", "400"},
		{"obs-fold-after-x", "Transfer-Encoding: x\r\n chunked\r\n", "400"},
		{"high-byte", "Transfer-Encoding: chunked\xff\r\n", "400"},
		{"chunkedx", "Transfer-Encoding: chunkedx\r\n", "501"},
	}
	for _, v := range teVariants {
		add("te-"+v.name, "9112§6.1; kettle19 TE.TE", v.alone, post(v.fields, chunked5))
		// CL.TE: a CL reader ends after "0\r\n\r\n" + smug; a TE reader
		// ends after "0\r\n\r\n", and smug is a second request.
		add("clte-"+v.name, "watchfire CL.TE; kettle19", "400", post(cl(5+len(smug))+v.fields, "0\r\n\r\n"+smug))
	}
	add("clte-plain", "watchfire CL.TE; kettle19", "400", post(cl(5+len(smug))+"Transfer-Encoding: chunked\r\n", "0\r\n\r\n"+smug))
	add("tecl-plain", "kettle19 TE.CL", "400", post("Transfer-Encoding: chunked\r\n"+cl(4), fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smug), smug)))
	add("tecl-cl-first", "kettle19 TE.CL", "400", post(cl(4)+"Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smug), smug)))
	add("te-underscore-name-with-cl", "header name normalisation (garden)", "fwd", post("Transfer_Encoding: chunked\r\n"+cl(len(chunked5)), chunked5))
	add("te-underscore-name", "header name normalisation (garden)", "fwd+400", post("Transfer_Encoding: chunked\r\n", chunked5))
	add("te-http10", "9112§6.1", "400", "POST {P} HTTP/1.0\r\n"+host+"Transfer-Encoding: chunked\r\n\r\n"+chunked5)

	// Chunked coding (RFC 9112 §7.1; Funky chunks 2025; Klein 2020).
	chunkVariants := []struct{ name, body string }{
		{"size-0x", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"size-leading-space", " 5\r\nhello\r\n0\r\n\r\n"},
		{"size-trailing-space", "5 \r\nhello\r\n0\r\n\r\n"},
		{"size-trailing-tab", "5\t\r\nhello\r\n0\r\n\r\n"},
		{"size-space-before-ext", "5 ;x\r\nhello\r\n0\r\n\r\n"},
		{"size-plus", "+5\r\nhello\r\n0\r\n\r\n"},
		{"size-minus", "-5\r\nhello\r\n0\r\n\r\n"},
		{"size-17-digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"size-overflow", "10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"size-empty", "\r\nhello\r\n0\r\n\r\n"},
		{"size-non-hex", "g\r\nhello\r\n0\r\n\r\n"},
		{"size-underscore", "0_5\r\nhello\r\n0\r\n\r\n"},
		{"size-bare-lf", "5\nhello\r\n0\r\n\r\n"},
		{"size-bare-cr", "5\rhello\r\n0\r\n\r\n"},
		{"ext-bare-lf", "5;x\nhello\r\n0\r\n\r\n"},
		{"ext-bare-cr", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{"ext-nul", "5;a\x00\r\nhello\r\n0\r\n\r\n"},
		{"ext-5k", "5;x=" + strings.Repeat("a", 5000) + "\r\nhello\r\n0\r\n\r\n"},
		{"data-no-crlf", "5\r\nhelloXX0\r\n\r\n"},
		{"data-bare-lf", "5\r\nhello\n0\r\n\r\n"},
		{"data-bare-cr", "5\r\nhello\r0\r\n\r\n"},
		{"data-too-long", "3\r\nhello\r\n0\r\n\r\n"},
		{"last-bare-lf", "5\r\nhello\r\n0\n\r\n"},
		{"last-end-bare-lf", "5\r\nhello\r\n0\r\n\n"},
		{"trailer-obs-fold", "5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"},
		{"trailer-bare-lf", "5\r\nhello\r\n0\r\nX-T: 1\n\r\n"},
		{"trailer-no-colon", "5\r\nhello\r\n0\r\nX-T\r\n\r\n"},
		// Funky chunks: TERM.EXT — a reader that ends the chunk line at
		// the LF sees 2 bytes "xx", one that needs CRLF reads the
		// extension up to the next CRLF and 0x45 bytes of data.
		{"funky-term-ext", "2;\nxx\r\n45\r\n0\r\n\r\n" + smug},
		// EXT.TERM: bare LF ends the chunk data for one reader, is data
		// for the other.
		{"funky-ext-term", "2\r\nxx\n45\r\n0\r\n\r\n" + smug},
		// One-byte size trick: "1" then a bare-LF data terminator.
		{"funky-lf-data-terminator", "1\r\nx\n0\r\n\r\n" + smug},
	}
	for _, v := range chunkVariants {
		add("chunk-"+v.name, "9112§7.1; funky chunks, klein 2020", "400", post("Transfer-Encoding: chunked\r\n", v.body))
	}
	// Extensions are ignored, quoted or not: Gatehouse does not forward
	// them, so an unterminated quote cannot be read two ways behind it.
	add("chunk-ext-quoted-crlf", "9112§7.1.1; funky chunks", "fwd", post("Transfer-Encoding: chunked\r\n", "5;a=\"\r\nhello\r\n0\r\n\r\n"))
	// A huge chunk size is streamed; the client stops sending.
	add("chunk-size-huge", "9112§7.1", "timeout", post("Transfer-Encoding: chunked\r\n", "FFFFFFFFFFFFFFF\r\nhello"))

	// Expect (RFC 9110 §10.1.1).
	add("expect-100", "9110§10.1.1; kettle22", "fwd", post("Expect: 100-continue\r\n"+cl(5), "hello"))
	add("expect-100-case", "9110§10.1.1 (case-insensitive)", "fwd", post("Expect: 100-Continue\r\n"+cl(5), "hello"))
	add("expect-100-get", "9110§10.1.1", "fwd", get("Expect: 100-continue\r\n"))
	add("expect-100-chunked", "9110§10.1.1", "fwd", post("Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", chunked5))
	add("expect-100-http10", "9110§10.1.1 (ignored for 1.0)", "fwd", "POST {P} HTTP/1.0\r\n"+host+"Expect: 100-continue\r\n"+cl(5)+"\r\nhello")
	add("expect-other", "9110§10.1.1", "417", post("Expect: 200-ok\r\n"+cl(5), "hello"))
	add("expect-list", "9110§10.1.1", "417", post("Expect: 100-continue, x\r\n"+cl(5), "hello"))
	add("expect-obs-fold", "9112§5.2", "400", post("Expect:\r\n 100-continue\r\n"+cl(5), "hello"))

	// Pipelining (RFC 9112 §9.3.2).
	p2 := func(s string) string { return strings.Replace(s, "{P}", "{P2}", 1) }
	add("pipelined-get-get", "9112§9.3.2", "fwd", get("")+p2(get(""))).n = 2
	add("pipelined-3-gets", "9112§9.3.2", "fwd", get("")+p2(get(""))+p2(get(""))).n = 3
	add("pipelined-post-get", "9112§9.3.2", "fwd", postCL("", "hello")+p2(get(""))).n = 2
	add("pipelined-chunked-get", "9112§9.3.2", "fwd", post("Transfer-Encoding: chunked\r\n", chunked5)+p2(get(""))).n = 2
	add("pipelined-head-get", "9112§9.3.2", "fwd", strings.Replace(get(""), "GET", "HEAD", 1)+p2(strings.Replace(get(""), "GET", "HEAD", 1))).n = 2
	add("pipelined-get-invalid", "9112§9.3.2", "fwd+400", get("")+"GET {P2} HTTP/1.1\r\nX-A : 1\r\n"+host+"\r\n")
	add("pipelined-get-clte", "9112§9.3.2; kettle19", "fwd+400", get("")+p2(post(cl(5+len(smug))+"Transfer-Encoding: chunked\r\n", "0\r\n\r\n"+smug)))
	add("pipelined-after-close", "9112§9.6", "fwd", get("Connection: close\r\n")+p2(get("")))
	for i := range cs {
		if cs[i].n == 0 {
			cs[i].n = 1
		}
		cs[i].head = strings.HasPrefix(cs[i].raw, "HEAD ")
	}
	return cs
}

// wantForwardedFields checks that the fields the gateway adds reached the
// back end, with the gateway's values, whatever the client's Connection
// named.
func wantForwardedFields(reqs []*Request) error {
	if len(reqs) != 1 {
		return fmt.Errorf("got %d requests at the back end, want 1", len(reqs))
	}
	r := reqs[0]
	for _, f := range []struct{ name, want string }{
		{"X-Forwarded-For", "127.0.0.1"}, {"X-Forwarded-Proto", "http"}, {"X-Forwarded-Host", "diff.test"},
	} {
		if got := r.Values(f.name); len(got) != 1 || got[0] != f.want {
			return fmt.Errorf("%s: got %q, want [%q]", f.name, got, f.want)
		}
	}
	if got := r.Values("X-CorrelationID"); len(got) != 1 || got[0] == "" {
		return fmt.Errorf("X-CorrelationID: got %q, want one value", got)
	}
	return nil
}

// wantNoField checks that the back end did not receive name.
func wantNoField(name string) func([]*Request) error {
	return func(reqs []*Request) error {
		for _, r := range reqs {
			if v := r.Values(name); len(v) > 0 {
				return fmt.Errorf("%s reached the back end: %q", name, v)
			}
		}
		return nil
	}
}
