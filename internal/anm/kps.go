package anm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/internal/apihttp"
	"github.com/gatehouse-gw/gatehouse/internal/apps"
	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/oauth"
	"github.com/gatehouse-gw/gatehouse/internal/oauth/authorize"
)

// The Key Property Store of a group, table by table (docs/applications.md,
// "The KPS API"):
//
//	GET|POST        /api/kps/{groupID}                 the tables (collection, name, alias, properties); define one
//	GET|POST        /api/kps/{groupID}/{alias}         rows (paged), a new row
//	GET|PUT|DELETE  /api/kps/{groupID}/{alias}/{key}   one row by its primary key
//
// The tables of the Gatehouse collection (applications, apikeys) are read
// here but written only through /api/applications, which keeps keys
// hashed and applications consistent with their keys; the hash property of
// a key is never answered.

// hiddenProperties are the properties of a table whose values the API
// never answers.
var hiddenProperties = map[string][]string{apps.KeysTable: {"hash"}, apps.ClientSecretsTable: {"hash"}, authorize.UsersTable: {"passwordHash"}}

// sealed refuses reading the rows of the authorization server's tables
// (tokens, codes, grant families, assertions): their primary keys are the
// hashes of live credentials. An application's tokens are listed, without
// them, through /api/applications.
func sealed(t kps.Table) error {
	if t.Collection == oauth.Collection {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("table %q (%s) holds the authorization server's tokens, codes and grants, keyed by hashes of live credentials: its rows are not shown here (docs/oauth.md)", t.Alias, t.Collection)}
	}
	return nil
}

// kpsArea is /api/kps. Row writes are recorded in the audit log
// (recordKPS), refused ones too; the entries name the row, not its values.
func (a *API) kpsArea() area {
	rd, wr := "kps.read", "kps.write"
	by := recorded("recordKPS (the row's key, never its values), refused changes too")
	return area{name: "kps", routes: []route{
		{pattern: "/api/kps/{groupID}", ops: map[string]op{
			http.MethodGet:  read(a.listTables, "listKPSTables", rd),
			http.MethodPost: change(a.defineTable, "defineKPSTable", by, wr),
		}},
		{pattern: "/api/kps/{groupID}/{alias}", ops: map[string]op{
			http.MethodGet:  read(a.listRows, "listKPSRows", rd),
			http.MethodPost: change(a.insertRow, "insertKPSRow", by, wr),
		}},
		{pattern: "/api/kps/{groupID}/{alias}/{key}", ops: map[string]op{
			http.MethodGet:    read(a.getRow, "getKPSRow", rd),
			http.MethodPut:    change(a.updateRow, "updateKPSRow", by, wr),
			http.MethodDelete: change(a.deleteRow, "deleteKPSRow", by, wr),
		}},
	}}
}

// tableView is a table as GET /api/kps/{groupID} shows it.
type tableView struct {
	kps.Table
	// ManagedBy names the API that writes the table when it is not
	// /api/kps (the applications' tables).
	ManagedBy string `json:"managedBy,omitempty"`
}

// rowView is a row as the API shows it.
type rowView struct {
	Key     string         `json:"key"` // the primary key's canonical text
	Values  map[string]any `json:"values"`
	Version int64          `json:"version"`
}

// rowsPage is the answer of GET /api/kps/{groupID}/{alias}.
type rowsPage struct {
	Rows []rowView `json:"rows"`
	Next string    `json:"next,omitempty"`
}

// rowBody is the body of POST and PUT rows.
type rowBody struct {
	Values  map[string]json.RawMessage `json:"values"`
	Version int64                      `json:"version"`
}

const rowFields = `"values" (an object: property → value) and in PUT "version"`

// managedBy says which API writes a table, "" for /api/kps. The
// authorization server's tables (collection OAuth) are written by the
// server and revoked through /api/applications: a row changed by hand
// could revive a revoked grant.
func managedBy(t kps.Table) string {
	if t.Collection == apps.Collection || t.Collection == oauth.Collection {
		return "/api/applications"
	}
	return ""
}

// findTable is the table alias of gs.
func findTable(ctx context.Context, g groupKPS, gs *groupStore, alias string) (kps.Table, error) {
	tables, err := gs.store.Tables(ctx)
	if err != nil {
		return kps.Table{}, err
	}
	var names []string
	for _, t := range tables {
		if t.Alias == alias {
			return t, nil
		}
		names = append(names, t.Alias)
	}
	return kps.Table{}, &apihttp.Error{Code: http.StatusNotFound, Msg: fmt.Sprintf("group %s's key property store has no table %q; its tables: %s", g.group.ID, alias, strings.Join(names, ", "))}
}

// view is r as the API shows it: without hidden properties.
func view(t kps.Table, r kps.Row) rowView {
	v := rowView{Values: r.Values, Version: r.Version}
	if hide := hiddenProperties[t.Alias]; len(hide) > 0 {
		v.Values = make(map[string]any, len(r.Values))
		for k, x := range r.Values {
			if !slices.Contains(hide, k) {
				v.Values[k] = x
			}
		}
	}
	if v.Values == nil {
		v.Values = map[string]any{}
	}
	v.Key, _ = t.KeyString(t.PrimaryKey, r.Values[t.PrimaryKey])
	return v
}

// keyValue turns the key of a path into the primary key's type.
func keyValue(t kps.Table, s string) (any, error) {
	p, _ := t.Property(t.PrimaryKey)
	switch p.Type {
	case kps.Integer, kps.Long:
		bits := 64
		if p.Type == kps.Integer {
			bits = 32
		}
		n, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("key %q: the primary key %q of table %q is %s", s, p.Name, t.Alias, aType(p.Type))}
		}
		if p.Type == kps.Integer {
			// mutate:equivalent delete-stmt the store takes an int64 for an integer property too (kps normalize), within range as ParseInt checked
			return int32(n), nil
		}
		return n, nil
	}
	return s, nil
}

// whereValue is the value of ?property=&value= as property's type: only
// an indexed property can be queried.
func whereValue(t kps.Table, property, value string, hasValue bool) (any, error) {
	p, ok := t.Property(property)
	switch {
	case !ok || !hasValue:
		return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("give property=NAME and value=V together, NAME an indexed property of table %q (%s)", t.Alias, strings.Join(t.Indexes, ", "))}
	case !t.Indexed(property):
		return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("property %q of table %q is not indexed; its indexed properties: %s (use the primary key's path for %q)", property, t.Alias, strings.Join(t.Indexes, ", "), t.PrimaryKey)}
	}
	var v any = value
	var err error
	switch p.Type {
	case kps.Boolean:
		v, err = strconv.ParseBool(value)
	case kps.Integer:
		var n int64
		n, err = strconv.ParseInt(value, 10, 32)
		v = int32(n)
	case kps.Long:
		v, err = strconv.ParseInt(value, 10, 64)
	}
	if err != nil {
		return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("value %q: property %q of table %q is %s", value, property, t.Alias, aType(p.Type))}
	}
	return v, nil
}

// rowValues checks the values of a body against t and gives them their
// declared types. A null is an absent value.
func rowValues(t kps.Table, raw map[string]json.RawMessage) (map[string]any, error) {
	out := make(map[string]any, len(raw))
	for name, msg := range raw {
		p, ok := t.Property(name)
		if !ok {
			var names []string
			for _, p := range t.Properties {
				names = append(names, p.Name)
			}
			return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("table %q has no property %q; its properties: %s", t.Alias, name, strings.Join(names, ", "))}
		}
		msg = bytes.TrimSpace(msg)
		if bytes.Equal(msg, []byte("null")) {
			continue
		}
		one, _ := json.Marshal(map[string]json.RawMessage{name: msg})
		v, err := t.Decode(one)
		if err == nil && !jsonKindFits(p.Type, msg) {
			err = fmt.Errorf("a JSON %c… for a %s", msg[0], p.Type)
		}
		if err != nil {
			return nil, &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("table %q: property %q is %s: %s is not one", t.Alias, name, aType(p.Type), truncateText(string(msg), 100)), Err: err}
		}
		out[name] = v[name]
	}
	return out, nil
}

// jsonKindFits says whether a JSON value (not null) is of the kind a
// property of type t takes: the store's decoder is lenient (a number in a
// string), the API is not.
func jsonKindFits(t kps.Type, msg []byte) bool {
	c := msg[0]
	switch t {
	case kps.String:
		return c == '"'
	case kps.Boolean:
		return c == 't' || c == 'f'
	case kps.Integer, kps.Long, kps.Double:
		return c == '-' || c >= '0' && c <= '9'
	case kps.List:
		return c == '['
	case kps.Map:
		return c == '{'
	}
	return false
}

// aType is a property type with its article: "an integer", "a long".
func aType(t kps.Type) string {
	if t == kps.Integer {
		return "an integer"
	}
	return "a " + string(t)
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// writable refuses writes to a table that another API manages.
func writable(t kps.Table) error {
	if by := managedBy(t); by != "" {
		return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("table %q (%s) is written only through %s, which keeps keys, secrets and passwords hashed and applications consistent with them; it is read-only here", t.Alias, t.Collection, by)}
	}
	return nil
}

// GET /api/kps/{groupID}
func (a *API) listTables(w http.ResponseWriter, r *http.Request) {
	out := []tableView{}
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		tables, err := gs.store.Tables(r.Context())
		for _, t := range tables {
			out = append(out, tableView{Table: t, ManagedBy: managedBy(t)})
		}
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// POST /api/kps/{groupID} {a table definition}: creates a custom table,
// or changes one compatibly (new properties, indexes, a secondary key);
// a change of a property's type or of the primary key is refused (400).
func (a *API) defineTable(w http.ResponseWriter, r *http.Request) {
	gid := r.PathValue("groupID")
	var t kps.Table
	var created bool
	// ReadBody validates the definition (kps.Table is a Validator).
	err := kpsError(apihttp.ReadBody(w, r, &t, `"collection", "name", "alias", "properties" ([{"name","type","generated"}]), "primaryKey", "secondaryKey", "indexes"`))
	if err == nil {
		err = writable(t)
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			tables, err := gs.store.Tables(r.Context())
			if err != nil {
				return err
			}
			created = true
			for _, old := range tables {
				if old.Alias == t.Alias {
					created = false
					if err := writable(old); err != nil {
						return err
					}
				}
			}
			return gs.store.Define(r.Context(), t)
		})
	}
	action := "change kps table"
	if created {
		action = "define kps table"
	}
	detail := fmt.Sprintf("table %q (%q in collection %q): %d properties, primary key %q", t.Alias, t.Name, t.Collection, len(t.Properties), t.PrimaryKey)
	a.recordKPS(r, action, []string{gid, t.Alias}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/api/kps/"+gid+"/"+t.Alias)
	}
	apihttp.WriteResult(w, code, tableView{Table: t})
}

// GET /api/kps/{groupID}/{alias}?limit=&cursor=[&property=&value=]: with
// property and value, the rows whose indexed property has that value.
func (a *API) listRows(w http.ResponseWriter, r *http.Request) {
	page, err := pageOf(r)
	out := rowsPage{Rows: []rowView{}}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			t, err := findTable(r.Context(), g, gs, r.PathValue("alias"))
			if err != nil {
				return err
			}
			if err := sealed(t); err != nil {
				return err
			}
			var res kps.Result
			if q := r.URL.Query(); q.Has("property") || q.Has("value") {
				v, err := whereValue(t, q.Get("property"), q.Get("value"), q.Has("value"))
				if err != nil {
					return err
				}
				res, err = gs.store.Query(r.Context(), t.Alias, q.Get("property"), v, page)
			} else {
				res, err = gs.store.List(r.Context(), t.Alias, page)
			}
			for _, row := range res.Rows {
				out.Rows = append(out.Rows, view(t, row))
			}
			out.Next = res.Next
			return err
		})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, out)
}

// GET /api/kps/{groupID}/{alias}/{key}
func (a *API) getRow(w http.ResponseWriter, r *http.Request) {
	var out rowView
	err := a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
		t, err := findTable(r.Context(), g, gs, r.PathValue("alias"))
		if err != nil {
			return err
		}
		if err := sealed(t); err != nil {
			return err
		}
		key, err := keyValue(t, r.PathValue("key"))
		if err != nil {
			return err
		}
		row, err := gs.store.Get(r.Context(), t.Alias, key)
		out = view(t, row)
		return err
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, out, out.Version)
}

// POST /api/kps/{groupID}/{alias} {"values": {…}}: a new row (generated
// properties filled).
func (a *API) insertRow(w http.ResponseWriter, r *http.Request) {
	gid, alias := r.PathValue("groupID"), r.PathValue("alias")
	var b rowBody
	var out rowView
	err := apihttp.ReadBody(w, r, &b, rowFields)
	if err == nil && b.Version != 0 {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: `a new row has no "version" yet; leave it out`}
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			t, err := findTable(r.Context(), g, gs, alias)
			if err == nil {
				err = writable(t)
			}
			if err != nil {
				return err
			}
			vals, err := rowValues(t, b.Values)
			if err != nil {
				return err
			}
			row, err := gs.store.Insert(r.Context(), t.Alias, vals)
			if err == nil {
				out = view(t, row)
			}
			return err
		})
	}
	a.recordKPS(r, "insert kps row", []string{gid, alias, out.Key}, rowDetail(alias, out), err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/kps/"+gid+"/"+alias+"/"+url.PathEscape(out.Key))
	writeVersioned(w, http.StatusCreated, out, out.Version)
}

func rowDetail(alias string, v rowView) string {
	if v.Key == "" {
		return fmt.Sprintf("table %q", alias)
	}
	return fmt.Sprintf("table %q, row %q, version %d", alias, v.Key, v.Version)
}

// PUT /api/kps/{groupID}/{alias}/{key} {"values": {…}, "version"}: the
// row's values become the ones given; with a version (If-Match, ?version
// or "version") only if the row is still at it.
func (a *API) updateRow(w http.ResponseWriter, r *http.Request) {
	gid, alias, keyText := r.PathValue("groupID"), r.PathValue("alias"), r.PathValue("key")
	var b rowBody
	var out rowView
	expect, err := requestVersion(r, "row's version")
	if err == nil {
		err = apihttp.ReadBody(w, r, &b, rowFields)
	}
	if err == nil && expect != 0 && b.Version != 0 && expect != b.Version {
		err = &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf(`If-Match says version %d and "version" %d; send one`, expect, b.Version)}
	}
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			t, err := findTable(r.Context(), g, gs, alias)
			if err == nil {
				err = writable(t)
			}
			if err != nil {
				return err
			}
			key, err := keyValue(t, keyText)
			if err != nil {
				return err
			}
			vals, err := rowValues(t, b.Values)
			if err != nil {
				return err
			}
			if v, ok := vals[t.PrimaryKey]; ok {
				if s, _ := t.KeyString(t.PrimaryKey, v); s != keyText {
					return &apihttp.Error{Code: http.StatusBadRequest, Msg: fmt.Sprintf("the body's %q is %q and the path's key %q; a row's primary key does not change (insert a new row and delete this one)", t.PrimaryKey, s, keyText)}
				}
			}
			vals[t.PrimaryKey] = key
			version := max(expect, b.Version)
			if version == 0 {
				cur, err := gs.store.Get(r.Context(), t.Alias, key)
				if err != nil {
					return err
				}
				version = cur.Version
			}
			row, err := gs.store.Update(r.Context(), t.Alias, kps.Row{Values: vals, Version: version})
			if err == nil {
				out = view(t, row)
			}
			return err
		})
	}
	a.recordKPS(r, "update kps row", []string{gid, alias, keyText}, rowDetail(alias, out), err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, out, out.Version)
}

// DELETE /api/kps/{groupID}/{alias}/{key}: with a version (If-Match or
// ?version) only if the row is still at it.
func (a *API) deleteRow(w http.ResponseWriter, r *http.Request) {
	gid, alias, keyText := r.PathValue("groupID"), r.PathValue("alias"), r.PathValue("key")
	expect, err := requestVersion(r, "row's version")
	if err == nil {
		err = a.withGroupStore(r, func(g groupKPS, gs *groupStore) error {
			gid = g.group.ID
			t, err := findTable(r.Context(), g, gs, alias)
			if err == nil {
				err = writable(t)
			}
			if err != nil {
				return err
			}
			key, err := keyValue(t, keyText)
			if err != nil {
				return err
			}
			return gs.store.Delete(r.Context(), t.Alias, key, expect)
		})
	}
	detail := fmt.Sprintf("table %q, row %q", alias, keyText)
	if expect != 0 {
		detail += fmt.Sprintf(", version %d", expect)
	}
	a.recordKPS(r, "delete kps row", []string{gid, alias, keyText}, detail, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	apihttp.WriteResult(w, http.StatusOK, map[string]string{"key": keyText})
}
