package proxy

import "crypto/tls"

// tlsConfig is the TLS client configuration of a back end. Server
// certificates are verified against the system roots (custom CA bundles, SNI
// and session-cache settings arrive with the remote-host settings).
type tlsConfig struct {
	serverName string
}

func (c tlsConfig) build() *tls.Config {
	return &tls.Config{
		ServerName:         c.serverName,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(32),
	}
}
