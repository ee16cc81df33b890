package kps

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestKeyString(t *testing.T) {
	tb := sample()
	for _, c := range []struct {
		prop string
		v    any
		want string
		err  string
	}{
		{"key", "abc", "abc", ""},
		{"key", "", "", ""},
		{"key", strings.Repeat("k", MaxKeyLen), strings.Repeat("k", MaxKeyLen), ""},
		{"key", strings.Repeat("k", MaxKeyLen+1), "", "1025 bytes, at most 1024"},
		{"key", "a\x00", "", "NUL"},
		{"key", "\xff", "", "UTF-8"},
		{"key", 5, "", "is a string: got int"},
		{"n", 5, "5", ""},
		{"n", int32(-7), "-7", ""},
		{"n", int64(math.MaxInt32), "2147483647", ""},
		{"n", int64(math.MinInt32), "-2147483648", ""},
		{"n", int64(math.MaxInt32) + 1, "", "out of range"},
		{"n", int64(math.MinInt32) - 1, "", "out of range"},
		{"n", math.MaxInt32 + 1, "", "out of range"},
		{"n", "5", "", "is a integer: got string"},
		{"big", int64(math.MinInt64), "-9223372036854775808", ""},
		{"big", 12, "12", ""},
		{"big", int32(12), "12", ""},
		{"big", 1.0, "", "got float64"},
		{"enabled", true, "true", ""},
		{"enabled", false, "false", ""},
		{"enabled", 1, "", "got int"},
		{"f", 1.5, "", "cannot be a key"},
		{"l", []string{"a"}, "", "cannot be a key"},
		{"zz", "a", "", `has no property "zz"`},
	} {
		got, err := tb.KeyString(c.prop, c.v)
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("KeyString(%s, %#v): got %q, %v, want %q", c.prop, c.v, got, err, c.want)
		}
		if c.err != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("KeyString(%s, %#v): got %q, %v, want ErrInvalid with %q", c.prop, c.v, got, err, c.err)
		}
	}
}

func TestNormalize(t *testing.T) {
	tb := sample()
	got, err := tb.Normalize(map[string]any{"n": 3, "big": int32(4), "f": float32(0.25), "l": []string(nil),
		"m": map[string]string(nil), "owner": nil, "enabled": false, "key": "é"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": int32(3), "big": int64(4), "f": 0.25, "l": []string{}, "m": map[string]string{}, "enabled": false, "key": "é"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize: got %#v, want %#v", got, want)
	}
	for name, vals := range map[string]map[string]any{
		"unknown":        {"zz": "a"},
		"nan":            {"f": math.NaN()},
		"+inf":           {"f": math.Inf(1)},
		"-inf":           {"f": math.Inf(-1)},
		"float32 inf":    {"f": float32(math.Inf(1))},
		"int double":     {"f": 1},
		"list of any":    {"l": []any{"a"}},
		"list utf8":      {"l": []string{"ok", "\xff"}},
		"map of any":     {"m": map[string]any{}},
		"map key utf8":   {"m": map[string]string{"\xff": "a"}},
		"map value utf8": {"m": map[string]string{"a": "\xff"}},
		"string utf8":    {"owner": "\xc3"},
		"bool string":    {"enabled": "true"},
		"long string":    {"big": "1"},
		"long float":     {"big": 1.0},
		"integer float":  {"n": 1.0},
	} {
		if _, err := tb.Normalize(vals); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `table "apikeys"`) {
			t.Errorf("Normalize %s: got %v, want ErrInvalid naming the table", name, err)
		}
	}
	if _, err := tb.Normalize(map[string]any{"zz": "a"}); err == nil || !strings.Contains(err.Error(), `table "apikeys" has no property "zz"`) {
		t.Errorf("Normalize of an unknown property: got %v", err)
	}
	bad := Property{Name: "x", Type: "weird"}
	if _, err := normalize(bad, "a"); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("normalize of an unknown type: got %v", err)
	}
	if _, err := decodeValue("weird", []byte(`"a"`)); err == nil {
		t.Errorf("decodeValue of an unknown type: no error")
	}
}

func TestEncodeDecode(t *testing.T) {
	tb := sample()
	vals := map[string]any{"id": "r1", "key": "k1", "enabled": true, "n": int32(-3), "big": int64(math.MaxInt64),
		"f": 1e-300, "l": []string{"x", ""}, "m": map[string]string{"a": "\u0000"}, "owner": "bob"}
	e, err := tb.Encode(vals)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != "r1" || !e.HasSecondary || e.Secondary != "k1" {
		t.Errorf("keys: got %q %v %q", e.Key, e.HasSecondary, e.Secondary)
	}
	wantIx := []IndexEntry{{"owner", "bob"}, {"enabled", "true"}, {"n", "-3"}, {"big", "9223372036854775807"}}
	if !reflect.DeepEqual(e.Index, wantIx) {
		t.Errorf("index: got %v, want %v", e.Index, wantIx)
	}
	if !reflect.DeepEqual(e.Values, vals) {
		t.Errorf("values: got %v", e.Values)
	}
	back, err := tb.Decode(e.Data)
	if err != nil || !reflect.DeepEqual(back, vals) {
		t.Errorf("Decode: got %#v, %v, want %#v", back, err, vals)
	}
	// Only present values are indexed; no secondary key, no entry.
	e, err = tb.Encode(map[string]any{"id": "r2", "n": 1})
	if err != nil || e.HasSecondary || e.Secondary != "" || len(e.Index) != 1 || e.Index[0] != (IndexEntry{"n", "1"}) {
		t.Errorf("sparse row: got %+v, %v", e, err)
	}
	for name, c := range map[string]struct {
		vals map[string]any
		want string
	}{
		"no key":        {map[string]any{"owner": "x"}, `the primary key "id" is missing`},
		"empty key":     {map[string]any{"id": ""}, `the primary key "id" is empty`},
		"nil key":       {map[string]any{"id": nil}, "is missing"},
		"key too long":  {map[string]any{"id": strings.Repeat("a", MaxKeyLen+1)}, "at most 1024"},
		"nul secondary": {map[string]any{"id": "a", "key": "\x00"}, "NUL"},
		"nul index":     {map[string]any{"id": "a", "owner": "\x00"}, "NUL"},
		"bad value":     {map[string]any{"id": "a", "n": "x"}, "is a integer"},
	} {
		_, err := tb.Encode(c.vals)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Encode %s: got %v, want ErrInvalid with %q", name, err, c.want)
		}
	}
	// The row size limit, exactly: {"id":"x","owner":"…"} is 21 bytes plus the string.
	small := Table{Collection: "c", Name: "n", Alias: "a", Properties: []Property{{Name: "id", Type: String}, {Name: "owner", Type: String}}, PrimaryKey: "id"}
	if _, err := small.Encode(map[string]any{"id": "x", "owner": strings.Repeat("o", MaxRowBytes-21)}); err != nil {
		t.Errorf("a row of exactly MaxRowBytes: %v", err)
	}
	if _, err := small.Encode(map[string]any{"id": "x", "owner": strings.Repeat("o", MaxRowBytes-20)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a row one byte over: got %v, want ErrInvalid", err)
	}
}

func TestDecode(t *testing.T) {
	tb := sample()
	got, err := tb.Decode([]byte(`{"id":"a","gone":5,"n":2147483647,"big":-9223372036854775808,"f":5e-324,"enabled":false,"l":[],"m":{}}`))
	want := map[string]any{"id": "a", "n": int32(math.MaxInt32), "big": int64(math.MinInt64), "f": 5e-324, "enabled": false, "l": []string{}, "m": map[string]string{}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Decode: got %#v, %v, want %#v", got, err, want)
	}
	for _, bad := range []string{
		``, `[]`, `{"id":5}`, `{"n":2147483648}`, `{"n":1.5}`, `{"big":9223372036854775808}`, `{"big":"1"}`,
		`{"f":"x"}`, `{"f":1e999}`, `{"enabled":1}`, `{"l":null}`, `{"m":null}`, `{"l":[1]}`, `{"m":{"a":1}}`, `{"n":"1"}`,
	} {
		if _, err := tb.Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), "stored row") {
			t.Errorf("Decode(%s): got %v, want an error about the stored row", bad, err)
		}
	}
}

func TestGenerated(t *testing.T) {
	tb := sample()
	tb.Properties = append(tb.Properties, Property{Name: "tok", Type: String, Generated: true})
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	in := map[string]any{"tok": nil, "owner": "o"}
	out := tb.FillGenerated(in)
	if len(in) != 2 || in["tok"] != nil {
		t.Errorf("FillGenerated changed its input: %v", in)
	}
	id, _ := out["id"].(string)
	tok, _ := out["tok"].(string)
	if !uuid.MatchString(id) || !uuid.MatchString(tok) || id == tok || out["owner"] != "o" || len(out) != 3 {
		t.Errorf("FillGenerated: got %v", out)
	}
	out = tb.FillGenerated(map[string]any{"id": "mine", "tok": ""})
	if out["id"] != "mine" || out["tok"] != "" {
		t.Errorf("FillGenerated replaced given values: %v", out)
	}
	if out := tb.FillGenerated(nil); len(out) != 2 {
		t.Errorf("FillGenerated(nil): got %v", out)
	}
	stored := map[string]any{"id": "s", "tok": "old", "owner": "was"}
	out = tb.KeepGenerated(map[string]any{"id": "s", "tok": nil}, stored)
	if !reflect.DeepEqual(out, map[string]any{"id": "s", "tok": "old"}) {
		t.Errorf("KeepGenerated: got %v", out)
	}
	out = tb.KeepGenerated(map[string]any{"tok": "new"}, stored)
	if !reflect.DeepEqual(out, map[string]any{"tok": "new", "id": "s"}) {
		t.Errorf("KeepGenerated with a given value: got %v", out)
	}
	if out := tb.KeepGenerated(nil, map[string]any{"owner": "x"}); out == nil || len(out) != 0 {
		t.Errorf("KeepGenerated(nil): got %#v", out)
	}
	seen := map[string]bool{}
	const n = 2000
	var ids []string
	for range n {
		u := NewUUID()
		if seen[u] || !uuid.MatchString(u) {
			t.Fatalf("NewUUID: %q (seen %v)", u, seen[u])
		}
		seen[u] = true
		ids = append(ids, strings.ReplaceAll(u, "-", ""))
	}
	// Every random hex digit takes all its values, independently of the
	// others: the fixed bits are only the version (digit 12) and the two
	// top bits of the variant (digit 16).
	for i := range 32 {
		values := map[byte]bool{}
		for _, id := range ids {
			values[id[i]] = true
		}
		want := 16
		switch i {
		case 12:
			want = 1
		case 16:
			want = 4
		}
		if len(values) != want {
			t.Errorf("UUID digit %d takes %d values, want %d", i, len(values), want)
		}
		for j := i + 1; j < 32 && want > 1; j++ {
			same := 0
			for _, id := range ids {
				if id[i] == id[j] {
					same++
				}
			}
			if same > n/4 {
				t.Errorf("UUID digits %d and %d are equal in %d of %d", i, j, same, n)
			}
		}
	}
}

func TestCursor(t *testing.T) {
	for _, k := range []string{"a", "ключ", "a/b+c=", strings.Repeat("z", MaxKeyLen)} {
		c := EncodeCursor(k)
		if strings.ContainsAny(c, "+/=") {
			t.Errorf("cursor %q is not URL-safe", c)
		}
		got, err := DecodeCursor(c)
		if err != nil || got != k {
			t.Errorf("DecodeCursor(EncodeCursor(%.20q)): got %q, %v", k, got, err)
		}
	}
	if got, err := DecodeCursor(""); got != "" || err != nil {
		t.Errorf("DecodeCursor(\"\"): got %q, %v", got, err)
	}
	for _, c := range []string{"!", "a", "YQ==", "YWJj!", "YWJjZA=", EncodeCursor(strings.Repeat("z", MaxKeyLen+1))} {
		if _, err := DecodeCursor(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeCursor(%.20q): got %v, want ErrInvalid", c, err)
		}
	}
	for limit, want := range map[int]int{-1: DefaultLimit, 0: DefaultLimit, 1: 1, 7: 7, MaxLimit: MaxLimit, MaxLimit + 1: MaxLimit} {
		if got := (Page{Limit: limit}).PageLimit(); got != want {
			t.Errorf("PageLimit(%d): got %d, want %d", limit, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	cause := errors.New("boom")
	for _, c := range []struct {
		err  *Error
		want string
	}{
		{&Error{Op: "get", Err: cause}, "kps get: boom"},
		{&Error{Op: "get", Table: "t", Err: cause}, "kps get t: boom"},
		{&Error{Op: "get", Table: "t", Key: `a"b`, Err: cause}, `kps get t "a\"b": boom`},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error(): got %q, want %q", got, c.want)
		}
		if !errors.Is(c.err, cause) {
			t.Errorf("Unwrap lost the cause")
		}
	}
	if Unavailable(nil) != ErrUnavailable {
		t.Errorf("Unavailable(nil): want ErrUnavailable itself")
	}
	u := Unavailable(cause)
	if !errors.Is(u, ErrUnavailable) || !errors.Is(u, cause) || u.Error() != "kps: store unavailable: boom" {
		t.Errorf("Unavailable(cause): got %v", u)
	}
	if Unavailable(u) != u {
		t.Errorf("Unavailable twice wraps twice")
	}
	inv := Invalid("x %d", 5)
	if !errors.Is(inv, ErrInvalid) || inv.Error() != "kps: invalid: x 5" {
		t.Errorf("Invalid: got %v", inv)
	}
	nt := NoTable("get", "zz")
	if !errors.Is(nt, ErrNotFound) || nt.Error() != "kps get zz: kps: not found: no table with this alias" {
		t.Errorf("NoTable: got %v", nt)
	}
}

func TestDefs(t *testing.T) {
	var d Defs
	if _, ok := d.Lookup("a"); ok || d.Gen() != 0 || len(d.All()) != 0 {
		t.Errorf("zero Defs is not empty")
	}
	a, b := sample(), sample()
	b.Alias = "aaa"
	d.Replace(7, map[string]*Table{a.Alias: &a, b.Alias: &b})
	if got, ok := d.Lookup("apikeys"); !ok || got != &a || d.Gen() != 7 {
		t.Errorf("Lookup: got %v %v gen %d", got, ok, d.Gen())
	}
	all := d.All()
	if len(all) != 2 || all[0].Alias != "aaa" || all[1].Alias != "apikeys" {
		t.Errorf("All: got %v", all)
	}
	all[1].Properties[0].Name = "changed"
	if a.Properties[0].Name != "id" {
		t.Errorf("All returns shared definitions")
	}
	back, err := UnmarshalTable(MarshalTable(&a))
	if err != nil || !back.Equal(&a) {
		t.Errorf("UnmarshalTable(MarshalTable): got %v, %v", back, err)
	}
	var syn *json.SyntaxError
	if _, err := UnmarshalTable([]byte("{")); !errors.As(err, &syn) || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stored table definition") {
		t.Errorf("UnmarshalTable of bad JSON: got %v", err)
	}
	_, err = UnmarshalTable([]byte(`{"alias":"x"}`))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) || err.Error() != `kps: store unavailable: stored table definition: kps: invalid: table "x": collection "": want 1 to 128 bytes of text without control characters` {
		t.Errorf("UnmarshalTable of an invalid table: got %v, want ErrUnavailable only", err)
	}
}
