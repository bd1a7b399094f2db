package sqlite_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// TestSnapshotWhileWriting backs up a store and a second database (as
// Temporal's) while a writer goes on writing to both, the second only
// after the store (as a workflow's progress follows its store writes):
// the writer never fails, the copies are whole, and the second's copy is
// never ahead of the store's.
func TestSnapshotWhileWriting(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "temporal.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `CREATE TABLE progress (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			id := fmt.Sprintf("i-%06d", i)
			if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
				done <- err
				return
			}
			if _, err := other.ExecContext(ctx, `INSERT INTO progress (n) VALUES (?)`, i); err != nil {
				done <- err
				return
			}
			written.Store(int64(i))
		}
	}()
	for written.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "backup")
	files, err := sqlite.Snapshot(ctx, filepath.Join(dir, "adaptflow.db"), []string{filepath.Join(dir, "temporal.db")}, out)
	if err != nil {
		t.Fatal(err)
	}
	for before := written.Load(); written.Load() < before+100; {
		time.Sleep(time.Millisecond) // the writer goes on after the copy
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("the writer failed during the backup: %v", err)
	}
	if len(files) != 2 || files[0].Name != "temporal.db" || files[1].Name != "adaptflow.db" || files[0].Bytes == 0 || files[1].Bytes == 0 {
		t.Fatalf("files %+v", files)
	}
	copied, err := sqlite.Open(ctx, filepath.Join(out, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	instances, err := copied.CountInstances(ctx, store.InstanceFilter{Process: "p"})
	if err != nil {
		t.Fatal(err)
	}
	tdb, err := sql.Open("sqlite", "file:"+filepath.Join(out, "temporal.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer tdb.Close()
	var progress int
	if err := tdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM progress`).Scan(&progress); err != nil {
		t.Fatal(err)
	}
	if instances < 200 || progress < 199 || progress > instances || int64(instances) >= written.Load() {
		t.Fatalf("the copy holds %d instances and %d of the other's rows (the writer wrote %d)", instances, progress, written.Load())
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Fatalf("left beside the backup: %v", entries)
	}

	// A backup never overwrites, and a missing database is named.
	if _, err := sqlite.Snapshot(ctx, filepath.Join(dir, "adaptflow.db"), nil, out); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("into an existing directory: %v", err)
	}
	if _, err := sqlite.Snapshot(ctx, filepath.Join(dir, "nope.db"), nil, filepath.Join(t.TempDir(), "b")); err == nil || !strings.Contains(err.Error(), "no database at") {
		t.Fatalf("a missing database: %v", err)
	}
}

// TestSnapshotHoldsNoWriterWhileCopying: the writers of the store are let
// go before the copies are made, so a large database's copy holds up no
// write (a write that cannot wait is not refused), and what is written
// meanwhile, to the store or to the other database, is not in the backup.
func TestSnapshotHoldsNoWriterWhileCopying(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	primary, temporal := filepath.Join(dir, "adaptflow.db"), filepath.Join(dir, "temporal.db")
	st, err := sqlite.Open(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := sql.Open("sqlite", "file:"+temporal+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `CREATE TABLE progress (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	create := func(id string) {
		t.Helper()
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	create("before")
	if _, err := other.ExecContext(ctx, `INSERT INTO progress (n) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	// Space the other database no longer uses: the copy leaves it out.
	for _, q := range []string{
		`CREATE TABLE junk (b BLOB)`,
		`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 2000) INSERT INTO junk SELECT randomblob(1000) FROM c`,
		`DELETE FROM junk`,
	} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// A writer that does not wait at all: it fails at once if the store's
	// writers are held.
	impatient, err := sql.Open("sqlite", "file:"+primary+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()
	var during error
	defer sqlite.OnSnapshotPinned(func() {
		conn, err := impatient.Conn(ctx)
		if err != nil {
			during = err
			return
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			during = fmt.Errorf("a write to the store while the backup copies: %w", err)
			return
		}
		if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
			during = err
			return
		}
		create("during")
		_, during = other.ExecContext(ctx, `INSERT INTO progress (n) VALUES (2)`)
	})()
	out := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(ctx, primary, []string{temporal}, out); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		t.Fatal(during)
	}
	copied, err := sqlite.Open(ctx, filepath.Join(out, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	if _, err := copied.Instance(ctx, "before"); err != nil {
		t.Fatalf("the instance written before the backup: %v", err)
	}
	if _, err := copied.Instance(ctx, "during"); err == nil {
		t.Fatal("the backup holds an instance written while it copied")
	}
	tdb, err := sql.Open("sqlite", "file:"+filepath.Join(out, "temporal.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer tdb.Close()
	var rows []int
	r, err := tdb.QueryContext(ctx, `SELECT n FROM progress ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var n int
		_ = r.Scan(&n)
		rows = append(rows, n)
	}
	if r.Err() != nil || len(rows) != 1 || rows[0] != 1 {
		t.Fatalf("the other database's copy holds %v (%v), want [1]", rows, r.Err())
	}
	var free int
	if err := tdb.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Fatalf("the copy keeps %d free pages (%v)", free, err)
	}
}
