package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/cli"
	"github.com/adaptflow/adaptflow/internal/temporalserver"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

var procurementInput = map[string]any{"request_id": "PO-1", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"}

// TestStartsFinishedInTheBackground: with a start wait shorter than any
// Temporal answer, start requests answer 201 before the workflow exists;
// every instance still runs to completion, and none is left pending.
func TestStartsFinishedInTheBackground(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir, "", func(o *app.Options) { o.StartWait = time.Nanosecond })
	var ids []string
	for i := range 10 {
		ids = append(ids, d.start("procurement-approval", "bg-"+strconv.Itoa(i), procurementInput))
	}
	for _, id := range ids {
		d.waitStatus(id, "completed")
	}
	// The first start waited (Temporal had not answered yet); later ones
	// were handed off.
	m := regexp.MustCompile(`adaptflow_background_starts_total\{outcome="started"\} (\d+)`).FindStringSubmatch(d.call("GET", "/metrics", "", "").raw)
	if m == nil || m[1] == "0" {
		t.Fatalf("no start finished in the background: %v", m)
	}
	d.stop()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if left, err := st.PendingStarts(t.Context(), time.Now().Add(time.Hour), 100); err != nil || len(left) != 0 {
		t.Fatalf("starts left pending: %v %v", left, err)
	}
}

// TestPendingStartFinishedAfterACrash: an instance stored, but whose
// workflow start never reached Temporal (the process died in between),
// is started by the sweep when adaptflow comes back, without the business
// system retrying.
func TestPendingStartFinishedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir, "")
	def := d.expect(d.call("GET", "/v1/processes/procurement-approval", adminKey, ""), 200)
	version := int(def.body["version"].(float64))
	d.stop()

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	input, _ := json.Marshal(procurementInput)
	id := app.InstanceIDForTest("procurement-approval", "crashed")
	_, created, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "procurement-approval", ProcessVersion: version, BusinessKey: "crashed",
		Input: input, CreatedBy: "erp", CreatedAt: time.Now().Add(-10 * time.Minute), PendingStart: true})
	_ = st.Close()
	if err != nil || !created {
		t.Fatalf("store the instance: %v %v", created, err)
	}

	d = startDev(t, dir, "")
	d.waitStatus(id, "completed")
}

// TestCancelOfAPendingStart: an instance stored but whose workflow start
// never reached Temporal can be canceled at once: the cancel finishes the
// start, then cancels, without waiting for the sweep.
func TestCancelOfAPendingStart(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir, "")
	def := d.expect(d.call("GET", "/v1/processes/inventory-reconciliation", adminKey, ""), 200)
	version := int(def.body["version"].(float64))
	d.stop()

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	input, _ := json.Marshal(map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 90})
	id := app.InstanceIDForTest("inventory-reconciliation", "never-started")
	// Fresh: the sweep at start leaves it to a request that may still be
	// finishing it.
	_, created, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "inventory-reconciliation", ProcessVersion: version, BusinessKey: "never-started",
		Input: input, CreatedBy: "erp", CreatedAt: time.Now(), PendingStart: true})
	_ = st.Close()
	if err != nil || !created {
		t.Fatalf("store the instance: %v %v", created, err)
	}

	d = startDev(t, dir, "")
	if inst := d.expect(d.call("GET", "/v1/instances/"+id, adminKey, ""), 200); inst.body["status"] != "starting" {
		t.Fatalf("before the cancel: %s", inst.raw)
	}
	inst := d.expect(d.call("POST", "/v1/instances/"+id+"/cancel", adminKey, `{"reason":"sent twice"}`), 200)
	if inst.body["status"] != "canceled" || inst.body["error"] != "canceled by admin: sent twice" {
		t.Fatalf("canceled: %s", inst.raw)
	}
}

// A paused process holds its new instances (a start answers with held set
// and the workflow does not start); once resumed they start at once and
// run to their end.
func TestPausedProcessHoldsItsStarts(t *testing.T) {
	d := startDev(t, t.TempDir(), "")
	engineer := d.newKey("engineer")
	d.expect(d.call("POST", "/v1/processes/procurement-approval/pause", engineer, `{"note":"the supplier portal is down"}`), 200)
	first := d.call("POST", "/v1/processes/procurement-approval/instances", d.newKey("system"), `{"business_key":"held-1","input":`+string(mustJSON(t, procurementInput))+`}`)
	if first.status != 201 || first.body["held"] == nil {
		t.Fatalf("a start while paused: %d %s", first.status, first.raw)
	}
	id := first.body["id"].(string)
	// Held: a second later it has not started (its workflow does not exist).
	time.Sleep(time.Second)
	if inst := d.expect(d.call("GET", "/v1/instances/"+id, engineer, ""), 200); inst.body["status"] != "starting" {
		t.Fatalf("a held instance: %s", inst.raw)
	}
	d.expect(d.call("POST", "/v1/processes/procurement-approval/resume", engineer, ""), 200)
	d.waitStatus(id, "completed", "waiting_review")

	// A process step of another process holds the instance it stores too,
	// and waits: canceled while held, that instance fails the step at
	// once; the resume runs the other at once (not at the step's own look,
	// ten minutes on).
	for _, def := range []string{
		"name: vetting\nversion: 1\nsteps:\n  - {id: look, kind: task, task: noop}\n",
		"name: hiring\nversion: 1\nsteps:\n  - {id: vet, kind: process, process: {name: vetting}}\n  - {id: hire, kind: task, task: noop}\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	d.expect(d.call("POST", "/v1/processes/vetting/pause", engineer, `{"note":"the vetting desk is closed"}`), 200)
	kept, dropped := d.start("hiring", "h-1", map[string]any{}), d.start("hiring", "h-2", map[string]any{})
	for _, id := range []string{kept, dropped} {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			r := d.call("GET", "/v1/instances/"+id, engineer, "")
			results, _ := r.body["results"].(map[string]any)
			vet, _ := results["vet"].(map[string]any)
			if vet["status"] == "held" && strings.Contains(fmt.Sprint(vet["held"]), "process vetting is paused (by engineer") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the step is not held: %s", r.raw)
			}
		}
	}
	child := app.InstanceIDForTest("vetting", "sub:"+dropped+":vet")
	if r := d.call("POST", "/v1/instances/"+child+"/cancel", engineer, `{"reason":"not needed"}`); r.status != http.StatusOK || r.body["status"] != "canceled" {
		t.Fatalf("cancel a held instance of a process step: %d %s", r.status, r.raw)
	}
	if inst := d.waitStatus(dropped, "failed"); plan(inst) != "vet:failed hire:not_run" {
		t.Fatalf("its parent: %v", inst)
	}
	d.expect(d.call("POST", "/v1/processes/vetting/resume", engineer, ""), 200)
	if inst := d.waitStatus(kept, "completed"); plan(inst) != "vet:done hire:done" {
		t.Fatalf("resumed: %v", inst)
	}
	d.recordHistories(map[string]string{kept: "process_step_held_v9.json", dropped: "process_step_held_canceled_v9.json"})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConcurrencyLimit: a process that runs one instance at a time queues
// the next ones (stored, answered with held, read as held), starts the
// oldest as soon as the running one ends (the instance that ends starts
// it, not the start sweep, which is an hour off here), and a queued one
// canceled ends without ever starting.
func TestConcurrencyLimit(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = time.Hour })
	def := "name: desk\nversion: 1\nconcurrency: 1\nsteps:\n  - {id: look, kind: review, review: {queue: desk}}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	system := d.newKey("system")
	start := func(key string) resp {
		t.Helper()
		r := d.call("POST", "/v1/processes/desk/instances", system, `{"business_key":"`+key+`","input":{}}`)
		if r.status != http.StatusCreated {
			t.Fatalf("start %s: %d %s", key, r.status, r.raw)
		}
		return r
	}
	first := start("d-1")
	if first.body["held"] != nil {
		t.Fatalf("the first start is held: %s", first.raw)
	}
	firstID := first.body["id"].(string)
	d.waitStatus(firstID, "waiting_review")
	second, third := start("d-2"), start("d-3")
	for _, r := range []resp{second, third} {
		if !strings.Contains(fmt.Sprint(r.body["held"]), "process desk runs 1 instance at once, its concurrency limit: this one is queued") {
			t.Fatalf("a start over the limit: %s", r.raw)
		}
	}
	secondID, thirdID := second.body["id"].(string), third.body["id"].(string)
	// The process and /metrics say how many wait.
	if got := d.call("GET", "/v1/processes/desk", adminKey, ""); got.body["queued"] != 2.0 {
		t.Fatalf("the process: %s", got.raw)
	}
	if m := d.call("GET", "/metrics", "", ""); !strings.Contains(m.raw, `adaptflow_instances_queued{process="desk"} 2`) {
		t.Fatalf("/metrics has no queued gauge of 2 for desk")
	}
	var out, errOut bytes.Buffer
	if code := cli.Process(t.Context(), []string{"list", "--server", d.base, "--api-key", adminKey}, &out, &errOut); code != 0 ||
		!regexp.MustCompile(`(?m)^desk +v1 +.*2 queued$`).MatchString(out.String()) {
		t.Fatalf("process list: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if got := d.call("GET", "/v1/instances/"+secondID, system, ""); got.body["status"] != "starting" || !strings.Contains(fmt.Sprint(got.body["held"]), "queued") {
		t.Fatalf("a queued instance: %s", got.raw)
	}
	// The third is canceled while queued: it never starts.
	if got := d.call("POST", "/v1/instances/"+thirdID+"/cancel", system, `{"reason":"duplicate"}`); got.status != http.StatusOK ||
		got.body["error"] != "canceled by system-1: duplicate (queued under the concurrency limit of desk; it never started)" {
		t.Fatalf("cancel a queued instance: %d %s", got.status, got.raw)
	}
	reviewer := d.newKey("reviewer")
	decide := func(id string) {
		t.Helper()
		inst := d.waitStatus(id, "waiting_review")
		rv := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
		d.expect(d.call("POST", "/v1/reviews/"+rv+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	}
	decide(firstID)
	d.waitStatus(firstID, "completed")
	// Its slot goes to the second at once.
	decide(secondID)
	d.waitStatus(secondID, "completed")
	if got := d.call("GET", "/v1/instances/"+thirdID, system, ""); got.body["status"] != "canceled" {
		t.Fatalf("the canceled one: %s", got.raw)
	}

	// Another process's step queues for a slot too: the instance that ends
	// wakes it, and it runs.
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: hire\nversion: 1\nsteps:\n  - {id: vet, kind: process, process: {name: desk}}\n"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	fourthID := start("d-4").body["id"].(string)
	d.waitStatus(fourthID, "waiting_review")
	hireID := d.start("hire", "h-1", map[string]any{})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := d.call("GET", "/v1/instances/"+hireID, system, "")
		results, _ := r.body["results"].(map[string]any)
		if vet, _ := results["vet"].(map[string]any); vet["status"] == "held" && strings.Contains(fmt.Sprint(vet["held"]), "its concurrency limit") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step is not queued: %s", r.raw)
		}
	}
	decide(fourthID)
	child := app.InstanceIDForTest("desk", "sub:"+hireID+":vet")
	decide(child) // it got the slot, and waits for its review
	if inst := d.waitStatus(hireID, "completed"); plan(inst) != "vet:done" {
		t.Fatalf("hire: %v", inst)
	}

	// A parent terminated in Temporal while its step's instance is queued
	// leaves the queue free: the next in line gets the slot.
	fifthID := start("d-5").body["id"].(string)
	d.waitStatus(fifthID, "waiting_review")
	stuckID := d.start("hire", "h-2", map[string]any{})
	stuckChild := app.InstanceIDForTest("desk", "sub:"+stuckID+":vet")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r := d.call("GET", "/v1/instances/"+stuckChild, system, ""); r.status == http.StatusOK && strings.Contains(fmt.Sprint(r.body["held"]), "queued") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the step's instance is not queued")
		}
	}
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.TerminateWorkflow(t.Context(), stuckID, "", "stuck"); err != nil {
		t.Fatal(err)
	}
	sixth := start("d-6")
	if !strings.Contains(fmt.Sprint(sixth.body["held"]), "queued") {
		t.Fatalf("d-6 jumped the queue: %s", sixth.raw)
	}
	decide(fifthID)
	d.waitStatus(sixth.body["id"].(string), "waiting_review")
	d.recordHistories(map[string]string{firstID: "concurrency_v10.json", hireID: "process_step_queued_v9.json"})

	// A retry takes a slot as a start does: with none free it waits in
	// the queue, and the instance that frees one runs it; then it holds
	// the slot.
	failedID, def := failedCourier(t, d, 1)
	runningID := d.start("courier", "c-2", map[string]any{})
	d.waitStatus(runningID, "waiting_review")
	engineer := d.newKey("engineer")
	const queuedRetry = "process courier runs 1 instance at once, its concurrency limit: its retry (retried by engineer-1: the partner is back) is queued, and runs as others end, oldest first"
	if r := d.call("POST", "/v1/instances/"+failedID+"/retry", engineer, `{"reason":"the partner is back"}`); r.status != http.StatusAccepted ||
		r.body["status"] != "failed" || r.body["held"] != queuedRetry {
		t.Fatalf("a retry with no free slot: %d %s", r.status, r.raw)
	}
	if r := d.call("POST", "/v1/instances/"+failedID+"/retry", engineer, ""); r.status != http.StatusConflict || !strings.Contains(r.raw, "has a retry queued already") {
		t.Fatalf("a second retry while one is queued: %d %s", r.status, r.raw)
	}
	if r := d.call("GET", "/v1/instances/"+failedID, engineer, ""); r.body["held"] != queuedRetry {
		t.Fatalf("an instance whose retry is queued: %s", r.raw)
	}
	if got := d.call("GET", "/v1/processes/courier", adminKey, ""); got.body["queued"] != 1.0 {
		t.Fatalf("the process with a queued retry: %s", got.raw)
	}
	if got := d.call("GET", "/v1/processes/courier/instances?status=queued", adminKey, ""); got.status != http.StatusOK || !strings.Contains(got.raw, failedID) || strings.Contains(got.raw, runningID) {
		t.Fatalf("the queued instances of courier: %d %s", got.status, got.raw)
	}
	// A cancel withdraws the queued retry; it stays failed. Queued again,
	// it runs when the slot frees.
	if r := d.call("POST", "/v1/instances/"+failedID+"/cancel", engineer, `{"reason":"not yet"}`); r.status != http.StatusOK || r.body["status"] != "failed" || r.body["held"] != nil {
		t.Fatalf("withdraw a queued retry: %d %s", r.status, r.raw)
	}
	if got := d.call("GET", "/v1/processes/courier", adminKey, ""); got.body["queued"] != 0.0 {
		t.Fatalf("the process after the retry was withdrawn: %s", got.raw)
	}
	// A retry counts as it runs: the withdrawn one never did.
	if m := d.call("GET", "/metrics", "", "").raw; strings.Contains(m, `adaptflow_instance_retries_total{process="courier"}`) {
		t.Fatalf("a withdrawn retry is counted on /metrics")
	}
	// Queued again from the CLI, for every failed instance of the process.
	out.Reset()
	errOut.Reset()
	if code := cli.Instances(t.Context(), []string{"retry", "--process", "courier", "--reason", "the partner is back", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), failedID+" (business key c-1): failed (held: "+queuedRetry+")\n") ||
		!strings.HasSuffix(out.String(), "retried 1 of 1 failed instances of courier (1 held: queued under the concurrency limit, or paused)\n") {
		t.Fatalf("adaptflow instances retry --process, queued: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := cli.Instances(t.Context(), []string{"show", failedID, "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), ": failed\n  error: ") || !strings.Contains(out.String(), "\n  held: "+queuedRetry+"\n") {
		t.Fatalf("adaptflow instances show, its retry queued: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	decide(runningID)
	d.waitStatus(runningID, "completed")
	d.waitStatus(failedID, "waiting_review")
	if m := d.call("GET", "/metrics", "", "").raw; !strings.Contains(m, `adaptflow_instance_retries_total{process="courier"} 1`+"\n") {
		t.Fatalf("/metrics does not count the queued retry that ran once")
	}
	queued := d.call("POST", "/v1/processes/courier/instances", system, `{"business_key":"c-3","input":{}}`)
	if queued.status != http.StatusCreated || !strings.Contains(fmt.Sprint(queued.body["held"]), "queued") {
		t.Fatalf("a start while the retried instance runs: %d %s", queued.status, queued.raw)
	}

	// A new version that raises the limit starts the queued instance at
	// once (the start sweep is an hour off here).
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", strings.NewReplacer("version: 1", "version: 2", "concurrency: 1", "concurrency: 2").Replace(def)); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	d.waitStatus(queued.body["id"].(string), "waiting_review")
}

// A queued retry that took its slot, but whose starter stopped before it
// ran it (a crash), is run by the start sweep.
func TestQueuedRetryRunByTheSweep(t *testing.T) {
	dir, start := hourlySweeps(t)
	d := start()
	failedID, _ := failedCourier(t, d, 1)
	d.waitStatus(d.start("courier", "c-2", map[string]any{}), "waiting_review")
	d.expect(d.call("POST", "/v1/instances/"+failedID+"/retry", adminKey, `{"reason":"back"}`), http.StatusAccepted)
	// The server looks at the queue as it queues the retry: stopped, it
	// cannot take the retry the starter below admits. Its Temporal runs
	// on for the sweep, on the same database.
	d.stop()
	topts := temporalserver.DefaultOptions()
	topts.FrontendAddress, topts.DatabaseFile = "127.0.0.1:0", filepath.Join(dir, "temporal.db")
	ts, err := temporalserver.Start(t.Context(), topts)
	if err != nil {
		t.Fatal(err)
	}
	stopTemporal := sync.OnceValue(ts.Stop)
	t.Cleanup(func() { _ = stopTemporal() })

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// A starter admitted it (under a limit raised a moment before), then
	// stopped.
	if ok, err := st.Admit(t.Context(), failedID, 2); err != nil || !ok {
		t.Fatalf("admit the queued retry: %v %v", ok, err)
	}
	tc, err := client.Dial(client.Options{HostPort: ts.Address(), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	n, err := api.SweepStarts(t.Context(), api.SweepOptions{Options: api.Options{
		Instances: st, Definitions: st, Schedules: st, Retries: st, Temporal: tc, TaskQueue: app.TaskQueue, Namespace: "default", Logger: slog.New(slog.DiscardHandler),
	}, MinAge: time.Nanosecond})
	if err != nil || n != 1 {
		t.Fatalf("the sweep ran %d: %v", n, err)
	}
	if in, err := st.Instance(t.Context(), failedID); err != nil || in.RetryQueued != "" || in.PendingStart || in.Queued {
		t.Fatalf("the retried instance in the store: %+v %v", in, err)
	}
	// The retried run goes on once the server (its worker) is back.
	if err := stopTemporal(); err != nil {
		t.Fatal(err)
	}
	start().waitStatus(failedID, "waiting_review")
}

// A pause holds retries as it holds new instances: a retry of a paused
// process's failed instance is queued (202, held saying so), waits while
// the process is paused, and runs when it is resumed.
func TestPausedProcessHoldsRetries(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = time.Hour })
	failedID, _ := failedCourier(t, d, 0)
	d.expect(d.call("POST", "/v1/processes/courier/pause", adminKey, `{"note":"the partner is down"}`), http.StatusOK)

	r := d.call("POST", "/v1/instances/"+failedID+"/retry", adminKey, `{"reason":"back"}`)
	held := fmt.Sprint(r.body["held"])
	if r.status != http.StatusAccepted || r.body["status"] != "failed" || !strings.Contains(held, "process courier is paused") ||
		!strings.HasSuffix(held, "; its retry (retried by admin: back) waits too, and runs then") {
		t.Fatalf("a retry while paused: %d %s", r.status, r.raw)
	}
	if got := d.call("GET", "/v1/processes/courier/instances?status=queued", adminKey, ""); !strings.Contains(got.raw, failedID) {
		t.Fatalf("the paused process's waiting retries: %s", got.raw)
	}
	if got := d.call("GET", "/v1/processes/courier", adminKey, ""); got.body["queued"] != 1.0 {
		t.Fatalf("the paused process says how many retries wait: %s", got.raw)
	}
	// The queue looked at once, and left it: still failed, still held.
	time.Sleep(300 * time.Millisecond)
	if got := d.call("GET", "/v1/instances/"+failedID, adminKey, ""); got.body["status"] != "failed" || got.body["held"] != r.body["held"] {
		t.Fatalf("a retry held by the pause ran: %s", got.raw)
	}
	if m := d.call("GET", "/metrics", "", "").raw; strings.Contains(m, `adaptflow_instance_retries_total{process="courier"}`) {
		t.Fatalf("a retry held by the pause is counted as run")
	}

	d.expect(d.call("POST", "/v1/processes/courier/resume", adminKey, ""), http.StatusOK)
	d.waitStatus(failedID, "waiting_review")
	if m := d.call("GET", "/metrics", "", "").raw; !strings.Contains(m, `adaptflow_instance_retries_total{process="courier"} 1`+"\n") {
		t.Fatalf("/metrics does not count the retry run on resume")
	}
}

// The latest version's limit holds for the instances of every version: an
// instance of a version that declared none, ending, starts the one queued
// behind it (the start sweep is an hour off here).
func TestConcurrencyLimitAcrossVersions(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = time.Hour })
	const steps = "steps:\n  - {id: look, kind: review, review: {queue: line}}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: line\nversion: 1\n"+steps); r.status != http.StatusCreated {
		t.Fatalf("register v1: %d %s", r.status, r.raw)
	}
	first := d.start("line", "l-1", map[string]any{})
	d.waitStatus(first, "waiting_review")
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: line\nversion: 2\nconcurrency: 1\n"+steps); r.status != http.StatusCreated {
		t.Fatalf("register v2: %d %s", r.status, r.raw)
	}
	second := d.call("POST", "/v1/processes/line/instances", adminKey, `{"business_key":"l-2","input":{}}`)
	if second.status != http.StatusCreated || !strings.Contains(fmt.Sprint(second.body["held"]), "queued") {
		t.Fatalf("a start while v1's instance holds the slot: %d %s", second.status, second.raw)
	}
	inst := d.waitStatus(first, "waiting_review")
	rv := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	d.expect(d.call("POST", "/v1/reviews/"+rv+"/decision", adminKey, `{"verdict":"approve"}`), http.StatusOK)
	d.waitStatus(first, "completed")
	d.waitStatus(second.body["id"].(string), "waiting_review")
}

// failedCourier registers the process courier (with the concurrency
// limit given, 0 for none): a call to a partner, then a review. Its
// instance c-1 fails while the partner is down; then the partner is back.
// It returns that instance and the definition.
func failedCourier(t *testing.T, d *dev, concurrency int) (failedID, def string) {
	t.Helper()
	down, partner := flakyPartner(t)
	def = "name: courier\nversion: 1\n"
	if concurrency > 0 {
		def += fmt.Sprintf("concurrency: %d\n", concurrency)
	}
	def += "steps:\n  - {id: book, kind: http, retries: 0, http: {method: POST, url: \"" + partner + "\"}}\n  - {id: check, kind: review, review: {queue: desk}}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	failedID = d.start("courier", "c-1", map[string]any{})
	d.waitStatus(failedID, "failed")
	down.Store(false)
	return failedID, def
}

// TestEndInTemporalStartsTheQueue: an instance of a process that runs one
// at a time is terminated in Temporal (an operator, through its UI or
// CLI). The sweep that records its end starts the instance queued behind
// it at once, as the workflow's own end would, not at the sweep's next
// pass (an hour here; 30 s by default).
func TestEndInTemporalStartsTheQueue(t *testing.T) {
	_, start := hourlySweeps(t)
	d := start()
	def := "name: desk\nversion: 1\nconcurrency: 1\nsteps:\n  - {id: look, kind: review, review: {queue: desk}}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	first := d.start("desk", "d-1", map[string]any{})
	d.waitStatus(first, "waiting_review")
	r := d.expect(d.call("POST", "/v1/processes/desk/instances", adminKey, `{"business_key":"d-2","input":{}}`), http.StatusCreated)
	second := r.body["id"].(string)
	if !strings.Contains(fmt.Sprint(r.body["held"]), "queued") {
		t.Fatalf("the second start is not queued: %s", r.raw)
	}
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.TerminateWorkflow(t.Context(), first, "", "stuck"); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	// A new run's first pass of the sweeper finds the end (the one before
	// it ran as the server started).
	d.stop()
	d = start()
	if inst := d.waitStatus(first, "failed"); !strings.Contains(fmt.Sprint(inst["error"]), "terminated in Temporal") {
		t.Fatalf("the terminated instance: %v", inst)
	}
	d.waitStatus(second, "waiting_review")
}

// hourlySweeps is a new data directory for adaptflow dev on its SQLite
// store, and start, which starts it there (again after a stop) with the
// sweeper an hour apart: only its first pass, as it starts, runs in a
// test.
func hourlySweeps(t *testing.T) (string, func() *dev) {
	t.Helper()
	t.Setenv("DATABASE_URL", "") // the data directory's SQLite store
	dir := t.TempDir()
	return dir, func() *dev {
		return startDev(t, dir, "", func(o *app.Options) { o.SweepEvery = time.Hour })
	}
}
