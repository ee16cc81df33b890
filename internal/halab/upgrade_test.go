package halab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// previousBinary builds the gatehouse binary of the commit before HEAD
// (GATEHOUSE_OLD_BIN names a prebuilt one instead): the "old" release of
// the upgrade test. It needs the repository's history (a clone, not an
// export).
func previousBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_OLD_BIN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD~1").Output()
	if err != nil {
		t.Fatalf("the upgrade test builds the previous commit's binary and needs the repository's history (git rev-parse HEAD~1: %v); set GATEHOUSE_OLD_BIN to a prebuilt one instead", err)
	}
	src := t.TempDir()
	tarball := filepath.Join(src, "src.tar")
	if out, err := exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tarball, strings.TrimSpace(string(rev))).CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v %s", err, out)
	}
	if out, err := exec.Command("tar", "-x", "-C", src, "-f", tarball).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	bin := filepath.Join(t.TempDir(), "gatehouse-previous")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gatehouse")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the previous commit (%s): %v\n%s", strings.TrimSpace(string(rev)), err, out)
	}
	return bin
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// runsBinary is the SHA-256 of what instance in's process runs.
func (l *lab) runsBinary(in *inst) string {
	return sha(l.t, fmt.Sprintf("/proc/%d/exe", l.pid(in.id)))
}

// TestUpgradeUnderLoad: the lab's domain runs the previous commit's binary
// (node manager and instances); gatehouse upgrade --binary (this commit's)
// replaces it instance by instance while keep-alive GETs and chunked POSTs
// go through HAProxy: 0 failed requests, 0 HAProxy retries, every instance
// on the new binary. Then an upgrade to a binary that cannot start an
// instance, under load: it fails, the old binary is back everywhere, and
// still 0 failed requests.
func TestUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous commit and runs the HA lab; not in -short")
	}
	old := previousBinary(t)
	l := newLab(t)
	cur := gwtest.Binary(t)
	// The domain on the old release: its binary in posix/bin, the node
	// manager started from it, the instances restarted by it.
	l.h.MustRun("", "nodemanager", "-k", "-q")
	bin := l.h.Path("posix", "bin", "gatehouse")
	data, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+".tmp", data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	nm := exec.Command(bin, "nodemanager", "-d", "-q")
	nm.Env = append(os.Environ(), "GATEHOUSE_HOME="+l.h.Dir)
	if out, err := nm.CombinedOutput(); err != nil {
		t.Fatalf("the old node manager: %v %s", err, out)
	}
	for _, in := range l.insts {
		if err := l.api.call("POST", "/api/management/stop/"+l.gid+"/"+in.id, "", 200, nil); err != nil {
			t.Fatal(err)
		}
		if err := l.api.call("POST", "/api/management/start/"+l.gid+"/"+in.id, "", 200, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.lb.awaitAllUp(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	oldSHA, curSHA := sha(t, old), sha(t, cur)
	if oldSHA == curSHA {
		t.Fatal("the previous commit's binary is this one's: nothing to upgrade")
	}
	for _, in := range l.insts {
		if got := l.runsBinary(in); got != oldSHA {
			t.Fatalf("%s does not run the old binary before the upgrade", in)
		}
	}

	upgrade := func(args ...string) gwtest.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cur, append([]string{"upgrade"}, args...)...)
		cmd.Env = append(os.Environ(), "GATEHOUSE_HOME="+l.h.Dir)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := gwtest.Result{Stdout: out.String(), Stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		}
		return r
	}
	o := &outcome{}
	var r gwtest.Result
	l.withLoad(o, func(ld *load) {
		r = upgrade("--binary", cur, "--backup-dir", t.TempDir(), "--delay_before", "2s", "--delay_after", "2s")
	})
	if r.Code != 0 {
		t.Fatalf("the upgrade: %v", r)
	}
	o.zeroFailures()
	for _, p := range o.problems {
		t.Errorf("upgrade under load: %s", p)
	}
	t.Logf("upgrade under load: %d requests, %d failed, %d socket errors, %d LB retries", o.requests, o.failures, o.sockErrs, o.lbRetries)
	for _, in := range l.insts {
		if l.runsBinary(in) != curSHA {
			t.Errorf("%s does not run the new binary after the upgrade", in)
		}
	}

	// A binary that cannot start an instance: the upgrade fails on the
	// first one and puts everything back, under load, without a failure.
	broken := filepath.Join(t.TempDir(), "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'gatehouse broken'; exit 0; fi\nexit 1\n"), 0o755)
	o = &outcome{}
	l.withLoad(o, func(ld *load) {
		r = upgrade("--binary", broken, "--no-backup", "--delay_before", "2s", "--delay_after", "2s")
	})
	if r.Code != 1 || !strings.Contains(r.Stderr, "the old binary is back") {
		t.Fatalf("the failing upgrade: %v", r)
	}
	o.zeroFailures()
	for _, p := range o.problems {
		t.Errorf("failed upgrade under load: %s", p)
	}
	t.Logf("failed upgrade under load: %d requests, %d failed, %d socket errors, %d LB retries", o.requests, o.failures, o.sockErrs, o.lbRetries)
	if sha(t, bin) != curSHA {
		t.Error("posix/bin/gatehouse after the failed upgrade is not the binary before it")
	}
	for _, in := range l.insts {
		if l.runsBinary(in) != curSHA {
			t.Errorf("%s does not run the binary from before the failed upgrade", in)
		}
	}
}
