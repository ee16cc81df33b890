package sqlite

import (
	"database/sql"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/kps"
	"github.com/gatehouse-gw/gatehouse/internal/kps/kpstest"
)

// entries are the index entries of a row: (prop, val) pairs.
func entries(t *testing.T, s *Store, alias, pk string) map[string]string {
	t.Helper()
	rows, err := s.db.Query("SELECT prop, val FROM kps_index WHERE tbl = ? AND pk = ?", alias, pk)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var p, v string
		if err := rows.Scan(&p, &v); err != nil {
			t.Fatal(err)
		}
		got[p] = v
	}
	return got
}

// TestIndexEntriesFollowTheRow: an update replaces a row's index entries
// and a delete removes them, found from the row itself (there is no index
// on kps_index's primary key of the row); a row whose stored data no
// longer encodes still loses them all; an absent value has no entry.
func TestIndexEntriesFollowTheRow(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "kps.db"))
	ctx := t.Context()
	if err := s.Define(ctx, kpstest.Things); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, err := s.Insert(ctx, "things", map[string]any{"id": id, "color": "red", "flag": true, "small": 3}); err != nil {
			t.Fatal(err)
		}
	}
	if got := entries(t, s, "things", "a"); len(got) != 3 || got["color"] != "red" {
		t.Fatalf("a's entries after insert: %v", got)
	}
	if _, err := s.Update(ctx, "things", kps.Row{Values: map[string]any{"id": "a", "color": "blue"}, Version: 1}); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s, "things", "a"); len(got) != 1 || got["color"] != "blue" {
		t.Errorf("a's entries after an update to color blue only: %v, want color=blue alone", got)
	}
	if err := s.Delete(ctx, "things", "b", kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s, "things", "b"); len(got) != 0 {
		t.Errorf("b's entries after its delete: %v", got)
	}
	// c's stored data no longer has its key: it does not encode, and its
	// entries are found by scanning the table's.
	if _, err := s.db.Exec(`UPDATE kps_rows SET data = '{"color":"red"}' WHERE tbl = 'things' AND pk = 'c'`); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "things", "c", kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s, "things", "c"); len(got) != 0 {
		t.Errorf("c's entries after deleting a row that does not encode: %v", got)
	}
	// d's stored data names another key: its entries are not that key's.
	if _, err := s.db.Exec(`UPDATE kps_rows SET data = '{"id":"z","color":"red"}' WHERE tbl = 'things' AND pk = 'd'`); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "things", "d", kps.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s, "things", "d"); len(got) != 0 {
		t.Errorf("d's entries after deleting a row whose data names another key: %v", got)
	}
	if got := entries(t, s, "things", "a"); len(got) != 1 {
		t.Errorf("a's entries changed by other rows' deletes: %v", got)
	}
}

// TestMigrationDropsRowIndex: a store made by the first schema (with
// kps_index_pk) loses that index when opened, keeps its rows and their
// entries, and deletes them as a new one does.
func TestMigrationDropsRowIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(migrations[0] + `; PRAGMA user_version = 1;
		INSERT INTO kps_tables(alias, def) VALUES ('counters', '` + string(kps.MarshalTable(&kpstest.Counters)) + `');
		UPDATE kps_meta SET value = 1 WHERE name = 'defs_gen';
		INSERT INTO kps_rows(tbl, pk, sk, version, data) VALUES ('counters', 'x', NULL, 1, '{"name":"x","n":1,"by":"me"}');
		INSERT INTO kps_index(tbl, prop, val, pk) VALUES ('counters', 'by', 'me', 'x');`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openAt(t, path)
	var n int
	s.db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'kps_index_pk'").Scan(&n)
	if n != 0 {
		t.Errorf("kps_index_pk still there after the migration")
	}
	res, err := s.Query(t.Context(), "counters", "by", "me", kps.Page{})
	if err != nil || len(res.Rows) != 1 {
		t.Fatalf("query the migrated row: %v %v", res.Rows, err)
	}
	if err := s.Delete(t.Context(), "counters", "x", 1); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, s, "counters", "x"); len(got) != 0 {
		t.Errorf("entries of the migrated row after its delete: %v", got)
	}
}

// TestGroupCommitOnOneCPU: with one CPU, 32 writers that each wait for the
// network between writes (as the token endpoint's requests do) are
// committed in batches, not one transaction (and one fsync) each: the
// leader yields before taking a batch, so that the writers its last commit
// woke, and those whose network read completed, queue up first.
func TestGroupCommitOnOneCPU(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "kps.db"))
	ctx := t.Context()
	if err := s.Define(ctx, kpstest.Counters); err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const writers, each = 32, 20
	before := s.commits.Load()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // an echo server: a byte back for a byte
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
					if _, err := c.Write(b); err != nil {
						return
					}
				}
			}()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			b := []byte{1}
			for i := range each {
				if _, err := c.Write(b); err != nil {
					errs <- err
					return
				}
				if _, err := c.Read(b); err != nil {
					errs <- err
					return
				}
				if _, err := s.Insert(ctx, "counters", map[string]any{"name": fmt.Sprintf("w%d-%d", w, i), "n": int64(i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	commits := s.commits.Load() - before
	avg := float64(writers*each) / float64(commits)
	t.Logf("%d writes in %d commits: %.1f per commit", writers*each, commits, avg)
	if avg < 6 {
		t.Errorf("%d writes in %d commits: %.1f per commit, want at least 6", writers*each, commits, avg)
	}
}
