package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// Live is a process's TLS identity read from files and read again when
// they change: a certificate, its key and the domain CA certificate it
// trusts. The node managers' listeners and clients and the instances'
// management listeners take theirs from a Live, so that certificates
// replaced on disk (managedomain --regen_certs, --submit_cert) are used by
// the next handshake without restarting anything. Connections already
// established keep the identity they were made with.
//
// A change is noticed by the files' size and modification time (a stat of
// three files per handshake; the management plane's handshakes are few).
// Files caught half-replaced (a new certificate beside the old key) do not
// load: the last identity that loaded stays in use, and the next handshake
// tries again. It is safe for concurrent use.
type Live struct {
	h                         home.Home
	certFile, keyFile, caFile string

	mu    sync.Mutex
	stamp [3]fileStamp
	cur   *Identity
}

// Identity is what a Live loaded: the certificate with its key (Leaf set)
// and the CA certificate, as one value that does not change.
type Identity struct {
	Cert tls.Certificate
	CA   *x509.Certificate
	pool *x509.CertPool
}

// Pool is a pool holding the CA certificate only.
func (id *Identity) Pool() *x509.CertPool { return id.pool }

type fileStamp struct {
	size int64
	mod  time.Time
}

// NewLive loads certFile, keyFile and caFile (the domain CA certificate)
// once, so that a missing or broken file is an error at start, and
// returns a Live that keeps them current.
func NewLive(h home.Home, certFile, keyFile, caFile string) (*Live, error) {
	l := &Live{h: h, certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := l.Load(); err != nil {
		return nil, err
	}
	return l, nil
}

// Load returns the current identity: the files' contents when they changed
// since the last load and load, or else the identity loaded before.
func (l *Live) Load() (*Identity, error) {
	st, statErr := l.stat()
	l.mu.Lock()
	defer l.mu.Unlock()
	if statErr == nil && l.cur != nil && st == l.stamp {
		return l.cur, nil
	}
	id, err := loadIdentity(l.h, l.certFile, l.keyFile, l.caFile)
	if err != nil {
		if l.cur != nil {
			return l.cur, nil // half-replaced or gone: keep what works
		}
		return nil, err
	}
	l.cur, l.stamp = id, st
	return id, nil
}

func (l *Live) stat() ([3]fileStamp, error) {
	var st [3]fileStamp
	for i, f := range []string{l.certFile, l.keyFile, l.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			// mutate:equivalent err-return a file that cannot be stat'ed cannot be loaded either: Load keeps the last identity both ways
			return st, err
		}
		st[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return st, nil
}

// loadIdentity reads a key pair and the CA certificate and checks that the
// certificate is the CA's.
func loadIdentity(h home.Home, certFile, keyFile, caFile string) (*Identity, error) {
	ca, err := loadCACertFile(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := LoadKeyPair(h, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if err := CheckPeerCA(cert.Leaf, ca); err != nil {
		return nil, fmt.Errorf("%s is not signed by the domain CA of %s: %w", certFile, caFile, err)
	}
	if !bytes.Equal(ca.RawIssuer, ca.RawSubject) {
		// A domain CA that the operator's CA signed (--submit_cert, or -i
		// --domain_cert with an intermediate): sent with the certificate,
		// so that a client trusting the operator's root can verify it.
		cert.Certificate = append(cert.Certificate, ca.Raw)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Identity{Cert: cert, CA: ca, pool: pool}, nil
}

// ServerConfig is a TLS server configuration that takes its certificate and
// its client CAs from l at each handshake: base (ClientAuth, NextProtos,
// versions) with Certificates and ClientCAs set from the current identity.
func (l *Live) ServerConfig(base *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion: base.MinVersion,
		NextProtos: base.NextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			id, err := l.Load()
			if err != nil {
				// mutate:equivalent * a Live from NewLive has loaded once: Load keeps that identity, it never fails
				return nil, err
			}
			c := base.Clone()
			c.Certificates = []tls.Certificate{id.Cert}
			c.ClientCAs = id.pool
			return c, nil
		},
	}
}
