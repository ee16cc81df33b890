package nodemanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// PassphraseExecTimeout bounds one run of passphraseExec.
const PassphraseExecTimeout = 30 * time.Second

// execArgs is what passphraseExec is given after its own arguments to
// name the scope: "nodemanager", "ca", or "group" and the group's id.
func execArgs(s secret.Scope) []string {
	switch {
	case s == secret.ScopeNodeManagers:
		return []string{"nodemanager"}
	case s == secret.ScopeCA:
		return []string{"ca"}
	}
	return []string{"group", s.GroupID()}
}

// ExecPassphrase runs conf's passphraseExec for scope s of h and unlocks
// s with its answer (secret.Unlock): the passphrase is returned for
// handing on, and this process holds the scope's key. An answer that does
// not open the scope is an error that says so.
func ExecPassphrase(ctx context.Context, h home.Home, conf domain.NodeManagerConf, s secret.Scope) (secret.Value, error) {
	if len(conf.PassphraseExec) == 0 {
		return secret.Value{}, fmt.Errorf("the %s has a passphrase and this node manager has no passphraseExec (system/conf/nodemanager.yaml) to obtain it (docs/passphrase.md)", s)
	}
	argv := append(append([]string{}, conf.PassphraseExec...), execArgs(s)...)
	p, err := secret.FromExec(ctx, argv, PassphraseExecTimeout)
	if err != nil {
		return secret.Value{}, fmt.Errorf("the passphrase of the %s: %w", s, err)
	}
	if err := secret.Unlock(h, s, p); err != nil {
		p.Wipe()
		if errors.Is(err, secret.ErrWrongPassphrase) {
			return secret.Value{}, fmt.Errorf("passphraseExec answered a wrong passphrase for the %s", s)
		}
		return secret.Value{}, err
	}
	return p, nil
}

// groupPassphrase is the passphrase of group gid for an instance the
// supervisor starts: zero when the group has none.
func (n *NodeManager) groupPassphrase(ctx context.Context, gid string) (secret.Value, error) {
	s := secret.GroupScope(gid)
	if !s.Protected(n.opts.Home) {
		return secret.Value{}, nil
	}
	p, err := ExecPassphrase(ctx, n.opts.Home, n.conf, s)
	if err != nil {
		n.log.Error("no passphrase for an instance's group", "group", gid, "error", err.Error())
	}
	return p, err
}

// unlockScopes opens, with passphraseExec, the domain CA's secrets when
// this host holds them and the groups' whose instances run here, so that
// the Admin Node Manager can sign certificates and reach the groups' key
// stores. Without passphraseExec, what needs them says so when asked.
func (n *NodeManager) unlockScopes(ctx context.Context) {
	if len(n.conf.PassphraseExec) == 0 {
		return
	}
	scopes := []secret.Scope{secret.ScopeCA}
	if topo, err := n.store.Load(); err == nil {
		for _, g := range topo.Groups {
			scopes = append(scopes, secret.GroupScope(g.ID))
		}
	}
	for _, s := range scopes {
		if !s.Protected(n.opts.Home) || secret.Unlocked(n.opts.Home, s) {
			continue
		}
		p, err := ExecPassphrase(ctx, n.opts.Home, n.conf, s)
		if err != nil {
			n.log.Warn("a passphrase scope stays locked", "scope", string(s), "error", err.Error())
			continue
		}
		p.Wipe()
		n.log.Info("passphrase scope unlocked with passphraseExec", "scope", string(s))
	}
}
