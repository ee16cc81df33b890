package h2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
)

func serverTLS(t testing.TB) *tls.Config {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return &tls.Config{Certificates: []tls.Certificate{testCert}, NextProtos: []string{"h2"}}
}

// startServer serves s on a TLS listener of its own and returns its
// address; the server is closed at the end of the test.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if err := c.(*tls.Conn).Handshake(); err != nil {
					c.Close()
					return
				}
				s.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		s.Close()
	})
	return ln.Addr().String()
}

func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func hello(w h1.ResponseWriter, r *h1.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().SetString("Content-Type", "text/plain")
	w.Write([]byte("hello"))
}

// rawConn is a client speaking frames, for what no HTTP/2 client library
// sends.
type rawConn struct {
	t   testing.TB
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
	dec *hpack.Decoder
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawConn{t: t, c: c, fr: http2.NewFramer(c, c)}
	r.enc = hpack.NewEncoder(&r.hb)
	r.dec = hpack.NewDecoder(4096, nil)
	io.WriteString(c, http2.ClientPreface)
	r.fr.WriteSettings()
	return r
}

// block encodes fields as a header block.
func (r *rawConn) block(fields ...string) []byte {
	r.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), r.hb.Bytes()...)
}

func (r *rawConn) get(id uint32, path string) {
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
		BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "a", ":path", path)})
}

// outcome is what the server answered on a stream, or to the connection.
type outcome struct {
	status    int
	body      string
	rst       http2.ErrCode
	gotRST    bool
	goAway    http2.ErrCode
	gotGoAway bool
	closed    bool
}

// wait reads frames until stream id ends (END_STREAM or RST_STREAM) or
// the connection ends.
func (r *rawConn) wait(id uint32) outcome {
	var o outcome
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			o.closed = true
			return o
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			hf, err := r.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				r.t.Fatal(err)
			}
			if f.StreamID == id {
				for _, h := range hf {
					if h.Name == ":status" {
						o.status = 0
						for _, ch := range h.Value {
							o.status = o.status*10 + int(ch-'0')
						}
					}
				}
				if f.StreamEnded() {
					return o
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				o.body += string(f.Data())
				if f.StreamEnded() {
					return o
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				o.rst, o.gotRST = f.ErrCode, true
				return o
			}
		case *http2.GoAwayFrame:
			o.goAway, o.gotGoAway = f.ErrCode, true
		}
	}
}

type tlsConfig = tls.Config

func tlsDial(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
}
