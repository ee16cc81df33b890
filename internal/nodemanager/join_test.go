package nodemanager

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/nodeapi"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// TestJoinIsGuarded: joining the domain makes the domain CA sign a
// certificate, so it needs a user who may create hosts, and the CA signs
// only the names of the joining node manager, never names a CSR adds.
func TestJoinIsGuarded(t *testing.T) {
	n, ca := startNM(t)
	call := basicCaller(t, n, ca)
	join := func(user, pass, host, addr string, dns []string, ips []net.IP) apitest.Answer {
		t.Helper()
		csr, _, err := pki.NewKeyAndCSR("joiner", dns, ips)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(nodeapi.JoinRequest{HostName: host, Address: addr, Port: 18090, CSR: string(csr)})
		return call(user, pass, "POST", "/nm/join", string(b))
	}
	for _, role := range []string{"API Server Operator", "Deployer"} {
		name := "u-" + strings.Fields(strings.ToLower(role))[0]
		body := fmt.Sprintf(`{"name":%q,"password":"pw-%s-12345","roles":[%q]}`, name, name, role)
		if a := call(apitest.User, apitest.Pass, "POST", "/api/rbac/users", body); a.Code != http.StatusCreated {
			t.Fatalf("creating %s: %d %s", name, a.Code, a.Body)
		}
		dns, ips := nodeapi.CertNames("rogue", "127.0.0.9")
		join(name, "pw-"+name+"-12345", "rogue", "127.0.0.9", dns, ips).WantError(t, 403, name, "topology.write")
	}

	// Names that are not the joining node manager's: refused, nothing signed.
	dns, ips := nodeapi.CertNames("second", "127.0.0.9")
	for _, extra := range []struct {
		dns []string
		ips []net.IP
		bad string
	}{
		{append(slices.Clone(dns), "anm.example.com"), ips, "anm.example.com"},
		{dns, append(slices.Clone(ips), net.ParseIP("10.1.2.3")), "10.1.2.3"},
	} {
		join(apitest.User, apitest.Pass, "second", "127.0.0.9", extra.dns, extra.ips).WantError(t, 400, extra.bad, "not this node manager's")
	}

	// Its own names: signed, exactly them.
	a := join(apitest.User, apitest.Pass, "second", "127.0.0.9", dns, ips)
	a.MustCode(t, http.StatusCreated)
	var ans nodeapi.JoinAnswer
	a.Decode(t, &ans)
	cert, err := pki.ParseCertPEM([]byte(ans.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	gotIPs := make([]string, len(cert.IPAddresses))
	for i, ip := range cert.IPAddresses {
		gotIPs[i] = ip.String()
	}
	if fmt.Sprint(cert.DNSNames) != "[localhost second]" || fmt.Sprint(gotIPs) != "[127.0.0.1 ::1 127.0.0.9]" ||
		cert.Subject.CommonName != pki.NodeManagerCommonName(ans.NodeManagerID, ans.HostID) {
		t.Errorf("signed names: CN %q, DNS %v, IPs %v", cert.Subject.CommonName, cert.DNSNames, gotIPs)
	}
	// A second host cannot take the first one's address.
	dns3, ips3 := nodeapi.CertNames("third", "127.0.0.9")
	join(apitest.User, apitest.Pass, "third", "127.0.0.9", dns3, ips3).WantError(t, 409, "127.0.0.9")
}

// TestSyncAudited: POST /nm/sync (every host's topology pushed) leaves an
// entry in the audit log.
func TestSyncAudited(t *testing.T) {
	n, ca := startNM(t)
	base := "https://" + n.Addr()
	req, _ := http.NewRequest("POST", base+"/nm/sync", nil)
	apitest.Do(t, apitest.TLSClient(ca.Pool(), clientCert(t, ca)), req).MustCode(t, 200)
	req, _ = http.NewRequest("GET", base+"/api/audit?action=sync", nil)
	req.SetBasicAuth(apitest.User, apitest.Pass)
	a := apitest.Do(t, apitest.TLSClient(ca.Pool()), req)
	if a.Code != 200 || !strings.Contains(a.Body, `"sync topology"`) || !strings.Contains(a.Body, "node manager nodemanager-1") {
		t.Errorf("audit after POST /nm/sync: %d %s", a.Code, a.Body)
	}
}
