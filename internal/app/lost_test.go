package app_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/workflows"
)

// TestLostSweepGoesOnWhereItStopped: a pass asks Temporal about at most
// its budget of instances, and the next goes on from there, process by
// process; an instance whose workflow has not started (starting, or held)
// is left alone. Temporal having no workflow of an instance ends it only
// where Temporal holds this store's history from before it (another
// instance's workflow, started earlier): a Temporal without it (its
// database replaced, or the wrong one configured) leaves every instance
// as it is, counted as unconfirmed; and its workflows the store does not
// know are not brought in.
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
	// An earlier instance's workflow, in Temporal (no worker runs it).
	earlier := api.InstanceID("a", "earlier")
	if _, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: earlier, TaskQueue: opts.TaskQueue}, workflows.ProcessWorkflow, workflows.Input{Definition: *a, InstanceID: earlier}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: "default", Query: "WorkflowId = '" + earlier + "'"})
		if err == nil && n.GetCount() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the earlier workflow is not listed: %v", err)
		}
	}
	// ran stores an instance whose workflow ran (saved its state) and
	// which Temporal has never heard of.
	ran := func(d *process.Definition, key string) string {
		id := api.InstanceID(d.Name, key)
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: d.Name, ProcessVersion: 1, BusinessKey: key, Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
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
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: starting, Process: "b", ProcessVersion: 1, BusinessKey: "b2", Input: []byte(`{}`), CreatedAt: time.Now(), PendingStart: true,
		State: process.JSON(workflows.NewState(b, workflows.StatusStarting))}); err != nil {
		t.Fatal(err)
	}
	status := func(id string) string {
		inst, err := st.Instance(ctx, id)
		var s workflows.State
		if err == nil {
			err = json.Unmarshal(inst.State, &s)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s.Status + " " + s.Error
	}
	passes := func(want ...api.LostCounts) {
		t.Helper()
		sweep := &api.LostSweep{Budget: 2}
		for pass, w := range want {
			n, err := sweep.Run(ctx, opts)
			if err != nil || n != w {
				t.Fatalf("pass %d: %+v (%v), want %+v", pass+1, n, err, w)
			}
		}
	}

	// The store does not know the earlier workflow's instance: nothing
	// shows this Temporal holds its history. Nor is that workflow's
	// instance brought into the store.
	passes(api.LostCounts{Unconfirmed: 2}, api.LostCounts{Unconfirmed: 2}, api.LostCounts{})
	if n, err := (&api.RecoverSweep{Budget: 10}).Run(ctx, opts); err != nil || n != (api.RecoverCounts{Unconfirmed: 1}) {
		t.Fatalf("the recover sweep: %+v (%v)", n, err)
	}
	if _, err := st.Instance(ctx, earlier); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a workflow with no earlier history of the store's was brought in: %v", err)
	}
	for _, id := range lost {
		if got := status(id); got != "running " {
			t.Fatalf("%s, unconfirmed: %s", id, got)
		}
	}
	// It does: the instances Temporal lost end.
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: earlier, Process: "a", ProcessVersion: 1, BusinessKey: "earlier", Input: []byte(`{}`), CreatedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	passes(api.LostCounts{Ended: 2}, api.LostCounts{Ended: 2}, api.LostCounts{})
	for _, id := range lost {
		if got := status(id); got != "failed "+api.LostWorkflow {
			t.Fatalf("%s: %s", id, got)
		}
	}
	if inst, err := st.Instance(ctx, starting); err != nil || !inst.PendingStart || inst.StateSeq != 0 {
		t.Fatalf("the instance not started: %+v (%v)", inst, err)
	}
}

// adaptflow dev holds its data directory, so the leases its store holds
// at start are an earlier run's (a crash, or a backup restored): they are
// cleared, and its sweeper runs at once, not once they expire.
func TestDevClearsAnEarlierRunsLeases(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // the data directory's SQLite store
	dir := t.TempDir()
	path := filepath.Join(dir, "adaptflow.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sweeper", "replica/old-host:8080"} {
		if _, err := st.TakeLease(t.Context(), name, "old-host:8080", time.Now(), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, dir, "", func(o *app.Options) { o.SweepEvery = 100 * time.Millisecond })
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	holder := func(name string) string {
		t.Helper()
		var h string
		if err := db.QueryRowContext(t.Context(), `SELECT holder FROM leases WHERE name = ?`, name).Scan(&h); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
		return h
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if h := holder("sweeper"); h != "" && h != "old-host:8080" {
			break // the new run holds it
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper's lease is still %q; the dev at %s never took it", holder("sweeper"), d.base)
		}
	}
	if h := holder("replica/old-host:8080"); h != "" {
		t.Fatalf("the earlier run's replica lease is still there, held by %q", h)
	}
}
