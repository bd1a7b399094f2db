package api

import (
	"testing"

	"github.com/adaptflow/adaptflow/workflows"
)

func TestFinishedStatesKeepOnlyFinalStates(t *testing.T) {
	f := newFinishedStates(2)
	f.put("running", workflows.State{Status: workflows.StatusRunning})
	f.put("waiting", workflows.State{Status: workflows.StatusWaitingReview})
	if _, ok := f.get("running"); ok {
		t.Fatal("a running instance's state was kept")
	}
	if _, ok := f.get("waiting"); ok {
		t.Fatal("a waiting instance's state was kept")
	}
	f.put("a", workflows.State{Status: workflows.StatusCompleted})
	f.put("b", workflows.State{Status: workflows.StatusFailed, Error: "boom"})
	f.put("c", workflows.State{Status: workflows.StatusRejected})
	if _, ok := f.get("a"); ok {
		t.Fatal("the oldest entry was not dropped when full")
	}
	if st, ok := f.get("b"); !ok || st.Error != "boom" {
		t.Fatalf("b: %+v %v", st, ok)
	}
	if _, ok := f.get("c"); !ok {
		t.Fatal("c was not kept")
	}
}
