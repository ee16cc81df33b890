package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/gatehouse-gw/gatehouse/internal/forwarded"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
	"github.com/gatehouse-gw/gatehouse/internal/proxy"
)

// Transparent load balancing, inbound: who the client of a request is (see
// docs/transparent-lb.md). The connection's peer (the source a PROXY
// protocol header declared, when one was used) is the start of the
// trusted-proxy walk of package forwarded. From a trusted peer the Forwarded
// header (preferred) or X-Forwarded-For names the previous hops, and
// X-Forwarded-Proto/-Host and the client-certificate header are believed;
// from any other peer they are ignored (logged at debug level) and the
// client-certificate header is removed before the policies and the back end
// see the request.

// clientResolver is the compiled transparent-load-balancing settings of one
// runtime configuration. It is immutable.
type clientResolver struct {
	trusted    forwarded.Trusted
	certHeader string // traffic.clientCertHeader; "" for none
}

func newClientResolver(t groupconf.Traffic) (*clientResolver, error) {
	ps := make([]netip.Prefix, 0, len(t.TrustedProxies))
	for _, s := range t.TrustedProxies {
		p, err := groupconf.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("traffic.trustedProxies: %q: %w", s, err)
		}
		ps = append(ps, p)
	}
	return &clientResolver{trusted: forwarded.NewTrusted(ps), certHeader: t.ClientCertHeader}, nil
}

// clientScratch is the per-request memory of the resolution, kept in the
// pooled exchange; info is the result, valid until the exchange is reused.
type clientScratch struct {
	chain forwarded.Chain
	xff   []byte
	info  clientInfo
}

// clientInfo is what the rules decided for one request.
type clientInfo struct {
	addr netip.Addr          // the client: policies and the access log see this one
	fwd  proxy.ForwardedInfo // what the back end is told (X-Forwarded-*)
}

// resolve decides the client of r once, and removes the client-certificate
// header when the peer is not trusted. It allocates nothing unless debug
// logging is on and an untrusted peer sent forwarding headers.
func (cr *clientResolver) resolve(r *h1.Request, s *clientScratch, log *slog.Logger) *clientInfo {
	peer := r.RemoteAddr.Addr().Unmap()
	if !cr.trusted.Contains(peer) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			cr.logIgnored(r, peer, log)
		}
		if cr.certHeader != "" {
			r.Header.Del(cr.certHeader)
		}
		s.xff = peer.AppendTo(s.xff[:0])
		s.info = clientInfo{addr: peer, fwd: proxy.ForwardedInfo{For: s.xff}}
		return &s.info
	}
	s.chain.Reset()
	var xfp, xfh []byte
	hasFwd := false
	r.Header.Each(func(name, value []byte) bool {
		switch {
		case nameIs(name, "forwarded"):
			hasFwd = true
			s.chain.AddForwarded(value)
		case xfp == nil && nameIs(name, "x-forwarded-proto"):
			xfp = value
		case xfh == nil && nameIs(name, "x-forwarded-host"):
			xfh = value
		}
		return true
	})
	if !hasFwd {
		r.Header.Each(func(name, value []byte) bool {
			if nameIs(name, "x-forwarded-for") {
				s.chain.AddXForwardedFor(value)
			}
			return true
		})
	}
	res := forwarded.Resolve(&cr.trusted, peer, &s.chain)
	s.xff = res.AppendXFF(s.xff[:0], &s.chain)
	s.chain.Reset() // the hops alias the request: do not keep them pooled
	proto, host := res.Proto, res.Host
	if proto == nil {
		proto = forwarded.ParseProto(forwarded.FirstValue(xfp))
	}
	if host == nil {
		host = forwarded.ValidHost(forwarded.FirstValue(xfh))
	}
	s.info = clientInfo{addr: res.Client, fwd: proxy.ForwardedInfo{For: s.xff, Proto: proto, Host: host}}
	return &s.info
}

// logIgnored logs, at debug level, each forwarding header that an untrusted
// peer sent: its name and at most a short, sanitised prefix of its value.
func (cr *clientResolver) logIgnored(r *h1.Request, peer netip.Addr, log *slog.Logger) {
	r.Header.Each(func(name, value []byte) bool {
		if nameIs(name, "forwarded") || nameIs(name, "x-forwarded-for") || nameIs(name, "x-forwarded-proto") ||
			nameIs(name, "x-forwarded-host") {
			log.Debug("forwarding header from an untrusted peer ignored", "peer", peer.String(),
				"header", string(name), "valuePrefix", sanitisedPrefix(value))
		} else if cr.certHeader != "" && nameIsFold(name, cr.certHeader) {
			log.Debug("client-certificate header from an untrusted peer removed", "peer", peer.String(), "header", string(name))
		}
		return true
	})
}

// logPrefixLen is how much of an ignored header value the debug log shows.
const logPrefixLen = 24

// sanitisedPrefix returns the first logPrefixLen bytes of v with anything
// but printable ASCII replaced by '?', and "…" when v was longer.
func sanitisedPrefix(v []byte) string {
	n := min(len(v), logPrefixLen)
	b := make([]byte, n, n+3)
	for i := range n {
		c := v[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b[i] = c
	}
	if len(v) > n {
		b = append(b, "…"...)
	}
	return string(b)
}

// nameIs reports whether the field name b is lower (lowercase ASCII),
// ignoring case.
func nameIs(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// nameIsFold reports whether b and s are equal, ignoring ASCII case.
func nameIsFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// proxyProtocolListener wraps the traffic listener for the PROXY protocol
// (v1 and v2, detected): a connection from a trusted proxy may open with a
// PROXY header, used when present (its source is then the connection's
// peer); from any other peer a PROXY header is refused and the connection
// closed. The header must arrive within timeout (traffic.readHeaderTimeout)
// of the first read; a connection that sends nothing within it is served as
// one without a header. The trusted networks are read from the runtime at
// each accept.
type proxyProtocolListener struct {
	net.Listener
	i       *Instance
	timeout time.Duration
	log     *slog.Logger
}

func (i *Instance) newProxyProtocolListener(ln net.Listener, t groupconf.Traffic) net.Listener {
	timeout := t.ReadHeaderTimeout.D()
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &proxyProtocolListener{Listener: ln, i: i, timeout: timeout, log: i.lgWith("proxyprotocol")}
}

// Accept returns the next connection, wrapped. It never blocks on the
// header: that is read by the connection's first Read (or RemoteAddr), in
// the goroutine that serves it.
func (l *proxyProtocolListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var peer netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = ta.AddrPort().Addr().Unmap()
	}
	policy := proxyproto.REJECT
	if l.i.rt.Load().clients.trusted.Contains(peer) {
		policy = proxyproto.USE
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(l.timeout),
		proxyproto.ValidateHeader(validateProxyHeader))
	return &proxyProtocolConn{Conn: pc, peer: peer, log: l.log}, nil
}

// errProxyTransport refuses a PROXY header for anything but TCP over IPv4 or
// IPv6 (LOCAL and UNKNOWN headers are accepted: the connection's own peer
// stays the peer).
var errProxyTransport = errors.New("PROXY header for a transport other than TCP")

func validateProxyHeader(h *proxyproto.Header) error {
	if h.Command.IsLocal() || h.TransportProtocol.IsUnspec() {
		return nil
	}
	if h.TransportProtocol.IsStream() && (h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return nil
	}
	return errProxyTransport
}

// proxyProtocolConn logs, once, why a PROXY header was refused.
type proxyProtocolConn struct {
	*proxyproto.Conn
	peer   netip.Addr
	log    *slog.Logger
	logged bool // Read is called by one goroutine at a time
}

func (c *proxyProtocolConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !c.logged && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
		c.logged = true
		switch {
		case errors.Is(err, proxyproto.ErrSuperfluousProxyHeader):
			c.log.Debug("PROXY header from an untrusted peer refused; connection closed", "peer", c.peer.String())
		case errors.Is(err, errProxyTransport) || strings.HasPrefix(err.Error(), "proxyproto:"):
			// The library's errors are sentinels whose text starts so.
			c.log.Debug("malformed PROXY header refused; connection closed", "peer", c.peer.String(), "error", err.Error())
		}
	}
	return n, err
}
