package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/workflows"
)

const benchDef = `
name: bench
version: 1
input:
  properties:
    amount: {type: number}
steps:
  - {id: s1, kind: task, task: noop}
  - {id: s2, kind: task, task: noop}
  - {id: s3, kind: task, task: noop}
  - {id: s4, kind: task, task: noop}
  - {id: s5, kind: task, task: noop, mandatory: true}
catalog:
  - {id: extra, kind: task, task: noop}
`

// benchPolicies are ten policies of the kinds real sets have: some match,
// some do not, one is refused by a guardrail; none changes the five steps.
func benchPolicies() []string {
	var out []string
	for i := 1; i <= 4; i++ {
		out = append(out, fmt.Sprintf("id: skip-s%d\nprocess: bench\nwhen: input.amount < 0 && calendar.hour >= 0\nactions: [{skip: s%d}]\n", i, i))
	}
	for i := 1; i <= 3; i++ {
		out = append(out, fmt.Sprintf("id: add-%d\nprocess: bench\nwhen: input.amount > 1000000.0 || calendar.season == 'never'\nactions: [{add: extra, after: s%d}]\n", i, i))
	}
	out = append(out,
		"id: route\nprocess: bench\nwhen: input.amount > 10\nactions: [{set: {name: route, value: standard}}]\n",
		"id: tier\nprocess: bench\nwhen: \"'amount' in input && input.amount < 1000\"\nactions: [{set: {name: tier, value: small}}]\n",
		"id: no-s5\nprocess: bench\nwhen: \"true\"\nactions: [{skip: s5}]\n",
	)
	return out
}

// plainWorkflow runs the same five activities with no decisions.
func plainWorkflow(ctx workflow.Context, in workflows.Input) error {
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 4},
	})
	for _, s := range in.Definition.Steps {
		var res activities.StepResult
		if err := workflow.ExecuteActivity(ctx, a.RunTask, activities.StepInput{Step: s, InstanceID: in.InstanceID, Input: in.Input}).Get(ctx, &res); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkDecisionOverhead measures completed instances per second of a
// 5-step process with a decision before every step (10 policies) and of the
// same 5 steps as a plain workflow, on one embedded server, and reports the
// ratio. Each iteration runs one batch of each, interleaved.
func BenchmarkDecisionOverhead(b *testing.B) {
	const batch = 200
	d := startDev(b, b.TempDir(), "")
	post := func(path, body string) {
		r := call(b, d.base, "POST", path, adminKey, "application/yaml", body)
		if r.status >= 300 {
			b.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
	}
	post("/v1/processes", benchDef)
	for _, p := range benchPolicies() {
		post("/v1/policies", p)
	}
	def, err := process.ParseDefinition([]byte(benchDef))
	if err != nil {
		b.Fatal(err)
	}
	// The plain worker logs as adaptflow's does (slog's default, info and
	// up); the SDK's own default logger writes every activity at debug.
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default", Logger: sdklog.NewStructuredLogger(slog.Default())})
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	env, _ := policies.NewEnv()
	w := worker.New(tc, "bench-plain", worker.Options{})
	w.RegisterWorkflowWithOptions(plainWorkflow, workflow.RegisterOptions{Name: "bench.Plain"})
	w.RegisterActivity(&activities.Activities{Env: env, HTTP: http.DefaultClient})
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	runBatch := func(kind string, iter int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, batch)
		for i := range batch {
			id := fmt.Sprintf("%s-%d-%d-%d", kind, iter, i, time.Now().UnixNano())
			in := workflows.Input{Definition: *def, InstanceID: id, BusinessKey: id, Input: map[string]any{"amount": float64(50 + i)}}
			opts := client.StartWorkflowOptions{ID: id, TaskQueue: app.TaskQueue}
			wf := workflows.ProcessWorkflow
			if kind == "plain" {
				opts.TaskQueue, wf = "bench-plain", "bench.Plain"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				run, err := tc.ExecuteWorkflow(b.Context(), opts, wf, in)
				if err == nil {
					err = run.Get(b.Context(), nil)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	runBatch("warm-plain", 0)
	runBatch("warm-adaptflow", 0)
	b.ResetTimer()
	var plain, adaptive time.Duration
	for i := 0; i < b.N; i++ {
		plain += runBatch("plain", i)
		adaptive += runBatch("adaptflow", i)
	}
	b.StopTimer()
	n := float64(b.N * batch)
	pr, ar := n/plain.Seconds(), n/adaptive.Seconds()
	b.ReportMetric(pr, "plain-inst/s")
	b.ReportMetric(ar, "adaptflow-inst/s")
	b.ReportMetric(ar/pr, "ratio")
	b.Logf("plain %.1f inst/s, adaptflow %.1f inst/s, ratio %.2f (target >= 0.8)", pr, ar, ar/pr)
}

const resumeDef = `
name: resume
version: 1
input:
  properties:
    n: {type: number}
steps:
  - {id: gate, kind: review, review: {queue: bench, reason: "benchmark gate"}}
  - {id: after, kind: task, task: noop}
`

// BenchmarkReviewResume measures, with 100 reviews open on the embedded
// server, the time from posting a decision to the workflow starting the
// step after the review (the step's recorded start), and reports the 95th
// percentile.
func BenchmarkReviewResume(b *testing.B) {
	const open = 100
	d := startDev(b, b.TempDir(), "")
	if r := call(b, d.base, "POST", "/v1/processes", adminKey, "application/yaml", resumeDef); r.status >= 300 {
		b.Fatalf("register: %d %s", r.status, r.raw)
	}
	reviewer := d.newKey("reviewer")
	var lat []time.Duration
	b.ResetTimer()
	for round := 0; len(lat) < b.N; round++ {
		b.StopTimer()
		ids := make([]string, open)
		for i := range open {
			ids[i] = d.start("resume", fmt.Sprintf("r%d-%d", round, i), map[string]any{"n": i})
		}
		reviewIDs := make([]string, open)
		for i, id := range ids {
			inst := d.waitStatus(id, "waiting_review")
			reviewIDs[i] = inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
		}
		b.StartTimer()
		for i := 0; i < open && len(lat) < b.N; i++ {
			posted := time.Now()
			d.expect(d.call("POST", "/v1/reviews/"+reviewIDs[i]+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
			inst := d.waitStatus(ids[i], "completed")
			for _, s := range inst["plan"].([]any) {
				s := s.(map[string]any)
				if s["id"] == "after" {
					started, err := time.Parse(time.RFC3339Nano, s["started_at"].(string))
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, started.Sub(posted))
				}
			}
		}
		b.StopTimer()
		for i := range open { // decide the rest so the next round starts with 100 open again
			d.call("POST", "/v1/reviews/"+reviewIDs[i]+"/decision", reviewer, `{"verdict":"approve"}`)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// loadFor sends rate requests per second for d (open loop: a request
// starts on schedule whether or not earlier ones have answered) and returns
// their latencies and how many failed.
func loadFor(b *testing.B, rate int, d time.Duration, req func(i int) int) ([]time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var wg sync.WaitGroup
	// Request i goes out at start + i/rate (late ones at once, never
	// skipped), so the offered rate holds even when the machine is busy.
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / interval)
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			status := req(i)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, took)
			if status >= 300 {
				failed++
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, failed
}

func pct(lat []time.Duration, p float64) float64 {
	return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
}

// BenchmarkAPILoad drives adaptflow dev over HTTP: instance starts at 100
// requests/s for ADAPTFLOW_LOAD_SECONDS (default 60), then instance
// queries at 500 requests/s for the same time, from four system keys, and
// reports the 99th percentiles and the errors.
func BenchmarkAPILoad(b *testing.B) {
	secs := 60
	if v, err := strconv.Atoi(os.Getenv("ADAPTFLOW_LOAD_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	d := startDev(b, b.TempDir(), "")
	if r := call(b, d.base, "POST", "/v1/processes", adminKey, "application/yaml", benchDef); r.status >= 300 {
		b.Fatalf("register: %d %s", r.status, r.raw)
	}
	var keys []string
	for i := range 4 {
		keys = append(keys, d.named(fmt.Sprintf("erp-%d", i), "system"))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	send := func(method, path, key, body string) int {
		req, _ := http.NewRequest(method, d.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := client.Do(req)
		if err != nil {
			return 599
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for b.Loop() {
		run := time.Now().UnixNano()
		starts, startErrs := loadFor(b, 100, time.Duration(secs)*time.Second, func(i int) int {
			return send("POST", "/v1/processes/bench/instances", keys[i%4], fmt.Sprintf(`{"business_key":"load-%d-%d","input":{"amount":%d}}`, run, i, i%500))
		})
		// How many starts were answered before Temporal had the workflow
		// (--start-wait) and finished in the background.
		if m := regexp.MustCompile(`adaptflow_background_starts_total\{outcome="started"\} (\d+)`).FindStringSubmatch(call(b, d.base, "GET", "/metrics", "", "", "").raw); m != nil {
			b.Logf("starts finished in the background (after their 201): %s of %d", m[1], len(starts))
		}
		// Reads go round the instances just started: most are still
		// running (the worker works off the backlog), some have finished.
		ids := make([]string, len(starts))
		for i := range ids {
			ids[i] = app.InstanceIDForTest("bench", fmt.Sprintf("load-%d-%d", run, i))
		}
		read := func(i int) int { return send("GET", "/v1/instances/"+ids[(i*7919)%len(ids)], keys[i%4], "") }
		busy, busyErrs := loadFor(b, 500, time.Duration(secs)*time.Second, read)
		// Then again once the worker has worked off the backlog the starts
		// left (the last instance started has finished).
		drained := time.Now()
		for last := "/v1/instances/" + ids[len(ids)-1]; ; time.Sleep(time.Second) {
			r := call(b, d.base, "GET", last, adminKey, "", "")
			if r.status == http.StatusOK && r.body["status"] != "running" && r.body["status"] != "starting" {
				break
			}
			if time.Since(drained) > 20*time.Minute {
				b.Fatal("the worker did not catch up within 20 minutes")
			}
		}
		b.Logf("the backlog was worked off %.0f s after the first reads ended", time.Since(drained).Seconds())
		queries, queryErrs := loadFor(b, 500, time.Duration(secs)*time.Second, read)
		b.ReportMetric(pct(busy, 0.99), "query-busy-p99-ms")
		b.Logf("queries while the worker works off the backlog: %d at 500/s, p50 %.1f ms, p99 %.1f ms, %d errors",
			len(busy), pct(busy, 0.5), pct(busy, 0.99), busyErrs)
		b.ReportMetric(pct(starts, 0.99), "start-p99-ms")
		b.ReportMetric(float64(startErrs), "start-errors")
		b.ReportMetric(pct(queries, 0.99), "query-p99-ms")
		b.ReportMetric(float64(queryErrs), "query-errors")
		b.Logf("starts: %d at 100/s, p50 %.1f ms, p99 %.1f ms, %d errors; queries: %d at 500/s, p50 %.1f ms, p99 %.1f ms, %d errors",
			len(starts), pct(starts, 0.5), pct(starts, 0.99), startErrs, len(queries), pct(queries, 0.5), pct(queries, 0.99), queryErrs)
	}
}

// BenchmarkBatchStart compares two ways a business system starts 500
// instances on adaptflow dev: one batch request, and 500 requests eight
// at a time; it reports the starts per second the API took of each (the
// worker runs the instances afterwards). The rate limit is off: it would
// hold both to 200 a second.
func BenchmarkBatchStart(b *testing.B) {
	d := startDev(b, b.TempDir(), freeAddr(b), func(o *app.Options) { o.RateLimit = -1 })
	if r := call(b, d.base, "POST", "/v1/processes", adminKey, "application/yaml", benchDef); r.status >= 300 {
		b.Fatalf("register: %d %s", r.status, r.raw)
	}
	key := d.named("erp", "system")
	const n = 500
	var batchTook, singleTook time.Duration
	round := 0
	for b.Loop() {
		round++
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"business_key":"batch-%d-%d","input":{"amount":%d}}`, round, i, i)
		}
		start := time.Now()
		r := call(b, d.base, "POST", "/v1/processes/bench/instances/batch", key, "application/json", `{"instances":[`+strings.Join(items, ",")+`]}`)
		batchTook += time.Since(start)
		if r.status != http.StatusOK || r.body["created"] != float64(n) {
			b.Fatalf("batch: %d %.300s", r.status, r.raw)
		}
		start = time.Now()
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					body := fmt.Sprintf(`{"business_key":"single-%d-%d","input":{"amount":%d}}`, round, i, i)
					if r := call(b, d.base, "POST", "/v1/processes/bench/instances", key, "application/json", body); r.status != http.StatusCreated {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		singleTook += time.Since(start)
		if failed.Load() > 0 {
			b.Fatalf("%d single starts failed", failed.Load())
		}
	}
	b.ReportMetric(float64(n*round)/batchTook.Seconds(), "batch-starts/s")
	b.ReportMetric(float64(n*round)/singleTook.Seconds(), "single-starts/s")
}
