package nodemanager

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/gatehouse-gw/gatehouse/"

// layers are the node manager's packages, lowest first, and what each
// must never depend on (directly or through another package): a package
// uses only those below it, so that the supervisor and the node-to-node
// API never reach into the management API (docs/architecture.md).
var layers = []struct {
	pkg       string
	forbidden []string
}{
	{"internal/apihttp", []string{"internal/supervisor", "internal/nodeapi", "internal/anm", "internal/nodemanager", "internal/tools"}},
	{"internal/supervisor", []string{"internal/apihttp", "internal/nodeapi", "internal/anm", "internal/nodemanager", "internal/tools"}},
	{"internal/nodeapi", []string{"internal/anm", "internal/nodemanager", "internal/tools"}},
	{"internal/anm", []string{"internal/nodemanager", "internal/tools"}},
	{"internal/nodemanager", []string{"internal/tools"}},
	// The API's client speaks the wire format only: never the server's
	// packages (the CLI and a web UI share it).
	{"internal/apiclient", []string{"internal/apihttp", "internal/supervisor", "internal/nodeapi", "internal/anm", "internal/nodemanager", "internal/tools"}},
}

// TestLayers fails when a package of the node manager depends on one it
// must not (go list -deps: imports of imports count).
func TestLayers(t *testing.T) {
	for _, l := range layers {
		deps := goListDeps(t, l.pkg)
		for _, f := range l.forbidden {
			if slices.Contains(deps, module+f) {
				t.Errorf("%s depends on %s; it must not (see docs/architecture.md; `go list -deps ./%s` shows the path)", l.pkg, f, l.pkg)
			}
		}
	}
}

// goListDeps is every package pkg depends on, as `go list -deps` lists it.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath", module+pkg)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var deps []string
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps = append(deps, p.ImportPath)
	}
	if !slices.Contains(deps, module+pkg) {
		t.Fatalf("go list -deps %s does not list the package itself: %v", pkg, deps)
	}
	return deps
}
