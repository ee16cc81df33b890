package nodeapi

import (
	"net"
	"testing"
)

func TestCertNames(t *testing.T) {
	dns, ips := CertNames("GW1.example", "10.1.2.3")
	if dns[0] != "localhost" || dns[1] != "gw1.example" {
		t.Errorf("dns: got %v", dns)
	}
	if len(ips) != 3 || !ips[2].Equal(net.ParseIP("10.1.2.3")) {
		t.Errorf("ips: got %v", ips)
	}
	if dns, _ := CertNames("my host", "0.0.0.0"); len(dns) > 2 {
		t.Errorf("a name with a space is no DNS name: got %v", dns)
	}
}
