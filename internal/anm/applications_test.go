package anm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/deploy"
	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/gwtest"
	"github.com/gatehouse-gw/gatehouse/internal/home"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/topology"
)

const appsGroupYAML = `backends:
  - name: be
    url: http://127.0.0.1:9
apis:
  - name: orders
    pathPrefix: /orders
    backend: be
  - name: stock
    pathPrefix: /stock
    backend: be
`

// appsEnv is an API with group-2 ("Shop Group"): one instance on this
// host and a group.yaml with the APIs orders and stock.
func appsEnv(t *testing.T) *apiEnv {
	t.Helper()
	e := newAPIEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"Shop Group"}`).MustCode(t, 201)
	e.do("POST", "/api/topology/services/group-2", fmt.Sprintf(`{"name":"s1","trafficPort":%d,"managementPort":%d}`, gwtest.FreePort(t), gwtest.FreePort(t))).MustCode(t, 201)
	if err := os.WriteFile(e.h.GroupConfFile("group-2"), []byte(appsGroupYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.a.Close)
	// A lock left held would hang the requests: fail instead.
	stop := time.AfterFunc(2*time.Minute, func() { panic(t.Name() + ": still running after 2 minutes (a lock left held?)") })
	t.Cleanup(func() { stop.Stop() })
	return e
}

// auditActions is every entry of the audit log, oldest first.
func auditEntries(t *testing.T, e *apiEnv) []audit.Entry {
	t.Helper()
	es, err := e.a.audit.Log.Search(audit.Filter{Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	return es
}

// wantEntry finds the entry with action whose targets and detail contain
// parts; outcome "ok" or "error".
func wantEntry(t *testing.T, es []audit.Entry, action, outcome string, parts ...string) {
	t.Helper()
	for _, en := range es {
		if en.Action != action || en.Outcome != outcome {
			continue
		}
		all := strings.Join(en.Targets, " ") + " " + en.Detail + " " + en.Error
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(all, p)
		}
		if ok {
			return
		}
	}
	var got []string
	for _, en := range es {
		got = append(got, fmt.Sprintf("%s/%s %v %s %s", en.Action, en.Outcome, en.Targets, en.Detail, en.Error))
	}
	t.Errorf("no audit entry %q (%s) with %q; the log:\n%s", action, outcome, parts, strings.Join(got, "\n"))
}

func TestApplicationsAPI(t *testing.T) {
	e := appsEnv(t)
	var page appsPage
	a := e.do("GET", "/api/applications/group-2", "")
	a.MustCode(t, 200)
	a.Decode(t, &page)
	if len(page.Applications) != 0 || page.Next != "" || !strings.Contains(a.Body, `"applications":[]`) {
		t.Errorf("empty list: %s", a.Body)
	}

	// Create, by the group's name.
	a = e.do("POST", "/api/applications/Shop%20Group", `{"name":"Shop","description":"the shop","contact":"ops@example.com","apis":["orders"]}`)
	a.MustCode(t, 201)
	var shop apps.App
	a.Decode(t, &shop)
	if shop.ID == "" || shop.Name != "Shop" || !shop.Enabled || shop.Contact != "ops@example.com" || len(shop.APIs) != 1 || shop.Version != 1 || shop.CreatedAt.IsZero() {
		t.Errorf("created: %+v", shop)
	}
	if got := a.Header.Get("Location"); got != "/api/applications/group-2/"+shop.ID {
		t.Errorf("Location %q", got)
	}
	if got := a.Header.Get("ETag"); got != `"1"` {
		t.Errorf("ETag %q, want \"1\"", got)
	}
	e.do("POST", "/api/applications/group-2", `{"name":"Shop"}`).WantError(t, 409, `group group-2 has an application called "Shop" already`)
	e.do("POST", "/api/applications/group-2", `{"name":"X","apis":["orders","nope"]}`).WantError(t, 400, `has no API "nope"`, "its APIs: orders, stock", "group.yaml of instance-1")
	e.do("POST", "/api/applications/group-2", `{"description":"no name"}`).WantError(t, 400, `"name" is required`)
	e.do("POST", "/api/applications/group-2", `{"name":"V","version":3}`).WantError(t, 400, `"version"`)
	e.do("POST", "/api/applications/group-2", `{"name":" padded"}`).WantError(t, 400, "name")
	e.do("POST", "/api/applications/group-2", `{"name":"Y","colour":"red"}`).WantError(t, 400, "unknown field")
	e.do("POST", "/api/applications/group-9", `{"name":"Z"}`).WantError(t, 404, "group-9")
	e.do("POST", "/api/applications/group-1", `{"name":"Z"}`).WantError(t, 400, "node managers' group")
	a = e.do("POST", "/api/applications/group-2", `{"name":"Other","enabled":false}`)
	a.MustCode(t, 201)
	var other apps.App
	a.Decode(t, &other)
	if other.Enabled || other.APIs == nil {
		t.Errorf("enabled false: %+v %s", other, a.Body)
	}

	// Read by id and by name; a page at a time.
	for _, arg := range []string{shop.ID, "Shop"} {
		var got apps.App
		a := e.do("GET", "/api/applications/group-2/"+arg, "")
		a.MustCode(t, 200)
		a.Decode(t, &got)
		if got.ID != shop.ID || a.Header.Get("ETag") != `"1"` {
			t.Errorf("GET %s: %+v", arg, got)
		}
	}
	e.do("GET", "/api/applications/group-2/Nobody", "").WantError(t, 404, `no application with the id or name "Nobody"`)
	a = e.do("GET", "/api/applications/group-2?limit=1", "")
	a.MustCode(t, 200)
	a.Decode(t, &page)
	if len(page.Applications) != 1 || page.Next == "" {
		t.Fatalf("page 1: %s", a.Body)
	}
	first := page.Applications[0].ID
	var page2 appsPage
	e.do("GET", "/api/applications/group-2?limit=1&cursor="+page.Next, "").Decode(t, &page2)
	if len(page2.Applications) != 1 || page2.Applications[0].ID == first {
		t.Errorf("page 2: %+v", page2)
	}
	if page2.Next != "" {
		var page3 appsPage
		e.do("GET", "/api/applications/group-2?limit=1&cursor="+page2.Next, "").Decode(t, &page3)
		if len(page3.Applications) != 0 || page3.Next != "" {
			t.Errorf("page 3: %+v", page3)
		}
	}
	e.do("GET", "/api/applications/group-2?limit=0", "").WantError(t, 400, "limit")
	e.do("GET", "/api/applications/group-2?limit=1001", "").WantError(t, 400, "limit")
	e.do("GET", "/api/applications/group-2?limit=1000", "").MustCode(t, 200)

	// Change: a stale version, a version in the body and If-Match that
	// disagree, then a partial change.
	e.do("PUT", "/api/applications/group-2/Shop", `{"enabled":false}`, "If-Match", `"7"`).WantError(t, 409, "no longer at version 7")
	e.do("PUT", "/api/applications/group-2/Shop", `{"enabled":false,"version":2}`, "If-Match", `"1"`).WantError(t, 400, "send one")
	e.do("PUT", "/api/applications/group-2/Shop", `{"apis":["orders","gone"]}`).WantError(t, 400, `has no API "gone"`)
	e.do("PUT", "/api/applications/group-2/Shop", `{"name":"Other"}`).WantError(t, 409, `called "Other" already`)
	e.do("PUT", "/api/applications/group-2/Shop", `{"name":" Other"}`).WantError(t, 400, "name")
	e.do("PUT", "/api/applications/group-2/Nobody", `{"contact":"x"}`).WantError(t, 404, "Nobody")
	a = e.do("PUT", "/api/applications/group-2/Shop", `{"enabled":false,"description":"changed"}`, "If-Match", `"1"`)
	a.MustCode(t, 200)
	var changed apps.App
	a.Decode(t, &changed)
	if changed.Enabled || changed.Description != "changed" || changed.Version != 2 || len(changed.APIs) != 1 || changed.Contact != "ops@example.com" || a.Header.Get("ETag") != `"2"` {
		t.Errorf("changed: %+v", changed)
	}
	a = e.do("PUT", "/api/applications/group-2/"+shop.ID, `{"enabled":true,"version":2}`)
	a.MustCode(t, 200)
	a.Decode(t, &changed)
	if !changed.Enabled || changed.Version != 3 {
		t.Errorf("changed with a body version: %+v", changed)
	}

	// An API the configuration no longer has does not block other changes.
	if err := os.WriteFile(e.h.GroupConfFile("group-2"), []byte(strings.Replace(appsGroupYAML, "name: orders", "name: orders2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.do("PUT", "/api/applications/group-2/Shop", `{"contact":"new@example.com"}`).MustCode(t, 200)
	e.do("PUT", "/api/applications/group-2/Shop", `{"apis":["orders","stock"]}`).MustCode(t, 200)
	e.do("PUT", "/api/applications/group-2/Other", `{"apis":["orders"]}`).WantError(t, 400, `has no API "orders"`)
	os.WriteFile(e.h.GroupConfFile("group-2"), []byte(""), 0o644)
	e.do("PUT", "/api/applications/group-2/Other", `{"apis":["orders"]}`).WantError(t, 400, `has no API "orders"; its APIs: none`)
	os.WriteFile(e.h.GroupConfFile("group-2"), []byte(appsGroupYAML), 0o644)

	// Keys: the value once, with no-store; lists and reads without it.
	a = e.do("POST", "/api/applications/group-2/Shop/keys", "")
	a.MustCode(t, 201)
	var nk newKey
	a.Decode(t, &nk)
	id, err := apps.ParseKey(nk.Value)
	if err != nil || id != nk.Key.ID || nk.Key.AppID != shop.ID || !nk.Key.Enabled || !nk.Key.ExpiresAt.IsZero() || !strings.Contains(nk.Note, "this once") {
		t.Fatalf("new key: %v %s", err, a.Body)
	}
	if a.Header.Get("Cache-Control") != "no-store" || a.Header.Get("Location") != "/api/applications/group-2/"+shop.ID+"/keys/"+id {
		t.Errorf("new key's headers: %v", a.Header)
	}
	value := nk.Value
	secretPart := value[len(id):]
	a = e.do("POST", "/api/applications/group-2/"+shop.ID+"/keys", `{"expiresIn":"720h"}`)
	a.MustCode(t, 201)
	var nk2 newKey
	a.Decode(t, &nk2)
	if d := time.Until(nk2.Key.ExpiresAt); d < 719*time.Hour || d > 721*time.Hour {
		t.Errorf("expiresIn 720h: expires at %v", nk2.Key.ExpiresAt)
	}
	e.do("POST", "/api/applications/group-2/Shop/keys", `{"expiresAt":"2001-01-01T00:00:00Z"}`).WantError(t, 400, "not in the future")
	e.do("POST", "/api/applications/group-2/Shop/keys", `{"expiresAt":"tomorrow"}`).WantError(t, 400, "RFC 3339")
	e.do("POST", "/api/applications/group-2/Shop/keys", `{"expiresIn":"-1h"}`).WantError(t, 400, "positive duration")
	e.do("POST", "/api/applications/group-2/Shop/keys", `{"expiresIn":"1h","expiresAt":""}`).WantError(t, 400, "not both")
	e.do("POST", "/api/applications/group-2/Shop/keys", `{"enabled":false}`).WantError(t, 400, "enabled")
	e.do("POST", "/api/applications/group-2/Nobody/keys", "").WantError(t, 404, "Nobody")
	if a := e.do("POST", "/api/applications/group-2/Shop/keys", `{"expiresIn":"1h"}`, "Content-Type", ""); a.Code != 415 {
		t.Errorf("a body without Content-Type: got %d, want 415: %s", a.Code, a.Body)
	}

	a = e.do("GET", "/api/applications/group-2/Shop/keys", "")
	a.MustCode(t, 200)
	var kl keysList
	a.Decode(t, &kl)
	if len(kl.Keys) != 2 || strings.Contains(a.Body, secretPart) || strings.Contains(a.Body, "hash") {
		t.Errorf("keys: %s", a.Body)
	}
	a = e.do("GET", "/api/applications/group-2/Shop/keys/"+id, "")
	a.MustCode(t, 200)
	if strings.Contains(a.Body, secretPart) || strings.Contains(a.Body, "hash") || !strings.Contains(a.Body, id) {
		t.Errorf("key: %s", a.Body)
	}
	e.do("GET", "/api/applications/group-2/Other/keys/"+id, "").WantError(t, 404, `has no key "`+id+`"`)
	e.do("PUT", "/api/applications/group-2/Other/keys/"+id, `{"enabled":false}`).WantError(t, 404, "has no key")
	e.do("GET", "/api/applications/group-2/Shop/keys/gk_aaaaaaaaaaaa", "").WantError(t, 404, "has no key")

	// Disable, enable, expiry.
	e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{}`).WantError(t, 400, "nothing to change")
	e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{"expiresAt":"soon"}`).WantError(t, 400, "RFC 3339")
	a = e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{"enabled":false}`)
	a.MustCode(t, 200)
	var k apps.Key
	a.Decode(t, &k)
	if k.Enabled || k.Version != 2 {
		t.Errorf("disabled: %+v", k)
	}
	a = e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{"enabled":true,"expiresAt":"2099-01-02T03:04:05Z"}`)
	a.MustCode(t, 200)
	a.Decode(t, &k)
	if !k.Enabled || !k.ExpiresAt.Equal(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("enabled with an expiry: %+v", k)
	}
	a = e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{"expiresAt":""}`)
	k = apps.Key{}
	a.Decode(t, &k)
	if !k.Enabled || !k.ExpiresAt.IsZero() {
		t.Errorf("never expires: %+v", k)
	}
	e.do("PUT", "/api/applications/group-2/Shop/keys/"+id, `{"enabled":true}`).MustCode(t, 200)
	if es := auditEntries(t, e); es[len(es)-1].Action != "change api key" {
		t.Errorf("enabling an enabled key is recorded as %q, want change api key", es[len(es)-1].Action)
	}

	// Rotation: a new key; the old one expires after the grace period.
	e.do("POST", "/api/applications/group-2/Shop/keys/"+id+"/rotate", `{"grace":"soon"}`).WantError(t, 400, "grace")
	e.do("POST", "/api/applications/group-2/Shop/keys/"+id+"/rotate", `{"grace":"-1h"}`).WantError(t, 400, "grace")
	e.do("POST", "/api/applications/group-2/Other/keys/"+id+"/rotate", "").WantError(t, 404, "has no key")
	a = e.do("POST", "/api/applications/group-2/Shop/keys/"+id+"/rotate", `{"grace":"1h"}`)
	a.MustCode(t, 201)
	var rot rotated
	a.Decode(t, &rot)
	if rid, err := apps.ParseKey(rot.Value); err != nil || rid != rot.Key.ID || rid == id || rot.Old.ID != id || a.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotated: %v %s", err, a.Body)
	}
	if d := time.Until(rot.Old.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("the old key expires in %v, want 1h", d)
	}
	firstRotated := rot.Key.ID
	a = e.do("POST", "/api/applications/group-2/Shop/keys/"+nk2.Key.ID+"/rotate", "")
	a.MustCode(t, 201)
	a.Decode(t, &rot)
	// The default grace (24h) but never later than the old key's own expiry (720h).
	if d := time.Until(rot.Old.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour {
		t.Errorf("default grace: the old key expires in %v, want 24h", d)
	}
	rotatedValue := rot.Value
	e.do("POST", "/api/applications/group-2/Nobody/keys/"+id+"/rotate", "").WantError(t, 404, "Nobody")
	// A grace of 0s: the old key stops now.
	a = e.do("POST", "/api/applications/group-2/Shop/keys/"+rot.Key.ID+"/rotate", `{"grace":"0s"}`)
	a.MustCode(t, 201)
	var rot0 rotated
	a.Decode(t, &rot0)
	if d := time.Since(rot0.Old.ExpiresAt); d < 0 || d > time.Minute {
		t.Errorf("grace 0s: the old key expires at %v", rot0.Old.ExpiresAt)
	}
	// A key that expired cannot be rotated (its successor would be born expired).
	e.do("PUT", "/api/applications/group-2/Shop/keys/"+rot0.Key.ID, `{"expiresAt":"2001-01-01T00:00:00Z"}`).MustCode(t, 200)
	e.do("POST", "/api/applications/group-2/Shop/keys/"+rot0.Key.ID+"/rotate", "").WantError(t, 400, "not in the future")

	// Delete a key, then the application with its keys.
	e.do("DELETE", "/api/applications/group-2/Other/keys/"+id, "").WantError(t, 404, "has no key")
	e.do("DELETE", "/api/applications/group-2/Nobody/keys/"+id, "").WantError(t, 404, "Nobody")
	e.do("DELETE", "/api/applications/group-2/Shop/keys/"+id, "").MustCode(t, 200)
	e.do("GET", "/api/applications/group-2/Shop/keys/"+id, "").WantError(t, 404, "has no key")
	e.do("DELETE", "/api/applications/group-2/Shop", "", "If-Match", `"1"`).WantError(t, 409, "not 1")
	e.do("DELETE", "/api/applications/group-2/Shop?version=x", "").WantError(t, 400, "application's version")
	a = e.do("DELETE", "/api/applications/group-2/Shop", "")
	a.MustCode(t, 200)
	if !strings.Contains(a.Body, `"deletedKeys":4`) {
		t.Errorf("delete: %s", a.Body)
	}
	e.do("GET", "/api/applications/group-2/Shop", "").WantError(t, 404, "Shop")
	e.do("DELETE", "/api/applications/group-2/Shop", "").WantError(t, 404, "Shop")

	// The audit log: every change, refused ones too, never a key's value.
	es := auditEntries(t, e)
	wantEntry(t, es, "create application", "ok", "group-2", shop.ID, `"Shop"`, "APIs orders")
	wantEntry(t, es, "create application", "error", "group-2", `application "Shop"`, "already")
	wantEntry(t, es, "change application", "ok", shop.ID, "enabled false", "(was: ")
	wantTargets(t, es, "change application", "group-2", shop.ID)
	for _, en := range es {
		if en.Action == "change application" && en.Outcome == "ok" && slices.Contains(en.Targets, "Shop") {
			t.Errorf("a change of the application named in the request by its name is recorded with the name, not the id: %v", en.Targets)
		}
	}
	wantEntry(t, es, "create application", "ok", `("Other")`, "no API")
	wantEntry(t, es, "disable api key", "error", id, "has no key")
	wantEntry(t, es, "create api key", "error", `application `+shop.ID+` ("Shop")`, "not in the future")
	wantEntry(t, es, "rotate api key", "ok", "replaced by "+firstRotated)
	wantEntry(t, es, "change application", "error", "no longer at version 7")
	wantEntry(t, es, "create api key", "ok", shop.ID, id)
	wantEntry(t, es, "disable api key", "ok", id, "enabled false")
	wantEntry(t, es, "enable api key", "ok", id, "enabled true")
	wantEntry(t, es, "change api key", "ok", id, "never expires")
	wantEntry(t, es, "rotate api key", "ok", id, firstRotated, "grace 1h0m0s")
	wantEntry(t, es, "delete api key", "ok", "key "+id+", enabled true")
	wantTargets(t, es, "change application", "group-2", "Nobody")
	wantEntry(t, es, "delete api key", "error", id, "has no key")
	wantEntry(t, es, "delete application", "ok", shop.ID, "4 key(s)")
	logData, err := os.ReadFile(e.h.Path("conf", "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{secretPart, nk2.Value[len(nk2.Key.ID):], rotatedValue[len(rot.Key.ID):]} {
		if strings.Contains(string(logData), v) {
			t.Errorf("the audit log holds a key's secret %q", v)
		}
	}
}

// wantTargets finds an entry of action whose targets are exactly targets.
func wantTargets(t *testing.T, es []audit.Entry, action string, targets ...string) {
	t.Helper()
	for _, en := range es {
		if en.Action == action && strings.Join(en.Targets, " ") == strings.Join(targets, " ") {
			return
		}
	}
	t.Errorf("no audit entry %q with the targets %q", action, targets)
}

// TestKPSAPI: tables, a custom table defined and its rows written with
// versions; the Gatehouse tables read-only, a key's hash never answered.
func TestKPSAPI(t *testing.T) {
	e := appsEnv(t)
	a := e.do("GET", "/api/kps/group-2", "")
	a.MustCode(t, 200)
	var tables []tableView
	a.Decode(t, &tables)
	if len(tables) != 3 || tables[0].Alias != apps.KeysTable || tables[1].Alias != apps.AppsTable || tables[2].Alias != apps.ClientSecretsTable ||
		tables[0].ManagedBy != "/api/applications" || tables[1].ManagedBy != "/api/applications" || tables[2].ManagedBy != "/api/applications" {
		t.Errorf("tables: %s", a.Body)
	}

	def := `{"collection":"Shop","name":"Prices","alias":"prices","properties":[{"name":"sku","type":"string"},{"name":"amount","type":"long"},{"name":"tags","type":"list"},{"name":"attrs","type":"map"},{"name":"live","type":"boolean"}],"primaryKey":"sku","indexes":["live"]}`
	a = e.do("POST", "/api/kps/group-2", def)
	a.MustCode(t, 201)
	if a.Header.Get("Location") != "/api/kps/group-2/prices" {
		t.Errorf("Location %q", a.Header.Get("Location"))
	}
	e.do("POST", "/api/kps/group-2", def).MustCode(t, 200)
	e.do("POST", "/api/kps/group-2", strings.Replace(def, `"type":"long"`, `"type":"string"`, 1)).WantError(t, 400, "cannot change type")
	e.do("POST", "/api/kps/group-2", `{"collection":"Gatehouse","name":"Mine","alias":"mine","properties":[{"name":"k","type":"string"}],"primaryKey":"k"}`).WantError(t, 400, "read-only here")
	e.do("POST", "/api/kps/group-2", `{"collection":"Shop","name":"Keys","alias":"apikeys","properties":[{"name":"k","type":"string"}],"primaryKey":"k"}`).WantError(t, 400, "read-only here")
	e.do("POST", "/api/kps/group-2", `{"alias":"1bad"}`).WantError(t, 400, "alias")

	// Rows.
	a = e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"b-1","amount":1200,"tags":["x"],"attrs":{"k":"v"},"live":true}}`)
	a.MustCode(t, 201)
	var row rowView
	a.Decode(t, &row)
	if row.Key != "b-1" || row.Version != 1 || a.Header.Get("ETag") != `"1"` || a.Header.Get("Location") != "/api/kps/group-2/prices/b-1" {
		t.Errorf("inserted: %s %v", a.Body, a.Header)
	}
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"a-1","amount":5,"note":null}}`).WantError(t, 400, `no property "note"`, "sku, amount")
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"a-1","amount":"5"}}`).WantError(t, 400, `property "amount" is a long`)
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"a-1","amount":5.5}}`).WantError(t, 400, `"amount"`)
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"amount":5}}`).WantError(t, 400, "primary key")
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"b-1"}}`).WantError(t, 409, "exists")
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"c-1"},"version":2}`).WantError(t, 400, "version")
	e.do("POST", "/api/kps/group-2/nothing", `{"values":{"sku":"c-1"}}`).WantError(t, 404, `no table "nothing"`, "prices")
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"a-1","amount":null}}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"z-0","amount":0,"live":false}}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"z-1","live":"true"}}`).WantError(t, 400, `property "live" is a boolean`)
	long := strings.Repeat("x", 150)
	if a := e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"z-2","amount":"`+long+`"}}`); a.Code != 400 || !strings.Contains(a.Body, `"`+long[:99]+`…`) || strings.Contains(a.Body, long[:100]) {
		t.Errorf("a long wrong value: the message quotes it cut at 100 bytes: %s", a.Body)
	}
	e.do("DELETE", "/api/kps/group-2/prices/z-0", "").MustCode(t, 200)

	a = e.do("GET", "/api/kps/group-2/prices?limit=1", "")
	a.MustCode(t, 200)
	var rp rowsPage
	a.Decode(t, &rp)
	if len(rp.Rows) != 1 || rp.Rows[0].Key != "a-1" || rp.Next == "" {
		t.Fatalf("page 1: %s", a.Body)
	}
	e.do("GET", "/api/kps/group-2/prices?limit=1&cursor="+rp.Next, "").Decode(t, &rp)
	if len(rp.Rows) != 1 || rp.Rows[0].Key != "b-1" || rp.Rows[0].Values["amount"] != float64(1200) {
		t.Errorf("page 2: %+v", rp)
	}
	e.do("GET", "/api/kps/group-2/prices?cursor=@@@", "").WantError(t, 400, "cursor")
	// A query of an indexed property.
	e.do("POST", "/api/kps/group-2/prices", `{"values":{"sku":"c-1","live":false}}`).MustCode(t, 201)
	for q, want := range map[string]string{"live=true": "b-1", "live=false": "c-1"} {
		var qp rowsPage
		e.do("GET", "/api/kps/group-2/prices?property=live&value="+strings.TrimPrefix(q, "live="), "").Decode(t, &qp)
		if len(qp.Rows) != 1 || qp.Rows[0].Key != want {
			t.Errorf("query %s: %+v, want row %s", q, qp, want)
		}
	}
	e.do("GET", "/api/kps/group-2/prices?property=live&value=maybe", "").WantError(t, 400, `value "maybe"`, "is a boolean")
	e.do("GET", "/api/kps/group-2/prices?property=amount&value=1", "").WantError(t, 400, `"amount" of table "prices" is not indexed`, "live")
	e.do("GET", "/api/kps/group-2/prices?property=live", "").WantError(t, 400, "together")
	e.do("GET", "/api/kps/group-2/prices?value=x", "").WantError(t, 400, "together")
	e.do("DELETE", "/api/kps/group-2/prices/c-1", "").MustCode(t, 200)

	// Read, update with versions, delete.
	a = e.do("GET", "/api/kps/group-2/prices/b-1", "")
	a.MustCode(t, 200)
	if a.Header.Get("ETag") != `"1"` || !strings.Contains(a.Body, `"tags":["x"]`) {
		t.Errorf("row: %s", a.Body)
	}
	e.do("GET", "/api/kps/group-2/prices/zz", "").WantError(t, 404, "not found")
	e.do("GET", "/api/kps/group-2/nothing/zz", "").WantError(t, 404, `no table "nothing"`)
	e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"amount":1}}`, "If-Match", `"4"`).WantError(t, 409, "send its version")
	e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"sku":"other","amount":1}}`).WantError(t, 400, "does not change")
	e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"amount":1},"version":1}`, "If-Match", `"2"`).WantError(t, 400, "send one")
	e.do("PUT", "/api/kps/group-2/prices/zz", `{"values":{"amount":1}}`).WantError(t, 404, `kps get prices "zz"`)
	e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"price":1}}`).WantError(t, 400, `no property "price"`)
	a = e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"amount":7},"version":1}`)
	a.MustCode(t, 200)
	row = rowView{}
	a.Decode(t, &row)
	if row.Version != 2 || row.Values["amount"] != float64(7) || row.Values["tags"] != nil {
		t.Errorf("updated (values replaced): %s", a.Body)
	}
	a = e.do("PUT", "/api/kps/group-2/prices/b-1", `{"values":{"sku":"b-1","amount":8}}`)
	a.MustCode(t, 200)
	a.Decode(t, &row)
	if row.Version != 3 {
		t.Errorf("updated without a version: %s", a.Body)
	}
	e.do("DELETE", "/api/kps/group-2/prices/b-1", "", "If-Match", `"1"`).WantError(t, 409, "")
	e.do("DELETE", "/api/kps/group-2/prices/b-1", "", "If-Match", `"3"`).MustCode(t, 200)
	e.do("GET", "/api/kps/group-2/prices/b-1", "").WantError(t, 404, "")
	e.do("DELETE", "/api/kps/group-2/prices/b-1", "").WantError(t, 404, "")

	// An integer primary key: the path's key is parsed.
	e.do("POST", "/api/kps/group-2", `{"collection":"Shop","name":"Counters","alias":"counters","properties":[{"name":"n","type":"integer"},{"name":"v","type":"string"}],"primaryKey":"n"}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2/counters", `{"values":{"n":42,"v":"x"}}`).MustCode(t, 201)
	e.do("GET", "/api/kps/group-2/counters/42", "").MustCode(t, 200)
	e.do("GET", "/api/kps/group-2/counters/abc", "").WantError(t, 400, "is an integer")
	e.do("GET", "/api/kps/group-2/counters/99999999999", "").WantError(t, 400, "is an integer")
	e.do("GET", "/api/kps/group-2/counters/2147483648", "").WantError(t, 400, "is an integer")
	e.do("PUT", "/api/kps/group-2/counters/abc", `{"values":{"v":"y"}}`).WantError(t, 400, "is an integer")
	e.do("DELETE", "/api/kps/group-2/counters/abc", "").WantError(t, 400, "is an integer")
	e.do("POST", "/api/kps/group-2", `{"collection":"Shop","name":"Big counters","alias":"big","properties":[{"name":"n","type":"long"}],"primaryKey":"n"}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2/big", `{"values":{"n":99999999999}}`).MustCode(t, 201)
	e.do("GET", "/api/kps/group-2/big/99999999999", "").MustCode(t, 200)

	e.do("POST", "/api/kps/group-2/big", `{"values":{"n":9223372036854775807}}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2", `{"collection":"Shop","name":"Stock","alias":"stock","properties":[{"name":"sku","type":"string"},{"name":"qty","type":"integer"},{"name":"total","type":"long"}],"primaryKey":"sku","indexes":["qty","total"]}`).MustCode(t, 201)
	e.do("POST", "/api/kps/group-2/stock", `{"values":{"sku":"s1","qty":9,"total":9223372036854775807}}`).MustCode(t, 201)
	for _, q := range []string{"property=qty&value=9", "property=total&value=9223372036854775807"} {
		var sp rowsPage
		e.do("GET", "/api/kps/group-2/stock?"+q, "").Decode(t, &sp)
		if len(sp.Rows) != 1 || sp.Rows[0].Key != "s1" {
			t.Errorf("query %s: %+v", q, sp)
		}
	}
	e.do("GET", "/api/kps/group-2/stock?property=qty&value=9999999999", "").WantError(t, 400, "is an integer")
	e.do("GET", "/api/kps/group-2/stock?property=total&value=x", "").WantError(t, 400, "is a long")
	e.do("GET", "/api/kps/group-2/big/9223372036854775807", "").MustCode(t, 200)
	e.do("GET", "/api/kps/group-2/big/99999999999999999999", "").WantError(t, 400, "is a long")
	a = e.do("POST", "/api/kps/group-2", `{"collection":"Shop","name":"Spaced","alias":"spaced","properties":[{"name":"k","type":"string"}],"primaryKey":"k"}`)
	a.MustCode(t, 201)
	a = e.do("POST", "/api/kps/group-2/spaced", `{"values":{"k":"a b/c"}}`)
	a.MustCode(t, 201)
	if loc := a.Header.Get("Location"); loc != "/api/kps/group-2/spaced/a%20b%2Fc" {
		t.Errorf("Location %q", loc)
	}
	e.do("GET", "/api/kps/group-2/spaced/a%20b%2Fc", "").MustCode(t, 200)

	// The applications' tables: readable, never writable here, no hash.
	e.do("POST", "/api/applications/group-2", `{"name":"Shop"}`).MustCode(t, 201)
	var nk newKey
	e.do("POST", "/api/applications/group-2/Shop/keys", "").Decode(t, &nk)
	for _, p := range []string{"/api/kps/group-2/apikeys", "/api/kps/group-2/apikeys/" + nk.Key.ID} {
		a := e.do("GET", p, "")
		a.MustCode(t, 200)
		if strings.Contains(a.Body, "hash") || strings.Contains(a.Body, nk.Value[len(nk.Key.ID):]) || !strings.Contains(a.Body, nk.Key.ID) || !strings.Contains(a.Body, `"enabled":true`) {
			t.Errorf("GET %s: %s", p, a.Body)
		}
	}
	a = e.do("GET", "/api/kps/group-2/apikeys?property=appId&value="+nk.Key.AppID, "")
	if a.Code != 200 || !strings.Contains(a.Body, nk.Key.ID) || strings.Contains(a.Body, "hash") {
		t.Errorf("the keys of an application through a query: %s", a.Body)
	}
	e.do("POST", "/api/kps/group-2/apikeys", `{"values":{"id":"gk_x"}}`).WantError(t, 400, "written only through /api/applications")
	e.do("PUT", "/api/kps/group-2/apikeys/"+nk.Key.ID, `{"values":{"enabled":false}}`).WantError(t, 400, "read-only")
	e.do("DELETE", "/api/kps/group-2/applications/Shop", "").WantError(t, 400, "read-only")

	es := auditEntries(t, e)
	wantEntry(t, es, "define kps table", "ok", "group-2", "prices", "5 properties")
	wantEntry(t, es, "change kps table", "ok", "prices")
	wantEntry(t, es, "change kps table", "error", "prices", "cannot change type")
	wantEntry(t, es, "insert kps row", "ok", "prices", "b-1", "version 1")
	wantEntry(t, es, "insert kps row", "error", "prices", "exists")
	wantEntry(t, es, "update kps row", "ok", "b-1", "version 2")
	wantEntry(t, es, "delete kps row", "ok", "b-1", "version 3")
	wantEntry(t, es, "insert kps row", "error", "apikeys", "written only through")
	for _, en := range es {
		if en.Action == "insert kps row" && en.Outcome == "error" && en.Detail != `table "apikeys"` && strings.Contains(en.Detail, "apikeys") {
			t.Errorf("a refused insert's detail: %q, want only the table", en.Detail)
		}
	}
	for _, en := range es {
		if strings.Contains(en.Detail, "1200") {
			t.Errorf("an audit entry holds a row's value: %+v", en)
		}
	}
}

// TestKPSWhereTheStoreIs: the embedded store is managed only for a group
// whose instances are all on the ANM's host; other backends are opened
// wherever the instances are.
func TestKPSWhereTheStoreIs(t *testing.T) {
	e := appsEnv(t)
	e.do("POST", "/api/topology/groups", `{"name":"Empty"}`).MustCode(t, 201) // group-3
	e.do("GET", "/api/applications/group-3", "").WantError(t, 409, "no instance on the Admin Node Manager's host (host-1)", "kps.backend postgres", "group.yaml")
	e.do("GET", "/api/kps/Empty", "").WantError(t, 409, "no instance on the Admin Node Manager's host")
	e.do("GET", "/api/kps/group-9", "").WantError(t, 404, "group-9")
	// A configuration that cannot be read: 500 naming it.
	os.WriteFile(e.h.GroupConfFile("group-3"), []byte("kps: {backnd: x}\n"), 0o644)
	e.do("GET", "/api/kps/group-3", "").WantError(t, 500, "conf/group.yaml cannot be read")
	os.WriteFile(e.h.GroupConfFile("group-2"), []byte("kps: {backnd: x}\n"), 0o644)
	e.do("GET", "/api/kps/group-2", "").WantError(t, 500, "the configuration of the group's instances on this host cannot be read", "instance-1")
	os.WriteFile(e.h.GroupConfFile("group-2"), []byte(appsGroupYAML), 0o644)
	// A stored archive that was damaged on disk.
	first, err := deploy.Normalize([]byte("log: {level: info}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.archives.Add("group-3", first, deploy.Meta{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.h.GroupDeploymentsDir("group-3"), "1.tar.gz"), []byte("damaged"), 0o644)
	e.do("GET", "/api/kps/group-3", "").WantError(t, 500, "archive 1 of group-3 cannot be read")
	// With a stored archive, the group's newest archive is its configuration.
	arch, err := deploy.Normalize([]byte("kps: {backend: sqlite}\nlog: {level: info}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.archives.Add("group-3", arch, deploy.Meta{}); err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/kps/group-3", "").WantError(t, 409, "(kps.backend sqlite, archive 2)")

	// An instance of group-2 on another host: refused, naming it.
	_, err = e.store.Update(context.Background(), topology.Actor{User: "test"}, "test", 0, func(tp *topology.Topology) (string, error) {
		tp.Hosts = append(tp.Hosts, topology.Host{ID: tp.NextID(topology.KindHost), Name: "far"}) // host-2
		g, err := tp.Group("group-2")
		if err != nil {
			return "", err
		}
		g.Services = append(g.Services, topology.Service{ID: tp.NextID(topology.KindInstance), Name: "far", Type: topology.TypeGateway, HostID: "host-2"}) // instance-2
		return "test", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.do("GET", "/api/applications/group-2", "").WantError(t, 409, "instances on other hosts (instance-2 on host-2)")

	// A PostgreSQL group is not refused for where its instances are; its
	// store is opened (here it cannot be: this build has no postgres
	// backend, 503).
	e.do("POST", "/api/topology/groups", `{"name":"Far"}`).MustCode(t, 201) // group-4
	os.WriteFile(e.h.GroupConfFile("group-4"), []byte("kps:\n  backend: postgres\n  postgres: {host: 127.0.0.1, database: gh, user: gh}\n"), 0o644)
	e.do("GET", "/api/applications/group-4", "").WantError(t, 503, "cannot be opened")
	if _, err := os.Stat(apps.HashKeyFile(e.h, "group-4")); err == nil {
		t.Error("the ANM created a hashing key file for a group whose store keeps it")
	}
}

// TestKPSStores: one open store per group and settings, shared by the
// requests; replaced when the settings change (the old one closed when its
// last request is done); Close closes them and refuses more.
func TestKPSStores(t *testing.T) {
	// A lock left held would hang the test: fail it instead.
	stop := time.AfterFunc(20*time.Second, func() { panic("TestKPSStores: a get or a release did not return within 20 s (a lock left held)") })
	defer stop.Stop()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := newKPSStores(h, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	a1, rel1, err := s.get(ctx, "group-2", groupconf.KPS{Backend: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	a2, rel2, err := s.get(ctx, "group-2", groupconf.KPS{Backend: "sqlite", Cache: groupconf.KPSCache{TTL: groupconf.Duration(time.Minute)}})
	if err != nil || a2 != a1 {
		t.Fatalf("same settings but the cache: got another store (%v)", err)
	}
	rel2()
	b, relB, err := s.get(ctx, "group-2", groupconf.KPS{Backend: ""})
	if err != nil || b == a1 {
		t.Fatalf("changed settings: got the same store (%v)", err)
	}
	if _, err := a1.store.Tables(ctx); err != nil {
		t.Errorf("the replaced store is closed while a request still uses it: %v", err)
	}
	rel1()
	if _, err := a1.store.Tables(ctx); err == nil {
		t.Error("the replaced store is still open after its last request")
	}
	other, relO, err := s.get(ctx, "group-3", groupconf.KPS{})
	if err != nil || other == b {
		t.Fatalf("another group: %v", err)
	}
	relO()
	s.Close()
	if _, err := other.store.Tables(ctx); err == nil {
		t.Error("Close left an idle store open")
	}
	if _, err := b.store.Tables(ctx); err != nil {
		t.Errorf("Close closed a store in use: %v", err)
	}
	relB()
	if _, err := b.store.Tables(ctx); err == nil {
		t.Error("a store in use at Close is still open after its request")
	}
	if _, _, err := s.get(ctx, "group-2", groupconf.KPS{}); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("get after Close: %v", err)
	}
}

// TestKPSError: each kind of the store's errors has its status; a store
// that cannot answer does not tell the client why.
func TestKPSError(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", kps.ErrNotFound), 404},
		{fmt.Errorf("x: %w", kps.ErrExists), 409},
		{fmt.Errorf("x: %w", kps.ErrConflict), 409},
		{fmt.Errorf("x: %w", kps.ErrInvalid), 400},
		{kps.Unavailable(errors.New("dial tcp 10.0.0.9:5432: refused")), 503},
		{&apihttp.Error{Code: 418, Msg: "kept"}, 418},
	} {
		code, msg := apihttp.Classify(kpsError(c.err))
		if code != c.code {
			t.Errorf("%v: got %d, want %d", c.err, code, c.code)
		}
		if code == 503 && (strings.Contains(msg, "10.0.0.9") || !strings.Contains(msg, "retry later")) {
			t.Errorf("503 message %q: want no cause, and retry later", msg)
		}
	}
	if kpsError(nil) != nil {
		t.Error("kpsError(nil) is not nil")
	}
	if code, _ := apihttp.Classify(kpsError(errors.New("other"))); code != 500 {
		t.Errorf("an unclassified error: got %d, want 500", code)
	}
}

// TestKPSStoresConcurrent: requests that get and release a group's store
// while its settings flip never see it closed under them (run with -race
// by scripts/test).
func TestKPSStoresConcurrent(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := newKPSStores(h, slog.New(slog.DiscardHandler))
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 15 {
				conf := groupconf.KPS{Backend: []string{"", "sqlite"}[(i+j)%2]}
				gs, release, err := s.get(ctx, "group-2", conf)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := gs.store.Tables(ctx); err != nil {
					t.Errorf("a store in use was closed: %v", err)
				}
				release()
			}
		}()
	}
	wg.Wait()
}
