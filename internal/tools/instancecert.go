package tools

import (
	"crypto/tls"
	"fmt"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/instance"
)

// ensureInstanceCert makes sure the instance t has a certificate signed by
// the domain CA for its management listener and returns the listener's
// mutual-TLS configuration. On the host that holds the domain CA key a
// missing, stale or misnamed certificate is (re)issued
// (domain.EnsureInstanceCert); elsewhere an instance without one does not
// start, with a message saying how to get one.
//
// Seam for the second-host work: on a host without the CA key, a
// certificate request signed by the Admin Node Manager belongs here, before
// the error wrapping domain.ErrNoInstanceCert is returned.
func ensureInstanceCert(env *Env, t target, cfg *groupconf.Config, quiet bool) (*tls.Config, error) {
	note, err := domain.EnsureInstanceCert(t.h, t.gid, t.iid, cfg.Management.Address)
	if err != nil {
		return nil, err
	}
	if note != "" && !quiet {
		fmt.Fprintln(env.Stderr, note)
	}
	return instance.LoadManagementTLS(t.h, t.gid, t.iid)
}

// nmPort is this host's node manager port (8090 when not configured).
func nmPort(h home.Home) int {
	if c, err := domain.LoadNodeManagerConf(h); err == nil && c.Port != 0 {
		return c.Port
	}
	return domain.DefaultNodeManagerPort
}
