package nodemanager

import (
	"crypto/x509"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/apitest"
	"github.com/gatehouse-gw/gatehouse/internal/pki"
)

// TestOpenAPIEveryNodeRouteAnswered does the same for /nm on a real Admin
// Node Manager's TLS listener, presenting its own node manager certificate
// (the one the ANM-only paths accept).
func TestOpenAPIEveryNodeRouteAnswered(t *testing.T) {
	doc := apitest.LoadOpenAPI(t)
	n, ca := startNM(t)
	cert, err := pki.LoadKeyPair(n.opts.Home, pki.NodeManagerCertFile(n.opts.Home), pki.NodeManagerKeyFile(n.opts.Home))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	bodies := map[string]string{
		"nmJoin":                   `{"hostName":"openapi-joiner","csr":"not a CSR"}`,
		"nmPrepareInstance":        `{"groupID":"group-1","instanceID":"instance-9"}`,
		"nmPutInstanceCertificate": `{"certificate":"not a certificate"}`,
		"nmPutTopology":            `{}`,
		"nmPutArchive":             `{"meta":{"group":"group-1","id":1},"archive":""}`,
		"nmPutBinary":              "not a binary (no checksum header: 400, nothing changed)",
		"nmRenewCerts":             `{"caCertificate":"not a certificate"}`,
		"nmPutPendingCerts":        `{"nodeManagerCertificate":"not a certificate"}`,
		"nmInstanceAction":         "",
		"nmSetPort":                `{"port":0}`,
		"nmPutConfig":              `{"write":{"conf/adminUsers.json":{"sha256":"00","mode":384,"data":""}},"remove":[]}`, // not configuration: 400, nothing changed
	}
	apitest.CallEveryOperation(t, doc, "/nm/", "https://"+n.Addr(), apitest.TLSClient(roots, cert),
		map[string]string{"instanceID": "instance-9", "action": "status", "path": "healthcheck", "groupID": "group-1", "archiveID": "1"},
		bodies, "no node manager resource")
}
