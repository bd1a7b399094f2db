package app_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/cli"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// TestRetryAFailedInstance: an instance whose payment step failed (the
// payment service was down) is retried once the service is back. It runs
// again from that step: the step before it is not called again, the
// failed one is, then the rest; the decision chain stays whole.
func TestRetryAFailedInstance(t *testing.T) {
	var down atomic.Bool
	var reserves, charges atomic.Int32
	down.Store(true)
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reserve":
			reserves.Add(1)
			w.WriteHeader(http.StatusNoContent)
		case "/charge":
			charges.Add(1)
			if down.Load() {
				http.Error(w, "payments are down", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"charged":true}`)
		}
	}))
	defer ext.Close()
	d := startDev(t, t.TempDir(), "")
	def := `
name: billing
version: 1
input:
  properties:
    amount: {type: number}
steps:
  - {id: reserve, kind: http, http: {method: POST, url: "` + ext.URL + `/reserve"}}
  - {id: charge, kind: http, retries: 1, http: {method: POST, url: "` + ext.URL + `/charge", body: {amount: "${input.amount}"}}}
  - {id: receipt, kind: task, task: noop}
`
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	engineer := d.newKey("engineer")
	id := d.start("billing", "bill-1", map[string]any{"amount": 12})
	inst := d.waitStatus(id, "failed")
	if got := plan(inst); got != "reserve:done charge:failed receipt:not_run" || !strings.Contains(inst["error"].(string), "payments are down") {
		t.Fatalf("failed instance: plan %q, error %v", got, inst["error"])
	}
	if n := charges.Load(); n != 2 {
		t.Fatalf("the payment service was called %d times, want 2 (retries: 1)", n)
	}

	// While the service is still down, a retry runs the step again, and
	// the instance fails again. Two operators retrying at once retry it
	// once.
	var wg sync.WaitGroup
	answers := make([]resp, 2)
	for i := range answers {
		wg.Go(func() {
			answers[i] = d.call("POST", "/v1/instances/"+id+"/retry", engineer, `{"reason":"payments said they are back"}`)
		})
	}
	wg.Wait()
	accepted := 0
	for _, r := range answers {
		if r.status == http.StatusOK {
			accepted++
		}
		ranAgain := r.status == http.StatusOK && r.body["status"] != "failed"
		refused := r.status == http.StatusConflict && strings.Contains(r.raw, "is being retried already")
		if !ranAgain && !refused {
			t.Fatalf("racing retries: %d %s", r.status, r.raw)
		}
	}
	if accepted != 1 {
		t.Fatalf("%d of two racing retries went ahead: %+v", accepted, answers)
	}
	d.waitStatus(id, "failed")
	if n := charges.Load(); n != 4 {
		t.Fatalf("after a retry the payment service was called %d times, want 4", n)
	}

	// Once it is back, a retry (from the CLI) completes the instance.
	down.Store(false)
	var out, errOut bytes.Buffer
	if code := cli.Instances(t.Context(), []string{"retry", id, "--reason", "payments are back", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 {
		t.Fatalf("adaptflow instances retry: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	inst = d.waitStatus(id, "completed")
	if got := plan(inst); got != "reserve:done charge:done receipt:done" {
		t.Fatalf("plan after the retry: %q", got)
	}
	if charged := inst["results"].(map[string]any)["charge"].(map[string]any)["body"]; fmt.Sprint(charged) != "map[charged:true]" {
		t.Fatalf("the payment's result: %v", inst["results"])
	}
	if n, m := reserves.Load(), charges.Load(); n != 1 || m != 5 {
		t.Fatalf("reserve called %d times (want once: it had succeeded), charge %d times (want 5)", n, m)
	}
	// The steps before the failed one were decided once; the failed one
	// was decided again by each run that ran it; the rest once.
	perStep := map[string]int{}
	for _, x := range d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", adminKey, ""), http.StatusOK).body["decisions"].([]any) {
		perStep[x.(map[string]any)["step"].(string)]++
	}
	if perStep["reserve"] != 1 || perStep["charge"] != 3 || perStep["receipt"] != 1 {
		t.Fatalf("decisions per step: %v", perStep)
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK); v.body["ok"] != true {
		t.Fatalf("hash chains after the retries: %s", v.raw)
	}
	if a := d.expect(d.call("GET", "/v1/audit?action=POST+/v1/instances/:id/retry", adminKey, ""), http.StatusOK); strings.Count(a.raw, `"actor":"engineer-1"`) != 2 {
		t.Fatalf("audit of the retries: %s", a.raw)
	}

	if m := d.expect(d.call("GET", "/metrics", "", ""), http.StatusOK).raw; !strings.Contains(m, `adaptflow_instance_retries_total{process="billing"} 2`) {
		t.Fatalf("retries on /metrics:\n%s", m)
	}

	// Temporal holds each run: the latest completed, reset from a failed one
	// with the reason.
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// (The store has the instance completed a moment before Temporal has
	// its workflow closed: it waits for its callbacks and handlers.)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		desc, err := tc.DescribeWorkflowExecution(t.Context(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		st := desc.GetWorkflowExecutionInfo().GetStatus()
		if st == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the latest run is %v", st)
		}
	}

	// Only a failed instance can be retried.
	if r := d.call("POST", "/v1/instances/"+id+"/retry", engineer, ""); r.status != http.StatusConflict || !strings.Contains(r.raw, "is completed: only a failed instance can be retried") {
		t.Fatalf("a retry of a completed instance: %d %s", r.status, r.raw)
	}
	if r := d.call("POST", "/v1/instances/"+id+"/retry", engineer, `{"reason":`+fmt.Sprintf("%q", strings.Repeat("x", 1001))+`}`); r.status != http.StatusBadRequest || !strings.Contains(r.raw, `"field":"reason"`) {
		t.Fatalf("a retry with an over-long reason: %d %s", r.status, r.raw)
	}
	if r := d.call("POST", "/v1/instances/nope/retry", engineer, ""); r.status != http.StatusNotFound {
		t.Fatalf("a retry of an unknown instance: %d %s", r.status, r.raw)
	}

	// After another outage, every failed instance of the process is
	// retried at once from the CLI; the completed one is left alone.
	down.Store(true)
	more := []string{d.start("billing", "bill-2", map[string]any{"amount": 5}), d.start("billing", "bill-3", map[string]any{"amount": 7})}
	for _, id := range more {
		d.waitStatus(id, "failed")
	}
	down.Store(false)
	out.Reset()
	errOut.Reset()
	if code := cli.Instances(t.Context(), []string{"retry", "--process", "billing", "--since", "1h", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "retried 2 of 2 failed instances of billing") || !strings.Contains(out.String(), "(business key bill-2)") {
		t.Fatalf("adaptflow instances retry --process: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, id := range more {
		d.waitStatus(id, "completed")
	}
	if n := reserves.Load(); n != 3 {
		t.Fatalf("reserve called %d times for three instances", n)
	}
}

// TestRetention: dev keeps finished workflows' histories (so failed
// instances can be retried) for --retention, 7 days by default, and a data
// directory made before takes a new setting at the next start.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	retention := func(d *dev) time.Duration {
		t.Helper()
		tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		ns, err := tc.WorkflowService().DescribeNamespace(t.Context(), &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration()
	}
	d := startDev(t, dir, "")
	if got := retention(d); got != 7*24*time.Hour {
		t.Fatalf("retention %s, want 7 days", got)
	}
	d.stop()
	d = startDev(t, dir, "", func(o *app.Options) { o.Retention = 30 * 24 * time.Hour })
	if got := retention(d); got != 30*24*time.Hour {
		t.Fatalf("retention after a restart with 30d: %s", got)
	}
}

// TestRetryATerminatedInstance: an operator terminates, through Temporal,
// an instance whose call to a partner hangs. Once the partner is fixed, a
// retry runs it again from that step: the steps before it stand, the hung
// one is called again, then the rest.
func TestRetryATerminatedInstance(t *testing.T) {
	var hang atomic.Bool
	var reserves, ships atomic.Int32
	hang.Store(true)
	release := make(chan struct{})
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reserve":
			reserves.Add(1)
		case "/ship":
			ships.Add(1)
			if hang.Load() {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer ext.Close()
	defer close(release)
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = 200 * time.Millisecond })
	def := `
name: shipping
version: 1
steps:
  - {id: reserve, kind: http, http: {method: POST, url: "` + ext.URL + `/reserve"}}
  - {id: ship, kind: http, timeout: 1h, http: {method: POST, url: "` + ext.URL + `/ship"}}
  - {id: confirm, kind: task, task: noop}
`
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	id := d.start("shipping", "ship-1", map[string]any{})
	deadline := time.Now().Add(30 * time.Second)
	for ships.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the ship step was never called")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.TerminateWorkflow(t.Context(), id, "", "the shipping partner hangs"); err != nil {
		t.Fatal(err)
	}
	inst := d.waitStatus(id, "failed")
	if got := plan(inst); got != "reserve:done ship:failed confirm:not_run" || inst["error"] != "terminated in Temporal: the shipping partner hangs" {
		t.Fatalf("terminated instance: plan %q, error %v", got, inst["error"])
	}

	hang.Store(false)
	r := d.call("POST", "/v1/instances/"+id+"/retry", d.newKey("engineer"), `{"reason":"the partner is fixed"}`)
	if r.status != http.StatusOK && r.status != http.StatusAccepted {
		t.Fatalf("retry of a terminated instance: %d %s", r.status, r.raw)
	}
	inst = d.waitStatus(id, "completed")
	if got := plan(inst); got != "reserve:done ship:done confirm:done" {
		t.Fatalf("plan after the retry: %q", got)
	}
	if n, m := reserves.Load(), ships.Load(); n != 1 || m != 2 {
		t.Fatalf("reserve called %d times (want once: it had succeeded), ship %d times (want 2)", n, m)
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK); v.body["ok"] != true {
		t.Fatalf("hash chains after the retry: %s", v.raw)
	}
	// Temporal holds both runs: the terminated one, and the latest, reset
	// from it, which completed.
	desc, err := tc.DescribeWorkflowExecution(t.Context(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("the latest run is %v", st)
	}
}

// TestTerminatedInstanceFails: an instance whose workflow an operator
// terminates through Temporal (its CLI or UI) could not record its end
// itself; the API's sweep records it as failed, with the reason, and takes
// its open review out of the inbox.
func TestTerminatedInstanceFails(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = 200 * time.Millisecond })
	id := d.start("inventory-reconciliation", "inv-terminated", map[string]any{"store_id": "s1", "sku": "T", "pos_count": 1, "erp_count": 80})
	inst := d.waitStatus(id, "waiting_review")
	rid := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.TerminateWorkflow(t.Context(), id, "", "stuck since the ERP migration"); err != nil {
		t.Fatal(err)
	}
	inst = d.waitStatus(id, "failed")
	if inst["error"] != "terminated in Temporal: stuck since the ERP migration" || !strings.Contains(plan(inst), ":failed") || strings.Contains(plan(inst), "waiting_review") {
		t.Fatalf("terminated instance: error %v, plan %q", inst["error"], plan(inst))
	}
	if rv := d.expect(d.call("GET", "/v1/reviews/"+rid, adminKey, ""), http.StatusOK); rv.body["status"] != "canceled" {
		t.Fatalf("its review: %s", rv.raw)
	}
	// Its end is counted like any other.
	if m := d.expect(d.call("GET", "/metrics", "", ""), http.StatusOK).raw; !strings.Contains(m, `adaptflow_instances_finished_total{process="inventory-reconciliation",status="failed"} 1`) {
		t.Fatalf("the end is not counted:\n%s", grepLines(m, "adaptflow_instances_finished"))
	}
	if open := d.expect(d.call("GET", "/v1/reviews?status=open", adminKey, ""), http.StatusOK); strings.Contains(open.raw, rid) {
		t.Fatalf("its review is still in the inbox: %s", open.raw)
	}
	// It was waiting for a review: nothing was under way to run again.
	if r := d.call("POST", "/v1/instances/"+id+"/retry", adminKey, ""); r.status != http.StatusConflict || !strings.Contains(r.raw, "nothing to run again") {
		t.Fatalf("a retry of an instance terminated while it waited for a review: %d %s", r.status, r.raw)
	}

	// A reset through Temporal terminates the run it replaces; the
	// instance goes on in the new run and is left alone.
	reset := d.start("inventory-reconciliation", "inv-reset", map[string]any{"store_id": "s1", "sku": "R", "pos_count": 1, "erp_count": 80})
	inst = d.waitStatus(reset, "waiting_review")
	rid = inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	desc, err := tc.DescribeWorkflowExecution(t.Context(), reset, "")
	if err != nil {
		t.Fatal(err)
	}
	run := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	var lastTask int64
	for it := tc.GetWorkflowHistory(t.Context(), reset, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT); it.HasNext(); {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			lastTask = ev.GetEventId()
		}
	}
	if _, err := tc.ResetWorkflowExecution(t.Context(), &workflowservice.ResetWorkflowExecutionRequest{Namespace: "default",
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: reset, RunId: run}, Reason: "operator reset", WorkflowTaskFinishEventId: lastTask}); err != nil {
		t.Fatal(err)
	}
	old, err := tc.DescribeWorkflowExecution(t.Context(), reset, run)
	if err != nil || old.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("the replaced run: %v %v", old.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	time.Sleep(time.Second) // five sweeps
	if inst := d.waitStatus(reset, "waiting_review"); plan(inst) == "" {
		t.Fatalf("after a reset: %v", inst)
	}
	if rv := d.expect(d.call("GET", "/v1/reviews/"+rid, adminKey, ""), http.StatusOK); rv.body["status"] != "open" {
		t.Fatalf("the review after a reset through Temporal: %s", rv.raw)
	}
}

// A process step whose instance of the other process failed (its partner
// was down): a retry of this instance runs that instance again, and both
// complete.
func TestRetryAProcessStep(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int32
	down.Store(true)
	ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if down.Load() {
			http.Error(w, "registry is down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"clear":true}`)
	}))
	defer ext.Close()
	d := startDev(t, t.TempDir(), "")
	for _, def := range []string{
		"name: registry-check\nversion: 1\nsteps:\n  - {id: ask, kind: http, retries: 0, http: {method: GET, url: '" + ext.URL + "'}}\n",
		"name: onboarding\nversion: 1\nsteps:\n  - {id: check, kind: process, process: {name: registry-check}}\n  - {id: welcome, kind: task, task: noop}\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	id := d.start("onboarding", "on-1", map[string]any{})
	inst := d.waitStatus(id, "failed")
	childID := app.InstanceIDForTest("registry-check", "sub:"+id+":check")
	if got := plan(inst); got != "check:failed welcome:not_run" || !strings.Contains(inst["error"].(string), "registry is down") {
		t.Fatalf("failed instance: plan %q, error %v", got, inst["error"])
	}
	d.waitStatus(childID, "failed")
	down.Store(false)
	if r := d.call("POST", "/v1/instances/"+id+"/retry", adminKey, `{"reason":"the registry is back"}`); r.status != http.StatusOK && r.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	inst = d.waitStatus(id, "completed")
	if got := plan(inst); got != "check:done welcome:done" {
		t.Fatalf("plan after the retry: %q", got)
	}
	child := d.waitStatus(childID, "completed")
	if fmt.Sprint(child["results"].(map[string]any)["ask"].(map[string]any)["body"]) != "map[clear:true]" || calls.Load() != 2 {
		t.Fatalf("the other instance after the retry: %v (%d calls)", child["results"], calls.Load())
	}
}

// An instance terminated in Temporal while its process step waited for
// the other instance (a review there): that one is canceled with it, and
// a retry runs it again from its start.
func TestRetryATerminatedProcessStep(t *testing.T) {
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.SweepEvery = 200 * time.Millisecond })
	for _, def := range []string{
		"name: vetting\nversion: 1\nsteps:\n  - {id: look, kind: review, review: {queue: vetting}}\n",
		"name: hiring\nversion: 1\nsteps:\n  - {id: vet, kind: process, process: {name: vetting}}\n  - {id: hire, kind: task, task: noop}\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	id := d.start("hiring", "h-1", map[string]any{})
	childID := app.InstanceIDForTest("vetting", "sub:"+id+":vet")
	d.waitStatus(childID, "waiting_review")
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.TerminateWorkflow(t.Context(), id, "", "stuck"); err != nil {
		t.Fatal(err)
	}
	if inst := d.waitStatus(id, "failed"); plan(inst) != "vet:failed hire:not_run" {
		t.Fatalf("terminated: plan %q", plan(inst))
	}
	d.waitStatus(childID, "canceled")
	if r := d.call("POST", "/v1/instances/"+id+"/retry", adminKey, `{"reason":"unstuck"}`); r.status != http.StatusOK && r.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	child := d.waitStatus(childID, "waiting_review")
	reviews := child["reviews"].([]any)
	rv := reviews[len(reviews)-1].(map[string]any)
	if rv["status"] != "open" {
		t.Fatalf("the other instance's review after the retry: %v", reviews)
	}
	reviewer := d.newKey("reviewer")
	if r := d.call("POST", "/v1/reviews/"+rv["id"].(string)+"/decision", reviewer, `{"verdict":"approve","comment":"fine"}`); r.status != http.StatusOK {
		t.Fatalf("decision: %d %s", r.status, r.raw)
	}
	if inst := d.waitStatus(id, "completed"); plan(inst) != "vet:done hire:done" {
		t.Fatalf("after the retry: plan %q", plan(inst))
	}

	// Terminated while the other instance was held by a pause (stored,
	// never started): that one ends canceled with it, rather than read
	// starting for ever; a retry, once resumed, runs it after all.
	d.expect(d.call("POST", "/v1/processes/vetting/pause", adminKey, `{"note":"desk closed"}`), http.StatusOK)
	id2 := d.start("hiring", "h-2", map[string]any{})
	child2 := app.InstanceIDForTest("vetting", "sub:"+id2+":vet")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r := d.call("GET", "/v1/instances/"+child2, adminKey, ""); r.status == http.StatusOK && r.body["held"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other instance is not held")
		}
	}
	if err := tc.TerminateWorkflow(t.Context(), id2, "", "stuck"); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(id2, "failed")
	if c := d.waitStatus(child2, "canceled"); c["error"] != "canceled: "+id2+" ended in Temporal before it started" || plan(c) != "look:not_run" {
		t.Fatalf("the held instance of a terminated parent: %v", c)
	}
	// Retried while still paused, the step stores it again, held: it reads
	// starting, and the resume wakes the step (whose own look would take
	// ten minutes).
	retry := func(id string) {
		t.Helper()
		if r := d.call("POST", "/v1/instances/"+id+"/retry", adminKey, `{"reason":"desk open"}`); r.status != http.StatusOK && r.status != http.StatusAccepted {
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
	}
	retry(id2)
	waitHeld := func(id, why string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			r := d.call("GET", "/v1/instances/"+id, adminKey, "")
			if r.body["status"] == "starting" && strings.Contains(fmt.Sprint(r.body["held"]), why) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the other instance, stored again, is not held (%s): %s", why, r.raw)
			}
		}
	}
	waitHeld(child2, "paused")
	d.expect(d.call("POST", "/v1/processes/vetting/resume", adminKey, ""), http.StatusOK)
	decide := func(id string) {
		t.Helper()
		c := d.waitStatus(id, "waiting_review")
		rv := c["reviews"].([]any)[0].(map[string]any)["id"].(string)
		d.expect(d.call("POST", "/v1/reviews/"+rv+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	}
	decide(child2)
	d.waitStatus(id2, "completed")

	// Terminated while the other instance was queued under its process's
	// concurrency limit: a retry queues it again, and the instance that
	// frees the slot wakes the step.
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: vetting\nversion: 2\nconcurrency: 1\nsteps:\n  - {id: look, kind: review, review: {queue: vetting}}\n"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	busy := d.start("vetting", "v-1", map[string]any{})
	d.waitStatus(busy, "waiting_review")
	id3 := d.start("hiring", "h-3", map[string]any{})
	child3 := app.InstanceIDForTest("vetting", "sub:"+id3+":vet")
	waitHeld(child3, "queued")
	if err := tc.TerminateWorkflow(t.Context(), id3, "", "stuck"); err != nil {
		t.Fatal(err)
	}
	d.waitStatus(id3, "failed")
	d.waitStatus(child3, "canceled")
	retry(id3)
	waitHeld(child3, "queued")
	decide(busy)
	decide(child3)
	d.waitStatus(id3, "completed")
}

// TestRetriedInstanceDecisionsComeBack: an instance failed, was retried and
// completed after the store's backup. Restored, the store gets it back with
// every decision record it had: the new run's, and those of the run the
// retry reset, which only that run's history holds.
func TestRetriedInstanceDecisionsComeBack(t *testing.T) {
	down, partner := flakyPartner(t)
	dir, start := sweepingDev(t)
	d := start(dir)
	def := "name: billing\nversion: 1\nsteps:\n  - {id: reserve, kind: task, task: noop}\n  - {id: charge, kind: http, retries: 0, http: {method: POST, url: \"" + partner + "/charge\"}}\n  - {id: receipt, kind: task, task: noop}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	// One instance the backup holds, so that the restored store is known
	// to this Temporal.
	d.waitStatus(d.start("inventory-reconciliation", "inv-before", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 3, "erp_count": 3}), "completed")
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(t.Context(), filepath.Join(dir, "adaptflow.db"), nil, backup); err != nil {
		t.Fatal(err)
	}
	id := d.start("billing", "bill-1", map[string]any{})
	d.waitStatus(id, "failed")
	down.Store(false)
	d.expect(d.call("POST", "/v1/instances/"+id+"/retry", adminKey, `{"reason":"payments are back"}`), http.StatusOK)
	d.waitStatus(id, "completed")
	decided := d.decisions(id)
	d.stop()
	restoreStore(t, dir, backup)

	d = start(dir)
	d.waitStatus(id, "completed")
	if got := d.decisions(id); got != decided {
		t.Fatalf("the decisions of the retried instance brought back:\n%s\nbefore the restore:\n%s", got, decided)
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK).body; v["ok"] != true {
		t.Fatalf("the audit chain after the restore: %v", v)
	}
}
