package groupconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

// FilePolicy says which files a group configuration may name (TLS
// certificates and keys, CA bundles): only files under the group's own
// directory of the install directory (groups/<group-id>/), or under a
// directory that the host's operator allows in nodemanager.yaml
// (allowedConfigDirs). Whatever the allowed directories, the domain's and
// the node managers' key material and the management plane's secrets
// (groups/certs/, conf/ and system/conf/ of the install directory) are never
// usable: a deployment that could name the domain CA's
// key as its traffic key would serve it to anyone. Symbolic links are
// followed before the check.
type FilePolicy struct {
	Home    home.Home
	GroupID string
	Allowed []string // absolute, or relative to the install directory
}

// ErrFileNotAllowed is wrapped by the refusals of FilePolicy.
var ErrFileNotAllowed = errors.New("file not allowed in a group configuration")

// Check returns an error for every file that cfg names against the
// policy, each naming the key, the file and the rule.
func (p FilePolicy) Check(cfg *Config) error {
	var errs []error
	check := func(key, file string) {
		if file != "" {
			if err := p.CheckFile(key, file); err != nil {
				errs = append(errs, err)
			}
		}
	}
	check("traffic.tls.certFile", cfg.Traffic.TLS.CertFile)
	check("traffic.tls.keyFile", cfg.Traffic.TLS.KeyFile)
	for i, r := range cfg.RemoteHosts {
		check(fmt.Sprintf("remoteHosts[%d].caFile", i), r.CAFile)
	}
	check("kps.postgres.passwordFile", cfg.KPS.Postgres.PasswordFile)
	for i, a := range cfg.APIs {
		for j, pol := range a.Policies {
			if pol.JWT != nil {
				check(fmt.Sprintf("apis[%d].policies[%d].jwt.caFile", i, j), pol.JWT.CAFile)
			}
		}
	}
	check("kps.postgres.sslRootCert", cfg.KPS.Postgres.SSLRootCert)
	return errors.Join(errs...)
}

// CheckFile checks the file named by key.
func (p FilePolicy) CheckFile(key, file string) error {
	path := resolve(p.abs(file))
	for _, never := range []string{p.Home.CertsDir(), p.Home.ConfDir(), p.Home.SystemConfDir()} {
		if within(path, resolve(never)) {
			return fmt.Errorf("%s: %q: %w: it is the domain's or a node manager's key material (under %s), which a group configuration may never name",
				key, file, ErrFileNotAllowed, never)
		}
	}
	dirs := append([]string{p.Home.GroupDir(p.GroupID)}, p.Allowed...)
	for _, d := range dirs {
		if within(path, resolve(p.abs(d))) {
			return nil
		}
	}
	rule := fmt.Sprintf("a group configuration may name only files under its group's directory %s", p.Home.GroupDir(p.GroupID))
	if len(p.Allowed) > 0 {
		rule += " or under allowedConfigDirs (" + strings.Join(p.Allowed, ", ") + ")"
	} else {
		rule += " (or under a directory listed in allowedConfigDirs of nodemanager.yaml)"
	}
	return fmt.Errorf("%s: %q: %w: %s", key, file, ErrFileNotAllowed, rule)
}

// Abs is the absolute path of a file a group configuration names
// (relative paths are relative to the install directory); "" stays "".
func (p FilePolicy) Abs(f string) string {
	if f == "" {
		return ""
	}
	return p.abs(f)
}

func (p FilePolicy) abs(f string) string {
	if filepath.IsAbs(f) {
		return filepath.Clean(f)
	}
	return p.Home.Path(f)
}

// resolve follows symbolic links in path as far as it exists.
func resolve(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	// A file that does not exist yet: resolve its directory.
	dir, base := filepath.Split(path)
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(r, base)
	}
	return path
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator))
}
