package forwarded

import "net/netip"

// Trusted is a set of trusted proxy networks. The zero value trusts nothing.
// A Trusted is immutable and safe for concurrent use. Contains scans the
// networks in order: it is meant for the handful of load balancers in front
// of a gateway, not for thousands of networks.
type Trusted struct {
	prefixes []netip.Prefix
}

// NewTrusted returns the set of prefixes (copied). An IPv4-mapped IPv6
// prefix (::ffff:10.0.0.0/104) is taken as the IPv4 prefix it maps
// (10.0.0.0/8); invalid prefixes are left out.
func NewTrusted(prefixes []netip.Prefix) Trusted {
	var t Trusted
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t
}

// Empty reports whether the set trusts nothing.
func (t *Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether a (unmapped first) is in one of the networks.
// An invalid address is in no network.
func (t *Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MaxHops is how many hops a Chain keeps: the rightmost ones, those nearest
// the gateway. A walk never goes further left than that.
const MaxHops = 32

// Hop is one hop named by the forwarding headers: the address a proxy says
// its request came from, and what that proxy said about the request it
// received.
type Hop struct {
	// Addr is the hop's address; it is invalid when the hop cannot be read
	// as an IP address (unknown, obfuscated, malformed, or a Forwarded
	// element without for=).
	Addr netip.Addr
	// Proto is "http" or "https" from a Forwarded element's proto=, nil when
	// absent or anything else.
	Proto []byte
	// Host is a Forwarded element's host=, nil when absent or when it holds
	// characters a host and port cannot (see ValidHost). It aliases the
	// parsed input.
	Host []byte
}

// Chain holds the hops of one request's forwarding headers, left (client
// side) to right (gateway side), in the order of the header lines and of
// the list members within them. Only the rightmost MaxHops are kept. The
// zero value is an empty chain; Reset makes a used one empty again. A Chain
// is meant to be kept in pooled per-request memory: it allocates nothing.
type Chain struct {
	hops [MaxHops]Hop
	n    int // hops added, kept or not
}

// Reset empties c, dropping its references to the parsed input.
func (c *Chain) Reset() {
	clear(c.hops[:min(c.n, MaxHops)])
	c.n = 0
}

// Len returns how many hops were added (possibly more than MaxHops).
func (c *Chain) Len() int { return c.n }

// FromRight returns the i-th hop from the right: 0 is the hop the peer
// named, 1 the one before it, and so on. ok is false past the leftmost hop
// kept.
func (c *Chain) FromRight(i int) (h Hop, ok bool) {
	if i < 0 || i >= min(c.n, MaxHops) {
		return Hop{}, false
	}
	return c.hops[(c.n-1-i)%MaxHops], true
}

func (c *Chain) push(h Hop) {
	c.hops[c.n%MaxHops] = h
	c.n++
}

// AddForwarded appends the elements of one Forwarded field line. An element
// that cannot be parsed is kept as an unreadable hop (a walk stops there);
// the line's elements after it are kept when they can be found again (after
// the next comma outside a quoted string). It returns how many elements
// were malformed.
func (c *Chain) AddForwarded(v []byte) (malformed int) {
	for {
		e, rest, ok, err := ParseElement(v)
		if !ok {
			return malformed
		}
		if err != nil {
			malformed++
			c.push(Hop{})
		} else {
			h := Hop{Proto: ParseProto(e.Proto), Host: ValidHost(e.Host)}
			if e.For.Kind == NodeIP {
				h.Addr = e.For.Addr
			}
			c.push(h)
		}
		v = rest
	}
}

// AddXForwardedFor appends the entries of one X-Forwarded-For field line.
// An entry that is not an IP address (with an optional port) is kept as an
// unreadable hop.
func (c *Chain) AddXForwardedFor(v []byte) {
	for {
		n, rest, ok := NextXFF(v)
		if !ok {
			return
		}
		var h Hop
		if n.Kind == NodeIP {
			h.Addr = n.Addr
		}
		c.push(h)
		v = rest
	}
}

// Result is the outcome of the trusted-proxy walk.
type Result struct {
	Peer   netip.Addr // the connection's peer, unmapped
	Client netip.Addr // the client: the peer, or an address the chain names
	// Steps is how many hops the walk stepped over: the addresses from the
	// client to the peer are FromRight(Steps-1), …, FromRight(0), Peer.
	Steps int
	// Proto and Host are what the believed Forwarded elements said about the
	// client's request (the leftmost believed element that says it), nil
	// when none did.
	Proto, Host []byte
}

// Resolve runs the trusted-proxy walk: it starts at the connection's peer
// and, while the current hop is trusted, steps to the hop that the current
// one named (the chain's next hop from the right). The first hop that is not
// trusted is the client; so is a trusted hop at which the walk cannot go on
// (no hop left of it, or one that is unreadable or was not kept). An element
// is believed (its proto= and host= taken) when the hop that added it is
// trusted, even when its for= is unreadable.
//
// Invariants (checked by the fuzz targets): the client is the peer or an
// address that c names; from an untrusted peer the client is the peer and
// nothing is believed; every hop stepped over (the peer included) is
// trusted; a trusted client means the walk could not go further left.
func Resolve(t *Trusted, peer netip.Addr, c *Chain) Result {
	peer = peer.Unmap()
	r := Result{Peer: peer, Client: peer}
	for t.Contains(r.Client) {
		// Past the leftmost hop kept, h is the zero Hop: nothing to
		// believe, and its invalid address ends the walk.
		h, _ := c.FromRight(r.Steps)
		if h.Proto != nil {
			r.Proto = h.Proto
		}
		if h.Host != nil {
			r.Host = h.Host
		}
		if !h.Addr.IsValid() {
			break
		}
		r.Steps++
		r.Client = h.Addr
	}
	return r
}

// AppendXFF appends the X-Forwarded-For value the gateway sends on: the
// addresses from the client to the peer, "client, proxy1, …, peer", or just
// the client when the walk took no step (then client and peer are one).
// The hops left of the client are not repeated: nothing vouches for them.
func (r *Result) AppendXFF(b []byte, c *Chain) []byte {
	for i := r.Steps - 1; i >= 0; i-- {
		h, _ := c.FromRight(i)
		b = h.Addr.AppendTo(b)
		b = append(b, ", "...)
	}
	return r.Peer.AppendTo(b) // the client itself when the walk took no step
}

var (
	protoHTTP  = []byte("http")
	protoHTTPS = []byte("https")
)

// ParseProto returns "http" or "https" when v is one of them (any case),
// nil otherwise. The result does not alias v.
func ParseProto(v []byte) []byte {
	switch {
	case equalFold(v, "http"):
		return protoHTTP
	case equalFold(v, "https"):
		return protoHTTPS
	}
	return nil
}

// ValidHost returns v when it can be a host with an optional port (a name,
// an IPv4 address, or an IPv6 address in brackets: letters, digits and
// -._~:[]%), at most 261 bytes; nil otherwise. What it returns is safe to
// send on in a header: no separator, space or control character.
func ValidHost(v []byte) []byte {
	if len(v) == 0 || len(v) > 261 {
		return nil
	}
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == ':', c == '[', c == ']', c == '%':
		default:
			return nil
		}
	}
	return v
}

// FirstValue returns the first member of a comma-separated field value,
// without surrounding whitespace (nil for none): how X-Forwarded-Proto and
// X-Forwarded-Host are read when a proxy sent a list.
func FirstValue(v []byte) []byte {
	i := skipListSep(v, 0)
	s := i
	for i < len(v) && v[i] != ',' {
		i++
	}
	for i > s && (v[i-1] == ' ' || v[i-1] == '\t') {
		i--
	}
	if i == s {
		return nil
	}
	return v[s:i]
}
