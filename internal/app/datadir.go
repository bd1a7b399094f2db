package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// errLocked is tryLock's error when another process holds the lock.
var errLocked = errors.New("locked")

// lockFile is the file in a data directory that adaptflow dev holds
// locked while it runs.
const lockFile = "adaptflow.lock"

// lockDataDir takes the data directory for this process: two adaptflow
// dev on one directory would run two Temporal servers on one database,
// each taking the other's shards in turn, and neither would work. The
// lock is the kernel's (flock): it goes with the process however it
// ends, so a crash never leaves the directory locked. The file says who
// holds it, for the error of the next that tries. The returned func lets
// it go.
func lockDataDir(dir, listen string) (func() error, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, errLocked) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("--data-dir %s: in use by %s; stop it first, or give another directory", dir, who)
		}
		return nil, fmt.Errorf("--data-dir %s: lock %s: %w", dir, lockFile, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "adaptflow dev (pid %d, --listen %s)\n", os.Getpid(), listen)
	}
	return func() error {
		_ = f.Truncate(0)
		return f.Close() // closing lets the lock go
	}, nil
}
