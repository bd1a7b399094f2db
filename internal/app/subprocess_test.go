package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/store/storetest"
	"github.com/jackc/pgx/v5"
)

// TestCancelWhileAProcessStepStoresItsInstance cancels an instance while
// its process step is storing the other instance (on PostgreSQL, a
// transaction holds that instance's row, so the step's write waits). Once
// the write goes through, the other instance, whose workflow never
// starts, is ended canceled with every step not run: it is not left
// starting for ever.
func TestCancelWhileAProcessStepStoresItsInstance(t *testing.T) {
	url := storetest.FreshPostgres(t)
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.DatabaseURL = url })
	for _, def := range []string{
		"name: vetting\nversion: 1\nsteps:\n  - {id: look, kind: task, task: noop}\n",
		"name: hiring\nversion: 1\nsteps:\n  - {id: vet, kind: process, process: {name: vetting}}\n  - {id: hire, kind: task, task: noop}\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	id := app.InstanceIDForTest("hiring", "h-1")
	childID := app.InstanceIDForTest("vetting", "sub:"+id+":vet")
	// A connection of its own watches the locks: a transaction sees the
	// activity statistics as they were at its start.
	watch, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Close(ctx) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO instances (id, process, process_version, business_key, input, created_by, created_at) VALUES ($1, 'vetting', 1, $2, '{}', 'test', 0)`,
		childID, "sub:"+id+":vet"); err != nil {
		t.Fatal(err)
	}
	if got := d.start("hiring", "h-1", map[string]any{}); got != id {
		t.Fatalf("instance id %s, want %s", got, id)
	}
	// The step's insert waits for the transaction's.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var waiting int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO instances%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process step never wrote its instance")
		}
	}
	if r := d.call("POST", "/v1/instances/"+id+"/cancel", adminKey, `{"reason":"withdrawn"}`); r.status != http.StatusOK && r.status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.status, r.raw)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if inst := d.waitStatus(id, "canceled"); plan(inst) != "vet:canceled hire:not_run" {
		t.Fatalf("canceled: plan %q", plan(inst))
	}
	child := d.waitStatus(childID, "canceled", "running", "completed")
	if child["status"] != "canceled" || plan(child) != "look:not_run" || child["error"] != "canceled with "+id+" before it started" {
		t.Fatalf("the other instance: %v", child)
	}
	d.recordHistories(map[string]string{id: "process_step_cancel_v9.json"})
}
