//go:build unix

package app

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes the kernel's exclusive lock on f, or fails at once with
// errLocked.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}
