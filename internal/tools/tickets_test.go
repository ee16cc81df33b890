package tools_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// instanceYAML returns the instance.yaml whose traffic port is port.
func instanceYAML(t *testing.T, h *gwtest.Home, port int) string {
	t.Helper()
	files, _ := filepath.Glob(h.Path("groups", "group-*", "instance-*", "conf", "instance.yaml"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), strconv.Itoa(port)) {
			return f
		}
	}
	t.Fatalf("no instance.yaml with traffic port %d", port)
	return ""
}

// TestSessionTicketsShared: two instances of a group on one host, behind
// one name, resume each other's TLS sessions (traffic.tls.sessionTickets,
// on by default), in TLS 1.3 and 1.2; with tickets off, nothing resumes.
func TestSessionTicketsShared(t *testing.T) {
	h := gwtest.NewHome(t)
	p1 := newInstance(t, h, "G", "S1", false)
	// Only /healthcheck is asked for: no API, so that S2 (no sample
	// service) can join the group.
	gconf, _ := filepath.Glob(h.Path("groups", "group-*", "conf", "group.yaml"))
	for _, f := range gconf {
		if err := os.WriteFile(f, []byte("apis: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p2 := ports{gwtest.FreePort(t), gwtest.FreePort(t), 0}
	h.MustRun("", "managedomain", "-c", "-n", "S2", "-g", "G", "--traffic_port", strconv.Itoa(p2.traffic), "--management_port", strconv.Itoa(p2.mgmt))
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	allowConfigDirs(t, h, dir)
	tlsOn := map[string]string{"traffic.tls.certFile": certFile, "traffic.tls.keyFile": keyFile}
	for _, p := range []ports{p1, p2} {
		if err := groupconf.SetKeys(instanceYAML(t, h, p.traffic), tlsOn, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"S1", "S2"} {
		h.MustRun("", "startinstance", "-d", "-q", "-n", n, "-g", "G")
		t.Cleanup(func() { h.Run("", "startinstance", "-k", "-q", "-n", n, "-g", "G") })
	}
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cache := tls.NewLRUClientSessionCache(8)
		if resumed := tlsGet(t, p1.traffic, pool, cache, v); resumed {
			t.Fatalf("TLS %x: the first connection resumed", v)
		}
		// The same instance, then the other one.
		if !tlsGet(t, p1.traffic, pool, cache, v) {
			t.Errorf("TLS %x: no resumption on the instance that issued the ticket", v)
		}
		if !tlsGet(t, p2.traffic, pool, cache, v) {
			t.Errorf("TLS %x: a ticket of S1 does not resume on S2 of the same group", v)
		}
	}

	// Off on S2: a full handshake every time there.
	h.MustRun("", "startinstance", "-k", "-q", "-n", "S2", "-g", "G")
	if err := groupconf.SetKeys(instanceYAML(t, h, p2.traffic), map[string]string{"traffic.tls.sessionTickets.enabled": "false"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	h.MustRun("", "startinstance", "-d", "-q", "-n", "S2", "-g", "G")
	cache := tls.NewLRUClientSessionCache(8)
	tlsGet(t, p2.traffic, pool, cache, tls.VersionTLS13)
	if tlsGet(t, p2.traffic, pool, cache, tls.VersionTLS13) {
		t.Error("sessionTickets.enabled false: a session resumed")
	}
}

// tlsGet asks for /healthcheck over TLS with version v, reads the answer
// whole (a TLS 1.3 ticket comes after the handshake) and reports whether
// the session was resumed.
func tlsGet(t *testing.T, port int, pool *x509.CertPool, cache tls.ClientSessionCache, v uint16) bool {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	// One name for both instances: the client's cache is keyed by it, as
	// behind a load balancer.
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{
		RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache, MinVersion: v, MaxVersion: v, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(body), "HTTP/1.1 200") {
		t.Fatalf("healthcheck over TLS: %v %q", err, body)
	}
	return c.ConnectionState().DidResume
}
