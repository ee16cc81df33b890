package tools_test

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
)

// TestClientBackup: gatehouse client backup against a real Admin Node
// Manager: the archive written and verified, restorable; to standard
// output; refused for an operator while the keys are in clear.
func TestClientBackup(t *testing.T) {
	a := startANM(t)
	h := a.h
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	apiURL := fmt.Sprintf("https://localhost:%d/api", a.port)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("changeme-Secret1\n"), 0o600)
	wantClient(t, "login", h.Run("", "client", "--url", apiURL, "--username", "admin", "--password-file", pw, "login"), 0, "logged in")
	out := filepath.Join(dir, "anm.backup")
	wantClient(t, "backup", h.Run("", "client", "backup", "-o", out), 0, "Wrote the backup of host host-1", "every checksum right")
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v %v", st, err)
	}
	wantClient(t, "verify it", h.Run("", "backup", "verify", "--checksums-only", out), 0, "every checksum right")
	stream := h.Run("", "client", "backup", "-o", "-")
	if stream.Code != 0 || len(stream.Stdout) < 1000 {
		t.Fatalf("client backup -o -: %d bytes, %s", len(stream.Stdout), stream.Stderr)
	}
	wantClient(t, "verify the stream", h.Run(stream.Stdout, "backup", "verify", "--checksums-only", "-"), 0, "every checksum right")
	restored := &gwtest.Home{T: t, Dir: filepath.Join(t.TempDir(), "apigateway")}
	wantClient(t, "restore", restored.Run("", "restore", out), 0, "Restored")

	// An operator, the keys in clear: refused, nothing written.
	wantClient(t, "operator", h.Run("", "client", "user", "create", "op", "--role", "API Server Operator", "--new-password-file", pw), 0, "")
	op := filepath.Join(dir, "op.backup")
	wantClient(t, "operator backup", h.Run("", "client", "--username", "op", "--password-file", pw, "backup", "-o", op), 1, "not sealed with a passphrase", "403")
	if _, err := os.Stat(op); !os.IsNotExist(err) {
		t.Errorf("a refused backup left %s", op)
	}
}

// TestClientBackupCut: an answer cut before its manifest is not written.
func TestClientBackupCut(t *testing.T) {
	h := gwtest.NewHome(t)
	h.Env = append(h.Env, "XDG_CONFIG_HOME="+t.TempDir())
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		w.Write([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffnot a whole archive"))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("whatever-Secret1\n"), 0o600)
	out := filepath.Join(dir, "x.backup")
	r := h.Run("", "client", "--url", srv.URL+"/api", "--cacert", ca, "--username", "admin", "--password-file", pw, "backup", "-o", out)
	wantClient(t, "a cut backup", r, 1, "does not verify", "nothing was written")
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("left behind: %v", ents)
	}
}
