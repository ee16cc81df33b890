package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
)

// purged are the tables whose rows expire (their bucket property).
var purged = []string{TokensTable, CodesTable, FamiliesTable, AssertionsTable}

// maxBucketQueries: with more buckets to catch up on than this (a store not
// purged for weeks), Purge scans the tables instead.
const maxBucketQueries = 2000

// Purge deletes the rows that have expired: tokens, codes, families and
// assertion ids. It queries the expiry buckets wholly in the past since the
// last purge (a watermark in MetaTable); the first purge of a store scans
// the tables. Several processes may purge at once: the deletions are
// idempotent. It returns the number of rows deleted.
func (s *Server) Purge(ctx context.Context) (int, error) {
	now := ms(s.now())
	cur := bucketOf(now)
	var from int64
	var version int64
	row, err := s.store.Get(ctx, MetaTable, "purgedBelow")
	switch {
	case errors.Is(err, kps.ErrNotFound):
	case err != nil:
		return 0, fmt.Errorf("purging: %w", err)
	default:
		from, version = num(row, "value"), row.Version
	}
	n := 0
	if from == 0 || cur-from > maxBucketQueries { // mutate:equivalent const from is 0 only before the first purge, millions of buckets after 1970: the tables are scanned either way
		for _, t := range purged {
			k, err := s.purgeScan(ctx, t, now)
			n += k
			if err != nil {
				return n, err
			}
		}
	} else {
		for b := from; b < cur; b++ {
			for _, t := range purged {
				k, err := s.purgeBucket(ctx, t, b)
				n += k
				if err != nil {
					return n, err
				}
			}
		}
	}
	values := map[string]any{"name": "purgedBelow", "value": cur}
	if version == 0 {
		_, err = s.store.Insert(ctx, MetaTable, values)
	} else {
		_, err = s.store.Update(ctx, MetaTable, kps.Row{Values: values, Version: version})
	}
	if err != nil && !errors.Is(err, kps.ErrExists) && !errors.Is(err, kps.ErrConflict) {
		return n, fmt.Errorf("purging: %w", err)
	}
	return n, nil
}

func primary(table string) string {
	if table == FamiliesTable {
		return "id"
	}
	return "hash"
}

// purgeBucket deletes every row of a past bucket.
func (s *Server) purgeBucket(ctx context.Context, table string, b int64) (int, error) {
	n := 0
	page := kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := s.store.Query(ctx, table, "bucket", b, page)
		if err != nil {
			return n, fmt.Errorf("purging %s: %w", table, err)
		}
		for _, r := range res.Rows {
			if err := s.store.Delete(ctx, table, str(r, primary(table)), kps.AnyVersion); err != nil && !errors.Is(err, kps.ErrNotFound) {
				return n, fmt.Errorf("purging %s: %w", table, err)
			}
			n++
		}
		if res.Next == "" {
			return n, nil
		}
		page.Cursor = res.Next
	}
}

// purgeScan deletes every expired row of a table, reading all of it.
func (s *Server) purgeScan(ctx context.Context, table string, now int64) (int, error) {
	n := 0
	page := kps.Page{Limit: kps.MaxLimit}
	for {
		res, err := s.store.List(ctx, table, page)
		if err != nil {
			return n, fmt.Errorf("purging %s: %w", table, err)
		}
		for _, r := range res.Rows {
			if num(r, "expiresAt") > now {
				continue
			}
			if err := s.store.Delete(ctx, table, str(r, primary(table)), kps.AnyVersion); err != nil && !errors.Is(err, kps.ErrNotFound) {
				return n, fmt.Errorf("purging %s: %w", table, err)
			}
			n++
		}
		if res.Next == "" {
			return n, nil
		}
		page.Cursor = res.Next
	}
}

// PurgeInterval is how often Run purges.
const PurgeInterval = 10 * time.Minute

// Run purges every PurgeInterval until ctx ends, logging failures (a store
// that is down is tried again at the next tick). It returns nil when ctx
// ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(PurgeInterval)
	defer t.Stop()
	return s.runPurges(ctx, t.C)
}

func (s *Server) runPurges(ctx context.Context, tick <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			n, err := s.Purge(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("purging expired tokens failed", "error", err, "deleted", n)
			} else if n > 0 {
				s.log.Debug("purged expired tokens", "deleted", n)
			}
		}
	}
}
