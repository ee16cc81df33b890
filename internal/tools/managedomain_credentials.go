package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/domain"
	"github.com/gatehouse-gw/gatehouse/internal/rbac"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// change_credentials (menu 4): a new password for an admin user of
// conf/adminUsers.json, on the Admin Node Manager's host (docs/rbac.md). The
// API's PUT /api/rbac/users/{name} does the same from anywhere.

func init() {
	vb := &mdVerb{
		Name: "change_credentials", Menu: 4, Title: "change an admin user's password (the Admin Node Manager credentials)",
		Help: "Sets a new password for an existing admin user of conf/adminUsers.json (PBKDF2, as managedomain -i).\n" +
			"Run it on the Admin Node Manager's host; a running node manager uses the new password at once.\n" +
			"Without --password or --password_file it asks for the new password (twice on a terminal).\n" +
			"Roles are changed through the management API (PUT /api/rbac/users/NAME, docs/rbac.md).",
		Synopsis: "--username U [--password P | --password_file F]",
		Params: []mdParam{
			{Long: "username", Arg: "U", Help: "the admin user", Required: true, Prompt: "Admin user name", Choices: func(s *mdSession, _ mdValues) (string, []string) {
				f, err := rbac.Load(s.home)
				if err != nil {
					return "", nil
				}
				var names []string
				for _, u := range f.Users {
					names = append(names, u.Name)
				}
				return "admin users", names
			}},
			{Long: "password", Arg: "P", Help: "the new password (at least 8 characters; visible to other users in ps: prefer --password_file)", Secret: true},
			{Long: "password_file", Arg: "F", Help: "read the new password from the first line of file F"},
		},
		Run: mdChangeCredentials,
	}
	i := slices.IndexFunc(mdVerbs, func(vb *mdVerb) bool { return vb.Name == "create_instance" })
	mdVerbs = slices.Insert(mdVerbs, i, vb)
}

func mdChangeCredentials(ctx context.Context, s *mdSession, v mdValues) (err error) {
	if err := s.home.CheckDomain(); err != nil {
		return err
	}
	c, err := domain.LoadNodeManagerConf(s.home)
	if err != nil {
		return err
	}
	if c.ANMAddress != "" {
		return fmt.Errorf("this host is not the Admin Node Manager's (that is %s:%d): run change_credentials there, or use PUT /api/rbac/users/NAME", c.ANMAddress, c.ANMPort)
	}
	name := v["username"]
	// Every attempt on the ANM's host is in the audit log (docs/audit.md),
	// refused ones too; never the password.
	defer func() { recordCredentialChange(ctx, s, name, err) }()
	if _, ok, err := rbac.Roles(s.home, name); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("no admin user %q in %s", name, s.home.AdminUsersFile())
	}
	var pw secret.Value
	if v.has("password") || v.has("password_file") {
		pw, err = s.readPassword(v, "New password")
	} else {
		pw, err = s.askNewPassword("New password for " + name)
	}
	if err != nil {
		return err
	}
	defer pw.Wipe()
	if pw.IsZero() {
		return errors.New("the new password is empty")
	}
	if err := rbac.UpdateUser(s.home, name, pw, nil); err != nil {
		return fmt.Errorf("changing the password of %q: %w", name, err)
	}
	s.out("The password of %s is changed.\n", name)
	return nil
}

// recordCredentialChange writes a password change by change_credentials to
// the audit log of s.home; a log that cannot be written is reported on
// standard error, not fatal (the change is made or refused already).
func recordCredentialChange(ctx context.Context, s *mdSession, name string, err error) {
	e := audit.Entry{User: s.actor.User, Via: s.actor.Via, Remote: s.actor.Remote, Action: "change user",
		Detail: fmt.Sprintf("user %q: new password", name), Targets: []string{name}}
	if err != nil {
		e.Error = err.Error()
	}
	rec := audit.Recorder{Log: audit.Open(s.home), Warn: s.env.Stderr}
	if _, werr := rec.Log.Record(ctx, e); werr != nil {
		rec.Warning(ctx, werr)
	}
}
