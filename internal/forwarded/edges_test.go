package forwarded

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// The end of a Forwarded value: what ends the input (a malformed last
// element, an unterminated or escaped quoted string, a name without a value)
// is read exactly as the same text followed by more elements.
func TestParseElementEndOfInput(t *testing.T) {
	ip := func(s string) Node { return Node{Kind: NodeIP, Addr: netip.MustParseAddr(s)} }
	tests := []struct {
		in      string
		want    []Element
		bad     int
		swallow bool // the value does not end: what follows is part of it
	}{
		{in: ``},
		{in: ` , ,`},
		{in: `for=1.2.3.4;`, want: []Element{{For: ip("1.2.3.4")}}},
		{in: `for=1.2.3.4 `, want: []Element{{For: ip("1.2.3.4")}}},
		{in: `for=1.2.3.4 ;`, want: []Element{{For: ip("1.2.3.4")}}},
		{in: `;for=1.2.3.4`, want: []Element{{For: ip("1.2.3.4")}}},
		{in: `for="1.2.3.4"`, want: []Element{{For: ip("1.2.3.4")}}},
		{in: `for=1.2.3.4;for=5.6.7.8`, bad: 1},
		{in: `for=1.2.3.4;by=1.1.1.1;by=2.2.2.2`, bad: 1},
		{in: `proto=http;proto=https`, bad: 1},
		{in: `host=a;host=b`, bad: 1},
		{in: `for=1.2.3.4;proto=http;host=a;by=_x`, want: []Element{{For: ip("1.2.3.4"), By: Node{Kind: NodeObfuscated}, Proto: []byte("http"), Host: []byte("a")}}},
		{in: `for`, bad: 1},
		{in: `for=`, bad: 1},
		{in: `for=1.2.3.4 x`, bad: 1},
		{in: `for=1.2.3.4;x`, bad: 1},
		{in: `for="1.2.3.4`, bad: 1, swallow: true},
		{in: `for="1.2.3.4\`, bad: 1, swallow: true},
		{in: `for="1.2.3.4\"`, bad: 1, swallow: true},
		{in: `for="1.2.3.4"x`, bad: 1},
		{in: "for=\"a\\\x01\"", bad: 1, swallow: true},
		{in: "for=\"a\x7f\"", bad: 1, swallow: true},
		{in: "for=1.2.3.4\x00", bad: 1},
		{in: `for="_a\"b"`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: "host=\"a\tb c\"", want: []Element{{Host: []byte("a\tb c")}}},
		{in: "host=\"\xff\"", want: []Element{{Host: []byte("\xff")}}},
		{in: `host="a\\b"`, want: []Element{{Host: []byte(`a\\b`)}}},
		{in: `host=""`, want: []Element{{Host: []byte{}}}},
		{in: `for=""`, want: []Element{{For: Node{Kind: NodeInvalid}}}},
		{in: "host=\"a\x1fb\"", bad: 1, swallow: true},
		{in: "host=\"a\\\x1f\"", bad: 1, swallow: true},
		// An unterminated quoted string swallows the rest of its line.
		{in: `for="1.2.3.4, for=5.6.7.8`, bad: 1, swallow: true},
		{in: `for=1.2.3.4;x="a, for=5.6.7.8`, bad: 1, swallow: true},
		// Every token character is allowed in a name, every value
		// character in an unquoted value.
		{in: "!#$%&'*+-.^_`|~09azAZ=x;for=1.2.3.4", want: []Element{{For: ip("1.2.3.4")}}},
		{in: "x=!#$%&'*+-.^_`|~09azAZ:[];for=1.2.3.4", want: []Element{{For: ip("1.2.3.4")}}},
		{in: "x@=1", bad: 1},
		{in: "x=@", bad: 1},
		{in: "x=a/b", bad: 1},
		{in: "FOR=1.2.3.4;By=5.6.7.8;PrOtO=http;HOST=h", want: []Element{{For: ip("1.2.3.4"), By: ip("5.6.7.8"), Proto: []byte("http"), Host: []byte("h")}}},
		{in: "fo=1.2.3.4;forx=1.2.3.4;bz=1;protx=1;hosz=1", want: []Element{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			for _, in := range []string{tt.in, tt.in + ", for=9.9.9.9"} {
				got, bad := parseAll(t, in)
				want := tt.want
				if in != tt.in && !tt.swallow {
					want = append(want[:len(want):len(want)], Element{For: ip("9.9.9.9")})
				}
				if bad != tt.bad {
					t.Errorf("%q: got %d malformed elements, want %d", in, bad, tt.bad)
				}
				if len(got) != len(want) {
					t.Fatalf("%q: got %d elements %+v, want %d %+v", in, len(got), got, len(want), want)
				}
				for i := range got {
					g, w := got[i], want[i]
					if g.For != w.For || g.By != w.By || string(g.Proto) != string(w.Proto) || string(g.Host) != string(w.Host) {
						t.Errorf("%q: element %d: got %+v, want %+v", in, i, g, w)
					}
				}
			}
		})
	}
}

// What ParseElement returns after an element: the rest after the comma that
// ends it, found outside quoted strings after a syntax error.
func TestParseElementRest(t *testing.T) {
	tests := []struct {
		in, rest string
		ok, bad  bool
	}{
		{in: "", rest: "", ok: false},
		{in: "for=a", rest: "", ok: true},
		{in: "for=_a , x", rest: " x", ok: true},
		{in: "for=_a;for=_b, x", rest: " x", ok: true, bad: true},
		{in: `for=_a;for=_b;y="p,q", x`, rest: " x", ok: true, bad: true},
		{in: `for=_a;for=_b;y="p,q`, rest: "", ok: true, bad: true},
		{in: `for=_a;for=_b;y="p\"q,r", x`, rest: " x", ok: true, bad: true},
		{in: "for=_a;for=_b", rest: "", ok: true, bad: true},
		{in: "=, x", rest: " x", ok: true, bad: true},
	}
	for _, tt := range tests {
		var (
			rest []byte
			ok   bool
			err  error
		)
		within(t, func() { _, rest, ok, err = ParseElement([]byte(tt.in)) })
		if string(rest) != tt.rest || ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("ParseElement(%q): got rest %q, ok %v, err %v, want %q, %v, error %v", tt.in, rest, ok, err, tt.rest, tt.ok, tt.bad)
		}
	}
}

func TestParseNode(t *testing.T) {
	ip := func(s string, port uint16) Node {
		return Node{Kind: NodeIP, Addr: netip.MustParseAddr(s), Port: port}
	}
	invalid := Node{Kind: NodeInvalid}
	tests := []struct {
		in   string
		want Node
	}{
		{"", invalid},
		{"1.2.3.4", ip("1.2.3.4", 0)},
		{"0.0.0.0", ip("0.0.0.0", 0)},
		{"255.255.255.255", ip("255.255.255.255", 0)},
		{"192.0.2.1:0", ip("192.0.2.1", 0)},
		{"192.0.2.1:9", ip("192.0.2.1", 9)},
		{"192.0.2.1:65535", ip("192.0.2.1", 65535)},
		{"192.0.2.1:65536", invalid},
		{"192.0.2.1:99999", invalid},
		{"192.0.2.1:000080", invalid},
		{"192.0.2.1:8/", invalid},
		{"192.0.2.1:8:", invalid},
		{"192.0.2.1:/", invalid},
		{"192.0.2.1::", invalid},
		{"192.0.2.1:", invalid},
		{"192.0.2.1:_", invalid},
		{"192.0.2.1:_p", ip("192.0.2.1", 0)},
		{"192.0.2.1:_p!", invalid},
		{":80", invalid},
		{"256.1.1.1", invalid},
		{"1.2.3.256", invalid},
		{"1.2.3", invalid},
		{"1.2.3.4.5", invalid},
		{"1..3.4", invalid},
		{".2.3.4", invalid},
		{"1.2.3.4.", invalid},
		{"01.2.3.4", invalid},
		{"1.2.3.00", invalid},
		{"1.2.3.0", ip("1.2.3.0", 0)},
		{"1.2.3.10", ip("1.2.3.10", 0)},
		{"1.2.3.a", invalid},
		{"1.2.3./", invalid},
		{"1.2.3.:", invalid},
		{"[2001:db8::1]", ip("2001:db8::1", 0)},
		{"[2001:db8::1]:443", ip("2001:db8::1", 443)},
		{"[2001:db8::1]:_x", ip("2001:db8::1", 0)},
		{"[2001:db8::1]:", invalid},
		{"[2001:db8::1]x", invalid},
		{"[2001:db8::1]:x", invalid},
		{"[2001:db8::1", invalid},
		{"[]", invalid},
		{"[1.2.3.4]", invalid},
		{"[::ffff:1.2.3.4]", ip("1.2.3.4", 0)},
		{"[fe80::1%eth0]", invalid},
		{"[ABCD:EF01::9]", ip("abcd:ef01::9", 0)},
		{"[abcg::1]", invalid},
		{"2001:db8::1", ip("2001:db8::1", 0)},
		{"::ffff:10.1.2.3", ip("10.1.2.3", 0)},
		{"2001:db8::1%eth0", invalid},
		{"2001:db8::zz", invalid},
		{"0000:0000:0000:0000:0000:ffff:255.255.255.255", ip("255.255.255.255", 0)},
		{"unknown", Node{Kind: NodeUnknown}},
		{"UnKnOwN:8080", Node{Kind: NodeUnknown, Port: 8080}},
		{"unknown:_p", Node{Kind: NodeUnknown}},
		{"unknow", invalid},
		{"_", invalid},
		{"_a", Node{Kind: NodeObfuscated}},
		{"_azAZ09._-", Node{Kind: NodeObfuscated}},
		{"_azAZ09._-:_azAZ09._-", Node{Kind: NodeObfuscated}},
		{"_a:1", Node{Kind: NodeObfuscated, Port: 1}},
		{"_!", invalid},
		{"_!:1", invalid},
		{"::1", ip("::1", 0)},
		{"1::", ip("1::", 0)},
		{"::", ip("::", 0)},
		{"1:2", invalid},
		{"_a`", invalid},
		{"_a{", invalid},
		{"_a@", invalid},
		{"_a[", invalid},
		{"_a/", invalid},
		{"_a!", invalid},
		{"a_", invalid},
		{"example.com", invalid},
	}
	for _, tt := range tests {
		if got := ParseNode([]byte(tt.in)); got != tt.want {
			t.Errorf("ParseNode(%q): got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// Every byte outside an obfuscated identifier's alphabet makes it invalid.
func TestObfuscatedAlphabet(t *testing.T) {
	for c := range 256 {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if c == ':' {
			continue // a port separator
		}
		want := NodeInvalid
		if ok {
			want = NodeObfuscated
		}
		if got := ParseNode([]byte{'_', 'x', byte(c)}).Kind; got != want {
			t.Errorf("_x%q: got kind %d, want %d", byte(c), got, want)
		}
	}
}

func TestValidHostAlphabet(t *testing.T) {
	for c := range 256 {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:[]%", byte(c)) >= 0
		got := ValidHost([]byte{'h', byte(c)}) != nil
		if got != ok {
			t.Errorf("ValidHost(%q): got valid %v, want %v", "h"+string(rune(c)), got, ok)
		}
	}
	long := strings.Repeat("a", 261)
	if ValidHost([]byte(long)) == nil {
		t.Errorf("a host of 261 bytes: got refused, want accepted")
	}
	if ValidHost([]byte(long+"a")) != nil {
		t.Errorf("a host of 262 bytes: got accepted, want refused")
	}
	if ValidHost(nil) != nil || ValidHost([]byte{}) != nil {
		t.Errorf("an empty host: got accepted, want refused")
	}
}

func TestParseProto(t *testing.T) {
	for in, want := range map[string]string{"http": "http", "HTTP": "http", "https": "https", "HttpS": "https", "htt": "", "httpss": "", "ftp": "", "": ""} {
		if got := string(ParseProto([]byte(in))); got != want {
			t.Errorf("ParseProto(%q): got %q, want %q", in, got, want)
		}
	}
}

func TestTrusted(t *testing.T) {
	var zero Trusted
	if !zero.Empty() || zero.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("the zero Trusted: got non-empty or trusting, want empty")
	}
	tr := NewTrusted([]netip.Prefix{
		{}, // invalid: left out
		netip.MustParsePrefix("::ffff:192.168.0.0/112"),
		netip.MustParsePrefix("::ffff:0.0.0.0/95"), // not a mapped IPv4 prefix
		netip.MustParsePrefix("10.1.2.3/8"),        // masked
	})
	if tr.Empty() {
		t.Fatalf("got empty, want three networks")
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"192.168.1.1", true},
		{"::ffff:192.168.1.1", true},
		{"192.169.1.1", false},
		{"10.200.0.1", true},
		{"::ffff:10.200.0.1", true},
		{"11.0.0.1", false},
		{"::fffe:1:2", true}, // in ::fffe:0:0/95
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		if got := tr.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s): got %v, want %v", tt.addr, got, tt.want)
		}
	}
	if tr.Contains(netip.Addr{}) {
		t.Errorf("Contains(invalid address): got true, want false")
	}
	if none := NewTrusted([]netip.Prefix{{}}); !none.Empty() {
		t.Errorf("only invalid prefixes: got non-empty, want empty")
	}
	mapped96 := NewTrusted([]netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/96")})
	if !mapped96.Contains(netip.MustParseAddr("203.0.113.1")) {
		t.Errorf("::ffff:0.0.0.0/96: got 203.0.113.1 not trusted, want every IPv4 address trusted")
	}
}

// An invalid peer (a connection whose address could not be read) is never
// trusted, even when every network is: the client is that invalid peer and
// nothing the headers say is believed.
func TestInvalidPeerNotTrusted(t *testing.T) {
	all := NewTrusted([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})
	var c Chain
	within(t, func() { c.AddForwarded([]byte("for=203.0.113.9;proto=https;host=evil")) })
	r := Resolve(&all, netip.Addr{}, &c)
	if r.Client.IsValid() || r.Steps != 0 || r.Proto != nil || r.Host != nil {
		t.Errorf("got client %v, steps %d, proto %q, host %q, want the invalid peer and nothing believed", r.Client, r.Steps, r.Proto, r.Host)
	}
}

func TestChainKeepsRightmost(t *testing.T) {
	var c Chain
	if _, ok := c.FromRight(0); ok {
		t.Errorf("empty chain: FromRight(0) got ok")
	}
	within(t, func() {
		for i := range MaxHops + 3 {
			c.AddXForwardedFor([]byte(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String()))
		}
	})
	if c.Len() != MaxHops+3 {
		t.Errorf("Len: got %d, want %d", c.Len(), MaxHops+3)
	}
	for i := range MaxHops {
		h, ok := c.FromRight(i)
		want := netip.AddrFrom4([4]byte{10, 0, 0, byte(MaxHops + 2 - i)})
		if !ok || h.Addr != want {
			t.Errorf("FromRight(%d): got %v, %v, want %v", i, h.Addr, ok, want)
		}
	}
	for _, i := range []int{-1, MaxHops, MaxHops + 1} {
		if _, ok := c.FromRight(i); ok {
			t.Errorf("FromRight(%d): got ok, want not kept", i)
		}
	}
	within(t, func() { c.AddForwarded([]byte("for=10.0.0.1;proto=http;host=h")) })
	c.Reset()
	if c.Len() != 0 {
		t.Errorf("after Reset: Len %d, want 0", c.Len())
	}
	if _, ok := c.FromRight(0); ok {
		t.Errorf("after Reset: FromRight(0) got ok")
	}
	for _, h := range c.hops {
		if h.Addr.IsValid() || h.Proto != nil || h.Host != nil {
			t.Fatalf("after Reset: hop %+v kept, want every reference dropped", h)
		}
	}
}

func TestAddForwardedCountsMalformed(t *testing.T) {
	var c Chain
	var n int
	within(t, func() { n = c.AddForwarded([]byte(`for=_a, x, for=1.2.3.4;for=1.2.3.4, for=10.0.0.1, y`)) })
	if n != 3 {
		t.Errorf("got %d malformed, want 3", n)
	}
	if c.Len() != 5 {
		t.Errorf("got %d hops, want 5", c.Len())
	}
}

// The walk from a trusted peer believes the proto and host of each element a
// trusted hop wrote; an untrusted hop's element is not believed.
func TestResolveBelievesOnlyTrustedElements(t *testing.T) {
	var c Chain
	r := resolve(t, &c, "10.0.0.2", []string{"for=6.6.6.6;proto=http;host=evil, for=203.0.113.9;proto=https;host=good"}, nil)
	if r.Client.String() != "203.0.113.9" || string(r.Proto) != "https" || string(r.Host) != "good" {
		t.Errorf("got %v %q %q, want 203.0.113.9 https good", r.Client, r.Proto, r.Host)
	}
	r = resolve(t, &c, "10.0.0.2", []string{"for=10.0.0.3;proto=http;host=inner, for=10.0.0.1"}, nil)
	if r.Client.String() != "10.0.0.3" || string(r.Proto) != "http" || string(r.Host) != "inner" {
		t.Errorf("got %v %q %q, want 10.0.0.3 http inner", r.Client, r.Proto, r.Host)
	}
}

// A node that cannot be an address (empty, longer than any address, a byte
// no address holds) is refused without allocating: netip.ParseAddr, whose
// errors allocate, never sees it.
func TestParseNodeRefusesWithoutAllocating(t *testing.T) {
	for _, in := range []string{
		"[]", "[fe80::1%eth0]", "fe80::1%eth0", "1.2.3.g", "[2001:db8::g]", "2001:db8::G",
		"0000:0000:0000:0000:0000:ffff:255.255.255.2555", // 46 bytes
	} {
		b := []byte(in)
		var n Node
		if allocs := testing.AllocsPerRun(10, func() { n = ParseNode(b) }); allocs != 0 {
			t.Errorf("ParseNode(%q): got %v allocations, want 0", in, allocs)
		}
		if n.Kind != NodeInvalid {
			t.Errorf("ParseNode(%q): got %+v, want invalid", in, n)
		}
	}
}

func TestNextXFFRest(t *testing.T) {
	tests := []struct{ in, node, rest string }{
		{"1.2.3.4, 5.6.7.8", "1.2.3.4", " 5.6.7.8"},
		{"1.2.3.4,", "1.2.3.4", ""},
		{"1.2.3.4\t ,x", "1.2.3.4", "x"},
		{" ,1.2.3.4 \t", "1.2.3.4", ""},
		{"1.2.3.4\t", "1.2.3.4", ""},
	}
	for _, tt := range tests {
		var (
			n    Node
			rest []byte
			ok   bool
		)
		within(t, func() { n, rest, ok = NextXFF([]byte(tt.in)) })
		if !ok || n.Kind != NodeIP || n.Addr.String() != tt.node || string(rest) != tt.rest {
			t.Errorf("NextXFF(%q): got %+v, %q, %v, want %s, %q", tt.in, n, rest, ok, tt.node, tt.rest)
		}
	}
}

// A chain keeps the 32 hops nearest the gateway (docs/transparent-lb.md):
// the walk over 40 trusted hops ends at the 32nd from the right.
func TestWalkKeeps32Hops(t *testing.T) {
	var xff []string
	for i := range 40 {
		xff = append(xff, fmt.Sprintf("10.1.0.%d", i))
	}
	var c Chain
	r := resolve(t, &c, "10.0.0.2", nil, []string{strings.Join(xff, ", ")})
	if r.Client.String() != "10.1.0.8" || r.Steps != 32 {
		t.Errorf("got client %v after %d steps, want 10.1.0.8 after 32", r.Client, r.Steps)
	}
}
