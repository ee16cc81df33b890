package apps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/sqlite"
)

// openFiles is how many of this process's file descriptors are open on
// path or on a file beside it whose name starts with path's (a SQLite
// database's -wal and -shm).
func openFiles(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(target, path) {
			n++
		}
	}
	return n
}

// TestOpenGroupStore: the embedded store is the group's file, with the
// applications' tables and the configuration's custom ones defined; a
// definition refused is an error naming the group, and the store it
// opened is closed.
func TestOpenGroupStore(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	custom := groupconf.KPSTable{Collection: "Shop", Name: "Customers", Alias: "customers", PrimaryKey: "id",
		Properties: []groupconf.KPSProperty{{Name: "id", Type: "string"}, {Name: "tier", Type: "string"}}}
	s, err := OpenGroupStore(ctx, h, "group-2", groupconf.KPS{Backend: "sqlite", Tables: []groupconf.KPSTable{custom}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := s.Tables(ctx)
	var aliases []string
	for _, tb := range tables {
		aliases = append(aliases, tb.Alias)
	}
	if err != nil || !slices.Equal(aliases, []string{"apikeys", "applications", "customers", "oauth_client_secrets"}) {
		t.Errorf("tables: %v %v", aliases, err)
	}
	path := sqlite.GroupPath(h, "group-2")
	if openFiles(t, path) == 0 {
		t.Errorf("the store is not %s", path)
	}
	s.Close()
	if n := openFiles(t, path); n != 0 {
		t.Fatalf("%d files open on %s after Close", n, path)
	}
	// The custom table's primary key changed: refused, and closed.
	custom.PrimaryKey = "tier"
	s, err = OpenGroupStore(ctx, h, "group-2", groupconf.KPS{Backend: "sqlite", Tables: []groupconf.KPSTable{custom}}, nil)
	if s != nil || !errors.Is(err, kps.ErrInvalid) || !strings.HasPrefix(err.Error(), "the key property store of group-2: ") {
		t.Errorf("a refused definition: %v %v", s, err)
	}
	if n := openFiles(t, path); n != 0 {
		t.Errorf("%d files open on %s after a refused definition", n, path)
	}
	// A backend that is not there.
	if s, err := OpenGroupStore(ctx, h, "group-2", groupconf.KPS{Backend: "nosuch"}, nil); s != nil || !errors.Is(err, kps.ErrInvalid) || !strings.HasPrefix(err.Error(), "the key property store of group-2: ") {
		t.Errorf("an unknown backend: %v %v", s, err)
	}
}

// TestOpenGroupStorePostgres: the postgres settings are the ones the
// server sees (host, port, database, user, and the password file's first
// line, its path relative to the install directory), against a server
// that asks for the password and refuses it; a password file that cannot
// be read is an error naming it, before any connection.
func TestOpenGroupStorePostgres(t *testing.T) {
	ctx := context.Background()
	h := home.Home{Dir: t.TempDir()}
	port, got := fakePostgres(t)
	cfg := groupconf.KPS{Backend: "postgres", Postgres: groupconf.KPSPostgres{Host: "127.0.0.1", Port: port, Database: "kpsdb", User: "gw", SSLMode: "disable"}}
	for _, tc := range []struct {
		file, content, password string
	}{
		{"", "", ""},
		{"conf/pg.pw", "s3cret\nsecond line\n", "s3cret"},
		{filepath.Join(h.Dir, "crlf.pw"), "s3cret2\r\n", "s3cret2"},
	} {
		c := cfg
		c.Postgres.PasswordFile = tc.file
		if tc.file != "" {
			p := tc.file
			if !filepath.IsAbs(p) {
				p = filepath.Join(h.Dir, p)
			}
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s, err := OpenGroupStore(ctx, h, "group-2", c, nil)
		if s != nil || err == nil || !strings.HasPrefix(err.Error(), "the key property store of group-2: ") || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d/kpsdb", port)) {
			t.Errorf("password file %q: %v %v", tc.file, s, err)
		}
		select {
		case p := <-got:
			if p["user"] != "gw" || p["database"] != "kpsdb" || p["password"] != tc.password {
				t.Errorf("password file %q: the server saw %q", tc.file, p)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("password file %q: the server saw no client", tc.file)
		}
	}
	c := cfg
	c.Postgres.PasswordFile = "conf/missing.pw"
	s, err := OpenGroupStore(ctx, h, "group-2", c, nil)
	if s != nil || !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "kps.postgres.passwordFile: ") || !strings.Contains(err.Error(), filepath.Join(h.Dir, "conf/missing.pw")) {
		t.Errorf("a missing password file: %v %v", s, err)
	}
	select {
	case p := <-got:
		t.Errorf("a missing password file: the server saw %q", p)
	default:
	}
}

// fakePostgres is a PostgreSQL server that asks each client for its
// password in clear and refuses it (28P01): got has what each client sent
// (its startup parameters, and "password").
func fakePostgres(t *testing.T) (port int, got <-chan map[string]string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan map[string]string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if p, err := fakePostgresConn(c); err == nil {
					ch <- p
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, ch
}

func fakePostgresConn(c net.Conn) (map[string]string, error) {
	be := binary.BigEndian
	msg := func() ([]byte, error) { // a message without a type byte: the startup's
		var n [4]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return nil, err
		}
		b := make([]byte, be.Uint32(n[:])-4)
		_, err := io.ReadFull(c, b)
		return b, err
	}
	b, err := msg()
	if err != nil || len(b) < 4 {
		return nil, fmt.Errorf("startup: %v", err)
	}
	if be.Uint32(b) == 80877103 { // SSLRequest: no
		c.Write([]byte("N"))
		if b, err = msg(); err != nil || len(b) < 4 {
			return nil, fmt.Errorf("startup: %v", err)
		}
	}
	p := map[string]string{}
	kv := strings.Split(string(b[4:]), "\x00")
	for i := 0; i+1 < len(kv) && kv[i] != ""; i += 2 {
		p[kv[i]] = kv[i+1]
	}
	c.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}) // AuthenticationCleartextPassword
	var typ [1]byte
	if _, err := io.ReadFull(c, typ[:]); err != nil || typ[0] != 'p' {
		return nil, fmt.Errorf("password: %v %q", err, typ)
	}
	if b, err = msg(); err != nil {
		return nil, err
	}
	p["password"] = strings.TrimSuffix(string(b), "\x00")
	e := "SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"
	out := append([]byte{'E'}, be.AppendUint32(nil, uint32(len(e)+4))...)
	c.Write(append(out, e...))
	return p, nil
}
