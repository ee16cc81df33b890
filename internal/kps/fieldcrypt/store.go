package fieldcrypt

import (
	"context"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// Wrap returns st sealing the encrypted properties of tables on the way in
// and opening them on the way out, with keys; st itself when keys is nil
// (nothing is encrypted). The wrapper keeps the optional interfaces of st
// (kps.Bulk, kps.SharedSecrets).
func Wrap(st kps.Store, keys *Keys, tables []kps.Table) kps.Store {
	return wrap(st, keys, tables, false)
}

// WrapWrites is Wrap sealing what is written but returning what is read
// as it is stored (sealed): the management API's view, where an operator
// writes a value and nobody reads it back in clear.
func WrapWrites(st kps.Store, keys *Keys, tables []kps.Table) kps.Store {
	return wrap(st, keys, tables, true)
}

func wrap(st kps.Store, keys *Keys, tables []kps.Table, writesOnly bool) kps.Store {
	if keys == nil {
		return st
	}
	w := &Store{Store: st, key: keys.cur, tables: map[string]*kps.Table{}, writesOnly: writesOnly}
	for i := range tables {
		if len(tables[i].Encrypted()) > 0 { // mutate:equivalent boundary a table without encrypted properties passes through the wrapper unchanged
			t := tables[i].Clone()
			w.tables[t.Alias] = &t
		}
	}
	bulk, isBulk := st.(kps.Bulk)
	shared, isShared := st.(kps.SharedSecrets)
	switch {
	case isBulk && isShared:
		return &struct {
			*Store
			bulkPart
			kps.SharedSecrets
		}{w, bulkPart{w, bulk}, shared}
	case isBulk:
		return &struct {
			*Store
			bulkPart
		}{w, bulkPart{w, bulk}}
	case isShared:
		return &struct {
			*Store
			kps.SharedSecrets
		}{w, shared}
	}
	return w
}

// Store is a kps.Store whose encrypted properties are sealed in the
// underlying store.
type Store struct {
	kps.Store
	key    *secret.Key
	tables map[string]*kps.Table // the tables with encrypted properties, by alias
	// writesOnly: reads return the sealed values (WrapWrites).
	writesOnly bool
}

func (s *Store) seal(table string, values map[string]any) map[string]any {
	if t := s.tables[table]; t != nil {
		return sealValues(s.key, t, values)
	}
	return values
}

func (s *Store) open(table string, r kps.Row, err error) (kps.Row, error) {
	if err != nil || s.writesOnly {
		return r, err
	}
	if t := s.tables[table]; t != nil {
		if err := openValues(s.key, t, &r); err != nil {
			return kps.Row{}, err
		}
	}
	return r, nil
}

func (s *Store) openAll(table string, res kps.Result, err error) (kps.Result, error) {
	if err != nil {
		return res, err
	}
	for i := range res.Rows {
		if res.Rows[i], err = s.open(table, res.Rows[i], nil); err != nil {
			return kps.Result{}, err
		}
	}
	return res, nil
}

func (s *Store) Get(ctx context.Context, table string, key any) (kps.Row, error) {
	r, err := s.Store.Get(ctx, table, key)
	return s.open(table, r, err)
}

func (s *Store) GetBySecondary(ctx context.Context, table string, key any) (kps.Row, error) {
	r, err := s.Store.GetBySecondary(ctx, table, key)
	return s.open(table, r, err)
}

func (s *Store) Query(ctx context.Context, table, property string, value any, page kps.Page) (kps.Result, error) {
	res, err := s.Store.Query(ctx, table, property, value, page)
	return s.openAll(table, res, err)
}

func (s *Store) List(ctx context.Context, table string, page kps.Page) (kps.Result, error) {
	res, err := s.Store.List(ctx, table, page)
	return s.openAll(table, res, err)
}

func (s *Store) Insert(ctx context.Context, table string, values map[string]any) (kps.Row, error) {
	r, err := s.Store.Insert(ctx, table, s.seal(table, values))
	return s.open(table, r, err)
}

func (s *Store) Update(ctx context.Context, table string, row kps.Row) (kps.Row, error) {
	row.Values = s.seal(table, row.Values)
	r, err := s.Store.Update(ctx, table, row)
	return s.open(table, r, err)
}

type bulkPart struct {
	s    *Store
	bulk kps.Bulk
}

func (b bulkPart) InsertMany(ctx context.Context, table string, rows []map[string]any) error {
	sealed := make([]map[string]any, len(rows))
	for i, r := range rows {
		sealed[i] = b.s.seal(table, r)
	}
	return b.bulk.InsertMany(ctx, table, sealed)
}
