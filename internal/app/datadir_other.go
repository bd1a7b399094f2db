//go:build !unix

package app

import "os"

// tryLock takes no lock where flock is missing: the data directory is
// not guarded there.
func tryLock(*os.File) error { return nil }
