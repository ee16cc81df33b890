package build

import (
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/policy/jwt"
)

// TestChainJWT: a jwt policy needs the configuration's key sources; two
// APIs of the same issuer share one.
func TestChainJWT(t *testing.T) {
	spec := groupconf.JWTPolicy{Issuer: "https://id.example", Audience: "a", JWKSURL: "https://id.example/keys"}
	api := groupconf.API{Name: "orders", Policies: []groupconf.Policy{{JWT: &spec}}}
	if _, err := Chain(api, Deps{}); err == nil || !strings.Contains(err.Error(), "jwt") {
		t.Errorf("without key sources: got %v, want an error naming the policy", err)
	}
	srcs := jwt.NewSources(jwt.SourcesOptions{})
	c, err := Chain(api, Deps{JWT: srcs})
	if err != nil || len(c) != 1 || c[0].Name() != "jwt" {
		t.Fatalf("chain: %v %v", c, err)
	}
	other := spec
	other.Audience = "b"
	if _, err := Chain(groupconf.API{Name: "stock", Policies: []groupconf.Policy{{JWT: &other}}}, Deps{JWT: srcs}); err != nil || srcs.Len() != 1 {
		t.Errorf("a second API of the same issuer: %v, %d key sources, want 1", err, srcs.Len())
	}
	bad := spec
	bad.CAFile = "/nonexistent/ca.pem"
	if _, err := Chain(groupconf.API{Name: "x", Policies: []groupconf.Policy{{JWT: &bad}}}, Deps{JWT: srcs}); err == nil || !strings.Contains(err.Error(), "caFile") {
		t.Errorf("an unreadable caFile: got %v", err)
	}
}
