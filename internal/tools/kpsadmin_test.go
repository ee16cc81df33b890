package tools_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpsbackup"
	"github.com/gatehouse-gw/gatehouse/internal/tools"
	"golang.org/x/sys/unix"
)

// kpsadmin against the real binary (run under its own name): a domain
// with group1/server1, applications and keys written through apps.Manager,
// and a custom table with every property type.

var colours = kps.Table{
	Collection: "Custom", Name: "Colours", Alias: "colours",
	Properties: []kps.Property{
		{Name: "name", Type: kps.String}, {Name: "hex", Type: kps.String}, {Name: "warm", Type: kps.Boolean},
		{Name: "rank", Type: kps.Integer}, {Name: "big", Type: kps.Long}, {Name: "weight", Type: kps.Double},
		{Name: "tags", Type: kps.List}, {Name: "attrs", Type: kps.Map}, {Name: "uid", Type: kps.String, Generated: true},
	},
	PrimaryKey: "name", SecondaryKey: "hex", Indexes: []string{"warm"},
}

// kpsStore opens the group's store from the test (as an instance would).
func kpsStore(t *testing.T, h *gwtest.Home) kps.Store {
	t.Helper()
	hh, err := home.At(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := apps.OpenGroupStore(context.Background(), hh, "group-2", groupconf.KPS{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// kpsInstance creates an instance of group1 on free ports (this machine's
// 8080 may be another test's).
func kpsInstance(t *testing.T, h *gwtest.Home, name string) {
	t.Helper()
	h.MustRun("", "managedomain", "-c", "-n", name, "-g", "group1",
		"--traffic_port", fmt.Sprint(gwtest.FreePort(t)), "--management_port", fmt.Sprint(gwtest.FreePort(t)))
}

// kpsDomain makes the domain and writes 2 applications, 3 keys and 3 colours.
func kpsDomain(t *testing.T) *gwtest.Home {
	t.Helper()
	h := gwtest.NewHome(t)
	h.InitDomain()
	kpsInstance(t, h, "server1")
	ctx := context.Background()
	hh, _ := home.At(h.Dir)
	st := kpsStore(t, h)
	defer st.Close()
	hk, err := apps.LoadOrCreateHashKey(hh, "group-2")
	if err != nil {
		t.Fatal(err)
	}
	m, err := apps.NewManager(ctx, st, hk)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Shop", "Mobile"} {
		a, err := m.CreateApp(ctx, apps.App{Name: name, Enabled: true, APIs: []string{"orders"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.CreateKey(ctx, a.ID, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if name == "Shop" {
			if _, _, err := m.CreateKey(ctx, a.ID, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Define(ctx, colours); err != nil {
		t.Fatal(err)
	}
	for _, v := range []map[string]any{
		{"name": "red", "hex": "#f00", "warm": true, "rank": 1, "big": int64(1) << 60, "weight": 0.1, "tags": []string{"a", "b"}, "attrs": map[string]string{"k": "v"}},
		{"name": "blue", "hex": "#00f", "warm": false, "rank": -2, "weight": 1e300},
		{"name": "grün", "tags": []string{}},
	} {
		if _, err := st.Insert(ctx, "colours", v); err != nil {
			t.Fatal(err)
		}
	}
	// A second version of a row: versions are kept by a backup.
	r, err := st.Get(ctx, "colours", "red")
	if err != nil {
		t.Fatal(err)
	}
	r.Values["rank"] = 5
	if _, err := st.Update(ctx, "colours", r); err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshot is every row of every table, by alias.
func snapshot(t *testing.T, h *gwtest.Home) map[string][]kps.Row {
	t.Helper()
	st := kpsStore(t, h)
	defer st.Close()
	ctx := context.Background()
	tables, err := st.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]kps.Row{}
	for _, tb := range tables {
		res, err := st.List(ctx, tb.Alias, kps.Page{Limit: kps.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		out[tb.Alias] = res.Rows
	}
	return out
}

// kpsRunner runs kpsadmin with stdin and args.
type kpsRunner func(stdin string, args ...string) gwtest.Result

// binaryRunner runs the real binary under the name kpsadmin.
func binaryRunner(h *gwtest.Home) kpsRunner {
	return func(stdin string, args ...string) gwtest.Result {
		h.T.Helper()
		return h.RunAs("kpsadmin", stdin, args...)
	}
}

// inProcessRunner runs tools.Main in the test process: the same tests then
// see the mutation tester's mutants (docs/testing.md), which the binary,
// built without its overlay, does not hold.
func inProcessRunner(t *testing.T, h *gwtest.Home) kpsRunner {
	t.Setenv("GATEHOUSE_HOME", h.Dir)
	return func(stdin string, args ...string) gwtest.Result {
		var out, errb bytes.Buffer
		env := &tools.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Exe: gwtest.Binary(t)}
		code := tools.Main(context.Background(), append([]string{"kpsadmin"}, args...), env)
		return gwtest.Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
	}
}

func wantCode(t *testing.T, what string, r gwtest.Result, code int, stderr ...string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: exit %d, want %d\n%s", what, r.Code, code, r)
	}
	for _, s := range stderr {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("%s: stderr does not say %q:\n%s", what, s, r.Stderr)
		}
	}
}

// kpsAudit returns the details of the audit log's entries with action.
func kpsAudit(t *testing.T, h *gwtest.Home, action string) []string {
	t.Helper()
	data, err := os.ReadFile(h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct {
			Via, Action, Detail, Outcome string
			Targets                      []string
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if e.Action == action && e.Via == "kpsadmin" && slices.Equal(e.Targets, []string{"group-2", "instance-1"}) {
			out = append(out, e.Outcome+" "+e.Detail)
		}
	}
	return out
}

var uuidRE = regexp.MustCompile(`Backup ([0-9a-f-]{36}) written`)

func backupUUID(t *testing.T, r gwtest.Result) string {
	t.Helper()
	m := uuidRE.FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("backup printed no UUID:\n%s", r)
	}
	return m[1]
}

func TestKpsadmin(t *testing.T) {
	h := kpsDomain(t)
	testKpsadmin(t, h, binaryRunner(h))
}

func TestKpsadminInProcess(t *testing.T) {
	h := kpsDomain(t)
	testKpsadmin(t, h, inProcessRunner(t, h))
}

func testKpsadmin(t *testing.T, h *gwtest.Home, kpsadmin kpsRunner) {
	dbPath := h.Path("groups", "group-2", "conf", "kps", "kps.db")
	backupDir := h.Path("groups", "group-2", "instance-1", "conf", "kps", "backup")
	orig := snapshot(t, h)
	if len(orig["applications"]) != 2 || len(orig["apikeys"]) != 3 || len(orig["colours"]) != 3 {
		t.Fatalf("the rows written: %v", orig)
	}

	t.Run("details", func(t *testing.T) {
		// By its link in posix/bin, as the operator runs it.
		cmd := h.Command(context.Background(), "", "details")
		cmd.Path, cmd.Args[0] = h.Path("posix", "bin", "kpsadmin"), h.Path("posix", "bin", "kpsadmin")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Table apikeys") {
			t.Errorf("posix/bin/kpsadmin details: %v\n%s", err, out)
		}
		r := kpsadmin("", "details")
		wantCode(t, "details", r, 0)
		for _, s := range []string{`group "group1" (group-2)`, "backend:  sqlite", "location: " + dbPath, "tables:   4",
			`Table apikeys: "API keys" in collection "Gatehouse", 3 rows`, `Table applications: "Client applications" in collection "Gatehouse", 2 rows`,
			`Table colours: "Colours" in collection "Custom", 3 rows`, "secondary key: hex", "indexes:       warm", "uid string (generated)", "primary key:   name"} {
			if !strings.Contains(r.Stdout, s) {
				t.Errorf("details does not say %q:\n%s", s, r.Stdout)
			}
		}
		wantCode(t, "a table of another collection", kpsadmin("", "details", "-t", "apikeys", "-c", "Custom"), 1, `table "apikeys" is in collection "Gatehouse", not "Custom"`)
		wantCode(t, "an unknown collection", kpsadmin("", "details", "-c", "Custum"), 1, `no collection "Custum"`, `did you mean "Custom"?`)
		if r := kpsadmin("", "details", "-t", "apikeys", "-c", "Gatehouse"); r.Code != 0 || !strings.Contains(r.Stdout, "tables:   1") {
			t.Errorf("details -t apikeys -c Gatehouse: %s", r)
		}
		r = kpsadmin("", "details", "-c", "Custom", "-g", "group1", "-n", "server1")
		wantCode(t, "details -c Custom", r, 0)
		if !strings.Contains(r.Stdout, "Table colours") || strings.Contains(r.Stdout, "Table apikeys") || !strings.Contains(r.Stdout, "tables:   1") {
			t.Errorf("details -c Custom:\n%s", r.Stdout)
		}
	})

	t.Run("list_rows", func(t *testing.T) {
		r := kpsadmin("", "list_rows", "-t", "apikeys", "--limit", "2")
		wantCode(t, "list_rows --limit 2", r, 0, "--cursor ")
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("list_rows --limit 2 printed %d rows:\n%s", len(lines), r.Stdout)
		}
		cursor := regexp.MustCompile(`--cursor (\S+)`).FindStringSubmatch(r.Stderr)[1]
		r2 := kpsadmin("", "list_rows", "-t", "apikeys", "--limit", "2", "--cursor", cursor)
		wantCode(t, "list_rows next page", r2, 0)
		if r2.Stderr != "" {
			t.Errorf("the last page says more rows follow: %s", r2.Stderr)
		}
		lines = append(lines, strings.Split(strings.TrimSpace(r2.Stdout), "\n")...)
		if len(lines) != 3 {
			t.Fatalf("the two pages hold %d rows, want 3", len(lines))
		}
		for i, l := range lines {
			var row struct {
				Version int64          `json:"version"`
				Values  map[string]any `json:"values"`
			}
			if err := json.Unmarshal([]byte(l), &row); err != nil {
				t.Fatalf("row %d: %v: %s", i, err, l)
			}
			if want := orig["apikeys"][i]; row.Version != want.Version || row.Values["id"] != want.Values["id"] || row.Values["hash"] != want.Values["hash"] {
				t.Errorf("row %d: got %s, want %v", i, l, want)
			}
		}
		r = kpsadmin("", "list_rows", "-t", "colours", "-v")
		wantCode(t, "list_rows colours", r, 0, `table "colours": 3 rows in all`)
		if !strings.Contains(r.Stdout, `{"version":2,"values":{"attrs":{"k":"v"},"big":1152921504606846976,`) {
			t.Errorf("list_rows colours:\n%s", r.Stdout)
		}
		wantCode(t, "an unknown table", kpsadmin("", "list_rows", "-t", "apikey"), 1, `no table "apikey"`, `did you mean "apikeys"?`, `"applications"`)
		// Two edits away is close; three is not.
		wantCode(t, "two letters too many", kpsadmin("", "list_rows", "-t", "colourrss"), 1, `did you mean "colours"?`)
		wantCode(t, "two letters missing", kpsadmin("", "list_rows", "-t", "colrs"), 1, `did you mean "colours"?`)
		wantCode(t, "two letters wrong", kpsadmin("", "list_rows", "-t", "cilourz"), 1, `did you mean "colours"?`)
		for _, far := range []string{"clrs", "xyz", "coloursxyz", "xxxcolours", "cxyzurs"} {
			if r := kpsadmin("", "list_rows", "-t", far); r.Code != 1 || strings.Contains(r.Stderr, "did you mean") {
				t.Errorf("%q, far from every name: %s", far, r)
			}
		}
		if r := kpsadmin("", "list_rows", "-t", "colours", "--limit", "1000"); r.Code != 0 || strings.Count(r.Stdout, "\n") != 3 {
			t.Errorf("list_rows --limit 1000: %s", r)
		}
		wantCode(t, "a bad cursor", kpsadmin("", "list_rows", "-t", "apikeys", "--cursor", "!!"), 1, "--cursor")
	})

	t.Run("names", func(t *testing.T) {
		wantCode(t, "an unknown group", kpsadmin("", "details", "-g", "grup1"), 1, `no group "grup1"`, `did you mean "group1"?`)
		wantCode(t, "an unknown instance", kpsadmin("", "details", "-g", "group1", "-n", "server2"), 1, `no instance "server2" in group "group1" (did you mean "server1"?)`, `"server1"`)
		wantCode(t, "by ids", kpsadmin("", "details", "-g", "group-2", "-n", "instance-1"), 0)
	})

	var full, only string
	t.Run("backup", func(t *testing.T) {
		r := kpsadmin("", "backup")
		wantCode(t, "backup", r, 0)
		full = backupUUID(t, r)
		path := filepath.Join(backupDir, full+".jsonl")
		if !strings.Contains(r.Stdout, path) || !strings.Contains(r.Stdout, "kpsadmin restore -g group1 -n server1 --uuid "+full) {
			t.Errorf("backup does not print the file and the restore command:\n%s", r.Stdout)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("the backup's mode: got %v, want 0600", info.Mode().Perm())
		}
		if di, err := os.Stat(backupDir); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("the backup directory: %v, %v; want 0700", di.Mode(), err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The last line seals every byte before it.
		body, last, _ := bytes.Cut(data[:len(data)-1], []byte("\n{\"sha256\""))
		sum := sha256.Sum256(append(body, '\n'))
		if string(last) != `:"`+hex.EncodeToString(sum[:])+`"}` {
			t.Errorf("the checksum line %q is not the SHA-256 of what precedes it", last)
		}
		b, err := kpsbackup.Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		m := b.Manifest
		if m.UUID != full || m.GroupID != "group-2" || m.GroupName != "group1" || m.InstanceID != "instance-1" || m.Backend != "sqlite" || m.Gatehouse == "" || time.Since(m.Created) > time.Minute {
			t.Errorf("manifest: %+v", m)
		}
		want := []kpsbackup.TableCount{{Alias: "apikeys", Rows: 3}, {Alias: "applications", Rows: 2}, {Alias: "colours", Rows: 3}, {Alias: "oauth_client_secrets", Rows: 0}}
		if !reflect.DeepEqual(m.Tables, want) {
			t.Errorf("manifest tables: got %v, want %v", m.Tables, want)
		}
		r = kpsadmin("", "backup", "-t", "colours")
		wantCode(t, "backup -t colours", r, 0)
		only = backupUUID(t, r)
		if only == full {
			t.Fatal("two backups with one UUID")
		}
		if strings.Contains(r.Stdout, "3 tables") || !strings.Contains(r.Stdout, "1 tables, 3 rows") {
			t.Errorf("backup -t colours:\n%s", r.Stdout)
		}
		if tmp, _ := filepath.Glob(filepath.Join(backupDir, ".*")); len(tmp) != 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
	})

	t.Run("restore refuses a table with rows", func(t *testing.T) {
		wantCode(t, "restore into tables with rows", kpsadmin("", "restore", "--uuid", full), 1, "nothing was written", `"apikeys" holds 3 rows`, "--force")
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("a refused restore changed the store")
		}
	})

	t.Run("clear", func(t *testing.T) {
		wantCode(t, "clear without --yes off a terminal", kpsadmin("", "clear", "-t", "colours"), 2, "--yes")
		wantCode(t, "clear a Gatehouse table without --force", kpsadmin("", "clear", "-t", "apikeys", "--yes"), 2, "--force", "kpsadmin backup")
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Fatalf("a refused clear changed the store")
		}
		r := kpsadmin("", "clear", "-t", "colours", "--yes")
		wantCode(t, "clear", r, 0)
		if !strings.Contains(r.Stdout, "3 rows removed") {
			t.Errorf("clear: %s", r.Stdout)
		}
		if got := snapshot(t, h); len(got["colours"]) != 0 || len(got["apikeys"]) != 3 {
			t.Errorf("after clear: %v", got)
		}
		// Recorded once (the refusals are not).
		if got := kpsAudit(t, h, "clear kps table"); len(got) != 1 || got[0] != "ok kpsadmin clear -g group1 -n server1 --table colours --yes; 3 rows removed" {
			t.Errorf("the audit log's clears: %q", got)
		}
		if r := h.Run("", "audit", "verify"); r.Code != 0 {
			t.Errorf("audit verify after kpsadmin's entries: %s", r)
		}
	})

	t.Run("restore", func(t *testing.T) {
		r := kpsadmin("", "restore", "--uuid", only)
		wantCode(t, "restore into the empty table", r, 0)
		if !strings.Contains(r.Stdout, `table "colours": 3 rows`) {
			t.Errorf("restore: %s", r.Stdout)
		}
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("after restore: got %v, want %v", got["colours"], orig["colours"])
		}
		// Changed since: --force replaces the rows, versions as backed up.
		st := kpsStore(t, h)
		if _, err := st.Insert(context.Background(), "colours", map[string]any{"name": "pink"}); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(context.Background(), "apikeys", orig["apikeys"][0].Values["id"], kps.AnyVersion); err != nil {
			t.Fatal(err)
		}
		st.Close()
		r = kpsadmin("", "restore", "--uuid", full, "--force")
		wantCode(t, "restore --force", r, 0)
		if !strings.Contains(r.Stdout, `table "colours": 3 rows (replacing 4)`) {
			t.Errorf("restore --force: %s", r.Stdout)
		}
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("after restore --force: the store differs from the backup")
		}
		if got := kpsAudit(t, h, "restore kps"); len(got) < 2 || !strings.Contains(got[len(got)-1], `--uuid `+full+` --force; table "apikeys": 3 rows (replacing 2)`) {
			t.Errorf("the audit log's restores: %q", got)
		}
		wantCode(t, "a table the backup lacks", kpsadmin("", "restore", "--uuid", only, "-t", "apikeys"), 1, `holds no table "apikeys"`, `"colours"`)
	})

	t.Run("a definition changed since the backup", func(t *testing.T) {
		define := func(tb kps.Table) {
			st := kpsStore(t, h)
			defer st.Close()
			if err := st.Define(context.Background(), tb); err != nil {
				t.Fatal(err)
			}
		}
		wider := colours.Clone()
		wider.Properties = append(wider.Properties, kps.Property{Name: "extra", Type: kps.String})
		define(wider)
		wantCode(t, "restore into a wider table", kpsadmin("", "restore", "--uuid", only, "--force"), 0)
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("after a restore into a wider table: the store differs from the backup")
		}
		narrower := colours.Clone()
		narrower.Properties = slices.DeleteFunc(narrower.Properties, func(p kps.Property) bool { return p.Name == "weight" })
		define(narrower)
		before := snapshot(t, h)
		wantCode(t, "restore into a narrower table", kpsadmin("", "restore", "--uuid", only, "--force"), 1,
			"nothing was written", `row 1 of table "colours" does not fit the store's definition`, `"weight"`)
		if got := snapshot(t, h); !reflect.DeepEqual(got, before) {
			t.Errorf("a refused restore changed the store")
		}
		define(colours)
		wantCode(t, "restore after the definition is back", kpsadmin("", "restore", "--uuid", only, "--force"), 0)
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("after the definition is back: the store differs from the backup")
		}
	})

	t.Run("corrupt backups are refused, nothing written", func(t *testing.T) {
		path := filepath.Join(backupDir, full+".jsonl")
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// A state that differs from the backup: a --force restore that
		// wrote anything would show.
		st := kpsStore(t, h)
		if _, err := st.Insert(context.Background(), "colours", map[string]any{"name": "pink"}); err != nil {
			t.Fatal(err)
		}
		st.Close()
		before := snapshot(t, h)
		i := bytes.Index(good, []byte(`"#00f"`)) + 2 // a row value
		flipped := bytes.Clone(good)
		flipped[i] ^= 0x01
		lastLine := bytes.LastIndexByte(good[:len(good)-1], '\n') + 1
		for name, c := range map[string]struct {
			data []byte
			says string
		}{
			"a flipped byte":     {flipped, "checksum mismatch"},
			"cut in a line":      {good[:len(good)-10], "truncated"},
			"no checksum line":   {good[:lastLine], "no checksum line"},
			"no manifest":        {good[:bytes.LastIndexByte(good[:lastLine-1], '\n')+1], "no manifest"},
			"empty":              {nil, "empty"},
			"a row that differs": {bytes.Replace(good, []byte(`"rank":-2`), []byte(`"rank":"x"`), 1), "line"},
		} {
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := kpsadmin("", "restore", "--uuid", full, "--force")
			wantCode(t, name, r, 1, "refused, nothing was written", c.says, path)
			if got := snapshot(t, h); !reflect.DeepEqual(got, before) {
				t.Fatalf("%s: a refused restore changed the store", name)
			}
		}
		os.WriteFile(path, good, 0o600)
		wantCode(t, "an unknown uuid", kpsadmin("", "restore", "--uuid", "00000000-0000-4000-8000-000000000000"), 1, "no backup 00000000-", full, only)
		wantCode(t, "not a uuid", kpsadmin("", "restore", "--uuid", "../../kps"), 2, "not a backup's UUID")
	})

	t.Run("a damaged store", func(t *testing.T) {
		os.Remove(dbPath + "-wal")
		os.Remove(dbPath + "-shm")
		if err := os.WriteFile(dbPath, []byte("this is not a database, not at all: "+strings.Repeat("x", 4096)), 0o600); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "details of a damaged store", kpsadmin("", "details"), 1, dbPath)
	})

	t.Run("restore into a new store", func(t *testing.T) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(dbPath + suffix)
		}
		wantCode(t, "details without a store", kpsadmin("", "details"), 1, dbPath+" does not exist")
		if _, err := os.Stat(dbPath); !os.IsNotExist(err) {
			t.Fatalf("details created the store: %v", err)
		}
		r := kpsadmin("", "restore", "--uuid", full, "-v")
		wantCode(t, "restore into a new store", r, 0, `table "colours" defined from the backup`)
		if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
			t.Errorf("the store restored from nothing differs from the backup")
		}
	})

	t.Run("two instances here", func(t *testing.T) {
		kpsInstance(t, h, "server2")
		wantCode(t, "backup without -n", kpsadmin("", "backup"), 2, "give the instance with -n", `"server1", "server2"`)
		wantCode(t, "details without -n", kpsadmin("", "details"), 0)
		r := kpsadmin("", "backup", "-n", "server2", "-t", "colours")
		wantCode(t, "backup -n server2", r, 0)
		id := backupUUID(t, r)
		if _, err := os.Stat(h.Path("groups", "group-2", "instance-2", "conf", "kps", "backup", id+".jsonl")); err != nil {
			t.Errorf("the backup of server2: %v", err)
		}
		wantCode(t, "server2's backup from server1", kpsadmin("", "restore", "-n", "server1", "--uuid", id), 1, "no backup "+id)
	})

	t.Run("a PostgreSQL store that does not answer", func(t *testing.T) {
		path := h.Path("groups", "group-2", "conf", "group.yaml")
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig, 0o644)
		for port, loc := range map[string]string{"1": "postgres://gate@127.0.0.1:1/gh (schema gs)", "": "postgres://gate@127.0.0.1:5432/gh (schema public)"} {
			kpsConf := "\nkps:\n  backend: postgres\n  postgres:\n    host: 127.0.0.1\n    database: gh\n    user: gate\n"
			if port != "" {
				kpsConf += "    port: " + port + "\n    schema: gs\n"
			}
			if err := os.WriteFile(path, append(bytes.Clone(orig), kpsConf...), 0o644); err != nil {
				t.Fatal(err)
			}
			wantCode(t, "details of an unreachable PostgreSQL store", kpsadmin("", "details", "-n", "server1"), 1, loc)
		}
	})
}

// The menu, driven through standard input.
func TestKpsadminMenu(t *testing.T) {
	h := kpsDomain(t)
	testKpsadminMenu(t, h, binaryRunner(h))
}

func TestKpsadminMenuInProcess(t *testing.T) {
	h := kpsDomain(t)
	testKpsadminMenu(t, h, inProcessRunner(t, h))
}

func testKpsadminMenu(t *testing.T, h *gwtest.Home, kpsadmin kpsRunner) {
	orig := snapshot(t, h)
	in := strings.Join([]string{
		"5",            // details
		"6", "colours", // list_rows
		"2", "", // backup: every table
		"1", "colours", "", // clear, cancelled
		"1", "colours", "colours", // clear, confirmed
		"4",                     // reencrypt: nothing encrypted here
		"9",                     // no such option
		"3", "", "colours", "n", // restore the newest backup's colours
		"q",
	}, "\n") + "\n"
	r := kpsadmin(in)
	wantCode(t, "the menu", r, 0)
	for _, s := range []string{
		`kpsadmin menu: group "group1", instance "server1"`, "  6) list_rows", "  4) reencrypt",
		"Table colours:", // details
		`{"version":2,"values":{"attrs":{"k":"v"}`, // list_rows
		"Backup ", "Not cleared.", "3 rows removed", "nothing to re-encrypt",
		`There is no option "9"`, `table "colours": 3 rows`,
	} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("the menu does not say %q:\n%s", s, r.Stdout)
		}
	}
	if i, j := strings.Index(r.Stdout, "Not cleared."), strings.Index(r.Stdout, "3 rows removed"); i < 0 || j < i {
		t.Errorf("the cancelled clear is not the first one")
	}
	if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
		t.Errorf("after clear and restore through the menu, the store differs")
	}
	// The end of input at a backup's prompt: no backup.
	backups, _ := filepath.Glob(h.Path("groups", "group-2", "instance-1", "conf", "kps", "backup", "*.jsonl"))
	r = kpsadmin("2\n")
	if !strings.Contains(r.Stdout, "End of input: backup not performed") {
		t.Errorf("the menu cut short at backup:\n%s", r.Stdout)
	}
	if after, _ := filepath.Glob(h.Path("groups", "group-2", "instance-1", "conf", "kps", "backup", "*.jsonl")); len(after) != len(backups) {
		t.Errorf("a backup cut short wrote a file: %v", after)
	}
	// list_rows pages: the next page when asked, and no question after the last.
	st := kpsStore(t, h)
	many := kps.Table{Collection: "Custom", Name: "Many", Alias: "many", Properties: []kps.Property{{Name: "n", Type: kps.Long}}, PrimaryKey: "n"}
	if err := st.Define(context.Background(), many); err != nil {
		t.Fatal(err)
	}
	for i := range kps.DefaultLimit + 1 {
		if _, err := st.Insert(context.Background(), "many", map[string]any{"n": 1000 + i}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	r = kpsadmin("6\nmany\ny\nq\n")
	if n := strings.Count(r.Stdout, `{"version":1,"values":{"n":`); n != kps.DefaultLimit+1 || strings.Count(r.Stdout, "More rows follow") != 1 || strings.Contains(r.Stderr, "--cursor") {
		t.Errorf("list_rows through the menu: %d rows, want %d, one question:\n%s", n, kps.DefaultLimit+1, r)
	}
	r = kpsadmin("6\nmany\nn\nq\n")
	if n := strings.Count(r.Stdout, `{"version":1,"values":{"n":`); n != kps.DefaultLimit {
		t.Errorf("list_rows through the menu, no next page: %d rows, want %d", n, kps.DefaultLimit)
	}
	st = kpsStore(t, h)
	if err := st.Clear(context.Background(), "many"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	orig["many"] = snapshot(t, h)["many"] // defined, empty
	// End of input in the middle of an operation: not performed, exit 0.
	r = kpsadmin("1\ncolours\n")
	wantCode(t, "the menu cut short", r, 0)
	if !strings.Contains(r.Stdout, "End of input: clear not performed") {
		t.Errorf("the menu cut short:\n%s", r.Stdout)
	}
	if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
		t.Errorf("a clear cut short changed the store")
	}
	// Two instances here: the menu asks which; a restore that replaces.
	kpsInstance(t, h, "server2")
	st = kpsStore(t, h)
	if _, err := st.Insert(context.Background(), "colours", map[string]any{"name": "pink"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r = kpsadmin("server1\n3\n\ncolours\ny\nq\n")
	wantCode(t, "the menu with two instances", r, 0)
	for _, s := range []string{`Instances of group "group1" on this host: "server1", "server2"`, "Instance [server1]: ", `table "colours": 3 rows (replacing 4)`} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("the menu with two instances does not say %q:\n%s", s, r.Stdout)
		}
	}
	if got := snapshot(t, h); !reflect.DeepEqual(got, orig) {
		t.Errorf("after a replacing restore through the menu, the store differs")
	}
	r = kpsadmin("server2\n3\nq\n")
	if !strings.Contains(r.Stdout, `No backups in `+h.Path("groups", "group-2", "instance-2", "conf", "kps", "backup")) {
		t.Errorf("the menu of server2, which has no backups:\n%s", r.Stdout)
	}
}

func TestKpsadminUsage(t *testing.T) {
	h := gwtest.NewHome(t)
	testKpsadminUsage(t, h, binaryRunner(h))
}

func TestKpsadminUsageInProcess(t *testing.T) {
	h := gwtest.NewHome(t)
	testKpsadminUsage(t, h, inProcessRunner(t, h))
}

func testKpsadminUsage(t *testing.T, h *gwtest.Home, kpsadmin kpsRunner) {
	r := kpsadmin("", "--help")
	wantCode(t, "--help", r, 0)
	for _, s := range []string{"list_rows", "details", "clear", "backup", "restore", "reencrypt", "--uuid UUID", "-t, --table TABLE", "--force", "-n, --instance", "exit status: 0"} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("--help does not say %q", s)
		}
	}
	if r2 := h.Run("", "kpsadmin", "backup", "-h"); r2.Code != 0 || r2.Stdout != r.Stdout {
		t.Errorf("gatehouse kpsadmin backup -h: %s", r2)
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"lst_rows"}, `did you mean "list_rows"?`},
		{[]string{"details", "--bogus"}, `unknown option "--bogus"`},
		{[]string{"details", "list_rows"}, "one verb at a time"},
		{[]string{"list_rows"}, "list_rows needs -t TABLE"},
		{[]string{"restore"}, "restore needs --uuid UUID"},
		{[]string{"list_rows", "-t", "x", "--uuid", "y"}, "list_rows does not take --uuid"},
		{[]string{"list_rows", "-t", "x", "--limit", "0"}, "--limit"},
		{[]string{"list_rows", "-t", "x", "--limit", "1001"}, "--limit"},
		{[]string{"details", "-g"}, "-g needs a value"},
		{[]string{"details", "-g", "a", "--group", "b"}, "given twice"},
		{[]string{"details", "--yes=1"}, "takes no value"},
		{[]string{"-t", "colours"}, "needs a verb"},
		{[]string{"details", "-u", "admin"}, "takes no credentials"},
		{[]string{"details", "--password_file", "f"}, "takes no credentials"},
		{[]string{"reencrypt", "--passphrase", "x"}, "never taken on the command line"},
		{[]string{"reencrypt", "-P", "--passphrase_file", "f"}, "-P and the passphrase files exclude each other"},
		{[]string{"reencrypt", "-t", "x"}, "reencrypt does not take -t"},
		{[]string{"details", "--old_passphrase_file", "f"}, "details does not take --old_passphrase_file"},
	} {
		r := kpsadmin("", c.args...)
		wantCode(t, strings.Join(c.args, " "), r, 2, c.says)
	}
	// No domain here: a failure (1), not a usage error.
	wantCode(t, "details without a domain", kpsadmin("", "details"), 1)
}

// openPTY opens a pseudo-terminal: the master, and the slave to give a
// process as its standard input.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// clear on a terminal asks to type the alias: a wrong answer clears
// nothing (exit 1), the alias clears.
func TestKpsadminClearOnATerminal(t *testing.T) {
	h := kpsDomain(t)
	for _, c := range []struct {
		answer string
		code   int
		rows   int
	}{{"red\n", 1, 3}, {"colours\n", 0, 0}} {
		master, slave := openPTY(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := h.Command(ctx, "kpsadmin", "clear", "-t", "colours")
		var out bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, master) // the terminal's echo
		master.Write([]byte(c.answer))
		err := cmd.Wait()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(out.String(), `Clear the 3 rows of table "colours"`) {
			t.Errorf("answer %q: exit %d, want %d\n%s", c.answer, code, c.code, out.String())
		}
		if got := snapshot(t, h); len(got["colours"]) != c.rows {
			t.Errorf("answer %q: %d rows left, want %d", c.answer, len(got["colours"]), c.rows)
		}
	}
}
