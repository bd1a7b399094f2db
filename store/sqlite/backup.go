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
)

// SnapshotFile is one database a snapshot copied: its file name in the
// snapshot's directory and its size.
type SnapshotFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

// Snapshot copies SQLite databases in use into out, a directory that must
// not exist, as one consistent state: the writers of primary (the store)
// are held back (a write transaction it holds; they wait, up to their
// busy timeout) while the others (Temporal's, in the order given) and
// then primary itself are copied. Each copy is a consistent, compacted
// one (VACUUM INTO), checked with PRAGMA quick_check. The files are made
// in a directory beside out and renamed to it once all are checked: out
// is whole or absent.
//
// Copying the others while the store cannot change means the copy of the
// store is never ahead of Temporal's by a write that depends on it, and
// Temporal's cannot get ahead of the store's either: its workflows write
// to the store before each decision, each save and their end, and those
// writes wait.
func Snapshot(ctx context.Context, primary string, others []string, out string) ([]SnapshotFile, error) {
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s exists already: a backup goes to a new directory", out)
	}
	for _, f := range slices.Concat(others, []string{primary}) {
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

	db, err := openForSnapshot(primary)
	if err != nil {
		return nil, err
	}
	defer func() { _ = db.Close() }()
	hold, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", primary, err)
	}
	defer func() { _ = hold.Close() }()
	if _, err := hold.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return nil, fmt.Errorf("sqlite: hold the writers of %s: %w", primary, err)
	}
	held := true
	release := func() {
		if held {
			_, _ = hold.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
			held = false
		}
	}
	defer release()

	var files []SnapshotFile
	for _, f := range slices.Concat(others, []string{primary}) {
		src := db
		if f != primary {
			if src, err = openForSnapshot(f); err != nil {
				return nil, err
			}
		}
		dst := filepath.Join(tmp, filepath.Base(f))
		_, err := src.ExecContext(ctx, `VACUUM INTO ?`, dst)
		if f != primary {
			_ = src.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: copy %s: %w", f, err)
		}
		files = append(files, SnapshotFile{Name: filepath.Base(f)})
	}
	release() // the writers go on; the checks read the copies only

	for i := range files {
		dst := filepath.Join(tmp, files[i].Name)
		if err := quickCheck(ctx, dst); err != nil {
			return nil, err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return nil, err
		}
		files[i].Bytes = st.Size()
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	return files, nil
}

// openForSnapshot opens a database to copy from, as its writers do (WAL,
// with their busy timeout).
func openForSnapshot(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?"+url.Values{"_pragma": {"busy_timeout(10000)"}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// quickCheck runs PRAGMA quick_check on a copy.
func quickCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("sqlite: open the copy %s: %w", path, err)
	}
	defer func() { _ = db.Close() }()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err != nil {
		return fmt.Errorf("sqlite: check the copy %s: %w", filepath.Base(path), err)
	}
	if res != "ok" {
		return fmt.Errorf("sqlite: the copy of %s is damaged: %s", filepath.Base(path), res)
	}
	return nil
}
