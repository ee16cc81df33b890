package kps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Type is a property's type, spelled as in table definitions.
type Type string

// The property types.
const (
	String  Type = "string"  // Go string (valid UTF-8)
	Boolean Type = "boolean" // Go bool
	Integer Type = "integer" // Go int32
	Long    Type = "long"    // Go int64
	Double  Type = "double"  // Go float64 (finite)
	List    Type = "list"    // Go []string
	Map     Type = "map"     // Go map[string]string
)

var types = []Type{String, Boolean, Integer, Long, Double, List, Map}

// keyType reports whether a property of type t can be a primary or secondary key.
func keyType(t Type) bool { return t == String || t == Integer || t == Long }

// indexType reports whether a property of type t can be indexed.
func indexType(t Type) bool { return keyType(t) || t == Boolean }

// Property is one typed field of a table.
type Property struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	// Generated: a string property filled with a random UUID on insert
	// when the row does not have it.
	Generated bool `json:"generated,omitempty"`
	// Encrypted: a string property kept sealed with the group's passphrase
	// when the group has one (kps/fieldcrypt); never a key or an index.
	Encrypted bool `json:"encrypted,omitempty"`
}

// Table is a table's definition. Alias is its identity in the store (what
// every operation names); Collection and Name are how an operator sees it.
type Table struct {
	Collection   string     `json:"collection"`
	Name         string     `json:"name"`
	Alias        string     `json:"alias"`
	Properties   []Property `json:"properties"`
	PrimaryKey   string     `json:"primaryKey"`
	SecondaryKey string     `json:"secondaryKey,omitempty"`
	Indexes      []string   `json:"indexes,omitempty"`
}

// Limits of a definition and of the values stored.
const (
	MaxNameLen     = 64      // an alias or a property name, in bytes
	MaxLabelLen    = 128     // a collection or table name, in bytes
	MaxProperties  = 256     // per table
	MaxKeyLen      = 1024    // a key or indexed value, as its canonical text, in bytes
	MaxRowBytes    = 8 << 20 // a row's encoded size
	maxTableDefLen = 1 << 20 // ParseTables input
)

// identifier: a letter or '_' first, then letters, digits, '_', '-', '.'.
func identifier(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// label: a display name: non-empty valid UTF-8 without control characters.
func label(s string) bool {
	if s == "" || len(s) > MaxLabelLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// Property returns the property named name.
func (t *Table) Property(name string) (Property, bool) {
	for _, p := range t.Properties {
		if p.Name == name {
			return p, true
		}
	}
	return Property{}, false
}

// Validate checks the definition; its error wraps ErrInvalid and names the
// table, the property and what would be accepted.
func (t *Table) Validate() error {
	errf := func(format string, args ...any) error {
		name := t.Alias
		if name == "" {
			name = t.Name
		}
		return Invalid("table %q: %s", name, fmt.Sprintf(format, args...))
	}
	if !identifier(t.Alias) {
		return errf("alias %q: want 1 to %d letters, digits, '_', '-' or '.', starting with a letter or '_'", t.Alias, MaxNameLen)
	}
	if !label(t.Collection) {
		return errf("collection %q: want 1 to %d bytes of text without control characters", t.Collection, MaxLabelLen)
	}
	if !label(t.Name) {
		return errf("name %q: want 1 to %d bytes of text without control characters", t.Name, MaxLabelLen)
	}
	if len(t.Properties) == 0 || len(t.Properties) > MaxProperties {
		return errf("%d properties: want 1 to %d", len(t.Properties), MaxProperties)
	}
	seen := make(map[string]bool, len(t.Properties))
	for i, p := range t.Properties {
		if !identifier(p.Name) {
			return errf("property %d: name %q: want 1 to %d letters, digits, '_', '-' or '.', starting with a letter or '_'", i+1, p.Name, MaxNameLen)
		}
		if seen[p.Name] {
			return errf("property %q is declared twice", p.Name)
		}
		seen[p.Name] = true
		if !slices.Contains(types, p.Type) {
			return errf("property %q: type %q: want one of %s", p.Name, p.Type, typeList())
		}
		if p.Generated && p.Type != String {
			return errf("property %q: only a string property can be generated (a UUID), not a %s", p.Name, p.Type)
		}
		if p.Encrypted && (p.Type != String || p.Generated) {
			return errf("property %q: only a string property that is not generated can be encrypted", p.Name)
		}
	}
	pk, ok := t.Property(t.PrimaryKey)
	if !ok {
		return errf("primary key %q is not a property", t.PrimaryKey)
	}
	if !keyType(pk.Type) {
		return errf("primary key %q is a %s: want a string, integer or long", pk.Name, pk.Type)
	}
	if pk.Encrypted {
		return errf("primary key %q cannot be encrypted (rows are found by it)", pk.Name)
	}
	if t.SecondaryKey != "" {
		sk, ok := t.Property(t.SecondaryKey)
		switch {
		case sk.Encrypted:
			return errf("secondary key %q cannot be encrypted (rows are found by it)", sk.Name)
		case !ok:
			return errf("secondary key %q is not a property", t.SecondaryKey)
		case sk.Name == pk.Name:
			return errf("secondary key %q is the primary key", sk.Name)
		case !keyType(sk.Type):
			return errf("secondary key %q is a %s: want a string, integer or long", sk.Name, sk.Type)
		}
	}
	indexed := make(map[string]bool, len(t.Indexes))
	for _, name := range t.Indexes {
		p, ok := t.Property(name)
		switch {
		case !ok:
			return errf("index %q is not a property", name)
		case indexed[name]:
			return errf("index %q is declared twice", name)
		case name == t.PrimaryKey || name == t.SecondaryKey:
			return errf("index %q is a key already (use Get or GetBySecondary)", name)
		case !indexType(p.Type):
			return errf("index %q is a %s: want a string, boolean, integer or long", name, p.Type)
		case p.Encrypted:
			return errf("index %q cannot be encrypted (rows are found by it)", name)
		}
		indexed[name] = true
	}
	return nil
}

func typeList() string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// Encrypted lists the table's encrypted properties.
func (t *Table) Encrypted() []string {
	var out []string
	for _, p := range t.Properties {
		if p.Encrypted {
			out = append(out, p.Name)
		}
	}
	return out
}

// Indexed reports whether property is one of the table's indexes.
func (t *Table) Indexed(property string) bool { return slices.Contains(t.Indexes, property) }

// Clone returns a deep copy.
func (t Table) Clone() Table {
	t.Properties = slices.Clone(t.Properties)
	t.Indexes = slices.Clone(t.Indexes)
	return t
}

// Equal reports whether two definitions are the same.
func (t *Table) Equal(o *Table) bool {
	return t.Collection == o.Collection && t.Name == o.Name && t.Alias == o.Alias &&
		slices.Equal(t.Properties, o.Properties) && t.PrimaryKey == o.PrimaryKey &&
		t.SecondaryKey == o.SecondaryKey && slices.Equal(t.Indexes, o.Indexes)
}

// Compatible says whether rows stored under old can be kept under t: the
// same primary key, and no property whose type changed. Its error wraps
// ErrInvalid.
func (t *Table) Compatible(old *Table) error {
	if t.PrimaryKey != old.PrimaryKey {
		return Invalid("table %q: the primary key cannot change (%q → %q): define a new table", t.Alias, old.PrimaryKey, t.PrimaryKey)
	}
	for _, p := range t.Properties {
		if o, ok := old.Property(p.Name); ok && o.Type != p.Type {
			return Invalid("table %q: property %q cannot change type (%s → %s): add a new property", t.Alias, p.Name, o.Type, p.Type)
		}
	}
	return nil
}

// CheckTables validates each table and that aliases are unique.
func CheckTables(tables []Table) error {
	seen := make(map[string]bool, len(tables))
	for i := range tables {
		if err := tables[i].Validate(); err != nil {
			return err
		}
		if seen[tables[i].Alias] {
			return Invalid("table %q is defined twice", tables[i].Alias)
		}
		seen[tables[i].Alias] = true
	}
	return nil
}

// ParseTables reads table definitions: a JSON array of Table objects (the
// field names are the json tags above; unknown fields are refused). Errors
// name the line and wrap ErrInvalid.
func ParseTables(data []byte) ([]Table, error) {
	if len(data) > maxTableDefLen {
		return nil, Invalid("table definitions: %d bytes, at most %d", len(data), maxTableDefLen)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var tables []Table
	if err := dec.Decode(&tables); err != nil {
		return nil, Invalid("table definitions: %s", jsonError(data, err))
	}
	if dec.More() {
		return nil, Invalid("table definitions: line %d: data after the array", lineAt(data, dec.InputOffset()))
	}
	if err := CheckTables(tables); err != nil {
		return nil, err
	}
	return tables, nil
}

func jsonError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: %v", lineAt(data, syn.Offset), err)
	case errors.As(err, &typ):
		return fmt.Sprintf("line %d: %s: got a JSON %s, want %s", lineAt(data, typ.Offset), typ.Field, typ.Value, typ.Type)
	}
	return err.Error()
}

// lineAt is the 1-based line of byte offset off.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}
