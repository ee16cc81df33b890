package forwarded

import (
	"net/netip"
	"strings"
	"testing"
)

// fuzzPeers are the peers a fuzz input picks from: trusted and untrusted,
// IPv4, IPv6 and IPv4-mapped.
var fuzzPeers = []netip.Addr{
	netip.MustParseAddr("10.0.0.2"),
	netip.MustParseAddr("198.51.100.7"),
	netip.MustParseAddr("2001:db8:ff::2"),
	netip.MustParseAddr("2001:db8:1::2"),
	netip.MustParseAddr("::ffff:10.0.0.3"),
	netip.MustParseAddr("172.16.5.5"),
}

// addrsIn returns every IP address written in s, found independently of the
// parser: s is cut at every character that cannot be part of an address or
// a port, and each piece is read as an address or an address with a port.
func addrsIn(s string) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !strings.ContainsRune("0123456789abcdefABCDEF:.", r) }) {
		if a, err := netip.ParseAddr(f); err == nil {
			m[a.Unmap()] = true
		}
		if ap, err := netip.ParseAddrPort(f); err == nil {
			m[ap.Addr().Unmap()] = true
		}
		// "[v6]:port" was cut at the brackets; "v4:port" is read above.
		if i := strings.LastIndexByte(f, ':'); i > 0 {
			if a, err := netip.ParseAddr(f[:i]); err == nil && a.Is4() {
				m[a] = true
			}
		}
	}
	return m
}

// checkWalk checks the invariants of Resolve over a chain built from input:
//  1. the client is the peer or an address written in the input;
//  2. from an untrusted peer, the client is the peer, no step is taken and
//     no proto or host is believed;
//  3. every hop stepped over, the peer included, is trusted, and the client
//     is the hop reached by the last step;
//  4. a trusted client means the walk could not go further left: no hop is
//     left of it, or that hop is unreadable, or hops were dropped;
//  5. a believed proto is "http" or "https" and a believed host passes
//     ValidHost;
//  6. the X-Forwarded-For sent on lists Steps+1 addresses, client first,
//     peer last, and parses back as such.
func checkWalk(t *testing.T, input string, peer netip.Addr, c *Chain, r Result) {
	t.Helper()
	peer = peer.Unmap()
	if r.Client != peer && !addrsIn(input)[r.Client] {
		t.Fatalf("client %v is neither the peer %v nor in the input %q", r.Client, peer, input)
	}
	if !testTrusted.Contains(peer) && (r.Client != peer || r.Steps != 0 || r.Proto != nil || r.Host != nil) {
		t.Fatalf("untrusted peer %v: got client %v, steps %d, proto %q, host %q", peer, r.Client, r.Steps, r.Proto, r.Host)
	}
	cur := peer
	for i := 0; i < r.Steps; i++ {
		if !testTrusted.Contains(cur) {
			t.Fatalf("step %d left %v, which is not trusted", i, cur)
		}
		h, ok := c.FromRight(i)
		if !ok || !h.Addr.IsValid() {
			t.Fatalf("step %d to a hop that is not there", i)
		}
		cur = h.Addr
	}
	if cur != r.Client {
		t.Fatalf("got client %v, want the hop reached by the last step, %v", r.Client, cur)
	}
	if testTrusted.Contains(r.Client) {
		if h, ok := c.FromRight(r.Steps); ok && h.Addr.IsValid() {
			t.Fatalf("client %v is trusted but the walk could go on to %v", r.Client, h.Addr)
		}
	}
	if p := string(r.Proto); r.Proto != nil && p != "http" && p != "https" {
		t.Fatalf("believed proto %q", p)
	}
	if r.Host != nil && ValidHost(r.Host) == nil {
		t.Fatalf("believed host %q", r.Host)
	}
	out := r.AppendXFF(nil, c)
	var got []netip.Addr
	for _, n := range xffAll(t, string(out)) {
		if n.Kind != NodeIP {
			t.Fatalf("X-Forwarded-For %q sent on holds a non-address", out)
		}
		got = append(got, n.Addr)
	}
	if len(got) != r.Steps+1 || got[0] != r.Client || got[len(got)-1] != peer {
		t.Fatalf("X-Forwarded-For %q sent on: want %d addresses from %v to %v", out, r.Steps+1, r.Client, peer)
	}
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{
		`for="_gazonk"`,
		`For="[2001:db8:cafe::17]:4711"`,
		`for=192.0.2.60;proto=http;by=203.0.113.43`,
		`for=192.0.2.43, for=198.51.100.17`,
		`for=6.6.6.6;proto=http;host=evil, for=203.0.113.9;proto=https;host=good, for=10.0.0.1`,
		"for=\"6.6.6.6\nfor=203.0.113.9;proto=https\nfor=10.1.1.1",
		`for=unknown, for="[2001:db8:ff::9]", for=10.0.0.1:80;host="a.example:1"`,
		`for=1.2.3.4;for=5.6.7.8, for=10.0.0.1`,
		// The end of the value: a malformed last element, an unterminated
		// or escaped quoted string, a name without a value.
		`for=10.0.0.1, for=1.2.3.4;for=5.6.7.8`,
		`for=10.0.0.1, for="1.2.3.4\`,
		`for=10.0.0.1, for="1.2.3.4\"`,
		`for=10.0.0.1, for="1.2.3.4`,
		`for=10.0.0.1, for="1.2.3.4"x`,
		`for=10.0.0.1, for=`,
		`for=10.0.0.1, for`,
		`for=10.0.0.1;`,
		`for="[2001:db8:ff::1]:`,
		`for="[2001:db8:ff::1`,
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	var c Chain
	f.Fuzz(func(t *testing.T, s string, pi uint8) {
		peer := fuzzPeers[int(pi)%len(fuzzPeers)]
		var r Result
		within(t, func() {
			c.Reset()
			for line := range strings.SplitSeq(s, "\n") {
				c.AddForwarded([]byte(line))
			}
			r = Resolve(&testTrusted, peer, &c)
		})
		checkWalk(t, s, peer, &c, r)
	})
}

func FuzzXForwardedFor(f *testing.F) {
	for _, s := range []string{
		"203.0.113.9",
		"6.6.6.6, 203.0.113.9:5555, 10.0.0.1",
		"6.6.6.6\n203.0.113.9\n10.0.0.1",
		"[2001:db8::1]:443, 2001:db8:ff::1, ::ffff:10.0.0.9",
		"unknown, 10.0.0.1",
		"10.0.0.5, 10.0.0.1",
		", ,1.2.3.4.5, _x, 01.2.3.4",
		// The end of the value.
		"203.0.113.9, 10.0.0.1,",
		"203.0.113.9, 10.0.0.1:",
		"203.0.113.9, [2001:db8:ff::1",
		"203.0.113.9, [2001:db8:ff::1]:",
		"203.0.113.9, 10.0.0.1 \t",
		"203.0.113.9, 10.0.0.",
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	var c Chain
	f.Fuzz(func(t *testing.T, s string, pi uint8) {
		peer := fuzzPeers[int(pi)%len(fuzzPeers)]
		var r Result
		within(t, func() {
			c.Reset()
			for line := range strings.SplitSeq(s, "\n") {
				c.AddXForwardedFor([]byte(line))
			}
			r = Resolve(&testTrusted, peer, &c)
		})
		checkWalk(t, s, peer, &c, r)
	})
}
