package gwtest

import (
	"net"
	"testing"
)

// Several hosts of one domain on one machine use separate install
// directories (NewHome) and their own loopback addresses: 127.0.0.2 for the
// Admin Node Manager, 127.0.0.3 for a second host, and so on (Linux routes
// all of 127.0.0.0/8 to the loopback interface).

// FreePortOn returns a TCP port on ip (a loopback address such as
// 127.0.0.3) that was free a moment ago.
func FreePortOn(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v (hosts of a test domain use their own loopback addresses)", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
