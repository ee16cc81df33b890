package h2bridge

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// h2Request sends one request as raw frames (so that it can be malformed in
// ways no HTTP/2 client library allows) and returns the response status,
// or 0 when the stream was reset or the connection closed before one.
func h2Request(t *testing.T, addr string, fields [][2]string, endStream bool, data []string) int {
	t.Helper()
	status, _ := h2RequestFrom(t, addr, fields, endStream, data)
	return status
}

// h2RequestFrom is h2Request that also returns the client's address, which
// the server sees as the remote address of the request.
func h2RequestFrom(t *testing.T, addr string, fields [][2]string, endStream bool, data []string) (int, netip.AddrPort) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from, _ := netip.ParseAddrPort(c.LocalAddr().String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: endStream, EndHeaders: true})
	for i, d := range data {
		fr.WriteData(1, i == len(data)-1, []byte(d))
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return 0, from
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					var s int
					for _, ch := range h.Value {
						s = s*10 + int(ch-'0')
					}
					return s, from
				}
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return 0, from
		}
	}
}

// TestRefusedBeforeForwarding: HTTP/2 requests that nginx and HAProxy
// refuse never reach the handler (so nothing is forwarded), and the
// refusal is reported.
func TestRefusedBeforeForwarding(t *testing.T) {
	var handled atomic.Int64
	// Refusals are counted per client connection: a refusal whose client
	// saw only a reset may be reported after that client went on to the
	// next case.
	var mu sync.Mutex
	rejected := map[netip.AddrPort]int{}
	srv := httptest.NewUnstartedServer(HandlerWith(h1.HandlerFunc(func(w h1.ResponseWriter, r *h1.Request) {
		handled.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}), Options{
		OnReject: func(_ int, _ string, remote netip.AddrPort) {
			mu.Lock()
			rejected[remote]++
			mu.Unlock()
		},
		ErrorBody: func(status int, reason string) (string, []byte) {
			return "application/json", []byte(`{"r":"` + reason + `"}`)
		},
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	base := func(method, path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", method}, {":scheme", "https"}, {":authority", "a"}, {":path", path}}, extra...)
	}
	tests := []struct {
		name      string
		fields    [][2]string
		endStream bool
		data      []string
		want      int // 0: refused by a reset, never answered 2xx
	}{
		{"two different content-length, body matching the first", base("POST", "/", [2]string{"content-length", "5"}, [2]string{"content-length", "10"}), false, []string{"hello"}, 400},
		{"two different content-length, body matching the second", base("POST", "/", [2]string{"content-length", "10"}, [2]string{"content-length", "5"}), false, []string{"hello"}, 400},
		{"content-length list that differs", base("POST", "/", [2]string{"content-length", "5, 6"}), false, []string{"hello"}, 400},
		{"content-length with a sign", base("POST", "/", [2]string{"content-length", "+5"}), false, []string{"hello"}, 400},
		{"space in :path", base("GET", "/a b"), true, nil, 400},
		{"control byte in :path", base("GET", "/a\x01b"), true, nil, 400},
		{"bad percent in :path", base("GET", "/a%zz"), true, nil, 400},
		{"content-length 0 then data", base("POST", "/", [2]string{"content-length", "0"}), false, []string{"smuggled"}, 400},
		{"content-length without a body", base("POST", "/", [2]string{"content-length", "5"}), true, nil, 400},
	}
	for _, tt := range tests {
		handled.Store(0)
		got, from := h2RequestFrom(t, addr, tt.fields, tt.endStream, tt.data)
		if got >= 200 && got < 300 || got != tt.want && got != 0 {
			t.Errorf("%s: got status %d, want %d (or a reset)", tt.name, got, tt.want)
		}
		if n := handled.Load(); n != 0 {
			t.Errorf("%s: the handler saw the request (%d times)", tt.name, n)
		}
		mu.Lock()
		n := rejected[from]
		mu.Unlock()
		if got == 400 && n != 1 {
			t.Errorf("%s: OnReject called %d times, want 1", tt.name, n)
		}
	}
	// The valid forms still pass.
	valid := []struct {
		name      string
		fields    [][2]string
		endStream bool
		data      []string
	}{
		{"identical content-length twice", base("POST", "/", [2]string{"content-length", "5"}, [2]string{"content-length", "5"}), false, []string{"hello"}},
		{"content-length 0, stream ended by empty data", base("POST", "/", [2]string{"content-length", "0"}), false, []string{""}},
		{"get without body", base("GET", "/a/b?c=d%20e"), true, nil},
		{"body without content-length", base("POST", "/"), false, []string{"he", "llo"}},
	}
	for _, tt := range valid {
		handled.Store(0)
		if got := h2Request(t, addr, tt.fields, tt.endStream, tt.data); got != 200 || handled.Load() != 1 {
			t.Errorf("%s: got %d (handled %d), want 200", tt.name, got, handled.Load())
		}
	}
}
