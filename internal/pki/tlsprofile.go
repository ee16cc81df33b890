package pki

import "crypto/tls"

// CipherSuites are the TLS 1.2 cipher suites that the domain's listeners
// and clients offer: ECDHE key exchange with AEAD ciphers only (Mozilla's
// "intermediate" profile), no CBC, no SHA-1 MACs, no static RSA. TLS 1.3's
// suites are fixed by crypto/tls and all qualify.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
