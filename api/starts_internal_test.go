package api

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// The marks of started instances are written in a batch after markEvery
// without anyone flushing, and Drain's flush writes a batch at once.
func TestStartedInstancesAreMarkedInBatches(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 5 {
		id := fmt.Sprint("i", i)
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "p", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: time.Now(), PendingStart: true}); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() int {
		left, err := st.PendingStarts(t.Context(), time.Now().Add(time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(left)
	}
	s := &starter{opts: &Options{Instances: st, Logger: slog.New(slog.DiscardHandler), Timeout: 5 * time.Second}}
	for _, id := range []string{"i0", "i1", "i2"} {
		s.markStarted(id)
	}
	for deadline := time.Now().Add(5 * time.Second); pending() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the batch never came: %d pending", pending())
		}
	}
	s.markStarted("i3")
	s.flushMarks()
	if n := pending(); n != 1 {
		t.Fatalf("after a flush: %d pending", n)
	}
}
