package kps

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is the storage form shared by the backends: a row is stored as a
// JSON object (its data), beside the canonical text of its primary key, its
// secondary key and its indexed values, which the backends index.

// Encoded is a row checked against its table and ready to store.
type Encoded struct {
	Key          string         // canonical primary key
	Secondary    string         // canonical secondary key, when HasSecondary
	HasSecondary bool           // the table has a secondary key and the row a value for it
	Index        []IndexEntry   // one per indexed property present in the row
	Data         []byte         // the values as a JSON object
	Values       map[string]any // the values with their declared Go types
}

// IndexEntry is one indexed value of a row.
type IndexEntry struct {
	Property string
	Value    string // canonical text
}

// KeyString returns the canonical text of v as the value of the key or
// indexed property named property: a string as is, an integer or long in
// decimal, a boolean as "true" or "false". Its error wraps ErrInvalid.
func (t *Table) KeyString(property string, v any) (string, error) {
	p, ok := t.Property(property)
	if !ok {
		return "", Invalid("table %q has no property %q", t.Alias, property)
	}
	nv, err := normalize(p, v)
	if err != nil {
		return "", Invalid("table %q: %v", t.Alias, err)
	}
	return keyText(p, nv)
}

func keyText(p Property, v any) (string, error) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case int32:
		s = strconv.FormatInt(int64(v), 10)
	case int64:
		s = strconv.FormatInt(v, 10)
	case bool:
		s = strconv.FormatBool(v)
	default:
		return "", Invalid("property %q: a %s cannot be a key or be indexed", p.Name, p.Type)
	}
	if len(s) > MaxKeyLen {
		return "", Invalid("property %q: %d bytes, at most %d in a key or an indexed property", p.Name, len(s), MaxKeyLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", Invalid("property %q: a key or an indexed property cannot hold a NUL character", p.Name)
	}
	return s, nil
}

// normalize checks that v fits p's type and converts it to the declared Go type.
func normalize(p Property, v any) (any, error) {
	bad := func() error {
		return fmt.Errorf("property %q is a %s: got %T", p.Name, p.Type, v)
	}
	switch p.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("property %q: not valid UTF-8", p.Name)
		}
		return s, nil
	case Boolean:
		b, ok := v.(bool)
		if !ok {
			return nil, bad()
		}
		return b, nil
	case Integer:
		var n int64
		switch v := v.(type) {
		case int32:
			return v, nil
		case int:
			n = int64(v)
		case int64:
			n = v
		default:
			return nil, bad()
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("property %q is an integer: %d is out of range", p.Name, n)
		}
		return int32(n), nil
	case Long:
		switch v := v.(type) {
		case int64:
			return v, nil
		case int:
			return int64(v), nil
		case int32:
			return int64(v), nil
		}
		return nil, bad()
	case Double:
		var f float64
		switch v := v.(type) {
		case float64:
			f = v
		case float32:
			f = float64(v)
		default:
			return nil, bad()
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("property %q: %v is not a finite number", p.Name, f)
		}
		return f, nil
	case List:
		l, ok := v.([]string)
		if !ok {
			return nil, bad()
		}
		for i, s := range l {
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("property %q: item %d is not valid UTF-8", p.Name, i)
			}
		}
		if l == nil {
			l = []string{}
		}
		return l, nil
	case Map:
		m, ok := v.(map[string]string)
		if !ok {
			return nil, bad()
		}
		for k, s := range m {
			if !utf8.ValidString(k) || !utf8.ValidString(s) {
				return nil, fmt.Errorf("property %q: key %q or its value is not valid UTF-8", p.Name, k)
			}
		}
		if m == nil {
			m = map[string]string{}
		}
		return m, nil
	}
	return nil, fmt.Errorf("property %q: unknown type %q", p.Name, p.Type)
}

// Normalize checks values against the table and returns them with the
// declared Go types (nil values dropped). Its error wraps ErrInvalid.
func (t *Table) Normalize(values map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(values))
	for name, v := range values {
		p, ok := t.Property(name)
		if !ok {
			return nil, Invalid("table %q has no property %q", t.Alias, name)
		}
		if v == nil {
			continue
		}
		nv, err := normalize(p, v)
		if err != nil {
			return nil, Invalid("table %q: %v", t.Alias, err)
		}
		out[name] = nv
	}
	return out, nil
}

// Encode checks values against the table (see Normalize; the primary key must
// be present and not empty) and returns their storage form.
func (t *Table) Encode(values map[string]any) (Encoded, error) {
	vals, err := t.Normalize(values)
	if err != nil {
		return Encoded{}, err
	}
	e := Encoded{Values: vals}
	pkv, ok := vals[t.PrimaryKey]
	if !ok {
		return Encoded{}, Invalid("table %q: the primary key %q is missing", t.Alias, t.PrimaryKey)
	}
	pk, _ := t.Property(t.PrimaryKey)
	if e.Key, err = keyText(pk, pkv); err != nil {
		return Encoded{}, Invalid("table %q: %v", t.Alias, err)
	}
	if e.Key == "" {
		return Encoded{}, Invalid("table %q: the primary key %q is empty", t.Alias, t.PrimaryKey)
	}
	if v, ok := vals[t.SecondaryKey]; ok {
		sk, _ := t.Property(t.SecondaryKey)
		if e.Secondary, err = keyText(sk, v); err != nil {
			return Encoded{}, Invalid("table %q: %v", t.Alias, err)
		}
		e.HasSecondary = true
	}
	for _, name := range t.Indexes {
		v, ok := vals[name]
		if !ok {
			continue
		}
		p, _ := t.Property(name)
		s, err := keyText(p, v)
		if err != nil {
			return Encoded{}, Invalid("table %q: %v", t.Alias, err)
		}
		e.Index = append(e.Index, IndexEntry{Property: name, Value: s})
	}
	if e.Data, err = json.Marshal(vals); err != nil {
		// mutate:equivalent * normalized values (strings, integers, finite floats, lists and maps of strings) always marshal
		return Encoded{}, Invalid("table %q: %v", t.Alias, err)
	}
	if len(e.Data) > MaxRowBytes {
		return Encoded{}, Invalid("table %q: the row is %d bytes encoded, at most %d", t.Alias, len(e.Data), MaxRowBytes)
	}
	return e, nil
}

// Decode reads a row's data as written by Encode. Properties no longer
// declared are dropped. An error means the stored data is damaged.
func (t *Table) Decode(data []byte) (map[string]any, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("table %q: stored row: %w", t.Alias, err)
	}
	vals := make(map[string]any, len(raw))
	for name, msg := range raw {
		p, ok := t.Property(name)
		if !ok {
			continue
		}
		v, err := decodeValue(p.Type, msg)
		if err != nil {
			return nil, fmt.Errorf("table %q: stored row: property %q: %w", t.Alias, name, err)
		}
		vals[name] = v
	}
	return vals, nil
}

func decodeValue(t Type, msg json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	switch t {
	case String:
		var s string
		err := dec.Decode(&s)
		return s, err
	case Boolean:
		var b bool
		err := dec.Decode(&b)
		return b, err
	case Integer, Long, Double:
		var n json.Number
		if err := dec.Decode(&n); err != nil {
			return nil, err // mutate:equivalent delete-stmt an empty json.Number fails the ParseInt or ParseFloat below
		}
		if bytes.HasPrefix(bytes.TrimSpace(msg), []byte(`"`)) {
			return nil, fmt.Errorf("a %s is a string", t)
		}
		switch t {
		case Integer:
			i, err := strconv.ParseInt(n.String(), 10, 32)
			return int32(i), err
		case Long:
			return strconv.ParseInt(n.String(), 10, 64)
		}
		return strconv.ParseFloat(n.String(), 64) // mutate:equivalent const ParseFloat treats every size but 32 as 64
	case List:
		l := []string{}
		err := dec.Decode(&l)
		if l == nil {
			err = fmt.Errorf("a list is null")
		}
		return l, err
	case Map:
		m := map[string]string{}
		err := dec.Decode(&m)
		if m == nil {
			err = fmt.Errorf("a map is null")
		}
		return m, err
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

// FillGenerated returns a copy of values in which every generated property
// that is absent (or nil) holds a new random UUID.
func (t *Table) FillGenerated(values map[string]any) map[string]any {
	out := maps.Clone(values)
	if out == nil {
		out = map[string]any{}
	}
	for _, p := range t.Properties {
		if p.Generated && out[p.Name] == nil {
			out[p.Name] = NewUUID()
		}
	}
	return out
}

// KeepGenerated returns a copy of values in which every generated property
// that is absent (or nil) takes its value from stored.
func (t *Table) KeepGenerated(values, stored map[string]any) map[string]any {
	out := maps.Clone(values)
	if out == nil {
		out = map[string]any{}
	}
	for _, p := range t.Properties {
		if v, ok := stored[p.Name]; ok && p.Generated && out[p.Name] == nil {
			out[p.Name] = v
		}
	}
	return out
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// EncodeCursor makes the opaque cursor that resumes a listing after the row
// whose canonical primary key is key.
func EncodeCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// DecodeCursor reads a cursor made by EncodeCursor; "" is the first page
// (after is ""). Its error wraps ErrInvalid.
func DecodeCursor(cursor string) (after string, err error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) == 0 || len(b) > MaxKeyLen {
		return "", Invalid("cursor %q: not one this store gave", cursor)
	}
	return string(b), nil
}

// PageLimit is the number of rows a page asks for: DefaultLimit when
// p.Limit is 0 or less, at most MaxLimit.
func (p Page) PageLimit() int {
	if p.Limit <= 0 {
		return DefaultLimit
	}
	return min(p.Limit, MaxLimit)
}

// SortTables sorts definitions by alias.
func SortTables(tables []Table) {
	slices.SortFunc(tables, func(a, b Table) int { return strings.Compare(a.Alias, b.Alias) })
}
