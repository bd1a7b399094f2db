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
