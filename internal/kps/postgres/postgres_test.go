package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
	"github.com/gatehouse-gw/gatehouse/internal/kps/postgres/pgtest"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newConfig(t testing.TB) kps.PostgresConfig {
	return pgtest.Shared(t).NewDatabase(t)
}

func TestConformance(t *testing.T) {
	kpstest.Run(t, harness)
}

var harness = kpstest.Harness{
	New: func(t testing.TB) kps.Config { return kps.Config{Backend: Name, Postgres: newConfig(t)} },
	Exec: func(t testing.TB, cfg kps.Config, stmt string) {
		if _, err := direct(t, cfg.Postgres).Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	},
}

func BenchmarkPostgres(b *testing.B) { kpstest.Bench(b, harness) }

func open(t *testing.T, c kps.PostgresConfig) *Store {
	t.Helper()
	s, err := Open(t.Context(), c, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// direct is a superuser connection to the store's database.
func direct(t testing.TB, c kps.PostgresConfig) *pgx.Conn {
	t.Helper()
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", c.Port, c.User, c.Database))
	if err != nil {
		t.Fatal(err)
	}
	cc.Password = c.Password.RevealString()
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestMigrations: instances starting at once apply each migration once; a
// restart applies nothing; a newer schema is refused.
func TestMigrations(t *testing.T) {
	c := newConfig(t)
	c.Schema = "gatehouse kps" // a name that needs quoting
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(t.Context(), c, log)
			if err == nil {
				err = s.Define(t.Context(), kpstest.Counters)
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent open: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "kps schema migrated"); n != len(migrations) {
		t.Errorf("migrations logged: %d, want %d\n%s", n, len(migrations), logs.String())
	}
	if strings.Contains(logs.String(), c.Password.RevealString()) {
		t.Errorf("the password is in the log")
	}
	conn := direct(t, c)
	var versions []int32
	rows, err := conn.Query(t.Context(), `SELECT version FROM "gatehouse kps".kps_schema_version ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(versions) != len(migrations) || versions[0] != 1 {
		t.Fatalf("schema versions: got %v (%v), want 1..%d", versions, err, len(migrations))
	}
	// The tables are in the schema asked for, not in public.
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE 'kps%'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("tables in public: %d (%v), want 0", n, err)
	}
	logs.Reset()
	s := open(t, c)
	if logs.Len() != 0 {
		t.Errorf("a restart logged %q, want nothing", logs.String())
	}
	if tables, err := s.Tables(t.Context()); err != nil || len(tables) != 1 {
		t.Errorf("tables after restart: %v, %v", tables, err)
	}
	if _, err := conn.Exec(t.Context(), `INSERT INTO "gatehouse kps".kps_schema_version(version) VALUES ($1)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), c, nil)
	if !errors.Is(err, kps.ErrInvalid) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("open a newer schema: got %v, want ErrInvalid naming the newer version", err)
	}
}

// TestOutage: the server stops in the middle: ErrUnavailable, quickly, never
// ErrNotFound; it starts again: the same store works again by itself.
func TestOutage(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.NewDatabase(t)
	c.ConnectTimeout = 500 * time.Millisecond
	s := open(t, c)
	ctx := t.Context()
	if err := s.Define(ctx, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, "counters", map[string]any{"name": "a", "n": int64(1)}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ops := map[string]func() error{
		"get":     func() error { _, err := s.Get(ctx, "counters", "a"); return err },
		"missing": func() error { _, err := s.Get(ctx, "counters", "zz"); return err },
		"insert":  func() error { _, err := s.Insert(ctx, "counters", map[string]any{"name": "b"}); return err },
		"list":    func() error { _, err := s.List(ctx, "counters", kps.Page{}); return err },
		"query":   func() error { _, err := s.Query(ctx, "counters", "by", "x", kps.Page{}); return err },
		"count":   func() error { _, err := s.Count(ctx, "counters"); return err },
		"delete":  func() error { return s.Delete(ctx, "counters", "a", kps.AnyVersion) },
		"tables":  func() error { _, err := s.Tables(ctx); return err },
		"define":  func() error { return s.Define(ctx, kpstest.Numbered) },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		if !errors.Is(err, kps.ErrUnavailable) || errors.Is(err, kps.ErrNotFound) {
			t.Errorf("%s with the server down: got %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s with the server down took %v", name, d)
		}
	}
	_, err := Open(ctx, c, nil)
	if !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("open with the server down: got %v, want ErrUnavailable", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		row, err := s.Get(ctx, "counters", "a")
		if err == nil {
			if row.Values["n"] != int64(1) {
				t.Errorf("after the outage: got %v", row.Values)
			}
			break
		}
		if !errors.Is(err, kps.ErrUnavailable) {
			t.Fatalf("get while recovering: got %v, want ErrUnavailable or success", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.Insert(ctx, "counters", map[string]any{"name": "c"}); err != nil {
		t.Errorf("insert after the outage: %v", err)
	}
	if _, err := s.Get(ctx, "counters", "zz"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("get a missing row after the outage: got %v, want ErrNotFound", err)
	}
}

// TestUnreachable: nothing listens: Open fails with ErrUnavailable within
// about the connect timeout.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// A server that accepts and never answers: only the timeout ends the wait.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Cleanup(func() { ln.Close() })
	c := kps.PostgresConfig{Host: "127.0.0.1", Port: port, Database: "x", User: "u", SSLMode: "disable", ConnectTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = Open(t.Context(), c, nil)
	if !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("open a silent server: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("open a silent server took %v with a connect timeout of 300ms", d)
	}
}

// TestStatementTimeout: a write blocked behind another transaction's lock
// gives up at the statement timeout with ErrUnavailable.
func TestStatementTimeout(t *testing.T) {
	c := newConfig(t)
	ctx := t.Context()
	// The table and its row are made with the default timeout: on a loaded
	// machine the schema's creation alone may take more than 300 ms.
	setup := open(t, c)
	if err := setup.Define(ctx, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Insert(ctx, "counters", map[string]any{"name": "a"}); err != nil {
		t.Fatal(err)
	}
	c.StatementTimeout = 300 * time.Millisecond
	s := open(t, c)
	conn := direct(t, c)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT 1 FROM kps_rows WHERE pk = 'a' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "a"}, Version: 1})
	if !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("update of a locked row: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("update of a locked row gave up after %v, want about 300ms", d)
	}
	// A caller's own deadline bounds it too.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := s.Delete(short, "counters", "a", kps.AnyVersion); !errors.Is(err, kps.ErrUnavailable) {
		t.Errorf("delete past the caller's deadline: got %v, want ErrUnavailable", err)
	}
	tx.Rollback(ctx)
	if _, err := s.Update(ctx, "counters", kps.Row{Values: map[string]any{"name": "a"}, Version: 1}); err != nil {
		t.Errorf("update once the lock is gone: %v", err)
	}
}

// TestTLSAndCredentials: verify-full against the right CA works (the
// conformance suite uses it); a wrong CA, a wrong password fail without
// printing the password; the configuration never prints it.
func TestTLSAndCredentials(t *testing.T) {
	srv := pgtest.Shared(t)
	c := srv.NewDatabase(t)
	s := open(t, c)
	var ssl bool
	if err := s.pool.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection over TLS: %v (%v), want true", ssl, err)
	}
	other := filepath.Join(t.TempDir(), "other.crt")
	otherCA := pgtest.Start(t).CAFile
	b, _ := os.ReadFile(otherCA)
	os.WriteFile(other, b, 0o644)
	wrongCA := c
	wrongCA.SSLRootCert = other
	_, err := Open(t.Context(), wrongCA, nil)
	if !errors.Is(err, kps.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("open with the wrong CA: got %v, want ErrUnavailable about the certificate", err)
	}
	wrongName := c
	wrongName.Host = "127.0.0.2" // not in the certificate
	if _, err := Open(t.Context(), wrongName, nil); err == nil {
		t.Errorf("open verify-full with a host not in the certificate: got nil, want an error")
	}
	badPass := c
	badPass.Password = secret.FromString("wrong-" + srv.Password)
	_, err = Open(t.Context(), badPass, nil)
	if !errors.Is(err, kps.ErrUnavailable) || strings.Contains(err.Error(), srv.Password) {
		t.Errorf("open with a wrong password: got %v, want ErrUnavailable without the password", err)
	}
	cfg := kps.Config{Backend: Name, Postgres: c}
	js, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(js)} {
		if strings.Contains(s, srv.Password) {
			t.Errorf("the configuration prints the password: %s", s)
		}
	}
	for _, bad := range []kps.PostgresConfig{
		{Host: "h", Database: "d"},
		{Host: "h", User: "u"},
		{Database: "d", User: "u"},
		{Host: "h", Database: "d", User: "u", SSLMode: "verify"},
	} {
		if _, err := Open(t.Context(), bad, nil); !errors.Is(err, kps.ErrInvalid) {
			t.Errorf("open %+v: got %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPoolConfig(t *testing.T) {
	pc, err := poolConfig(kps.PostgresConfig{Host: "/run/pg", Database: "d b", User: `o'k\`})
	if err != nil {
		t.Fatal(err)
	}
	cc := pc.ConnConfig
	if cc.Port != DefaultPort || cc.Database != "d b" || cc.User != `o'k\` || cc.TLSConfig != nil ||
		cc.ConnectTimeout != DefaultConnectTimeout || pc.MaxConns != DefaultMaxConns ||
		cc.RuntimeParams["search_path"] != `"public"` || cc.RuntimeParams["statement_timeout"] != "5000" {
		t.Errorf("defaults over a socket: got %+v", pc)
	}
	pc, err = poolConfig(kps.PostgresConfig{Host: "db", Port: 6543, Database: "d", User: "u", MaxConns: 3,
		ConnectTimeout: time.Second, StatementTimeout: 1500 * time.Millisecond, Schema: "s"})
	if err != nil {
		t.Fatal(err)
	}
	cc = pc.ConnConfig
	if cc.Port != 6543 || cc.TLSConfig == nil || len(cc.Fallbacks) != 1 || pc.MaxConns != 3 || cc.ConnectTimeout != time.Second ||
		cc.RuntimeParams["statement_timeout"] != "1500" || cc.RuntimeParams["search_path"] != `"s"` {
		t.Errorf("over TCP: got %+v (fallbacks %d), want TLS preferred with a plain fallback", cc, len(cc.Fallbacks))
	}
	if got := quote(`a'b\c`); got != `'a\'b\\c'` {
		t.Errorf("quote: got %s", got)
	}
}

// TestSharedSecret: the first offer is stored and every caller, on any
// connection and after a reopen, gets it; an empty offer is refused.
func TestSharedSecret(t *testing.T) {
	c := newConfig(t)
	s := open(t, c)
	ctx := t.Context()
	if _, err := s.SharedSecret(ctx, "k", nil); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("an empty offer: %v, want ErrInvalid", err)
	}
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.SharedSecret(ctx, "k", []byte{byte('a' + i)})
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	for _, v := range got {
		if len(v) != 1 || string(v) != string(got[0]) {
			t.Fatalf("concurrent offers ended with different secrets: %q", got)
		}
	}
	s2 := open(t, c)
	if v, err := s2.SharedSecret(ctx, "k", []byte("other")); err != nil || string(v) != string(got[0]) {
		t.Errorf("another store on the database: %q %v, want %q", v, err, got[0])
	}
	if v, err := s2.SharedSecret(ctx, "k2", []byte("two")); err != nil || string(v) != "two" {
		t.Errorf("another name: %q %v", v, err)
	}
	// Lookup and compare-and-swap replace.
	if _, err := s.LookupSharedSecret(ctx, "absent"); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("lookup of an absent secret: %v", err)
	}
	if err := s.ReplaceSharedSecret(ctx, "absent", []byte("x"), []byte("y")); !errors.Is(err, kps.ErrNotFound) {
		t.Errorf("replace of an absent secret: %v", err)
	}
	if err := s.ReplaceSharedSecret(ctx, "k2", []byte("not it"), []byte("three")); !errors.Is(err, kps.ErrConflict) {
		t.Errorf("replace with a stale value: %v", err)
	}
	if err := s.ReplaceSharedSecret(ctx, "k2", []byte("two"), nil); !errors.Is(err, kps.ErrInvalid) {
		t.Errorf("replace with nothing: %v", err)
	}
	if err := s.ReplaceSharedSecret(ctx, "k2", []byte("two"), []byte("three")); err != nil {
		t.Fatal(err)
	}
	if v, err := s2.LookupSharedSecret(ctx, "k2"); err != nil || string(v) != "three" {
		t.Errorf("after replace: %q %v", v, err)
	}
	if v, err := s.SharedSecret(ctx, "k2", []byte("four")); err != nil || string(v) != "three" {
		t.Errorf("an offer after replace: %q %v", v, err)
	}
}
