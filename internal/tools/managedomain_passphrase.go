package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// managedomain --change_passphrase (menu 23): set or change the passphrase
// of a group, of this host's node manager, or of the domain CA
// (docs/passphrase.md). Every secret file of the scope is sealed anew, all
// or none (secret.ChangePassphrase).

var changePassphraseVerb = &mdVerb{
	Name: "change_passphrase", Menu: 23, Title: "set or change a passphrase: a group's, the node manager's, or the domain CA's",
	Help: "Seals every secret of the scope (a group: its instances' keys, its KPS hashing key, its OAuth\n" +
		"signing keys; the node manager: its key and the session key; the domain CA: its key) under a new\n" +
		"key, kept under the new passphrase, all files or none, also when the command is killed half-way.\n" +
		"Refused while a process of the scope runs on this host (the group's instances; the node manager\n" +
		"for the node manager's and the CA's): stop them, change, start them with the new passphrase.\n" +
		"The passphrases are asked on the terminal (the new one twice), or read from files that only\n" +
		"their owner can read (--old_passphrase_file, --new_passphrase_file); never from an argument.",
	Synopsis: "(-g GROUP | --node_manager | --domain) [--old_passphrase_file F] [--new_passphrase_file F]",
	Params: []mdParam{
		{Long: "group", Short: "g", Arg: "GROUP", Help: "the group (name or id) whose passphrase changes", Prompt: "Group", Choices: chooseGroup},
		{Long: "node_manager", Help: "the passphrase of this host's node manager instead"},
		{Long: "domain", Help: "the passphrase of the domain CA instead (on the host that holds its key)"},
		{Long: "old_passphrase_file", Arg: "F", Help: "the current passphrase, from file F (mode 0600 or 0400)"},
		{Long: "new_passphrase_file", Arg: "F", Help: "the new passphrase, from file F (mode 0600 or 0400)"},
	},
	Run: mdChangePassphrase,
}

var sealFileVerb = &mdVerb{
	Name: "seal_file", Title: "seal a file of a group's secrets (a database password, a TLS key) with the group's passphrase",
	Help: "The files a group configuration names that hold secrets (kps.postgres.passwordFile,\n" +
		"traffic.tls.keyFile) belong in groups/<group-id>/conf/secrets/: there, --change_passphrase seals\n" +
		"them, and the instances open them with the group's passphrase. A file put there after the\n" +
		"passphrase was set is sealed with this (in place, atomically; the file in clear is gone).",
	Synopsis: "-g GROUP --file F [--passphrase_file P]",
	Params: []mdParam{
		{Long: "group", Short: "g", Arg: "GROUP", Help: "the group (name or id)", Required: true, Prompt: "Group", Choices: chooseGroup},
		{Long: "file", Arg: "F", Help: "the file, in groups/<group-id>/conf/secrets/", Required: true, Prompt: "File"},
		{Long: "passphrase_file", Arg: "P", Help: "the group's passphrase, from file P (mode 0600 or 0400); else asked"},
	},
	Run: mdSealFile,
}

func init() {
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "regen_certs" })
	mdVerbs = slices.Insert(mdVerbs, i, changePassphraseVerb, sealFileVerb)
}

func mdSealFile(ctx context.Context, s *mdSession, v mdValues) error {
	t, err := s.topology()
	if err != nil {
		return err
	}
	g, err := t.FindGroup(v["group"])
	if err != nil {
		return err
	}
	scope := secret.GroupScope(g.ID)
	dir := filepath.Join(s.home.GroupConfDir(g.ID), "secrets")
	path, err := filepath.Abs(v["file"])
	if err != nil {
		return err
	}
	if filepath.Dir(path) != dir {
		return fmt.Errorf("%s is not in %s: move it there first (only the files there are sealed anew when the passphrase changes)", v["file"], dir)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if !scope.Protected(s.home) {
		return fmt.Errorf("group %q has no passphrase: set one with managedomain --change_passphrase -g %q, which seals every file of %s", g.Name, g.Name, s.home.Rel(dir))
	}
	if secret.IsSealedFile(path) {
		s.out("%s is sealed already.\n", s.home.Rel(path))
		return nil
	}
	if err := s.unlock(v, scope, "passphrase_file"); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer secret.New(b).Wipe()
	err = secret.WriteFile(s.home, path, b, 0o600)
	s.audit("seal file", s.home.Rel(path), err)
	if err != nil {
		return err
	}
	s.out("Sealed %s with the passphrase of the %s.\n", s.home.Rel(path), scope)
	return nil
}

func mdChangePassphrase(ctx context.Context, s *mdSession, v mdValues) error {
	if btoi(v.has("group"))+btoi(v.has("node_manager"))+btoi(v.has("domain")) != 1 {
		return usagef(mdName, "--change_passphrase needs one of -g GROUP, --node_manager, --domain")
	}
	if err := s.home.CheckDomain(); err != nil {
		return err
	}
	var scope secret.Scope
	switch {
	case v.has("group"):
		t, err := s.topology()
		if err != nil {
			return err
		}
		g, err := t.FindGroup(v["group"])
		if err != nil {
			return err
		}
		scope = secret.GroupScope(g.ID)
		hostID, err := domain.LocalHost(s.home)
		if err != nil {
			return err
		}
		for _, ref := range t.Instances(hostID) {
			if ref.Group.ID != g.ID {
				continue
			}
			if st, err := home.Probe(s.home.RunFiles(ref.Service.ID)); err == nil && st.Running {
				return fmt.Errorf("instance %q of group %q is running: stop the group's instances on this host first (startinstance -k -n %q -g %q); nothing was changed", ref.Service.Name, g.Name, ref.Service.Name, g.Name)
			}
		}
	default:
		scope = secret.ScopeNodeManagers
		if v.has("domain") {
			scope = secret.ScopeCA
			if _, err := os.Stat(secret.ScopeCA.KeyringFile(s.home)); err != nil {
				if _, err := os.Stat(s.home.Path("groups", "certs", "private", "domainkey.pem")); err != nil {
					return errors.New("this host does not hold the domain CA's key (groups/certs/private/domainkey.pem): change the CA's passphrase on the host that does")
				}
			}
		}
		if c, err := domain.LoadNodeManagerConf(s.home); err == nil {
			if st, err := home.Probe(s.home.RunFiles(c.NodeManagerID)); err == nil && st.Running {
				return fmt.Errorf("the node manager %s is running: stop it first (nodemanager -k), then start it with the new passphrase; nothing was changed", c.NodeManagerID)
			}
		}
	}
	var old secret.Value
	if scope.Protected(s.home) {
		var err error
		if old, err = s.passphrase(v, "old_passphrase_file", fmt.Sprintf("Current passphrase of the %s", scope), false); err != nil {
			return err
		}
		defer old.Wipe()
	}
	newPass, err := s.passphrase(v, "new_passphrase_file", fmt.Sprintf("New passphrase of the %s", scope), true)
	if err != nil {
		return err
	}
	defer newPass.Wipe()
	start := time.Now()
	err = secret.ChangePassphrase(s.home, scope, old, newPass, secret.DefaultKDF)
	if errors.Is(err, secret.ErrWrongPassphrase) {
		time.Sleep(time.Second - min(time.Since(start), time.Second))
		err = fmt.Errorf("wrong passphrase for the %s: nothing was changed", scope)
	}
	s.audit("change passphrase", string(scope), err)
	if err != nil {
		return err
	}
	files, _ := scope.Files(s.home)
	s.out("The passphrase of the %s is set: %d secret files sealed with it (%s).\n", scope, len(files), s.home.Rel(scope.KeyringFile(s.home)))
	switch {
	case scope.GroupID() != "":
		s.out("Start the group's instances with it: startinstance -P (or --passphrase_file, or the node manager's passphraseExec).\n")
	default:
		s.out("Start the node manager with it: nodemanager -P (or --passphrase_file, or passphraseExec).\n")
	}
	return nil
}

// unlock opens scope s for this run when it has a passphrase (from the
// file of flag, or asked): a wrong one is an error, after a second.
func (s *mdSession) unlock(v mdValues, scope secret.Scope, flag string) error {
	if !scope.Protected(s.home) || secret.Unlocked(s.home, scope) {
		return nil
	}
	p, err := s.passphrase(v, flag, fmt.Sprintf("Passphrase of the %s", scope), false)
	if err != nil {
		return err
	}
	defer p.Wipe()
	start := time.Now()
	if err := secret.Unlock(s.home, scope, p); err != nil {
		if errors.Is(err, secret.ErrWrongPassphrase) {
			time.Sleep(time.Second - min(time.Since(start), time.Second))
			return fmt.Errorf("wrong passphrase for the %s: nothing was changed", scope)
		}
		return err
	}
	return nil
}

// passphrase reads a passphrase from the file named by flag, or asks on
// the terminal (twice when confirm), or reads one line of standard input.
func (s *mdSession) passphrase(v mdValues, flag, prompt string, confirm bool) (secret.Value, error) {
	if v.has(flag) {
		return secret.FromFile(v[flag])
	}
	if f, ok := s.env.Stdin.(*os.File); ok && isTerminal(f) {
		return secret.FromTerminal(f, s.env.Stderr, prompt+": ", confirm)
	}
	fmt.Fprintf(s.env.Stderr, "%s (one line of standard input): ", prompt)
	line, err := s.readLine()
	fmt.Fprintln(s.env.Stderr)
	if err == io.EOF && line == "" {
		return secret.Value{}, fmt.Errorf("no passphrase given (end of input); use --%s F or type it when asked", flag)
	}
	if err != nil && err != io.EOF {
		return secret.Value{}, fmt.Errorf("reading the passphrase: %w", err)
	}
	if line == "" {
		return secret.Value{}, errors.New("empty passphrase")
	}
	return secret.FromString(line), nil
}

// audit records one managedomain action in the domain's audit log.
func (s *mdSession) audit(action, target string, err error) {
	e := audit.Entry{User: osUser(), Via: "managedomain", Remote: "local", Action: action, Targets: []string{target}, Outcome: audit.OutcomeOK}
	if err != nil {
		e.Outcome, e.Error = audit.OutcomeError, err.Error()
	}
	if _, aerr := audit.Open(s.home).Record(context.Background(), e); aerr != nil {
		fmt.Fprintf(s.env.Stderr, "managedomain: warning: the audit log could not be written: %v\n", aerr)
	}
}
