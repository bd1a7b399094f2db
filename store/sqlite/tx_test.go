package sqlite

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/adaptflow/adaptflow/store"
)

// TestFailedTransactionLeavesNothing: a transaction that writes and then
// fails is rolled back whole.
func TestFailedTransactionLeavesNothing(t *testing.T) {
	s := openTemp(t)
	boom := errors.New("boom")
	err := s.tx(t.Context(), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(t.Context(), `INSERT INTO api_keys (id, name, role, hash, created_at) VALUES ('k', 'n', 'admin', 'h', 0)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(t.Context(), `INSERT INTO policy_events (id, version, action, author, at) VALUES ('p', 1, 'active', 'a', 0)`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.KeyByHash(t.Context(), "h"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the key survived the rollback: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM policy_events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events survived the rollback (%v)", n, err)
	}
}

// openTemp opens a store in a fresh file, closed when the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
