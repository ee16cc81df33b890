package groupconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/home"
)

func TestFilePolicy(t *testing.T) {
	h := home.Home{Dir: t.TempDir()}
	outside := t.TempDir()
	allowed := t.TempDir()
	mk := func(p string) string {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := mk(h.Path("groups", "certs", "private", "domainkey.pem"))
	nmKey := mk(h.Path("system", "conf", "certs", "private", "nodemanager-key.pem"))
	sessionKey := mk(h.Path("conf", "sessionKey"))
	own := mk(h.Path("groups", "group-2", "instance-1", "conf", "certs", "traffic.pem"))
	mk(filepath.Join(outside, "key.pem"))
	mk(filepath.Join(allowed, "ca.pem"))
	link := h.Path("groups", "group-2", "innocent.pem")
	if err := os.Symlink(caKey, link); err != nil {
		t.Fatal(err)
	}
	p := FilePolicy{Home: h, GroupID: "group-2", Allowed: []string{allowed, h.Dir}}
	tests := []struct {
		name, file string
		wantErr    string // "" = allowed
	}{
		{"the group's own file, absolute", own, ""},
		{"the group's own file, relative to the install dir", "groups/group-2/instance-1/conf/certs/traffic.pem", ""},
		{"an allowed directory", filepath.Join(allowed, "ca.pem"), ""},
		{"the domain CA's key, although the install dir is allowed", caKey, "key material"},
		{"the domain CA's key, relative", "groups/certs/private/domainkey.pem", "key material"},
		{"a node manager's key", nmKey, "key material"},
		{"the session signing key", sessionKey, "key material"},
		{"a way out through ..", "groups/group-2/../certs/private/domainkey.pem", "key material"},
		{"a symbolic link to the CA's key inside the group", link, "key material"},
	}
	for _, tt := range tests {
		err := p.CheckFile("traffic.tls.keyFile", tt.file)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want allowed", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrFileNotAllowed) ||
			!strings.Contains(err.Error(), "traffic.tls.keyFile") || !strings.Contains(err.Error(), tt.file)):
			t.Errorf("%s: got %v, want a refusal naming the key, the file and %q", tt.name, err, tt.wantErr)
		}
	}
	// Without allowed directories, anything outside the group is refused,
	// another group's files too.
	strict := FilePolicy{Home: h, GroupID: "group-2"}
	for _, f := range []string{filepath.Join(outside, "key.pem"), "groups/group-3/x.pem", "/etc/passwd", filepath.Join(allowed, "ca.pem")} {
		err := strict.CheckFile("remoteHosts[0].caFile", f)
		if err == nil || !strings.Contains(err.Error(), "only files under its group's directory") || !strings.Contains(err.Error(), "allowedConfigDirs") {
			t.Errorf("%s: got %v, want refused by the group-directory rule", f, err)
		}
	}
	// Check names every offending key of a configuration.
	cfg := &Config{}
	cfg.Traffic.TLS.CertFile = own
	cfg.Traffic.TLS.KeyFile = caKey
	cfg.RemoteHosts = []RemoteHost{{CAFile: "/etc/ssl/x.pem"}, {CAFile: ""}}
	cfg.APIs = []API{{Policies: []Policy{{CORS: &CORSPolicy{}}, {JWT: &JWTPolicy{CAFile: caKey}}}}}
	err := strict.Check(cfg)
	if err == nil || !strings.Contains(err.Error(), "traffic.tls.keyFile") || !strings.Contains(err.Error(), "remoteHosts[0].caFile") || strings.Contains(err.Error(), "certFile") ||
		!strings.Contains(err.Error(), "apis[0].policies[1].jwt.caFile") {
		t.Errorf("Check: got %v, want keyFile, remoteHosts[0].caFile and the jwt policy's caFile refused, certFile allowed", err)
	}
}
