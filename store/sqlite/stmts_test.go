package sqlite

import (
	"fmt"
	"testing"
)

// TestPreparedStatementsStayCorrect: statements run prepared give the
// answers unprepared ones do, past the cache's bound, and after the schema
// they were prepared against changed.
func TestPreparedStatementsStayCorrect(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	for i := range maxCachedStatements + 20 {
		for range 2 { // the second run uses the prepared statement, if any
			var got int
			if err := s.r.QueryRowContext(ctx, fmt.Sprintf(`SELECT ? + %d`, i), 1).Scan(&got); err != nil || got != i+1 {
				t.Fatalf("query %d: %d, %v", i, got, err)
			}
		}
	}
	if n := s.r.n.Load(); n != maxCachedStatements {
		t.Fatalf("%d statements prepared, want the bound %d", n, maxCachedStatements)
	}

	if _, err := s.w.ExecContext(ctx, `CREATE TABLE t (a INTEGER)`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO t (a) VALUES (?)`
	if _, err := s.w.ExecContext(ctx, insert, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 7`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, insert, 2); err != nil {
		t.Fatalf("prepared insert after a schema change: %v", err)
	}
	var sum int
	if err := s.w.QueryRowContext(ctx, `SELECT SUM(a + b) FROM t`).Scan(&sum); err != nil || sum != 17 {
		t.Fatalf("sum = %d, %v; want 17", sum, err)
	}
	// A statement that does not prepare reports its error as it runs.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO missing VALUES (1)`); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
}
