package kps

import (
	"encoding/json"
	"fmt"
	"sync"
)

// Defs is a backend's in-memory copy of the stored table definitions, with
// the generation it was read at. Backends keep a generation counter beside
// the definitions, bump it in every Define that changes one, and reload
// their Defs when they see a newer one (before every write, and when an
// alias is unknown), so that a process never indexes rows with an old
// definition after another process changed it. Safe for concurrent use.
type Defs struct {
	mu     sync.RWMutex
	gen    int64
	tables map[string]*Table
}

// Lookup returns the table with that alias.
func (d *Defs) Lookup(alias string) (*Table, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	t, ok := d.tables[alias]
	return t, ok
}

// Gen is the generation of the definitions held.
func (d *Defs) Gen() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.gen
}

// Replace installs the definitions read at generation gen.
func (d *Defs) Replace(gen int64, tables map[string]*Table) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen, d.tables = gen, tables
}

// All returns copies of the definitions, sorted by alias.
func (d *Defs) All() []Table {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]Table, 0, len(d.tables))
	for _, t := range d.tables {
		out = append(out, t.Clone())
	}
	SortTables(out)
	return out
}

// MarshalTable is a definition's stored form.
func MarshalTable(t *Table) []byte {
	b, err := json.Marshal(t)
	if err != nil {
		// mutate:equivalent delete-stmt unreachable: a Table is strings, bools and slices of them
		panic("kps: marshalling a table definition: " + err.Error())
	}
	return b
}

// UnmarshalTable reads a stored definition and validates it. A definition
// that does not read is damage in the store: its error wraps ErrUnavailable
// (and not ErrInvalid, which would blame the caller).
func UnmarshalTable(b []byte) (*Table, error) {
	var t Table
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%w: stored table definition: %w", ErrUnavailable, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: stored table definition: %v", ErrUnavailable, err)
	}
	return &t, nil
}

// NoTable is the error of an operation on an alias that is not defined.
func NoTable(op, alias string) error {
	return &Error{Op: op, Table: alias, Err: fmt.Errorf("%w: no table with this alias", ErrNotFound)}
}

// Rebuild says whether a changed definition needs the stored rows
// re-encoded: its indexes, secondary key or properties changed.
func (t *Table) Rebuild(old *Table) bool {
	if t.SecondaryKey != old.SecondaryKey || len(t.Indexes) != len(old.Indexes) || len(t.Properties) != len(old.Properties) {
		return true
	}
	for i := range t.Indexes {
		if t.Indexes[i] != old.Indexes[i] {
			return true
		}
	}
	for i := range t.Properties {
		if t.Properties[i].Name != old.Properties[i].Name {
			return true
		}
	}
	return false
}
