// Package home knows the layout of a Gatehouse install directory (the vendor's
// "apigateway/" directory) and provides the file primitives every subsystem
// uses on it: atomic writes, advisory file locks and the pid-and-lock protocol
// shared by startinstance and the node manager.
//
// Layout (see docs/install-directory.md):
//
//	posix/bin/            the gatehouse binary and one link per tool name
//	conf/                 domain-wide configuration (adminUsers.json, ...)
//	conf/opsdb.d/         transient monitoring data (never backed up)
//	groups/topology.json  the domain topology
//	groups/certs/         domain CA certificate; private/ holds its key (0600)
//	conf/deployments/<group-id>/ the ANM's deployment archives (<id>.tar.gz, <id>.json)
//	groups/<group-id>/conf/                    group configuration (group.yaml)
//	groups/<group-id>/conf/archives/<id>/      installed deployment archives
//	groups/<group-id>/<instance-id>/conf/deployment.json  the archive the instance runs
//	groups/<group-id>/<instance-id>/{conf,logs,trace}
//	ext/                  operator extensions
//	system/conf/          this host's node manager settings (nodemanager.yaml)
//	var/run/              runtime files: pid files, locks (never backed up)
package home

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EnvHome is the environment variable naming the install directory.
const EnvHome = "GATEHOUSE_HOME"

// DefaultDir is the install directory used when GATEHOUSE_HOME is unset and the
// binary does not run from <dir>/posix/bin.
const DefaultDir = "/opt/gatehouse/apigateway"

// Home is an install directory. The zero value is not usable; use Open or At.
type Home struct {
	Dir string // absolute path
}

// At returns the Home rooted at dir (made absolute). It does not touch the disk.
func At(dir string) (Home, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("install directory %q: %w", dir, err)
	}
	return Home{Dir: abs}, nil
}

// Resolve finds the install directory: $GATEHOUSE_HOME; else the directory
// two levels above the running binary when it lives in <dir>/posix/bin; else
// DefaultDir.
func Resolve() (Home, error) {
	if d := os.Getenv(EnvHome); d != "" {
		return At(d)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		bin := filepath.Dir(exe)
		if filepath.Base(bin) == "bin" && filepath.Base(filepath.Dir(bin)) == "posix" {
			return At(filepath.Dir(filepath.Dir(bin)))
		}
	}
	return At(DefaultDir)
}

// Path joins elements under the install directory.
func (h Home) Path(elem ...string) string {
	return filepath.Join(append([]string{h.Dir}, elem...)...)
}

func (h Home) BinDir() string       { return h.Path("posix", "bin") }
func (h Home) ConfDir() string      { return h.Path("conf") }
func (h Home) OpsDBDir() string     { return h.Path("conf", "opsdb.d") }
func (h Home) GroupsDir() string    { return h.Path("groups") }
func (h Home) TopologyFile() string { return h.Path("groups", "topology.json") }
func (h Home) CertsDir() string     { return h.Path("groups", "certs") }
func (h Home) CertsPrivateDir() string {
	return h.Path("groups", "certs", "private")
}
func (h Home) ExtDir() string        { return h.Path("ext") }
func (h Home) SystemConfDir() string { return h.Path("system", "conf") }
func (h Home) RunDir() string        { return h.Path("var", "run") }

// AdminUsersFile holds the management-plane users (hashed passwords).
func (h Home) AdminUsersFile() string { return h.Path("conf", "adminUsers.json") }

// NodeManagerConf is this host's node manager settings.
func (h Home) NodeManagerConf() string { return h.Path("system", "conf", "nodemanager.yaml") }

// GroupDir is groups/<groupID>.
func (h Home) GroupDir(groupID string) string { return h.Path("groups", groupID) }

// GroupConfDir is groups/<groupID>/conf.
func (h Home) GroupConfDir(groupID string) string { return h.Path("groups", groupID, "conf") }

// GroupConfFile is the group configuration file.
func (h Home) GroupConfFile(groupID string) string {
	return h.Path("groups", groupID, "conf", "group.yaml")
}

// DeploymentsDir is conf/deployments: the Admin Node Manager's store of
// deployment archives, one directory per group.
func (h Home) DeploymentsDir() string { return h.Path("conf", "deployments") }

// GroupDeploymentsDir is conf/deployments/<groupID>: the group's stored
// archives (<id>.tar.gz and <id>.json) and their id counter.
func (h Home) GroupDeploymentsDir(groupID string) string {
	return h.Path("conf", "deployments", groupID)
}

// GroupArchivesDir is groups/<groupID>/conf/archives: the deployment archives
// installed (extracted) on this host.
func (h Home) GroupArchivesDir(groupID string) string {
	return h.Path("groups", groupID, "conf", "archives")
}

// GroupArchiveDir is groups/<groupID>/conf/archives/<archiveID>: one installed
// archive, its YAML files and archive.json.
func (h Home) GroupArchiveDir(groupID string, archiveID int) string {
	return h.Path("groups", groupID, "conf", "archives", strconv.Itoa(archiveID))
}

// InstanceDeploymentFile is groups/<groupID>/<instanceID>/conf/deployment.json:
// which installed archive the instance runs. Without it the instance runs
// groups/<groupID>/conf/group.yaml.
func (h Home) InstanceDeploymentFile(groupID, instanceID string) string {
	return h.Path("groups", groupID, instanceID, "conf", "deployment.json")
}

// InstanceDir is groups/<groupID>/<instanceID>.
func (h Home) InstanceDir(groupID, instanceID string) string {
	return h.Path("groups", groupID, instanceID)
}

// InstanceConfFile is the per-instance settings file.
func (h Home) InstanceConfFile(groupID, instanceID string) string {
	return h.Path("groups", groupID, instanceID, "conf", "instance.yaml")
}

// InstanceLogsDir is where the instance writes its logs.
func (h Home) InstanceLogsDir(groupID, instanceID string) string {
	return h.Path("groups", groupID, instanceID, "logs")
}

// InstanceTraceDir holds the boot trace of daemonised starts.
func (h Home) InstanceTraceDir(groupID, instanceID string) string {
	return h.Path("groups", groupID, instanceID, "trace")
}

// Skeleton lists the directories every install directory has, with modes.
var Skeleton = []struct {
	Rel  string
	Mode os.FileMode
}{
	{"posix/bin", 0o755},
	{"conf", 0o755},
	{"conf/opsdb.d", 0o755},
	{"groups", 0o755},
	{"groups/certs", 0o755},
	{"groups/certs/private", 0o700},
	{"ext", 0o755},
	{"system/conf", 0o755},
	{"var/run", 0o755},
}

// EnsureSkeleton creates the standard directories (idempotent).
func (h Home) EnsureSkeleton() error {
	for _, d := range Skeleton {
		p := h.Path(filepath.FromSlash(d.Rel))
		if err := os.MkdirAll(p, d.Mode); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		if err := os.Chmod(p, d.Mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", p, err)
		}
	}
	return nil
}

// ErrNoDomain is returned when the install directory holds no domain yet.
var ErrNoDomain = errors.New("no domain in this install directory")

// CheckDomain returns an error wrapping ErrNoDomain, naming the directory and
// what to run, when the topology file does not exist.
func (h Home) CheckDomain() error {
	if _, err := os.Stat(h.TopologyFile()); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s has no groups/topology.json (set %s or run \"managedomain -i\" or \"gatehouse quickstart\" first)", ErrNoDomain, h.Dir, EnvHome)
		}
		return fmt.Errorf("reading topology: %w", err)
	}
	return nil
}

// Rel returns p relative to the install directory when it is inside it.
func (h Home) Rel(p string) string {
	r, err := filepath.Rel(h.Dir, p)
	if err != nil || strings.HasPrefix(r, "..") {
		return p
	}
	return r
}
