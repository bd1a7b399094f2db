package app_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/workflows"
)

// TestLostSweepGoesOnWhereItStopped: a pass asks Temporal about at most
// its budget of instances, and the next goes on from there, process by
// process; an instance whose workflow has not started (starting, or held)
// is left alone, as is one Temporal has.
func TestLostSweepGoesOnWhereItStopped(t *testing.T) {
	ctx := t.Context()
	ts := startTemporal(t)
	tc, err := client.Dial(client.Options{HostPort: ts.Address(), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := apitest.Options(t, st)
	opts.Temporal, opts.Namespace = tc, "default"

	def := func(name string) *process.Definition {
		d, err := process.ParseDefinition([]byte("name: " + name + "\nversion: 1\nsteps:\n  - {id: look, kind: review, review: {queue: q}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutDefinition(ctx, store.DefinitionRecord{Name: d.Name, Version: 1, Doc: process.JSON(d), Digest: name, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := def("a"), def("b")
	// ran stores an instance whose workflow ran (saved its state) and
	// which Temporal has never heard of.
	ran := func(d *process.Definition, key string) string {
		id := api.InstanceID(d.Name, key)
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: d.Name, ProcessVersion: 1, BusinessKey: key, Input: []byte(`{}`), CreatedAt: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		s := workflows.NewState(d, workflows.StatusRunning)
		if _, err := st.SaveInstanceState(ctx, id, "run-1", 1, process.JSON(s)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	lost := []string{ran(a, "a1"), ran(a, "a2"), ran(a, "a3"), ran(b, "b1")}
	starting := api.InstanceID("b", "b2") // stored, its workflow not started
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: starting, Process: "b", ProcessVersion: 1, BusinessKey: "b2", Input: []byte(`{}`), CreatedAt: time.Now().Add(-time.Hour), PendingStart: true,
		State: process.JSON(workflows.NewState(b, workflows.StatusStarting))}); err != nil {
		t.Fatal(err)
	}

	sweep := &api.LostSweep{Budget: 2}
	for pass, want := range []int{2, 2, 0} {
		n, err := sweep.Run(ctx, opts)
		if err != nil || n != want {
			t.Fatalf("pass %d: ended %d (%v), want %d", pass+1, n, err, want)
		}
	}
	for _, id := range lost {
		inst, err := st.Instance(ctx, id)
		var s workflows.State
		if err == nil {
			err = json.Unmarshal(inst.State, &s)
		}
		if err != nil || s.Status != workflows.StatusFailed || s.Error != api.LostWorkflow {
			t.Fatalf("%s: %s %q (%v)", id, s.Status, s.Error, err)
		}
	}
	if inst, err := st.Instance(ctx, starting); err != nil || !inst.PendingStart || inst.StateSeq != 0 {
		t.Fatalf("the instance not started: %+v (%v)", inst, err)
	}
}
