// Package sqlite is the embedded store: one SQLite file (modernc.org/sqlite,
// no cgo) in WAL mode, with a single writer connection and a pool of readers.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/adaptflow/adaptflow/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite store. It is safe for concurrent use.
type Store struct {
	w             *cachedDB // one connection: SQLite has one writer
	r             *cachedDB // readers
	dim           int
	store.Reads   // the reads both stores share, over rows
	store.Changes // the one-row writes both share, over exec
}

// Options configure OpenWith.
type Options struct {
	// EmbeddingDim is the dimension of example embeddings (default
	// store.DefaultEmbeddingDim), fixed when the store is first migrated.
	EmbeddingDim int
}

// Open opens (creating if needed) the database file at path and applies
// pending migrations, with default options.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// URIPath is path as the path of a "file:" URI, which SQLite opens: '%',
// '?' and '#' percent-encoded. Unencoded, a '?' or '#' in a directory's
// name would end the path there (and drop the pragmas after it), opening
// another file, and a '%' would be read as an escape.
func URIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.EmbeddingDim <= 0 {
		opts.EmbeddingDim = store.DefaultEmbeddingDim
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	dsn := "file:" + URIPath(path) + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	s := &Store{w: newCachedDB(w), r: newCachedDB(r), dim: opts.EmbeddingDim}
	s.Reads = store.NewReads(s.rows, dialect)
	s.Changes = store.NewChanges(s.exec, s.writeRows, s.Reads, "?")
	s.w.gate = &writeGate{}
	if err := s.Migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.checkDim(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// checkDim compares the configured embedding dimension with the store's.
func (s *Store) checkDim(ctx context.Context) error {
	var v string
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'embedding_dim'`).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: read settings: %w", err)
	}
	if v != strconv.Itoa(s.dim) {
		return fmt.Errorf("sqlite: the store holds %s-dimensional embeddings but the embedding dimension is configured as %d; keep them equal (a new dimension needs a new store)", v, s.dim)
	}
	return nil
}

// EmbeddingDim is the dimension of the store's example embeddings.
func (s *Store) EmbeddingDim() int { return s.dim }

// OpenReadOnly opens an existing database for reading only: no migration,
// no write can happen through it. Its schema must be current.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "query_only(1)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+URIPath(path)+"?mode=ro&"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	cdb := newCachedDB(db)
	s := &Store{w: cdb, r: cdb}
	s.Reads = store.NewReads(s.rows, dialect)
	s.Changes = store.NewChanges(s.exec, s.writeRows, s.Reads, "?")
	var dim string
	if err := db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'embedding_dim'`).Scan(&dim); err == nil {
		s.dim, _ = strconv.Atoi(dim)
	}
	files, _ := fs.Glob(migrations, "migrations/*.sql")
	var applied int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&applied); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: %s is not an adaptflow store: %w", path, err)
	}
	if applied != len(files) {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: %s has %d of %d migrations applied; run adaptflow migrate", path, applied, len(files))
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.r == s.w {
		return s.r.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// Migrate applies the embedded migrations not yet applied, each in its own
// transaction.
func (s *Store) Migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimPrefix(f, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: name must start with its number", name)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, strings.ReplaceAll(string(body), "{{EMBEDDING_DIM}}", strconv.Itoa(s.dim))); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, v, name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", name, err)
		}
	}
	return s.chainPolicyVersions(ctx)
}

// chainPolicyVersions hashes the policy versions stored before versions were
// chained (migration 2), in the order they were stored.
func (s *Store) chainPolicyVersions(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM policy_versions WHERE hash = ''`).Scan(&n); err != nil || n == 0 {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+policyCols+`, seq FROM policy_versions ORDER BY seq`)
		if err != nil {
			return err
		}
		type row struct {
			seq int64
			p   store.PolicyRecord
		}
		var all []row
		for rows.Next() {
			var r row
			if r.p, err = scanPolicy(rows, &r.seq); err != nil {
				rows.Close()
				return err
			}
			all = append(all, r)
		}
		rows.Close()
		prev := ""
		for _, r := range all {
			if r.p.Hash == "" {
				r.p.PrevHash = prev
				r.p.Hash = store.PolicyVersionHash(r.p)
				if _, err := tx.ExecContext(ctx, `UPDATE policy_versions SET prev_hash = ?, hash = ? WHERE seq = ?`, r.p.PrevHash, r.p.Hash, r.seq); err != nil {
					return err
				}
			}
			prev = r.p.Hash
		}
		return nil
	})
}

// tx runs fn in a write transaction, rolling back on error. It holds the
// write gate throughout, so fn must write through tx (or s.w.txExec), never
// through s.w's own methods, which would wait for the gate it holds.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	if g := s.w.gate; g != nil {
		if err := g.lock(ctx); err != nil {
			return err
		}
		defer g.unlock()
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// scanner is a row being read.
type scanner interface{ Scan(dest ...any) error }

// collect runs a query and turns each row into a T with scan.
func collect[T any](ctx context.Context, db *cachedDB, op string, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return out, nil
}

// MigrationStatus lists the embedded migrations of the database at path
// and when each was applied, without changing anything.
func MigrationStatus(ctx context.Context, path string) ([]store.Migration, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := make([]store.Migration, 0, len(files))
	for _, f := range files {
		name := strings.TrimPrefix(f, "migrations/")
		v, _ := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		out = append(out, store.Migration{Version: v, Name: name})
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	db, err := sql.Open("sqlite", "file:"+URIPath(path)+"?mode=ro")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	defer db.Close()
	applied := map[int]time.Time{}
	rows, err := db.QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations`)
	if err != nil {
		return out, nil // no table yet: nothing applied
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		applied[v] = fromMicros(at)
	}
	for i := range out {
		if at, ok := applied[out[i].Version]; ok {
			out[i].AppliedAt = &at
		}
	}
	return out, rows.Err()
}
