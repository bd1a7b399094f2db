package app_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/store/storetest"
)

// TestServerAndWorkerSplit runs the production shape: an external Temporal
// server, `adaptflow worker` and `adaptflow server` as separate parts sharing
// one store (SQLite, and PostgreSQL), and instances that go through both.
func TestServerAndWorkerSplit(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSplit(t, "sqlite:"+filepath.Join(t.TempDir(), "adaptflow.db"), false) })
	t.Run("postgres", func(t *testing.T) { testSplit(t, storetest.FreshPostgres(t), true) })
}

// testSplit runs the split on the store at databaseURL; with
// metricsApart the server serves /metrics on --metrics-listen, not on the
// API.
func testSplit(t *testing.T, databaseURL string, metricsApart bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startTemporal(t)

	base := app.DefaultOptions()
	base.DataDir = t.TempDir()
	base.DatabaseURL = databaseURL
	base.TemporalAddress = ts.Address()
	base.APIKey = adminKey

	workerOpts := base
	workerOpts.MetricsListen = "127.0.0.1:0"
	workerMetrics := make(chan string, 1)
	workerOpts.OnReady = func(addr string) { workerMetrics <- addr }
	srvOpts := base
	if metricsApart {
		srvOpts.MetricsListen = freeAddr(t)
	}
	addr, serverDone, workerDone := startParts(ctx, t, workerOpts, srvOpts)
	d := &dev{t: t, base: "http://" + addr}
	id := d.start("procurement-approval", "split-1", map[string]any{"request_id": "PO-9", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"})
	inst := d.waitStatus(id, "completed")
	if got := plan(inst); got != "budget_check:done manager_approval:skipped place_order:done" {
		t.Fatalf("plan %q", got)
	}
	d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", adminKey, ""), http.StatusOK)

	// The worker counts its decisions on its own /metrics; the server
	// counts starts on the API's.
	w := &dev{t: t, base: "http://" + <-workerMetrics}
	// The store reads completed at the instance's final save; its
	// workflow completes a moment later.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(w.call("GET", "/metrics", "", "").raw, `temporal_workflow_completed_total{`) {
			break
		}
	}
	if m := w.expect(w.call("GET", "/metrics", "", ""), http.StatusOK).raw; !strings.Contains(m, `adaptflow_decisions_total{action="skip",process="procurement-approval"} 1`) {
		t.Fatalf("worker metrics lack the skip decision:\n%s", grepLines(m, "adaptflow_"))
	} else if !strings.Contains(m, `temporal_workflow_task_schedule_to_start_latency_seconds_count{`) ||
		!strings.Contains(m, `temporal_worker_task_slots_available{`) || !strings.Contains(m, `temporal_workflow_completed_total{`) {
		t.Fatalf("worker metrics lack the Temporal SDK's (schedule-to-start latency, free slots, workflows completed):\n%s", grepLines(m, "temporal_"))
	}
	w.expect(w.call("GET", "/healthz", "", ""), http.StatusOK)
	sm := d
	if metricsApart {
		d.expect(d.call("GET", "/metrics", "", ""), http.StatusNotFound)
		sm = &dev{t: t, base: "http://" + srvOpts.MetricsListen}
		sm.expect(sm.call("GET", "/healthz", "", ""), http.StatusOK)
	}
	if m := sm.expect(sm.call("GET", "/metrics", "", ""), http.StatusOK).raw; !strings.Contains(m, `adaptflow_instance_starts_total{process="procurement-approval",result="created"} 1`) ||
		!strings.Contains(m, "go_goroutines") || !strings.Contains(m, "adaptflow_review_stats_up") {
		t.Fatalf("server metrics lack the start, the runtime's or the review queues':\n%s", grepLines(m, "adaptflow_"))
	}

	// A review through the worker, the server and the store.
	inv := d.start("inventory-reconciliation", "split-inv", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 30})
	inst = d.waitStatus(inv, "waiting_review")
	rid := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for d.call("GET", "/v1/reviews/"+rid, adminKey, "").status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("review never stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", adminKey, `{"verdict":"approve"}`), http.StatusOK)
	d.waitStatus(inv, "completed")
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK); v.body["ok"] != true {
		t.Fatalf("audit: %s", v.raw)
	}

	cancel()
	for name, ch := range map[string]chan error{"server": serverDone, "worker": workerDone} {
		if err := <-ch; err != nil {
			t.Errorf("%s stopped with %v", name, err)
		}
	}
}

// grepLines keeps the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLoopbackAddresses pins which Temporal addresses get an uncompressed
// connection: this machine's, never a remote one.
func TestLoopbackAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7233": true, "localhost:7233": true, "[::1]:7233": true, "127.0.0.2:7233": true,
		"temporal.internal:7233": false, "10.0.0.5:7233": false, "[2001:db8::1]:7233": false, "": false,
	} {
		if got := app.LoopbackForTest(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// startParts runs a worker and an API server (with the examples) as
// separate parts until ctx ends, and returns once the server serves: its
// address, and the channels on which each part's end is reported.
func startParts(ctx context.Context, t *testing.T, workerOpts, srvOpts app.Options) (addr string, serverDone, workerDone chan error) {
	t.Helper()
	run := func(mode app.Mode, o app.Options) chan error {
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx, mode, o) }()
		return done
	}
	workerDone = run(app.ModeWorker, workerOpts)
	ready := make(chan string, 1)
	srvOpts.Listen = "127.0.0.1:0"
	srvOpts.LoadExamples = true
	srvOpts.OnReady = func(addr string) { ready <- addr }
	serverDone = run(app.ModeServer, srvOpts)
	select {
	case addr = <-ready:
	case err := <-serverDone:
		t.Fatalf("server: %v", err)
	case err := <-workerDone:
		t.Fatalf("worker: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	return addr, serverDone, workerDone
}
