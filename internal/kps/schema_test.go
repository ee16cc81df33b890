package kps

import (
	"errors"
	"strings"
	"testing"
)

func sample() Table {
	return Table{
		Collection: "Keys", Name: "API keys", Alias: "apikeys",
		Properties: []Property{
			{Name: "id", Type: String, Generated: true},
			{Name: "key", Type: String},
			{Name: "enabled", Type: Boolean},
			{Name: "n", Type: Integer},
			{Name: "big", Type: Long},
			{Name: "f", Type: Double},
			{Name: "l", Type: List},
			{Name: "m", Type: Map},
			{Name: "owner", Type: String},
		},
		PrimaryKey: "id", SecondaryKey: "key", Indexes: []string{"owner", "enabled", "n", "big"},
	}
}

func TestValidate(t *testing.T) {
	ok := sample()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid table: %v", err)
	}
	long := strings.Repeat("a", MaxNameLen)
	longLabel := strings.Repeat("é", MaxLabelLen/2)
	for _, c := range []struct {
		name string
		edit func(*Table)
		want string // "" = valid
	}{
		{"alias max", func(t *Table) { t.Alias = long }, ""},
		{"alias too long", func(t *Table) { t.Alias = long + "a" }, "alias"},
		{"alias empty", func(t *Table) { t.Alias = "" }, `table "API keys": alias ""`},
		{"alias digit first", func(t *Table) { t.Alias = "1a" }, "alias"},
		{"alias dash first", func(t *Table) { t.Alias = "-a" }, "alias"},
		{"alias dot first", func(t *Table) { t.Alias = ".a" }, "alias"},
		{"alias underscore first", func(t *Table) { t.Alias = "_a1-b.c" }, ""},
		{"alias upper", func(t *Table) { t.Alias = "Zz" }, ""},
		{"alias digit second", func(t *Table) { t.Alias = "a1" }, ""},
		{"alias letters and digits", func(t *Table) { t.Alias = "Aa09zZ" }, ""},
		{"alias A", func(t *Table) { t.Alias = "A" }, ""},
		{"alias Z", func(t *Table) { t.Alias = "Z" }, ""},
		{"alias z", func(t *Table) { t.Alias = "z" }, ""},
		{"alias slash second", func(t *Table) { t.Alias = "a/" }, "alias"},
		{"alias colon second", func(t *Table) { t.Alias = "a:" }, "alias"},
		{"alias dash second", func(t *Table) { t.Alias = "a-" }, ""},
		{"alias 65", func(t *Table) { t.Alias = strings.Repeat("b", 65) }, "alias"},
		{"alias space", func(t *Table) { t.Alias = "a b" }, "alias"},
		{"alias slash", func(t *Table) { t.Alias = "a/b" }, "alias"},
		{"alias colon", func(t *Table) { t.Alias = "a:" }, "alias"},
		{"alias at", func(t *Table) { t.Alias = "a@" }, "alias"},
		{"alias bracket", func(t *Table) { t.Alias = "a[" }, "alias"},
		{"alias backquote", func(t *Table) { t.Alias = "a`" }, "alias"},
		{"alias brace", func(t *Table) { t.Alias = "a{" }, "alias"},
		{"alias unicode", func(t *Table) { t.Alias = "aé" }, "alias"},
		{"collection empty", func(t *Table) { t.Collection = "" }, "collection"},
		{"collection max", func(t *Table) { t.Collection = longLabel }, ""},
		{"collection too long", func(t *Table) { t.Collection = longLabel + "a" }, "collection"},
		{"collection control", func(t *Table) { t.Collection = "a\x1fb" }, "collection"},
		{"collection space", func(t *Table) { t.Collection = " a b " }, ""},
		{"collection del", func(t *Table) { t.Collection = "a\x7f" }, "collection"},
		{"collection bad utf8", func(t *Table) { t.Collection = "a\xff" }, "collection"},
		{"name empty", func(t *Table) { t.Name = "" }, "name"},
		{"name newline", func(t *Table) { t.Name = "a\n" }, "name"},
		{"no properties", func(t *Table) { t.Properties = nil }, "0 properties"},
		{"max properties", func(t *Table) {
			t.Properties = make([]Property, MaxProperties)
			for i := range t.Properties {
				t.Properties[i] = Property{Name: "p" + strings.Repeat("x", i%60) + string(rune('a'+i/60)), Type: String}
			}
			t.Properties[0].Name = "id"
			t.SecondaryKey, t.Indexes = "", nil
		}, ""},
		{"too many properties", func(t *Table) {
			t.Properties = make([]Property, MaxProperties+1)
		}, "257 properties"},
		{"property name", func(t *Table) { t.Properties[1].Name = "a b" }, `property 2: name "a b"`},
		{"property twice", func(t *Table) { t.Properties[2].Name = "key" }, `property "key" is declared twice`},
		{"property type", func(t *Table) { t.Properties[1].Type = "strin" }, `type "strin": want one of string, boolean, integer, long, double, list, map`},
		{"generated long", func(t *Table) { t.Properties[4].Generated = true }, "only a string property can be generated"},
		{"no primary key", func(t *Table) { t.PrimaryKey = "" }, `primary key "" is not a property`},
		{"primary key unknown", func(t *Table) { t.PrimaryKey = "x" }, `primary key "x"`},
		{"primary key boolean", func(t *Table) { t.PrimaryKey = "enabled"; t.Indexes = t.Indexes[2:] }, "is a boolean"},
		{"primary key double", func(t *Table) { t.PrimaryKey = "f" }, "is a double"},
		{"primary key long", func(t *Table) { t.PrimaryKey = "big"; t.Indexes = t.Indexes[:3] }, ""},
		{"primary key integer", func(t *Table) { t.PrimaryKey = "n"; t.Indexes = []string{"owner"} }, ""},
		{"no secondary key", func(t *Table) { t.SecondaryKey = "" }, ""},
		{"secondary unknown", func(t *Table) { t.SecondaryKey = "x" }, `secondary key "x" is not a property`},
		{"secondary is primary", func(t *Table) { t.SecondaryKey = "id" }, "is the primary key"},
		{"secondary list", func(t *Table) { t.SecondaryKey = "l" }, "is a list"},
		{"secondary boolean", func(t *Table) { t.SecondaryKey = "enabled"; t.Indexes = t.Indexes[2:] }, "is a boolean"},
		{"secondary long", func(t *Table) { t.SecondaryKey = "big"; t.Indexes = t.Indexes[:3] }, ""},
		{"index unknown", func(t *Table) { t.Indexes = []string{"x"} }, `index "x" is not a property`},
		{"index twice", func(t *Table) { t.Indexes = []string{"owner", "owner"} }, "declared twice"},
		{"index primary", func(t *Table) { t.Indexes = []string{"id"} }, "is a key already"},
		{"index secondary", func(t *Table) { t.Indexes = []string{"key"} }, "is a key already"},
		{"index double", func(t *Table) { t.Indexes = []string{"f"} }, "is a double"},
		{"index map", func(t *Table) { t.Indexes = []string{"m"} }, "is a map"},
		{"index list", func(t *Table) { t.Indexes = []string{"l"} }, "is a list"},
	} {
		tb := ok.Clone()
		c.edit(&tb)
		err := tb.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: got %v, want valid", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("%s: got %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("Clone shares with the original: %v", err)
	}
}

func TestParseTables(t *testing.T) {
	good := `[{"collection": "Keys", "name": "API keys", "alias": "apikeys",
  "properties": [{"name": "id", "type": "string", "generated": true}, {"name": "owner", "type": "string"}],
  "primaryKey": "id", "indexes": ["owner"]}]`
	tables, err := ParseTables([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := Table{Collection: "Keys", Name: "API keys", Alias: "apikeys",
		Properties: []Property{{Name: "id", Type: String, Generated: true}, {Name: "owner", Type: String}},
		PrimaryKey: "id", Indexes: []string{"owner"}}
	if len(tables) != 1 || !tables[0].Equal(&want) {
		t.Errorf("got %+v, want %+v", tables, want)
	}
	if tables, err := ParseTables([]byte("[]")); err != nil || len(tables) != 0 {
		t.Errorf("empty list: got %v, %v", tables, err)
	}
	for _, c := range []struct{ in, want string }{
		{"", "EOF"},
		{"[", "unexpected EOF"},
		{"[\n{\n\"alias\": }", "line 3:"},
		{"[\n{\"alias\": 5}]", `line 2: alias: got a JSON number, want string`},
		{"[{\"nope\": 1}]", `unknown field "nope"`},
		{"[] []", "line 1: data after the array"},
		{"[]\n\n{", "line 3: data after the array"},
		{"{}", "got a JSON object"},
		{good[:len(good)-1] + ",\n" + good[1:], `table "apikeys" is defined twice`},
		{`[{"alias": "a"}]`, `table "a": collection ""`},
		{"[" + strings.Repeat(" ", maxTableDefLen) + "]", "bytes, at most"},
	} {
		_, err := ParseTables([]byte(c.in))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTables(%.40q): got %v, want ErrInvalid with %q", c.in, err, c.want)
		}
	}
	exact := "[" + strings.Repeat(" ", maxTableDefLen-2) + "]"
	if _, err := ParseTables([]byte(exact)); err != nil {
		t.Errorf("input of exactly the limit: %v", err)
	}
}

// TestLimits pins the documented limits (docs/kps.md).
func TestLimits(t *testing.T) {
	for name, c := range map[string][2]int{
		"MaxNameLen": {MaxNameLen, 64}, "MaxLabelLen": {MaxLabelLen, 128}, "MaxProperties": {MaxProperties, 256},
		"MaxKeyLen": {MaxKeyLen, 1024}, "MaxRowBytes": {MaxRowBytes, 8 << 20}, "maxTableDefLen": {maxTableDefLen, 1 << 20},
		"DefaultLimit": {DefaultLimit, 100}, "MaxLimit": {MaxLimit, 1000}, "AnyVersion": {int(AnyVersion), 0},
	} {
		if c[0] != c[1] {
			t.Errorf("%s: got %d, want %d", name, c[0], c[1])
		}
	}
}

func TestLineAt(t *testing.T) {
	if got := lineAt([]byte("\nb"), 0); got != 1 {
		t.Errorf("lineAt of a leading newline at 0: got %d, want 1", got)
	}
	data := []byte("a\nb\nc")
	for off, want := range map[int64]int{-1: 1, 0: 1, 1: 1, 2: 2, 4: 3, 5: 3, 99: 3} {
		if got := lineAt(data, off); got != want {
			t.Errorf("lineAt(%d): got %d, want %d", off, got, want)
		}
	}
}

func TestTableHelpers(t *testing.T) {
	a := sample()
	b := a.Clone()
	if !a.Equal(&b) {
		t.Fatal("a clone is not equal")
	}
	b.Properties[0].Name = "x"
	b.Indexes[0] = "y"
	if a.Properties[0].Name != "id" || a.Indexes[0] != "owner" {
		t.Fatal("Clone shares slices")
	}
	for name, edit := range map[string]func(*Table){
		"collection": func(t *Table) { t.Collection = "x" },
		"name":       func(t *Table) { t.Name = "x" },
		"alias":      func(t *Table) { t.Alias = "x" },
		"property":   func(t *Table) { t.Properties[1].Type = Long },
		"primary":    func(t *Table) { t.PrimaryKey = "x" },
		"secondary":  func(t *Table) { t.SecondaryKey = "x" },
		"indexes":    func(t *Table) { t.Indexes = t.Indexes[1:] },
	} {
		c := a.Clone()
		edit(&c)
		if a.Equal(&c) {
			t.Errorf("Equal ignores a change of %s", name)
		}
	}
	if p, ok := a.Property("f"); !ok || p.Type != Double {
		t.Errorf("Property(f): got %v %v", p, ok)
	}
	if _, ok := a.Property("zz"); ok {
		t.Errorf("Property(zz) found")
	}
	if !a.Indexed("owner") || a.Indexed("key") {
		t.Errorf("Indexed")
	}
	// Compatible: same key, no type changed.
	c := a.Clone()
	c.Properties = append(c.Properties[:2], Property{Name: "new", Type: Map})
	c.Indexes, c.SecondaryKey = nil, ""
	if err := c.Compatible(&a); err != nil {
		t.Errorf("dropping and adding properties: %v", err)
	}
	c = a.Clone()
	c.Properties[3].Type = Long
	if err := c.Compatible(&a); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `property "n" cannot change type (integer → long)`) {
		t.Errorf("type change: got %v", err)
	}
	c = a.Clone()
	c.PrimaryKey = "key"
	if err := c.Compatible(&a); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "primary key cannot change") {
		t.Errorf("key change: got %v", err)
	}
	// Rebuild: when what is indexed or which properties exist changes.
	for name, c := range map[string]struct {
		edit func(*Table)
		want bool
	}{
		"nothing":          {func(t *Table) {}, false},
		"a generated flag": {func(t *Table) { t.Properties[1].Generated = true }, false},
		"a label":          {func(t *Table) { t.Name = "other" }, false},
		"secondary":        {func(t *Table) { t.SecondaryKey = "" }, true},
		"index added":      {func(t *Table) { t.Indexes = append(t.Indexes, "key") }, true},
		"index replaced":   {func(t *Table) { t.Indexes[3] = "f" }, true},
		"property added":   {func(t *Table) { t.Properties = append(t.Properties, Property{Name: "z", Type: String}) }, true},
		"property renamed": {func(t *Table) { t.Properties[8].Name = "z" }, true},
	} {
		n := a.Clone()
		c.edit(&n)
		if got := n.Rebuild(&a); got != c.want {
			t.Errorf("Rebuild after %s: got %v, want %v", name, got, c.want)
		}
	}
	ts := []Table{{Alias: "b"}, {Alias: "a"}, {Alias: "c"}}
	SortTables(ts)
	if ts[0].Alias != "a" || ts[1].Alias != "b" || ts[2].Alias != "c" {
		t.Errorf("SortTables: got %v", ts)
	}
	if err := CheckTables([]Table{a, {Alias: "bad"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("CheckTables with an invalid table: got %v", err)
	}
}
