package forwarded

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseElement(t *testing.T) {
	ip := func(s string) Node { return Node{Kind: NodeIP, Addr: netip.MustParseAddr(s)} }
	ipp := func(s string, p uint16) Node { n := ip(s); n.Port = p; return n }
	tests := []struct {
		in   string
		want []Element
		bad  int // malformed elements expected
	}{
		// RFC 7239 §4 and §7 examples.
		{in: `for="_gazonk"`, want: []Element{{For: Node{Kind: NodeObfuscated}}}},
		{in: `For="[2001:db8:cafe::17]:4711"`, want: []Element{{For: ipp("2001:db8:cafe::17", 4711)}}},
		{in: `for=192.0.2.60;proto=http;by=203.0.113.43`, want: []Element{{For: ip("192.0.2.60"), By: ip("203.0.113.43"), Proto: []byte("http")}}},
		{in: `for=192.0.2.43, for=198.51.100.17`, want: []Element{{For: ip("192.0.2.43")}, {For: ip("198.51.100.17")}}},
		{in: `for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown`, want: []Element{{For: ip("192.0.2.43")}, {For: ip("2001:db8:cafe::17")}, {For: Node{Kind: NodeUnknown}}}},
		{in: `for=unknown;by="_hidden:_port"`, want: []Element{{For: Node{Kind: NodeUnknown}, By: Node{Kind: NodeObfuscated}}}},
		{in: `for="192.0.2.43:_p1"`, want: []Element{{For: ip("192.0.2.43")}}},
		{in: `for="unknown:8080"`, want: []Element{{For: Node{Kind: NodeUnknown, Port: 8080}}}},
		{in: `for=192.0.2.43;host="api.example.com:8443";proto=HTTPS`, want: []Element{{For: ip("192.0.2.43"), Host: []byte("api.example.com:8443"), Proto: []byte("HTTPS")}}},
		// Lenient and list forms.
		{in: ` , for=192.0.2.1:80 ;; proto=https ,, `, want: []Element{{For: ipp("192.0.2.1", 80), Proto: []byte("https")}}},
		{in: `for=[2001:db8::1]:443`, want: []Element{{For: ipp("2001:db8::1", 443)}}},
		{in: `for="::ffff:192.0.2.9"`, want: []Element{{For: ip("192.0.2.9")}}},
		{in: `ext=1;for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}},
		{in: `for=192.0.2.1;secret="a,b;c"`, want: []Element{{For: ip("192.0.2.1")}}},
		{in: `proto=https`, want: []Element{{Proto: []byte("https")}}},
		// Bad nodes are elements with an invalid node, not syntax errors.
		{in: `for=01.2.3.4`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: `for="[fe80::1%25eth0]"`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: `for="1.2.3.4:99999"`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: `for="[1.2.3.4]"`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: `for=_`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: `for=example.com`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		// Syntax errors: the element is lost, the next one is found again.
		{in: `for=1.2.3.4;for=5.6.7.8, for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}, bad: 1},
		{in: `for = 1.2.3.4, for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}, bad: 1},
		{in: `for=1.2.3.4 x, for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}, bad: 1},
		{in: `=x, for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}, bad: 1},
		{in: `for=, for=192.0.2.1`, want: []Element{{For: ip("192.0.2.1")}}, bad: 1},
		{in: `for=1.2.3.4;x="a, for=5.6.7.8", for=192.0.2.1`, want: []Element{{For: ip("1.2.3.4")}, {For: ip("192.0.2.1")}}},
		{in: `for="1.2.3.4, for=192.0.2.1`, bad: 1},
		{in: "for=\"1.2.3.4\x01\", for=192.0.2.1", bad: 1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, bad := parseAll(t, tt.in)
			if bad != tt.bad {
				t.Errorf("got %d malformed elements, want %d", bad, tt.bad)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d elements %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.For != w.For || g.By != w.By || string(g.Proto) != string(w.Proto) || string(g.Host) != string(w.Host) {
					t.Errorf("element %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestNextXFF(t *testing.T) {
	in := " 192.0.2.1, 192.0.2.2:8080 ,[2001:db8::1]:443,2001:db8::2,,unknown,_obf, garbage, 1.2.3.4.5 ,::ffff:10.1.2.3,"
	want := []Node{
		{Kind: NodeIP, Addr: netip.MustParseAddr("192.0.2.1")},
		{Kind: NodeIP, Addr: netip.MustParseAddr("192.0.2.2"), Port: 8080},
		{Kind: NodeIP, Addr: netip.MustParseAddr("2001:db8::1"), Port: 443},
		{Kind: NodeIP, Addr: netip.MustParseAddr("2001:db8::2")},
		{Kind: NodeUnknown},
		{Kind: NodeObfuscated},
		{Kind: NodeInvalid},
		{Kind: NodeInvalid},
		{Kind: NodeIP, Addr: netip.MustParseAddr("10.1.2.3")},
	}
	got := xffAll(t, in)
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

var testTrusted = NewTrusted([]netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("2001:db8:ff::/48"),
	netip.MustParsePrefix("::ffff:172.16.0.0/108"), // taken as 172.16.0.0/12
})

// resolve feeds the chain as the instance does: the Forwarded lines when
// there are any, else the X-Forwarded-For lines.
func resolve(t testing.TB, c *Chain, peer string, fwd, xff []string) (r Result) {
	t.Helper()
	within(t, func() {
		c.Reset()
		if len(fwd) > 0 {
			for _, l := range fwd {
				c.AddForwarded([]byte(l))
			}
		} else {
			for _, l := range xff {
				c.AddXForwardedFor([]byte(l))
			}
		}
		r = Resolve(&testTrusted, netip.MustParseAddr(peer), c)
	})
	return r
}

func TestResolve(t *testing.T) {
	many := make([]string, 40)
	for i := range many {
		many[i] = "10.9.0." + string(rune('0'+i%10))
	}
	tests := []struct {
		name        string
		peer        string
		fwd, xff    []string
		client      string
		out         string // X-Forwarded-For sent on
		proto, host string
	}{
		{name: "direct client", peer: "198.51.100.7", client: "198.51.100.7", out: "198.51.100.7"},
		{name: "direct client forges XFF", peer: "198.51.100.7", xff: []string{"1.2.3.4"}, client: "198.51.100.7", out: "198.51.100.7"},
		{name: "direct client forges Forwarded", peer: "198.51.100.7", fwd: []string{"for=1.2.3.4;proto=https;host=evil"}, client: "198.51.100.7", out: "198.51.100.7"},
		{name: "trusted proxy without headers", peer: "10.0.0.2", client: "10.0.0.2", out: "10.0.0.2"},
		{name: "one proxy", peer: "10.0.0.2", xff: []string{"203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "one proxy, port", peer: "10.0.0.2", xff: []string{"203.0.113.9:5555"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "forged left of the proxy's entry", peer: "10.0.0.2", xff: []string{"6.6.6.6, 203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "forged trusted address left of the proxy's entry", peer: "10.0.0.2", xff: []string{"10.0.0.5, 203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "two proxies", peer: "10.0.0.2", xff: []string{"6.6.6.6, 203.0.113.9, 10.0.0.1"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.1, 10.0.0.2"},
		{name: "several lines", peer: "10.0.0.2", xff: []string{"6.6.6.6", "203.0.113.9", "10.0.0.1"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.1, 10.0.0.2"},
		{name: "all trusted: the leftmost", peer: "10.0.0.2", xff: []string{"10.0.0.5, 10.0.0.1"}, client: "10.0.0.5", out: "10.0.0.5, 10.0.0.1, 10.0.0.2"},
		{name: "unknown stops the walk", peer: "10.0.0.2", xff: []string{"6.6.6.6, unknown, 10.0.0.1"}, client: "10.0.0.1", out: "10.0.0.1, 10.0.0.2"},
		{name: "garbage stops the walk", peer: "10.0.0.2", xff: []string{"6.6.6.6, <script>"}, client: "10.0.0.2", out: "10.0.0.2"},
		{name: "IPv6 client", peer: "10.0.0.2", xff: []string{"[2001:db8:1::9]:443"}, client: "2001:db8:1::9", out: "2001:db8:1::9, 10.0.0.2"},
		{name: "IPv6 proxy", peer: "2001:db8:ff::2", xff: []string{"203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 2001:db8:ff::2"},
		{name: "IPv4-mapped peer", peer: "::ffff:10.0.0.2", xff: []string{"203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "IPv4-mapped prefix", peer: "172.16.0.1", xff: []string{"203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 172.16.0.1"},
		{name: "too many hops", peer: "10.0.0.2", xff: append([]string{"6.6.6.6"}, many...), client: many[len(many)-MaxHops],
			out: strings.Join(many[len(many)-MaxHops:], ", ") + ", 10.0.0.2"},
		{name: "Forwarded", peer: "10.0.0.2", fwd: []string{"for=203.0.113.9;proto=https;host=api.example.com"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2", proto: "https", host: "api.example.com"},
		{name: "Forwarded preferred", peer: "10.0.0.2", fwd: []string{"for=203.0.113.9"}, xff: []string{"6.6.6.6"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "Forwarded two proxies", peer: "10.0.0.2", fwd: []string{`for=203.0.113.9;proto=https;host=a.example, for=10.0.0.1;proto=http;host=inner`}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.1, 10.0.0.2", proto: "https", host: "a.example"},
		{name: "Forwarded forged left", peer: "10.0.0.2", fwd: []string{"for=6.6.6.6;proto=http;host=evil", "for=203.0.113.9;proto=https;host=good"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2", proto: "https", host: "good"},
		{name: "Forwarded first proxy says no proto", peer: "10.0.0.2", fwd: []string{"for=203.0.113.9, for=10.0.0.1;proto=https"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.1, 10.0.0.2", proto: "https"},
		{name: "Forwarded IPv6", peer: "10.0.0.2", fwd: []string{`for="[2001:db8:cafe::17]:4711"`}, client: "2001:db8:cafe::17", out: "2001:db8:cafe::17, 10.0.0.2"},
		{name: "Forwarded obfuscated", peer: "10.0.0.2", fwd: []string{"for=_hidden;proto=https"}, client: "10.0.0.2", out: "10.0.0.2", proto: "https"},
		{name: "Forwarded without for", peer: "10.0.0.2", fwd: []string{"for=6.6.6.6, proto=https"}, client: "10.0.0.2", out: "10.0.0.2", proto: "https"},
		{name: "Forwarded bad proto and host ignored", peer: "10.0.0.2", fwd: []string{`for=203.0.113.9;proto=gopher;host="a b"`}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "Forwarded malformed line left", peer: "10.0.0.2", fwd: []string{`for="6.6.6.6`, "for=203.0.113.9"}, client: "203.0.113.9", out: "203.0.113.9, 10.0.0.2"},
		{name: "Forwarded malformed element in the middle", peer: "10.0.0.2", fwd: []string{"for=203.0.113.9, for=1.2.3.4;for=5.6.7.8, for=10.0.0.1"}, client: "10.0.0.1", out: "10.0.0.1, 10.0.0.2"},
		{name: "Forwarded unterminated swallows the line", peer: "10.0.0.2", fwd: []string{`for="6.6.6.6, for=203.0.113.9`}, client: "10.0.0.2", out: "10.0.0.2"},
	}
	var c Chain
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolve(t, &c, tt.peer, tt.fwd, tt.xff)
			if got := r.Client.String(); got != tt.client {
				t.Errorf("client: got %v, want %v", got, tt.client)
			}
			if got := string(r.AppendXFF(nil, &c)); got != tt.out {
				t.Errorf("X-Forwarded-For: got %q, want %q", got, tt.out)
			}
			if string(r.Proto) != tt.proto || string(r.Host) != tt.host {
				t.Errorf("proto, host: got %q, %q, want %q, %q", r.Proto, r.Host, tt.proto, tt.host)
			}
		})
	}
}

func TestFirstValueValidHost(t *testing.T) {
	tests := []struct{ in, first, host string }{
		{"https", "https", "https"},
		{" https , http", "https", ""},
		{"", "", ""},
		{" , ", "", ""},
		{"https\t, x", "https", ""},
		{"https \t", "https", ""},
		{"https\t ", "https", ""},
		{"api.example.com:8443", "api.example.com:8443", "api.example.com:8443"},
		{"[2001:db8::1]:443", "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"a\r\nX-Evil: 1", "a\r\nX-Evil: 1", ""},
		{"a b", "a b", ""},
	}
	for _, tt := range tests {
		if got := FirstValue([]byte(tt.in)); string(got) != tt.first || (got == nil) != (tt.first == "") {
			t.Errorf("FirstValue(%q): got %q (nil %v), want %q (nil for none)", tt.in, got, got == nil, tt.first)
		}
		if got := string(ValidHost([]byte(tt.in))); got != tt.host {
			t.Errorf("ValidHost(%q): got %q, want %q", tt.in, got, tt.host)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	fwd := []byte(`for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;host=api.example.com, for=10.0.0.1`)
	xff := []byte("6.6.6.6, 203.0.113.9:80, 2001:db8::7, 10.0.0.1")
	peer := netip.MustParseAddr("10.0.0.2")
	var c Chain
	var buf []byte
	var allocs float64
	within(t, func() {
		allocs = testing.AllocsPerRun(100, func() {
			c.Reset()
			c.AddForwarded(fwd)
			r := Resolve(&testTrusted, peer, &c)
			buf = r.AppendXFF(buf[:0], &c)
			c.Reset()
			c.AddXForwardedFor(xff)
			r = Resolve(&testTrusted, peer, &c)
			buf = r.AppendXFF(buf[:0], &c)
		})
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per run, want 0", allocs)
	}
}

func BenchmarkResolveXFF(b *testing.B) {
	xff := []byte("6.6.6.6, 203.0.113.9:80, 10.0.0.1")
	peer := netip.MustParseAddr("10.0.0.2")
	var c Chain
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		c.Reset()
		c.AddXForwardedFor(xff)
		r := Resolve(&testTrusted, peer, &c)
		buf = r.AppendXFF(buf[:0], &c)
	}
}

func BenchmarkResolveForwarded(b *testing.B) {
	fwd := []byte(`for=203.0.113.9;proto=https;host=api.example.com, for="[2001:db8:ff::1]:4711"`)
	peer := netip.MustParseAddr("10.0.0.2")
	var c Chain
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		c.Reset()
		c.AddForwarded(fwd)
		r := Resolve(&testTrusted, peer, &c)
		buf = r.AppendXFF(buf[:0], &c)
	}
}
