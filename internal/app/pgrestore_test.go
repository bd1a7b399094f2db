package app_test

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/internal/app"
)

// pgTool runs one of PostgreSQL 15's client programs.
func pgTool(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(filepath.Join("/usr/lib/postgresql/15/bin", name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestPostgresRestoredFromADump restores the PostgreSQL store from a
// pg_dump (what the README tells operators to back it up with) taken while
// an instance waited for its first review. Since the dump, that instance
// went on to its second review, and another started and completed. Once
// adaptflow runs again on the restored store, the sweeps bring the first
// up to its workflow and the second back, each with the decision records
// made since the dump: the instances, their decisions and the audit chain
// read as before, and the second review's verdict completes the first.
func TestPostgresRestoredFromADump(t *testing.T) {
	pg := startCluster(t)
	t.Cleanup(app.LostMinAgeForTest(0))
	dir := t.TempDir()
	start := func() *dev {
		return startDev(t, dir, "", func(o *app.Options) { o.DatabaseURL, o.SweepEvery = pg.url, 100*time.Millisecond })
	}
	d := start()
	for _, y := range []string{
		"name: two-looks\nversion: 1\nsteps:\n  - {id: look1, kind: review, review: {queue: looks}}\n  - {id: look2, kind: review, review: {queue: looks}}\n  - {id: done, kind: task, task: noop}\n",
		"name: quick-one\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", y); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	reviewer := d.newKey("reviewer")
	id := d.start("two-looks", "tl-1", map[string]any{})
	first := d.waitStatus(id, "waiting_review")["reviews"].([]any)[0].(map[string]any)["id"].(string)
	dump := filepath.Join(t.TempDir(), "store.dump")
	pgTool(t, "pg_dump", "--format=custom", "--file="+dump, "--dbname="+pg.url)

	d.expect(d.call("POST", "/v1/reviews/"+first+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	second := d.secondReview(id)
	quick := d.start("quick-one", "q-1", map[string]any{})
	d.waitStatus(quick, "completed")
	decided := map[string]string{id: d.decisions(id), quick: d.decisions(quick)}
	d.stop()
	pgTool(t, "pg_restore", "--clean", "--if-exists", "--dbname="+pg.url, dump)

	d = start()
	// The restored store holds the first instance at its first review,
	// and not the second instance; the sweeper catches up (once the
	// earlier run's leases, restored with the store, run out).
	var inst map[string]any
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		inst = d.expect(d.call("GET", "/v1/instances/"+id, adminKey, ""), http.StatusOK).body
		if plan(inst) == "look1:done look2:waiting_review done:pending" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance after the restore: %v", inst)
		}
	}
	if got := d.decisions(id); got != decided[id] {
		t.Fatalf("the decisions of the instance caught up:\n%s\nbefore the restore:\n%s", got, decided[id])
	}
	if back := d.waitStatus(quick, "completed"); back["created_by"] != api.RecoveredBy {
		t.Fatalf("the instance started and ended since the dump: %v", back)
	}
	if got := d.decisions(quick); got != decided[quick] || got == "" {
		t.Fatalf("the decisions of the instance brought back:\n%s\nbefore the restore:\n%s", got, decided[quick])
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK).body; v["ok"] != true {
		t.Fatalf("the audit chain after the restore: %v", v)
	}
	if inbox := d.call("GET", "/v1/reviews?queue=looks", reviewer, ""); !strings.Contains(inbox.raw, second) || strings.Contains(inbox.raw, first) {
		t.Fatalf("the inbox after the restore: %s", inbox.raw)
	}
	d.expect(d.call("POST", "/v1/reviews/"+second+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	if done := d.waitStatus(id, "completed"); plan(done) != "look1:done look2:done done:done" {
		t.Fatalf("after the second verdict: %v", done)
	}
}
