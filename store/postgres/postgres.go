// Package postgres is the production store: PostgreSQL through a pgx pool.
// Migrations are embedded SQL files applied under an advisory lock, so
// several replicas starting at once apply each exactly once.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/adaptflow/adaptflow/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key held while migrating.
const migrationLock = 7_320_451_001

// policyLock serializes writes to the policy version chain.
const policyLock = 7_320_451_002

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool          *pgxpool.Pool
	dim           int
	store.Reads   // the reads both stores share, over rows
	store.Changes // the one-row writes both share, over exec
}

// Options configure Open.
type Options struct {
	// Migrate applies pending migrations at open (default true in Open).
	Migrate bool
	// MaxConns bounds the pool (default pgxpool's).
	MaxConns int32
	// ReadOnly makes every session read-only: nothing can be written.
	ReadOnly bool
	// EmbeddingDim is the dimension of example embeddings (default
	// store.DefaultEmbeddingDim). It is fixed when the store is first
	// migrated; opening it with another is an error.
	EmbeddingDim int
	// EfSearch is HNSW's search breadth (default 100): higher finds more
	// of the true nearest neighbours, slower.
	EfSearch int
}

// Open connects to url and, unless opts say otherwise, applies pending
// migrations.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: --database-url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ReadOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	if opts.EmbeddingDim <= 0 {
		opts.EmbeddingDim = store.DefaultEmbeddingDim
	}
	if opts.EfSearch <= 0 {
		opts.EfSearch = 100
	}
	cfg.ConnConfig.RuntimeParams["hnsw.ef_search"] = strconv.Itoa(opts.EfSearch)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, dim: opts.EmbeddingDim}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	d, err := dialectOf(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.Reads = store.NewReads(s.rows, d)
	s.Changes = store.NewChanges(s.exec, s.rows, s.Reads, "$")
	if opts.Migrate {
		if err := s.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if err := s.checkDim(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// dialectOf is the server's SQL. lower() follows the database's
// collation, and in the C locale (initdb's without a LANG) it folds ASCII
// only: a search for "überweisung" would miss "ÜBERWEISUNG". ICU's root
// collation folds every letter; a server built with ICU (Debian's, the
// official images') has it. One without lower-cases as its locale does.
func dialectOf(ctx context.Context, pool *pgxpool.Pool) (store.Dialect, error) {
	d := store.Dialect{Placeholder: placeholder, Lower: func(expr string) string { return "lower(" + expr + ")" }}
	var icu bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')`).Scan(&icu); err != nil {
		return d, fmt.Errorf("postgres: read collations: %w", err)
	}
	if icu {
		d.Lower = func(expr string) string { return `lower(` + expr + ` COLLATE "und-x-icu") COLLATE "default"` }
	}
	return d, nil
}

// checkDim compares the configured embedding dimension with the one the
// schema was made for.
func (s *Store) checkDim(ctx context.Context) error {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM settings WHERE key = 'embedding_dim'`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || (errors.As(err, &pgErr) && pgErr.Code == "42P01") {
		return nil // not migrated yet: the migration will fix it
	}
	if err != nil {
		return fmt.Errorf("postgres: read settings: %w", err)
	}
	if v != strconv.Itoa(s.dim) {
		return fmt.Errorf("postgres: the store holds %s-dimensional embeddings but the embedding dimension is configured as %d; keep them equal (a new dimension needs a new store)", v, s.dim)
	}
	return nil
}

// EmbeddingDim is the dimension of the store's example embeddings.
func (s *Store) EmbeddingDim() int { return s.dim }

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func embedded() ([]store.Migration, map[int]string, error) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	var out []store.Migration
	bodies := map[int]string{}
	for _, f := range files {
		name := strings.TrimPrefix(f, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, nil, fmt.Errorf("migration %s: name must start with its number", name)
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, store.Migration{Version: v, Name: name})
		bodies[v] = string(body)
	}
	return out, bodies, nil
}

// Migrate applies pending migrations, each in its own transaction, holding
// an advisory lock so concurrent replicas wait instead of racing.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock))
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	list, bodies, err := embedded()
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	for _, m := range list {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil || n > 0 {
				return err
			}
			body := strings.ReplaceAll(bodies[m.Version], "{{EMBEDDING_DIM}}", strconv.Itoa(s.dim))
			if _, err := tx.Exec(ctx, body); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.Version, m.Name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// MigrationStatus lists the embedded migrations and when each was applied.
func (s *Store) MigrationStatus(ctx context.Context) ([]store.Migration, error) {
	list, _, err := embedded()
	if err != nil {
		return nil, err
	}
	applied := map[int]time.Time{}
	rows, err := s.pool.Query(ctx, `SELECT version, applied_at FROM schema_migrations`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // no table: nothing applied
		return list, nil
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			rows.Close()
			return nil, err
		}
		applied[v] = time.UnixMicro(at).UTC()
	}
	rows.Close()
	for i := range list {
		if at, ok := applied[list[i].Version]; ok {
			list[i].AppliedAt = &at
		}
	}
	return list, rows.Err()
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMicros(*v)
	return &t
}

// scanner is a row being read.
type scanner interface{ Scan(dest ...any) error }

// collect runs a query and turns each row into a T with scan.
func collect[T any](ctx context.Context, q querier, op string, scan func(scanner) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return out, nil
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}
