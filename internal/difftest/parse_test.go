package difftest

import (
	"errors"
	"testing"
)

func TestParseRequest(t *testing.T) {
	const h = "Host: x\r\n"
	for _, tc := range []struct {
		name, in string
		lenient  bool
		want     string // "ok", "more" or "ambiguous"
		body     string
	}{
		{"get", "GET / HTTP/1.1\r\n" + h + "\r\n", false, "ok", ""},
		{"cl", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello", false, "ok", "hello"},
		{"cl short", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhel", false, "more", ""},
		{"chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: 1\r\n\r\n", false, "ok", "hello"},
		{"chunked short", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", false, "more", ""},
		{"head short", "GET / HTTP/1.1\r\nHo", false, "more", ""},
		{"leading crlf", "\r\nGET / HTTP/1.1\r\n" + h + "\r\n", false, "ambiguous", ""},
		{"leading crlf lenient", "\r\n\nGET / HTTP/1.1\r\n" + h + "\r\n", true, "ok", ""},
		{"9 empty lines lenient", "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" + h + "\r\n", true, "ambiguous", ""},
		{"bare lf, head incomplete", "GET / HTTP/1.1\n" + h, false, "ambiguous", ""},
		{"bare cr", "GET / HTTP/1.1\r\nX: a\rb\r\n" + h + "\r\n", false, "ambiguous", ""},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n", false, "ambiguous", ""},
		{"space before colon", "GET / HTTP/1.1\r\n" + h + "X : a\r\n\r\n", false, "ambiguous", ""},
		{"nul", "GET / HTTP/1.1\r\n" + h + "X: a\x00\r\n\r\n", false, "ambiguous", ""},
		{"two spaces", "GET  / HTTP/1.1\r\n" + h + "\r\n", false, "ambiguous", ""},
		{"http/1.2", "GET / HTTP/1.2\r\n" + h + "\r\n", false, "ambiguous", ""},
		{"http/1.2 lenient", "GET / HTTP/1.2\r\n" + h + "\r\n", true, "ok", ""},
		{"no host", "GET / HTTP/1.1\r\n\r\n", false, "ambiguous", ""},
		{"two hosts", "GET / HTTP/1.1\r\n" + h + h + "\r\n", false, "ambiguous", ""},
		{"cl+te", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, "ambiguous", ""},
		{"te identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n", false, "ambiguous", ""},
		{"cl list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\nhello", false, "ambiguous", ""},
		{"cl list lenient", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\nhello", true, "ok", "hello"},
		{"cl differing lenient", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", true, "ambiguous", ""},
		{"cl sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\nhello", false, "ambiguous", ""},
		{"connection content-length", "POST / HTTP/1.1\r\n" + h + "Connection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", true, "ambiguous", ""},
		{"chunk size space", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", false, "ambiguous", ""},
		{"chunk ext bare lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5;x\nhello\r\n0\r\n\r\n", false, "ambiguous", ""},
		{"chunk data bare lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", false, "ambiguous", ""},
		{"chunk 17 digits", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", false, "ambiguous", ""},
		{"trailer content-length", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", false, "ambiguous", ""},
		{"trailer content-length lenient", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", true, "ok", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, n, err := ParseRequest([]byte(tc.in), Options{Lenient: tc.lenient})
			var amb *Ambiguity
			got := "ok"
			switch {
			case errors.Is(err, errNeedMore):
				got = "more"
			case errors.As(err, &amb):
				got = "ambiguous"
			case err != nil:
				t.Fatalf("got error %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
			if got == "ok" && (n != len(tc.in) || string(r.Body) != tc.body) {
				t.Errorf("got %d bytes, body %q; want %d, %q", n, r.Body, len(tc.in), tc.body)
			}
		})
	}
}
