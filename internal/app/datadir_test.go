//go:build unix

package app

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLockHelper holds the lock of the data directory ADAPTFLOW_LOCK_DIR
// until it is killed (run by TestDataDirLockGoesWithItsProcess).
func TestLockHelper(t *testing.T) {
	dir := os.Getenv("ADAPTFLOW_LOCK_DIR")
	if dir == "" {
		t.Skip("a helper process of TestDataDirLockGoesWithItsProcess")
	}
	if _, err := lockDataDir(dir, "127.0.0.1:9"); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {}
}

// TestDataDirLockGoesWithItsProcess: a data directory is refused while
// another process holds it, naming that process, and free again once the
// process is killed (no clean stop, nothing removed): a crash never
// leaves it locked.
func TestDataDirLockGoesWithItsProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	cmd.Env = append(os.Environ(), "ADAPTFLOW_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the helper: %q", line)
	}
	_, err = lockDataDir(dir, "127.0.0.1:0")
	if want := fmt.Sprintf("in use by adaptflow dev (pid %d, --listen 127.0.0.1:9)", cmd.Process.Pid); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("while another process holds it: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	unlock, err := lockDataDir(dir, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}
