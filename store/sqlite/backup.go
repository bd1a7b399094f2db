package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"modernc.org/sqlite"
)

// SnapshotFile is one database a snapshot copied: its file name in the
// snapshot's directory and its size.
type SnapshotFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// Snapshot copies SQLite databases in use into out, a directory that must
// not exist, as one consistent state, and holds no writer while it copies.
//
// The writers of primary (the store) are held back for a moment only (a
// write transaction it holds; they wait, up to their busy timeout) while a
// read transaction is opened on each database: the others (Temporal's)
// and then primary itself. Each read transaction pins its database's state
// at that instant (WAL: later writes go on beside it). Then the writers
// are let go, and each database is copied from its pinned state through
// SQLite's online backup, compacted (VACUUM) and checked (PRAGMA
// quick_check) in the copy. The files are made in a directory beside out
// and renamed to it once all are checked: out is whole or absent.
//
// Pinning the others while the store cannot change means the copy of the
// store is never ahead of Temporal's by a write that depends on it, and
// Temporal's cannot get ahead of the store's either: its workflows write
// to the store before each decision, each save and their end, and those
// writes wait.
func Snapshot(ctx context.Context, primary string, others []string, out string) ([]SnapshotFile, error) {
	all := slices.Concat(others, []string{primary})
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s exists already: a backup goes to a new directory", out)
	}
	for _, f := range all {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("no database at %s: %w", f, err)
		}
	}
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".partial-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }() // gone once renamed; a failure leaves nothing

	pins, err := pin(ctx, primary, all)
	defer func() {
		for _, p := range pins {
			p.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	if snapshotPinned != nil {
		snapshotPinned()
	}
	files := make([]SnapshotFile, len(all))
	for i, p := range pins {
		dst := filepath.Join(tmp, filepath.Base(all[i]))
		if err := p.copyTo(ctx, dst); err != nil {
			return nil, fmt.Errorf("sqlite: copy %s: %w", all[i], err)
		}
		p.close() // its pinned state is no longer needed: the WAL may be checkpointed past it
		if err := compact(ctx, dst); err != nil {
			return nil, err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return nil, err
		}
		files[i] = SnapshotFile{Name: filepath.Base(all[i]), Bytes: st.Size()}
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return files, nil
}

// snapshotPinned, when set (by tests), runs once Snapshot has pinned
// every database and let the writers go, before it copies.
var snapshotPinned func()

// pinned is a database held at one state by a read transaction.
type pinned struct {
	db   *sql.DB
	conn *sql.Conn
}

func (p *pinned) close() {
	if p.conn != nil {
		_, _ = p.conn.ExecContext(context.Background(), `ROLLBACK`)
		_ = p.conn.Close()
		p.conn = nil
	}
	if p.db != nil {
		_ = p.db.Close()
		p.db = nil
	}
}

// pin opens a read transaction on each of files, in order, while the
// writers of primary are held back. The pins made are returned even with
// an error, for the caller to close.
func pin(ctx context.Context, primary string, files []string) ([]*pinned, error) {
	hold, err := openForSnapshot(primary)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hold.Close() }()
	held, err := hold.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", primary, err)
	}
	defer func() { _ = held.Close() }()
	if _, err := held.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return nil, fmt.Errorf("sqlite: hold the writers of %s: %w", primary, err)
	}
	defer func() { _, _ = held.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) }()
	var pins []*pinned
	for _, f := range files {
		p := &pinned{}
		pins = append(pins, p)
		if p.db, err = openForSnapshot(f); err != nil {
			return pins, err
		}
		if p.conn, err = p.db.Conn(ctx); err != nil {
			return pins, fmt.Errorf("sqlite: %s: %w", f, err)
		}
		// A read transaction starts at its first read, and sees the
		// database as it is then until it ends.
		if _, err := p.conn.ExecContext(ctx, `BEGIN`); err != nil {
			return pins, fmt.Errorf("sqlite: read %s: %w", f, err)
		}
		var n int
		if err := p.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_schema`).Scan(&n); err != nil {
			return pins, fmt.Errorf("sqlite: read %s: %w", f, err)
		}
	}
	return pins, nil
}

// backuper is what the SQLite driver's connection offers for an online
// backup.
type backuper interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
}

// copyTo copies the pinned state to a new database at dst: the online
// backup reads through the connection's open read transaction, so it
// copies that state, however the database changes meanwhile.
func (p *pinned) copyTo(ctx context.Context, dst string) error {
	return p.conn.Raw(func(dc any) error {
		b, ok := dc.(backuper)
		if !ok {
			return fmt.Errorf("the driver's connection (%T) has no online backup", dc)
		}
		bk, err := b.NewBackup("file:" + URIPath(dst))
		if err != nil {
			return err
		}
		for more := true; more; {
			if err := ctx.Err(); err != nil {
				_ = bk.Finish()
				return err
			}
			if more, err = bk.Step(4096); err != nil {
				_ = bk.Finish()
				return err
			}
		}
		return bk.Finish()
	})
}

// compactFree: a copy is compacted when more than 1/compactFree of its
// pages are free.
const compactFree = 10

// compact rewrites a copy without its free pages (VACUUM) when many are
// free, and checks it.
func compact(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+URIPath(path))
	if err != nil {
		return fmt.Errorf("sqlite: open the copy %s: %w", path, err)
	}
	defer func() { _ = db.Close() }()
	var free, pages int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_count FROM pragma_page_count)`).Scan(&free, &pages); err != nil {
		return fmt.Errorf("sqlite: read the copy %s: %w", filepath.Base(path), err)
	}
	if free*compactFree > pages { // worth rewriting: a tenth or more is free
		if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("sqlite: compact the copy %s: %w", filepath.Base(path), err)
		}
	}
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err != nil {
		return fmt.Errorf("sqlite: check the copy %s: %w", filepath.Base(path), err)
	}
	if res != "ok" {
		return fmt.Errorf("sqlite: the copy of %s is damaged: %s", filepath.Base(path), res)
	}
	return nil
}

// openForSnapshot opens a database to copy from, as its writers do (WAL,
// with their busy timeout).
func openForSnapshot(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+URIPath(path)+"?"+url.Values{"_pragma": {"busy_timeout(10000)"}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}
