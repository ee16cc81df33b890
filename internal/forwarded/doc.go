// Package forwarded decides who the client of a request is when load
// balancers or other proxies stand in front of the gateway. It parses the
// Forwarded field (RFC 7239) and X-Forwarded-For, and runs the
// trusted-proxy walk over the hops they name.
//
// The walk (Resolve) starts at the connection's peer. While the current hop
// is a trusted proxy (a Trusted set of networks), it steps to the hop that
// proxy named: the next one from the right of the chain. The first hop that
// is not trusted is the client. A trusted hop is the client only when the
// walk cannot go on: nothing is left of it, or the hop left of it is
// unreadable ("unknown", an obfuscated identifier, a malformed element, a
// Forwarded element without for=), or it was not kept (a Chain keeps the
// rightmost MaxHops). With trusted 10.0.0.0/8 and peer 10.0.0.2:
//
//	X-Forwarded-For: 203.0.113.9, 10.0.0.1  → client 203.0.113.9
//	X-Forwarded-For: 6.6.6.6, 203.0.113.9   → client 203.0.113.9 (6.6.6.6 was forged by the client)
//	X-Forwarded-For: unknown, 10.0.0.1      → client 10.0.0.1
//
// and with peer 198.51.100.7 (not trusted) every such header is ignored:
// the client is 198.51.100.7.
//
// The caller chooses which header feeds the Chain: Forwarded when the
// request has one (it is preferred), else X-Forwarded-For, each header line
// added in order. Parsing works on byte slices, returns netip.Addr values
// and allocates nothing; results alias the parsed input.
package forwarded
