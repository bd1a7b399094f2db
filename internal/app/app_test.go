package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/cli"
	"github.com/adaptflow/adaptflow/internal/ports"
	"github.com/adaptflow/adaptflow/internal/temporalserver"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"github.com/adaptflow/adaptflow/workflows"
)

var updateHistory = flag.Bool("update-history", false, "record workflows/testdata histories from a run on the embedded server")

const adminKey = "test-admin-key-0123456789"

// TestMain doubles as `adaptflow dev` for the crash test: with
// ADAPTFLOW_CHILD_DATA_DIR set, the test binary runs the app instead of tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ADAPTFLOW_CHILD_DATA_DIR"); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

func runChild(dir string) int {
	opts := app.DefaultOptions()
	opts.DataDir = dir
	opts.Listen = os.Getenv("ADAPTFLOW_CHILD_LISTEN")
	opts.TemporalAddress = os.Getenv("ADAPTFLOW_CHILD_TEMPORAL")
	opts.APIKey = adminKey
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, app.ModeDev, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// freeAddr is a free local address for a server to listen on, outside the
// ephemeral range that connections draw from (see internal/ports).
func freeAddr(t testing.TB) string {
	t.Helper()
	p, err := ports.Free("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// dev is one running `adaptflow dev`, in process.
type dev struct {
	t        testing.TB
	base     string
	temporal string
	stop     func()
}

func startDev(t testing.TB, dataDir, temporalAddr string, tweak ...func(*app.Options)) *dev {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	opts := app.DefaultOptions()
	opts.DataDir = dataDir
	opts.Listen = "127.0.0.1:0"
	opts.TemporalAddress = temporalAddr
	opts.APIKey = adminKey
	opts.OnReady = func(addr string) { ready <- addr }
	d := &dev{t: t, temporal: temporalAddr}
	if temporalAddr == "" {
		// The embedded Temporal picks its ports, again should one be
		// taken as it starts (by another package's tests, say).
		opts.TemporalAddress = "127.0.0.1:0"
		opts.OnTemporal = func(addr string) { d.temporal = addr }
	}
	for _, f := range tweak {
		f(&opts)
	}
	go func() { done <- app.Run(ctx, app.ModeDev, opts) }()
	select {
	case addr := <-ready:
		d.base = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("adaptflow dev did not start: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("adaptflow dev did not start within 90s")
	}
	stopped := false
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("adaptflow dev stopped with: %v", err)
		}
	}
	t.Cleanup(d.stop)
	return d
}

type resp struct {
	status int
	body   map[string]any
	raw    string
}

func call(t testing.TB, base, method, path, key, contentType, body string) resp {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	apitest.CheckResponse(t, method, path, res.StatusCode, res.Header, b)
	r := resp{status: res.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// secondReview is the id of the second review instance id opens, once it
// has.
func (d *dev) secondReview(id string) string {
	d.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		inst := d.expect(d.call("GET", "/v1/instances/"+id, adminKey, ""), http.StatusOK).body
		if rs := inst["reviews"].([]any); len(rs) == 2 {
			return rs[1].(map[string]any)["id"].(string)
		}
	}
	d.t.Fatalf("%s opened no second review", id)
	return ""
}

// decisions lists the decision records of instance id, one line each:
// its id, sequence, step and hash.
func (d *dev) decisions(id string) string {
	d.t.Helper()
	var b strings.Builder
	for _, r := range d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", adminKey, ""), http.StatusOK).body["decisions"].([]any) {
		rec := r.(map[string]any)
		fmt.Fprintln(&b, rec["id"], rec["seq"], rec["step"], rec["hash"])
	}
	return b.String()
}

// metric sums the series of the metric name on /metrics whose labels
// hold each of labels (`task="sweeper"`).
func (d *dev) metric(name string, labels ...string) float64 {
	d.t.Helper()
	var sum float64
	for _, line := range strings.Split(d.call("GET", "/metrics", "", "").raw, "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(series, name+"{") || slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(series, l) }) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			d.t.Fatalf("%s: %v", line, err)
		}
		sum += v
	}
	return sum
}

func (d *dev) call(method, path, key, body string) resp {
	d.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return call(d.t, d.base, method, path, key, ct, body)
}

func (d *dev) expect(r resp, status int) resp {
	d.t.Helper()
	if r.status != status {
		d.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func (d *dev) start(process, key string, input map[string]any) string {
	d.t.Helper()
	b, _ := json.Marshal(map[string]any{"business_key": key, "input": input})
	r := d.expect(d.call("POST", "/v1/processes/"+process+"/instances", adminKey, string(b)), http.StatusCreated)
	return r.body["id"].(string)
}

// waitStatus polls the instance until it has one of the statuses.
func (d *dev) waitStatus(id string, statuses ...string) map[string]any {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last resp
	for time.Now().Before(deadline) {
		last = d.call("GET", "/v1/instances/"+id, adminKey, "")
		if last.status == http.StatusOK {
			for _, s := range statuses {
				if last.body["status"] == s {
					return last.body
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("instance %s never reached %v; last answer %d %s", id, statuses, last.status, last.raw)
	return nil
}

func plan(inst map[string]any) string {
	var parts []string
	for _, p := range inst["plan"].([]any) {
		m := p.(map[string]any)
		parts = append(parts, fmt.Sprint(m["id"], ":", m["state"]))
	}
	return strings.Join(parts, " ")
}

// reviewOf is the id of the open review of instance id, once the inbox
// lists it.
func (d *dev) reviewOf(key, id string) string {
	d.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, x := range d.expect(d.call("GET", "/v1/reviews?limit=500", key, ""), http.StatusOK).body["reviews"].([]any) {
			if x.(map[string]any)["instance_id"] == id {
				return x.(map[string]any)["id"].(string)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("no open review of %s", id)
	return ""
}

func (d *dev) newKey(role string) string {
	d.t.Helper()
	return d.named(role+"-1", role)
}

func (d *dev) named(name, role string) string {
	d.t.Helper()
	r := d.expect(d.call("POST", "/v1/keys", adminKey, `{"name":"`+name+`","role":"`+role+`"}`), http.StatusCreated)
	return r.body["key"].(string)
}

func TestDevEndToEnd(t *testing.T) {
	d := startDev(t, t.TempDir(), "")
	system, reviewer, engineer := d.newKey("system"), d.newKey("reviewer"), d.newKey("engineer")

	t.Run("auth and roles", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, key string
			status            int
		}{
			{"GET", "/v1/processes", "", http.StatusUnauthorized},
			{"GET", "/v1/processes", "af_not_a_key", http.StatusUnauthorized},
			{"GET", "/v1/processes", system, http.StatusOK},
			{"GET", "/v1/processes", reviewer, http.StatusForbidden},
			{"POST", "/v1/policies", system, http.StatusForbidden},
			{"GET", "/v1/reviews", system, http.StatusForbidden},
			{"GET", "/v1/reviews", reviewer, http.StatusOK},
			{"POST", "/v1/keys", engineer, http.StatusForbidden},
			{"POST", "/v1/processes/order-fulfillment/instances", engineer, http.StatusForbidden},
		} {
			r := d.call(tc.method, tc.path, tc.key, "")
			if r.status != tc.status {
				t.Errorf("%s %s with %q: %d, want %d (%s)", tc.method, tc.path, tc.key, r.status, tc.status, r.raw)
			}
			if r.status >= 400 && r.body["error"] == nil {
				t.Errorf("%s %s: error without the error shape: %s", tc.method, tc.path, r.raw)
			}
		}
	})

	t.Run("register a process and a policy", func(t *testing.T) {
		def := `
name: returns
version: 1
sla: 1h
input:
  required: [order_id, amount]
  properties:
    order_id: {type: string}
    amount: {type: number}
steps:
  - {id: inspect, kind: task, task: qa_check}
  - {id: refund, kind: task, task: charge, mandatory: true}
catalog:
  - {id: fraud_check, kind: validate, assertions: ["input.amount < 10000"]}
`
		// Its callback wants only "overdue": an instance that ends within
		// the SLA never calls it (the workflow's watch of the SLA is stopped).
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("callback %s %s: returns ended within its SLA", r.Method, r.URL)
		}))
		defer hook.Close()
		def = strings.Replace(def, "sla: 1h\n", "sla: 1h\ncallback: {url: '"+hook.URL+"', events: [overdue]}\n", 1)
		post := func(path, key, body string) resp {
			return call(t, d.base, "POST", path, key, "application/yaml", body)
		}
		d.expect(post("/v1/processes", engineer, def), http.StatusCreated)
		d.expect(post("/v1/processes", engineer, def), http.StatusOK)
		d.expect(post("/v1/processes", engineer, strings.Replace(def, "qa_check", "noop", 1)), http.StatusConflict)
		bad := d.expect(post("/v1/processes", engineer, strings.Replace(def, "kind: validate", "kind: validat", 1)), http.StatusBadRequest)
		if f := bad.body["error"].(map[string]any)["field"]; f != "catalog[0].kind" {
			t.Fatalf("field %v: %s", f, bad.raw)
		}

		pol := "id: big-returns\nprocess: returns\nwhen: input.amount > 500\nactions:\n  - {add: fraud_check, before: refund}\n  - {skip: refund}\n"
		r := d.expect(post("/v1/policies", engineer, pol), http.StatusCreated)
		if r.body["version"].(float64) != 1 {
			t.Fatalf("version %v", r.body["version"])
		}
		d.expect(post("/v1/policies", engineer, pol), http.StatusOK)
		for name, tc := range map[string]struct{ body, field, msg string }{
			"cel error":    {strings.Replace(pol, "input.amount > 500", "input.amount >> 500", 1), "when", "1:15: Syntax error"},
			"undeclared":   {strings.Replace(pol, "input.amount", "inptu.amount", 1), "when", "undeclared reference to 'inptu'"},
			"unknown step": {strings.Replace(pol, "skip: refund", "skip: refnud", 1), "actions[1].skip", `unknown step "refnud"`},
			"no process":   {strings.Replace(pol, "process: returns", "process: nope", 1), "process", "unknown process"},
		} {
			r := d.expect(post("/v1/policies", engineer, tc.body), http.StatusBadRequest)
			e := r.body["error"].(map[string]any)
			if e["field"] != tc.field || !strings.Contains(e["message"].(string), tc.msg) {
				t.Errorf("%s: %s", name, r.raw)
			}
		}

		id := d.start("returns", "ret-1", map[string]any{"order_id": "R-1", "amount": 900})
		inst := d.waitStatus(id, "completed", "failed")
		// The mandatory refund survives the skip; fraud_check was added before it.
		if got := plan(inst); got != "inspect:done fraud_check:done refund:done" {
			t.Fatalf("plan %q", got)
		}
		// It ended within the definition's SLA of an hour.
		if got := d.expect(d.call("GET", "/v1/instances/"+id, system, ""), http.StatusOK).body; got["sla_status"] != "met" || got["due_at"] == nil {
			t.Fatalf("against its SLA: %v due %v", got["sla_status"], got["due_at"])
		}
		ds := d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", system, ""), http.StatusOK).body["decisions"].([]any)
		var refund map[string]any
		for _, x := range ds {
			if x.(map[string]any)["step"] == "refund" {
				refund = x.(map[string]any)
			}
		}
		ex := d.expect(d.call("GET", "/v1/decisions/"+refund["id"].(string)+"/explanation", system, ""), http.StatusOK)
		text := ex.body["text"].(string)
		for _, want := range []string{"policy big-returns (v1) matched", "input.amount > 500 → true", "input.amount = 900", "applied: add fraud_check before refund", "rejected: skip refund (policy big-returns): step refund is mandatory"} {
			if !strings.Contains(text, want) {
				t.Errorf("explanation lacks %q:\n%s", want, text)
			}
		}
		// The finished instance counts in the process's KPIs, with its cycle time.
		k := d.expect(d.call("GET", "/v1/processes/returns/kpis?since=1h", engineer, ""), http.StatusOK).body["overall"].(map[string]any)
		if c, ok := k["cycle_time_seconds"].(map[string]any); k["started"] != 1.0 || k["completed"] != 1.0 || !ok || c["count"] != 1.0 || c["max"].(float64) <= 0 || c["max"].(float64) > 60 ||
			fmt.Sprint(k["sla"]) != "map[met:1 met_rate:1 missed:0 on_track:0 overdue:0]" {
			t.Fatalf("KPIs of returns: %v", k)
		}
		// What the policy did: matched before refund, its add applied, its
		// skip of the mandatory refund refused.
		act := d.expect(d.call("GET", "/v1/policies/activity?process=returns&since=1h", engineer, ""), http.StatusOK)
		if ps := act.body["policies"].([]any); len(ps) != 1 || fmt.Sprint(ps[0].(map[string]any)["matched_at"]) != "map[refund:1]" ||
			fmt.Sprint(ps[0].(map[string]any)["applied"]) != "map[add:1]" || ps[0].(map[string]any)["rejected"] != 1.0 || ps[0].(map[string]any)["match_rate"] != 1.0 {
			t.Fatalf("policy activity: %s", act.raw)
		}
		d.recordHistories(map[string]string{id: "sla_watch_v8.json"})
	})

	t.Run("idempotent start and input errors", func(t *testing.T) {
		body := `{"business_key":"o-1","input":{"order_id":"A-1","customer_id":"c","amount":20,"items":[{"sku":"X","qty":1}],"previous_orders":4}}`
		first := d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances", system, body), http.StatusCreated)
		again := d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances", system, body), http.StatusOK)
		if first.body["id"] != again.body["id"] {
			t.Fatalf("ids %v and %v", first.body["id"], again.body["id"])
		}
		inst := d.waitStatus(first.body["id"].(string), "completed")
		if got := plan(inst); !strings.Contains(got, "packing_check:skipped") {
			t.Fatalf("plan %q", got)
		}
		for _, tc := range []struct{ body, field string }{
			{`{"business_key":"o-2","input":{"order_id":"A","customer_id":"c","amount":"lots","items":[]}}`, "input.amount"},
			{`{"business_key":"o-2","input":{"customer_id":"c","amount":1,"items":[]}}`, "input.order_id"},
			{`{"input":{}}`, "business_key"},
			{`{"business_key":"o-2","input":{},"priority":1}`, "priority"},
			{`{"business_key":"o-2","input":[1]}`, "input"},
			{`{"business_key":`, ""},
		} {
			r := d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances", system, tc.body), http.StatusBadRequest)
			if f, _ := r.body["error"].(map[string]any)["field"].(string); f != tc.field {
				t.Errorf("%s: field %q, want %q (%s)", tc.body, f, tc.field, r.raw)
			}
		}
		d.expect(d.call("POST", "/v1/processes/nope/instances", system, `{"business_key":"x","input":{}}`), http.StatusNotFound)
		d.expect(d.call("GET", "/v1/instances/nope", system, ""), http.StatusNotFound)
	})

	t.Run("a webhook given up is redelivered", func(t *testing.T) {
		// The receiver refuses (410, final) until it is fixed.
		var mu sync.Mutex
		fixed := false
		var got []string
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			if !fixed {
				w.WriteHeader(http.StatusGone)
				return
			}
			got = append(got, r.Header.Get("Idempotency-Key")+" "+string(b))
		}))
		defer hook.Close()
		def := "name: hooked\nversion: 1\ncallback: {url: '" + hook.URL + "', events: [completed]}\nsteps: [{id: a, kind: task, task: noop}]\n"
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", def), http.StatusCreated)
		id := d.start("hooked", "h-1", map[string]any{})
		d.waitStatus(id, "completed")
		var kept []any
		for deadline := time.Now().Add(20 * time.Second); len(kept) == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			kept = d.expect(d.call("GET", "/v1/webhooks/undelivered?process=hooked", system, ""), http.StatusOK).body["webhooks"].([]any)
		}
		if len(kept) != 1 {
			t.Fatalf("kept %v, want the completed callback", kept)
		}
		w := kept[0].(map[string]any)
		if w["instance_id"] != id || w["event"] != "instance.completed" || w["attempts"] != 1.0 || !strings.Contains(w["error"].(string), "410") {
			t.Fatalf("kept %v", w)
		}
		mu.Lock()
		fixed = true
		mu.Unlock()
		path := fmt.Sprintf("/v1/webhooks/undelivered/%.0f/redeliver", w["id"].(float64))
		d.expect(d.call("POST", path, system, ""), http.StatusOK)
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 || !strings.HasPrefix(got[0], id+"/completed {") || !strings.Contains(got[0], `"event":"instance.completed"`) {
			t.Fatalf("the receiver got %q", got)
		}
	})

	t.Run("a batch of starts", func(t *testing.T) {
		order := func(key string, amount any) string {
			return fmt.Sprintf(`{"business_key":%q,"input":{"order_id":%q,"customer_id":"c","amount":%v,"items":[{"sku":"X","qty":1}],"previous_orders":4}}`, key, key, amount)
		}
		// o-1 was started by itself before; b-2's amount is refused.
		body := `{"instances":[` + order("b-1", 20) + `,` + order("b-2", `"lots"`) + `,` + order("o-1", 20) + `,` + order("b-3", 35) + `]}`
		a := d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances/batch", system, body), http.StatusOK)
		if a.body["created"] != 2.0 || a.body["existing"] != 1.0 || a.body["failed"] != 1.0 {
			t.Fatalf("batch: %s", a.raw)
		}
		results := a.body["results"].([]any)
		ids := map[string]string{}
		for i, want := range []float64{201, 400, 200, 201} {
			r := results[i].(map[string]any)
			if r["status"] != want {
				t.Fatalf("result %d: %v, want %v", i, r, want)
			}
			if inst, ok := r["instance"].(map[string]any); ok {
				ids[r["business_key"].(string)] = inst["id"].(string)
			}
		}
		if f := results[1].(map[string]any)["error"].(map[string]any)["field"]; f != "instances[1].input.amount" {
			t.Fatalf("the refused input's field: %v", f)
		}
		if first := d.expect(d.call("GET", "/v1/processes/order-fulfillment/instances?business_key=o-1", system, ""), http.StatusOK); ids["o-1"] != first.body["instances"].([]any)[0].(map[string]any)["id"] {
			t.Fatalf("the instance started before: %v, %s", ids, first.raw)
		}
		for _, key := range []string{"b-1", "b-3"} {
			d.waitStatus(ids[key], "completed")
		}
		// The same batch again starts nothing new.
		again := d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances/batch", system, body), http.StatusOK)
		if again.body["created"] != 0.0 || again.body["existing"] != 3.0 {
			t.Fatalf("the batch again: %s", again.raw)
		}
		d.expect(d.call("POST", "/v1/processes/order-fulfillment/instances/batch", system, `{"instances":[]}`), http.StatusBadRequest)

		// From a file, through the CLI: a line a line; run again, nothing
		// new starts.
		file := filepath.Join(t.TempDir(), "orders.jsonl")
		lines := "# tonight's orders\n" + order("f-1", 12) + "\n\n" + order("f-2", -1) + "\n" + order("f-3", 40) + "\n"
		if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"created 2, existing 0, failed 1", "created 0, existing 2, failed 1"} {
			var out, errOut bytes.Buffer
			code := cli.Instances(t.Context(), []string{"start", "--process", "order-fulfillment", "-f", file, "--server", d.base, "--api-key", system}, &out, &errOut)
			if code != 1 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "line 4 (business key f-2): 400 ") {
				t.Fatalf("instances start: exit %d, want 1 and %q\n%s%s", code, want, out.String(), errOut.String())
			}
		}
		d.waitStatus(api.InstanceID("order-fulfillment", "f-3"), "completed")
		if err := os.WriteFile(file, []byte(order("f-4", 1)+"\n{\"business_key\": \"f-5\", \"inptu\": {}}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if code := cli.Instances(t.Context(), []string{"start", "--process", "order-fulfillment", "-f", file, "--server", d.base, "--api-key", system}, &out, &errOut); code != 1 ||
			!strings.Contains(errOut.String(), "line 2: not an object") {
			t.Fatalf("a file with a bad line: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		d.expect(d.call("GET", "/v1/instances/"+api.InstanceID("order-fulfillment", "f-4"), system, ""), http.StatusNotFound)
	})

	t.Run("bulk decisions", func(t *testing.T) {
		// A miscount at four stores stopped four reconciliations: a
		// reviewer approves them at once, but for one another reviewer
		// holds, and one that does not exist.
		var ids, reviews []string
		for i := range 4 {
			id := d.start("inventory-reconciliation", fmt.Sprint("inv-bulk-", i), map[string]any{"store_id": fmt.Sprint("b", i), "sku": "B", "pos_count": 10, "erp_count": 40})
			d.waitStatus(id, "waiting_review")
			ids = append(ids, id)
			reviews = append(reviews, d.reviewOf(reviewer, id))
		}
		other := d.named("reviewer-bulk", "reviewer")
		d.expect(d.call("POST", "/v1/reviews/"+reviews[3]+"/claim", other, ""), http.StatusOK)
		body := func(v any) string { b, _ := json.Marshal(v); return string(b) }
		r := d.expect(d.call("POST", "/v1/reviews/decisions", reviewer, body(map[string]any{"ids": append(slices.Clone(reviews), "rv_nope"), "verdict": "approve", "comment": "stock take was late"})), http.StatusOK)
		var got []string
		for _, x := range r.body["results"].([]any) {
			m := x.(map[string]any)
			got = append(got, fmt.Sprint(m["status"]))
			if m["status"] == 200.0 && m["review"].(map[string]any)["verdict"] != "approve" {
				t.Fatalf("a decided review: %v", m)
			}
			if m["status"] != 200.0 && m["error"].(map[string]any)["message"] == "" {
				t.Fatalf("a review not decided, with no reason: %v", m)
			}
		}
		if strings.Join(got, " ") != "200 200 200 409 404" || r.body["decided"] != 3.0 || r.body["failed"] != 2.0 {
			t.Fatalf("bulk approval: %s", r.raw)
		}
		for _, id := range ids[:3] {
			if inst := d.waitStatus(id, "completed"); plan(inst) != "counts_consistent:done post_adjustment:done" {
				t.Fatalf("plan after the bulk approval: %q", plan(inst))
			}
		}
		if rv := d.expect(d.call("GET", "/v1/reviews/"+reviews[0], reviewer, ""), http.StatusOK); rv.body["reviewer"] != "reviewer-1" || rv.body["comment"] != "stock take was late" {
			t.Fatalf("a review decided in bulk: %s", rv.raw)
		}
		// The one another reviewer held is still theirs to decide.
		d.expect(d.call("POST", "/v1/reviews/decisions", other, body(map[string]any{"ids": reviews[3:], "verdict": "reject", "comment": "recount first"})), http.StatusOK)
		if inst := d.waitStatus(ids[3], "rejected"); inst["status"] != "rejected" {
			t.Fatalf("rejected in bulk: %v", inst["status"])
		}
		// The audit log names the reviews each bulk decision decided.
		a := d.expect(d.call("GET", "/v1/audit?action="+url.QueryEscape("POST /v1/reviews/decisions"), adminKey, ""), http.StatusOK)
		var targets []string
		for _, e := range a.body["entries"].([]any) {
			targets = append(targets, e.(map[string]any)["target"].(string))
		}
		if want := "ids=" + strings.Join(reviews[3:], ","); !slices.Contains(targets, want) {
			t.Fatalf("audit targets %q, want one %q", targets, want)
		}
		// Refused as a whole: each names its field.
		for _, tc := range []struct{ body, field string }{
			{body(map[string]any{"ids": []string{}, "verdict": "approve"}), "ids"},
			{body(map[string]any{"ids": []string{"a", "a"}, "verdict": "approve"}), "ids"},
			{body(map[string]any{"ids": []string{"a"}, "verdict": "correct"}), "verdict"},
			{body(map[string]any{"ids": []string{"a"}, "verdict": "reject"}), "comment"},
		} {
			r := d.expect(d.call("POST", "/v1/reviews/decisions", reviewer, tc.body), http.StatusBadRequest)
			if f := r.body["error"].(map[string]any)["field"]; f != tc.field {
				t.Errorf("%s: field %v, want %s", tc.body, f, tc.field)
			}
		}
		d.expect(d.call("POST", "/v1/reviews/decisions", system, body(map[string]any{"ids": []string{"a"}, "verdict": "approve"})), http.StatusForbidden)
	})

	t.Run("review gate through the API", func(t *testing.T) {
		id := d.start("inventory-reconciliation", "inv-1", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 40, "erp_count": 52})
		d.waitStatus(id, "waiting_review")
		var reviewID string
		deadline := time.Now().Add(30 * time.Second)
		for reviewID == "" && time.Now().Before(deadline) {
			for _, x := range d.expect(d.call("GET", "/v1/reviews?queue=inventory", reviewer, ""), http.StatusOK).body["reviews"].([]any) {
				if x.(map[string]any)["instance_id"] == id {
					reviewID = x.(map[string]any)["id"].(string)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if reviewID == "" {
			t.Fatal("no open review")
		}
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/decision", reviewer, `{"verdict":"maybe"}`), http.StatusBadRequest)
		// A claim holds the review for one reviewer: another can neither
		// take nor decide it, and it reads as claimed in the inbox.
		other := d.named("reviewer-2", "reviewer")
		claim := d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/claim", reviewer, `{"lease":"10m"}`), http.StatusOK)
		if claim.body["status"] != "claimed" || claim.body["claimed_by"] != "reviewer-1" || claim.body["claim_expires_at"] == nil {
			t.Fatalf("claim %s", claim.raw)
		}
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/claim", other, ""), http.StatusConflict)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/decision", other, `{"verdict":"approve"}`), http.StatusConflict)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/claim", reviewer, `{"lease":"2s"}`), http.StatusBadRequest)
		mine := d.expect(d.call("GET", "/v1/reviews?status=claimed&assignee=reviewer-1", reviewer, ""), http.StatusOK)
		if items := mine.body["reviews"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != reviewID {
			t.Fatalf("claimed by reviewer-1: %s", mine.raw)
		}
		item := d.expect(d.call("GET", "/v1/reviews/"+reviewID, reviewer, ""), http.StatusOK)
		if item.body["input"] == nil || item.body["explanation"] == nil {
			t.Fatalf("inbox item without the input or why it was raised: %s", item.raw)
		}
		d.expect(d.call("GET", "/v1/reviews?after=garbage", reviewer, ""), http.StatusBadRequest)
		d.expect(d.call("GET", "/v1/reviews?older_than=soon", reviewer, ""), http.StatusBadRequest)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/decision", reviewer, `{"verdict":"approve","comment":"recounted: ERP is right"}`), http.StatusOK)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/decision", reviewer, `{"verdict":"reject","comment":"too late"}`), http.StatusConflict)
		inst := d.waitStatus(id, "completed")
		if got := plan(inst); got != "counts_consistent:done post_adjustment:done" {
			t.Fatalf("plan %q", got)
		}
		rv := d.expect(d.call("GET", "/v1/reviews/"+reviewID, reviewer, ""), http.StatusOK)
		if rv.body["verdict"] != "approve" || rv.body["reviewer"] != "reviewer-1" || rv.body["status"] != "decided" {
			t.Fatalf("review %s", rv.raw)
		}

		// Two reviewers decide the same review at once: exactly one wins.
		race := d.start("inventory-reconciliation", "inv-race", map[string]any{"store_id": "s1", "sku": "Y", "pos_count": 10, "erp_count": 30})
		inst = d.waitStatus(race, "waiting_review")
		raceReviews := inst["reviews"].([]any)
		raceID := raceReviews[len(raceReviews)-1].(map[string]any)["id"].(string)
		statuses := make(chan int, 2)
		var wg sync.WaitGroup
		for _, k := range []string{reviewer, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses <- d.call("POST", "/v1/reviews/"+raceID+"/decision", k, `{"verdict":"approve","comment":"checked"}`).status
			}()
		}
		wg.Wait()
		close(statuses)
		var got []int
		for st := range statuses {
			got = append(got, st)
		}
		slices.Sort(got)
		if !slices.Equal(got, []int{http.StatusOK, http.StatusConflict}) {
			t.Fatalf("two reviewers deciding at once got %v, want one 200 and one 409", got)
		}
		d.waitStatus(race, "completed")

		rej := d.start("procurement-approval", "po-1", map[string]any{"request_id": "PO-1", "requester": "ann", "amount": 30000, "budget_remaining": 50000, "supplier": "ACME"})
		inst = d.waitStatus(rej, "waiting_review")
		reviews := inst["reviews"].([]any)
		rid := reviews[len(reviews)-1].(map[string]any)["id"].(string)
		d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", reviewer, `{"verdict":"reject","comment":"over budget for Q4"}`), http.StatusOK)
		inst = d.waitStatus(rej, "rejected")
		if got := plan(inst); got != "budget_check:done manager_approval:not_run director_approval:not_run place_order:not_run" {
			t.Fatalf("plan %q", got)
		}
	})

	t.Run("procurement adapts to the amount", func(t *testing.T) {
		id := d.start("procurement-approval", "po-small", map[string]any{"request_id": "PO-2", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"})
		inst := d.waitStatus(id, "completed")
		if got := plan(inst); got != "budget_check:done manager_approval:skipped place_order:done" {
			t.Fatalf("plan %q", got)
		}
		over := d.start("procurement-approval", "po-over", map[string]any{"request_id": "PO-3", "requester": "ann", "amount": 9000, "budget_remaining": 5000})
		inst = d.waitStatus(over, "failed")
		if !strings.Contains(inst["error"].(string), "assertion failed: input.amount <= input.budget_remaining") {
			t.Fatalf("error %v", inst["error"])
		}
	})

	t.Run("an instance waits for an event from another system", func(t *testing.T) {
		const def = "name: paid-orders\nversion: 1\ninput: {properties: {amount: {type: number}}}\nsteps:\n" +
			"  - {id: reserve, kind: task, task: noop}\n" +
			"  - {id: await_payment, kind: event, event: {name: payment_received, timeout: 72h}}\n" +
			"  - {id: ship, kind: task, task: noop}\n"
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", def), http.StatusCreated)
		id := d.start("paid-orders", "po-1", map[string]any{"amount": 120})
		deadline := time.Now().Add(30 * time.Second)
		for got := ""; got != "reserve:done await_payment:waiting_event ship:pending"; got = plan(d.call("GET", "/v1/instances/"+id, adminKey, "").body) {
			if time.Now().After(deadline) {
				t.Fatalf("plan %q: the instance does not wait for its event", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Listed, and counted, as waiting for an event.
		if got := d.expect(d.call("GET", "/v1/processes/paid-orders/instances?status=waiting_event", adminKey, ""), http.StatusOK); len(got.body["instances"].([]any)) != 1 {
			t.Fatalf("instances waiting for an event: %s", got.raw)
		}
		if k := d.expect(d.call("GET", "/v1/processes/paid-orders/kpis?since=1d", engineer, ""), http.StatusOK); k.body["overall"].(map[string]any)["waiting_event"] != 1.0 {
			t.Fatalf("KPIs: %s", k.raw)
		}
		path := "/v1/instances/" + id + "/events"
		if r := d.expect(d.call("POST", path, system, `{"name":"payment_sent"}`), http.StatusBadRequest); r.body["error"].(map[string]any)["field"] != "name" ||
			!strings.Contains(r.raw, "waits for: payment_received") {
			t.Fatalf("an event no step waits for: %s", r.raw)
		}
		d.expect(d.call("POST", path, system, `{"name":"Payment!"}`), http.StatusBadRequest)
		d.expect(d.call("POST", "/v1/instances/nope/events", system, `{"name":"payment_received"}`), http.StatusNotFound)
		r := d.expect(d.call("POST", path, system, `{"name":"payment_received","data":{"ref":"TX-1","amount":120}}`), http.StatusOK)
		if r.body["by"] != "system-1" || r.body["data"].(map[string]any)["ref"] != "TX-1" {
			t.Fatalf("the event: %s", r.raw)
		}
		inst := d.waitStatus(id, "completed")
		out := inst["results"].(map[string]any)["await_payment"].(map[string]any)
		if out["data"].(map[string]any)["ref"] != "TX-1" || inst["events"].(map[string]any)["payment_received"] == nil {
			t.Fatalf("the instance after its event: %v", inst)
		}
		d.expect(d.call("POST", path, system, `{"name":"payment_received"}`), http.StatusConflict)
		// Events are business traffic, kept with their instances, not audit entries.
		if got := d.expect(d.call("GET", "/v1/audit?action="+url.QueryEscape("POST /v1/instances/:id/events"), adminKey, ""), http.StatusOK); len(got.body["entries"].([]any)) != 0 {
			t.Fatalf("events in the audit log: %s", got.raw)
		}
		// Through the CLI, to a second instance.
		id2 := d.start("paid-orders", "po-2", map[string]any{"amount": 5})
		var printed, errOut bytes.Buffer
		if code := cli.Instances(t.Context(), []string{"event", id2, "payment_received", "--data", `{"ref":"TX-2"}`, "--server", d.base, "--api-key", system}, &printed, &errOut); code != 0 ||
			!strings.Contains(printed.String(), "event payment_received received ") || !strings.Contains(printed.String(), "from system-1") {
			t.Fatalf("instances event: exit %d\n%s%s", code, printed.String(), errOut.String())
		}
		if inst := d.waitStatus(id2, "completed"); inst["results"].(map[string]any)["await_payment"].(map[string]any)["data"].(map[string]any)["ref"] != "TX-2" {
			t.Fatalf("the second instance: %v", inst)
		}
		d.recordHistories(map[string]string{id: "event_step_v1.json"})
	})

	t.Run("an instance waits for several events of a name", func(t *testing.T) {
		const def = "name: split-orders\nversion: 1\nsteps:\n" +
			"  - {id: await_shipments, kind: event, event: {name: shipped, count: 2, timeout: 72h}}\n" +
			"  - {id: invoice, kind: task, task: noop}\n"
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", def), http.StatusCreated)
		id := d.start("split-orders", "so-1", map[string]any{})
		path := "/v1/instances/" + id + "/events"
		d.expect(d.call("POST", path, system, `{"name":"shipped","id":"","data":{}}`), http.StatusBadRequest)
		first := d.expect(d.call("POST", path, system, `{"name":"shipped","id":"S-1","data":{"qty":2}}`), http.StatusOK)
		// A retried delivery of the first shipment is acknowledged with the one kept.
		if again := d.expect(d.call("POST", path, system, `{"name":"shipped","id":"S-1","data":{"qty":9}}`), http.StatusOK); again.body["id"] != "S-1" ||
			again.body["data"].(map[string]any)["qty"] != 2.0 || again.body["at"] != first.body["at"] {
			t.Fatalf("a retried delivery: %s", again.raw)
		}
		if inst := d.waitStatus(id, "waiting_event"); len(inst["event_log"].(map[string]any)["shipped"].([]any)) != 1 {
			t.Fatalf("after one shipment: %v", inst["event_log"])
		}
		var printed, errOut bytes.Buffer
		if code := cli.Instances(t.Context(), []string{"event", id, "shipped", "--id", "S-2", "--data", `{"qty":1}`, "--server", d.base, "--api-key", system}, &printed, &errOut); code != 0 ||
			!strings.Contains(printed.String(), "event shipped S-2 received ") {
			t.Fatalf("instances event --id: exit %d\n%s%s", code, printed.String(), errOut.String())
		}
		inst := d.waitStatus(id, "completed")
		out := inst["results"].(map[string]any)["await_shipments"].(map[string]any)
		events := out["events"].([]any)
		if out["count"] != 2.0 || len(events) != 2 || events[1].(map[string]any)["id"] != "S-2" || events[1].(map[string]any)["data"].(map[string]any)["qty"] != 1.0 {
			t.Fatalf("the step's result: %v", out)
		}
		d.recordHistories(map[string]string{id: "event_count_v1.json"})
	})

	t.Run("a classifier is tried without an instance", func(t *testing.T) {
		path := "/v1/processes/customer-onboarding/classify"
		r := d.expect(d.call("POST", path, adminKey, `{"input":{"applicant":"Ann","message":"our company needs a business account with two directors"}}`), http.StatusOK)
		cl := r.body["classification"].(map[string]any)
		alts, _ := cl["alternatives"].([]any)
		if r.body["text"] != "our company needs a business account with two directors" || cl["label"] != "business_account" || cl["model"] != activities.EmbeddedModel ||
			len(alts) != 3 || alts[0].(map[string]any)["label"] != "business_account" || cl["review"] != (cl["confidence"].(float64) < r.body["review_below"].(float64)) {
			t.Fatalf("preview %s", r.raw)
		}
		r = d.expect(d.call("POST", path, adminKey, `{"text":"I want to move my savings over from my old bank"}`), http.StatusOK)
		if cl := r.body["classification"].(map[string]any); cl["label"] == "" {
			t.Fatalf("preview of a text %s", r.raw)
		}
		for body, field := range map[string]string{`{}`: "input", `{"text":"x","input":{}}`: "input", `{"text":"  "}`: "text", `{"input":{"applicant":"Bo"}}`: "input"} {
			if r := d.expect(d.call("POST", path, adminKey, body), http.StatusBadRequest); r.body["error"].(map[string]any)["field"] != field {
				t.Fatalf("%s: %s, want the field %s named", body, r.raw, field)
			}
		}
		d.expect(d.call("POST", "/v1/processes/order-fulfillment/classify", adminKey, `{"text":"hello"}`), http.StatusConflict)
		d.expect(d.call("POST", "/v1/processes/nope/classify", adminKey, `{"text":"hello"}`), http.StatusNotFound)
		if got := d.expect(d.call("GET", "/v1/processes/customer-onboarding/instances", adminKey, ""), http.StatusOK); len(got.body["instances"].([]any)) != 0 {
			t.Fatalf("a preview started an instance: %s", got.raw)
		}
		// A preview changes nothing: the audit log does not list it.
		if got := d.expect(d.call("GET", "/v1/audit?action="+url.QueryEscape("POST /v1/processes/:name/classify"), adminKey, ""), http.StatusOK); len(got.body["entries"].([]any)) != 0 {
			t.Fatalf("previews in the audit log: %s", got.raw)
		}
		// The same through the CLI.
		var out, errOut bytes.Buffer
		code := cli.Process(t.Context(), []string{"classify", "customer-onboarding", "--input", `{"message":"our company needs a business account with two directors"}`,
			"--server", d.base, "--api-key", engineer}, &out, &errOut)
		if code != 0 || !strings.HasPrefix(out.String(), "label") || !strings.Contains(out.String(), "business_account (confidence ") ||
			!strings.Contains(out.String(), "\nreview ") || !strings.Contains(out.String(), "\nor else ") {
			t.Fatalf("process classify: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		out.Reset()
		if code := cli.Process(t.Context(), []string{"classify", "order-fulfillment", "--text", "hi", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "classifies nothing") {
			t.Fatalf("process classify of a process without a classifier: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		d.recordCompleted(workflows.ClassifyPreviewWorkflow, "classify_preview_v1.json")
	})

	t.Run("a classifier is evaluated on its own examples", func(t *testing.T) {
		path := "/v1/processes/customer-onboarding/classify/evaluate"
		d.expect(d.call("GET", "/v1/processes/customer-onboarding/classify/evaluation", engineer, ""), http.StatusNotFound)
		r := d.expect(d.call("POST", path, engineer, `{"holdout":0.3}`), http.StatusOK)
		// Kept until the next one, for the process's page.
		if last := d.expect(d.call("GET", "/v1/processes/customer-onboarding/classify/evaluation", engineer, ""), http.StatusOK); last.body["examples_changed"] != false || last.body["definition_changed"] != false ||
			last.body["evaluated_at"] == nil || last.body["evaluation"].(map[string]any)["accuracy"] != r.body["evaluation"].(map[string]any)["accuracy"] {
			t.Fatalf("the last evaluation: %s", last.raw)
		}
		ev := r.body["evaluation"].(map[string]any)
		labels, _ := ev["labels"].([]any)
		if ev["classifier"] != "onboarding-requests" || ev["model"] != activities.EmbeddedModel || ev["holdout"] != 0.3 || ev["test_examples"].(float64) < 4 ||
			ev["train_examples"].(float64)+ev["test_examples"].(float64) != ev["examples"].(float64) || len(labels) != 4 || ev["mistakes"] == nil {
			t.Fatalf("evaluation %s", r.raw)
		}
		// Without a body: a fifth of each label's held out.
		if r := d.expect(d.call("POST", path, engineer, ""), http.StatusOK); r.body["evaluation"].(map[string]any)["holdout"] != 0.2 {
			t.Fatalf("the default evaluation %s", r.raw)
		}
		if r := d.expect(d.call("POST", path, engineer, `{"holdout":0.9}`), http.StatusBadRequest); r.body["error"].(map[string]any)["field"] != "holdout" {
			t.Fatalf("a holdout too large: %s", r.raw)
		}
		// Cross-validated: every example tested once.
		cv := d.expect(d.call("POST", path, engineer, `{"folds":4}`), http.StatusOK).body["evaluation"].(map[string]any)
		if cv["folds"] != 4.0 || cv["test_examples"] != cv["examples"] || cv["holdout"] != nil {
			t.Fatalf("cross-validated %v", cv)
		}
		for _, body := range []string{`{"folds":1}`, `{"folds":11}`, `{"folds":3,"holdout":0.2}`} {
			if r := d.expect(d.call("POST", path, engineer, body), http.StatusBadRequest); r.body["error"].(map[string]any)["field"] != "folds" {
				t.Fatalf("%s: %s", body, r.raw)
			}
		}
		for body, field := range map[string]string{`{"model":"gpt"}`: "model", `{"limit":5}`: "limit", `{"model":"llm","limit":0}`: "limit", `{"model":"llm","folds":3}`: "folds"} {
			if r := d.expect(d.call("POST", path, engineer, body), http.StatusBadRequest); r.body["error"].(map[string]any)["field"] != field {
				t.Fatalf("%s: %s", body, r.raw)
			}
		}
		// This server has no LLM: its evaluation is refused for good.
		if r := d.expect(d.call("POST", path, engineer, `{"model":"llm"}`), http.StatusUnprocessableEntity); !strings.Contains(r.raw, "no LLM is configured") {
			t.Fatalf("an LLM evaluation without an LLM: %s", r.raw)
		}
		d.expect(d.call("POST", "/v1/processes/order-fulfillment/classify/evaluate", engineer, ""), http.StatusConflict)
		d.expect(d.call("POST", path, reviewer, ""), http.StatusForbidden)
		var out, errOut bytes.Buffer
		if code := cli.Process(t.Context(), []string{"evaluate", "customer-onboarding", "--folds", "4", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "cross-validated over 4 folds") {
			t.Fatalf("process evaluate --folds: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		out.Reset()
		code := cli.Process(t.Context(), []string{"evaluate", "customer-onboarding", "--holdout", "0.3", "--server", d.base, "--api-key", engineer}, &out, &errOut)
		if code != 0 || !strings.HasPrefix(out.String(), "classifier onboarding-requests ("+activities.EmbeddedModel+"): ") ||
			!strings.Contains(out.String(), "the weakest labels (of 4):") || !strings.Contains(out.String(), "TESTED  PRECISION") {
			t.Fatalf("process evaluate: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		d.recordCompleted(workflows.EvaluateClassifierWorkflow, "classifier_evaluation_v13.json")
	})

	t.Run("classification facts drive policies", func(t *testing.T) {
		id := d.start("customer-onboarding", "app-1", map[string]any{"applicant": "Ann", "message": "our company needs a business account with two directors"})
		inst := d.waitStatus(id, "waiting_review")
		cl := inst["classification"].(map[string]any)
		if cl["label"] != "business_account" || cl["model"] == "" {
			t.Fatalf("classification %v", cl)
		}
		if got := plan(inst); !strings.Contains(got, "business_kyc:waiting_review") {
			t.Fatalf("plan %q", got)
		}

		// The KYC reviewer sees the text and the model's answer, finds it is
		// really a transfer, and corrects it: the classifier learns the
		// corrected example, and the instance goes on.
		reviews := inst["reviews"].([]any)
		rid := reviews[len(reviews)-1].(map[string]any)["id"].(string)
		item := d.expect(d.call("GET", "/v1/reviews/"+rid, reviewer, ""), http.StatusOK)
		cls, _ := item.body["classification"].(map[string]any)
		if cls == nil || cls["text"] != "our company needs a business account with two directors" || cls["answer"].(map[string]any)["label"] != "business_account" {
			t.Fatalf("inbox item %s", item.raw)
		}
		if sim, _ := item.body["similar"].([]any); len(sim) == 0 {
			t.Fatalf("no similar past cases: %s", item.raw)
		}
		d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", reviewer, `{"verdict":"correct","label":"mortgage"}`), http.StatusBadRequest)
		d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", reviewer, `{"verdict":"reject"}`), http.StatusBadRequest)
		dec := d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", reviewer, `{"verdict":"correct","label":"account_transfer","comment":"moving from another bank"}`), http.StatusOK)
		if dec.body["status"] != "decided" || dec.body["verdict"] != "approve" || dec.body["example"] == nil {
			t.Fatalf("correction %s", dec.raw)
		}
		d.waitStatus(id, "completed")
		ex := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/examples", reviewer, ""), http.StatusOK)
		found := false
		for _, e := range ex.body["examples"].([]any) {
			e := e.(map[string]any)
			if e["text"] == cls["text"] && e["label"] == "account_transfer" && e["source"] == "review:reviewer-1" {
				found = true
			}
		}
		if !found {
			t.Fatalf("the correction was not kept as an example: %s", ex.raw)
		}
		q := d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/quality?since=1d&bucket=6h", engineer, ""), http.StatusOK)
		overall := q.body["overall"].(map[string]any)
		labels := q.body["labels"].([]any)
		if overall["verdicts"] != 1.0 || overall["accuracy"] != 0.0 || len(labels) != 1 || len(q.body["periods"].([]any)) != 4 {
			t.Fatalf("quality %s", q.raw)
		}
		if l := labels[0].(map[string]any); l["label"] != "business_account" || l["corrected_to"].(map[string]any)["account_transfer"] != 1.0 ||
			len(l["periods"].([]any)) != 4 || l["periods"].([]any)[3].(map[string]any)["verdicts"] != 1.0 {
			t.Fatalf("quality by label %s", q.raw)
		}
		d.expect(d.call("GET", "/v1/classifiers/onboarding-requests/quality?bucket=1s", engineer, ""), http.StatusBadRequest)
		// The review's store record closes just after the verdict (an
		// activity of the workflow), so the figures settle within moments.
		wantMetrics := []string{
			`adaptflow_review_classification_verdicts_total{queue="kyc"} 1`,
			`adaptflow_review_overrides_total{queue="kyc"} 1`,
			`adaptflow_reviews_decided_total{queue="kyc"} 1`,
			`adaptflow_review_queue_depth{queue="inventory",status="open"}`,
			`adaptflow_review_time_to_first_claim_seconds_count{queue="inventory"}`,
			`adaptflow_http_requests_total{method="POST",route="/v1/reviews/:id/decision",status="200"}`,
			// The worker's figures are on the same /metrics in dev.
			`adaptflow_instance_starts_total{process="customer-onboarding",result="created"}`,
			`adaptflow_decisions_total{action="review",process="inventory-reconciliation"}`,
			`adaptflow_classifications_total{model="embedded",review=`,
			`adaptflow_instances_finished_total{process="returns",status="completed"} 1`,
			`adaptflow_instance_cycle_seconds_count{process="returns",status="completed"} 1`,
			`adaptflow_instance_sla_total{outcome="met",process="returns"} 1`,
		}
		var missing []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			metrics := d.expect(d.call("GET", "/metrics", "", ""), http.StatusOK).raw
			missing = missing[:0]
			for _, want := range wantMetrics {
				if !strings.Contains(metrics, want) {
					missing = append(missing, want)
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(missing) > 0 {
			t.Errorf("/metrics lacks %v", missing)
		}
	})

	t.Run("Temporal clients see the same workflows", func(t *testing.T) {
		tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		id := app.InstanceIDForTest("procurement-approval", "po-small")
		desc, err := tc.DescribeWorkflowExecution(t.Context(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if desc.WorkflowExecutionInfo.Type.Name != "adaptflow.Process" {
			t.Fatalf("type %s", desc.WorkflowExecutionInfo.Type.Name)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			list, err := tc.ListWorkflow(t.Context(), &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Executions) >= 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("visibility lists %d workflows", len(list.Executions))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if *updateHistory {
			recordHistory(t, tc, app.InstanceIDForTest("order-fulfillment", "o-1"), "order_fulfillment_v5.json")
			recordHistory(t, tc, app.InstanceIDForTest("inventory-reconciliation", "inv-1"), "inventory_review_v5.json")
			recordHistory(t, tc, app.InstanceIDForTest("customer-onboarding", "app-1"), "onboarding_classify_v5.json")
		}
	})

	t.Run("a review moves to another queue", func(t *testing.T) {
		id := d.start("inventory-reconciliation", "inv-move", map[string]any{"store_id": "s2", "sku": "M", "pos_count": 5, "erp_count": 50})
		inst := d.waitStatus(id, "waiting_review")
		reviewID := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/claim", reviewer, ""), http.StatusOK)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/reassign", reviewer, `{"queue":"Loss Prevention"}`), http.StatusBadRequest)
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/reassign", reviewer, `{"queue":"inventory"}`), http.StatusBadRequest)
		if r := d.call("POST", "/v1/reviews/"+reviewID+"/reassign", reviewer, `{"queue":"loss-prevention","note":"`+strings.Repeat("x", 2001)+`"}`); r.status != http.StatusBadRequest || !strings.Contains(r.raw, "note") {
			t.Fatalf("a note too long: %d %s", r.status, r.raw)
		}
		moved := d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/reassign", reviewer, `{"queue":"loss-prevention","note":"stock keeps vanishing at this store"}`), http.StatusOK)
		if moved.body["queue"] != "loss-prevention" || moved.body["status"] != "open" || moved.body["claimed_by"] != nil && moved.body["claimed_by"] != "" {
			t.Fatalf("moved: %s", moved.raw)
		}
		// The inbox and the instance both have it in the new queue.
		inbox := d.expect(d.call("GET", "/v1/reviews?queue=loss-prevention", reviewer, ""), http.StatusOK).body["reviews"].([]any)
		if len(inbox) != 1 || inbox[0].(map[string]any)["id"] != reviewID {
			t.Fatalf("the new queue's inbox: %v", inbox)
		}
		if q := d.expect(d.call("GET", "/v1/instances/"+id, system, ""), http.StatusOK).body["reviews"].([]any)[0].(map[string]any)["queue"]; q != "loss-prevention" {
			t.Fatalf("the instance's review is in %v", q)
		}
		// The desk that receives it reads why.
		item := d.expect(d.call("GET", "/v1/reviews/"+reviewID, reviewer, ""), http.StatusOK)
		if moves, _ := item.body["moves"].([]any); len(moves) != 1 || moves[0].(map[string]any)["from"] != "inventory" || moves[0].(map[string]any)["note"] != "stock keeps vanishing at this store" {
			t.Fatalf("the review item's moves: %s", item.raw)
		}
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/decision", reviewer, `{"verdict":"approve","comment":"a delivery was booked twice"}`), http.StatusOK)
		d.waitStatus(id, "completed")
		d.expect(d.call("POST", "/v1/reviews/"+reviewID+"/reassign", reviewer, `{"queue":"inventory"}`), http.StatusConflict)
		// Its life in the order it happened.
		var kinds, moves []string
		var last time.Time
		for _, x := range d.expect(d.call("GET", "/v1/instances/"+id+"/timeline", system, ""), http.StatusOK).body["timeline"].([]any) {
			e := x.(map[string]any)
			at, _ := time.Parse(time.RFC3339Nano, e["at"].(string))
			if at.Before(last) {
				t.Fatalf("the timeline goes back in time at %v", e)
			}
			last = at
			if len(kinds) == 0 || kinds[len(kinds)-1] != e["kind"] {
				kinds = append(kinds, e["kind"].(string))
			}
			if e["kind"] == "review" && strings.HasPrefix(e["what"].(string), "review decided") && e["what"] != "review decided: approve by reviewer-1: a delivery was booked twice" {
				t.Fatalf("the verdict in the timeline: %v", e)
			}
			if e["kind"] == "review" && strings.HasPrefix(e["what"].(string), "review moved") {
				moves = append(moves, e["what"].(string))
			}
		}
		if want := []string{"review moved from queue inventory to loss-prevention by reviewer-1: stock keeps vanishing at this store"}; !slices.Equal(moves, want) {
			t.Fatalf("the moves in the timeline %q, want %q", moves, want)
		}
		if got := strings.Join(kinds, " "); !strings.HasPrefix(got, "started decision step") || !strings.Contains(got, "review") || !strings.HasSuffix(got, "ended") {
			t.Fatalf("the timeline's kinds: %s", got)
		}
		d.recordHistories(map[string]string{id: "review_reassign_v8.json"})
	})

	t.Run("a failed instance is compensated", func(t *testing.T) {
		var released atomic.Int32
		ext := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/reserve":
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"ref":"R-9"}`)
			case "/pay":
				http.Error(w, "card declined", http.StatusPaymentRequired)
			case "/release":
				released.Add(1)
			}
		}))
		defer ext.Close()
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml", "name: saga\nversion: 1\nsteps:\n"+
			"  - {id: reserve, kind: http, http: {method: POST, url: '"+ext.URL+"/reserve'}, compensate: release}\n"+
			"  - {id: pay, kind: http, http: {method: POST, url: '"+ext.URL+"/pay'}}\n"+
			"catalog:\n  - {id: release, kind: http, http: {method: POST, url: '"+ext.URL+"/release', body: {ref: '${steps.reserve.body.ref}'}}}\n"), http.StatusCreated)
		id := d.start("saga", "saga-1", map[string]any{})
		inst := d.waitStatus(id, "failed")
		if plan(inst) != "reserve:done pay:failed release:done" || released.Load() != 1 {
			t.Fatalf("plan %q, released %d times", plan(inst), released.Load())
		}
		if r := d.call("POST", "/v1/instances/"+id+"/retry", engineer, ""); r.status != http.StatusConflict || !strings.Contains(r.raw, "has been compensated (release undid reserve)") {
			t.Fatalf("retry of a compensated instance: %d %s", r.status, r.raw)
		}
		// Counted by the save that ended it, a moment after the store has it.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			m := d.expect(d.call("GET", "/metrics", "", ""), http.StatusOK).raw
			if strings.Contains(m, `adaptflow_compensations_total{outcome="done",process="saga",step="reserve"} 1`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no compensation counted in /metrics")
			}
		}
		d.recordHistories(map[string]string{id: "compensation_v8.json"})
	})

	t.Run("the supplier example: a process step, a compensation and an SLA", func(t *testing.T) {
		blocked := d.start("supplier-onboarding", "sup-1", map[string]any{"supplier": "Acme", "country": "KP", "annual_spend": 5000})
		inst := d.waitStatus(blocked, "failed")
		if plan(inst) != "register_vendor:done screening:failed sign_contract:not_run deactivate_vendor:done" || inst["sla_status"] != "met" {
			t.Fatalf("an embargoed supplier: plan %q, sla %v", plan(inst), inst["sla_status"])
		}
		ok := d.start("supplier-onboarding", "sup-2", map[string]any{"supplier": "Globex", "country": "DE", "annual_spend": 5000})
		inst = d.waitStatus(ok, "waiting_review")
		if plan(inst) != "register_vendor:done screening:done sign_contract:waiting_review" || inst["sla_status"] != "on_track" {
			t.Fatalf("a cleared supplier: plan %q, sla %v", plan(inst), inst["sla_status"])
		}
		screened := inst["results"].(map[string]any)["screening"].(map[string]any)
		if screened["process"] != "sanctions-screening" || screened["status"] != "completed" {
			t.Fatalf("the screening step's result: %v", screened)
		}
	})

	t.Run("a process step runs another process", func(t *testing.T) {
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml",
			"name: kyc-check\nversion: 1\ninput: {required: [applicant], properties: {applicant: {type: string}}}\nsteps:\n  - {id: check, kind: validate, assertions: [\"input.applicant != ''\"]}\n  - {id: file, kind: task, task: noop}\n"), http.StatusCreated)
		d.expect(call(t, d.base, "POST", "/v1/processes", engineer, "application/yaml",
			"name: open-account\nversion: 1\ninput: {required: [name], properties: {name: {type: string}}}\nsteps:\n  - {id: kyc, kind: process, process: {name: kyc-check, input: {applicant: '${input.name}'}}}\n  - {id: open, kind: task, task: noop}\n"), http.StatusCreated)
		id := d.start("open-account", "acc-1", map[string]any{"name": "Ann"})
		inst := d.waitStatus(id, "completed", "failed")
		kyc := inst["results"].(map[string]any)["kyc"].(map[string]any)
		childID := app.InstanceIDForTest("kyc-check", "sub:"+id+":kyc")
		if plan(inst) != "kyc:done open:done" || kyc["instance_id"] != childID || kyc["status"] != "completed" {
			t.Fatalf("plan %q, kyc %v", plan(inst), kyc)
		}
		// The other instance is an instance like any: its own id, input and
		// status, and who started it.
		child := d.expect(d.call("GET", "/v1/instances/"+childID, system, ""), http.StatusOK).body
		if child["status"] != "completed" || child["created_by"] != "parent:"+id+"/kyc" || child["input"].(map[string]any)["applicant"] != "Ann" {
			t.Fatalf("the other instance %v", child)
		}
		d.recordHistories(map[string]string{id: "process_step_v8.json"})
	})

	t.Run("cancel", func(t *testing.T) {
		// Through the API, while it waits for a review: the review leaves
		// the inbox, and the instance says who canceled it and why.
		id := d.start("inventory-reconciliation", "inv-cancel", map[string]any{"store_id": "s1", "sku": "Y", "pos_count": 1, "erp_count": 90})
		d.waitStatus(id, "waiting_review")
		d.expect(d.call("POST", "/v1/instances/"+id+"/cancel", reviewer, `{"reason":"x"}`), http.StatusForbidden)
		d.expect(d.call("POST", "/v1/instances/"+id+"/cancel", system, `{"why":"x"}`), http.StatusBadRequest)
		inst := d.expect(d.call("POST", "/v1/instances/"+id+"/cancel", system, `{"reason":"store closed for good"}`), http.StatusOK).body
		if inst["status"] != "canceled" || inst["error"] != "canceled by system-1: store closed for good" || !strings.Contains(plan(inst), "post_adjustment:not_run") {
			t.Fatalf("canceled instance: %v", inst)
		}
		rv := inst["reviews"].([]any)[0].(map[string]any)
		if rv["status"] != "canceled" {
			t.Fatalf("its review: %v", rv)
		}
		stored := d.expect(d.call("GET", "/v1/reviews/"+rv["id"].(string), reviewer, ""), http.StatusOK)
		if stored.body["status"] != "canceled" || stored.body["reviewer"] != "system-1" {
			t.Fatalf("the inbox's review: %s", stored.raw)
		}
		d.expect(d.call("POST", "/v1/reviews/"+rv["id"].(string)+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusConflict)
		again := d.expect(d.call("POST", "/v1/instances/"+id+"/cancel", system, ""), http.StatusConflict)
		if !strings.Contains(again.raw, "has already ended: canceled") {
			t.Fatalf("canceling again: %s", again.raw)
		}
		done := d.start("procurement-approval", "po-cancel-done", map[string]any{"request_id": "PO-9", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"})
		d.waitStatus(done, "completed")
		d.expect(d.call("POST", "/v1/instances/"+done+"/cancel", engineer, ""), http.StatusConflict)
		kpi := d.expect(d.call("GET", "/v1/processes/inventory-reconciliation/kpis?since=1d", engineer, ""), http.StatusOK)
		if o := kpi.body["overall"].(map[string]any); o["canceled"] != 1.0 {
			t.Fatalf("KPIs: %v", o)
		}
		listed := d.expect(d.call("GET", "/v1/processes/inventory-reconciliation/instances?status=canceled", system, ""), http.StatusOK)
		if xs := listed.body["instances"].([]any); len(xs) != 1 || xs[0].(map[string]any)["id"] != id {
			t.Fatalf("canceled instances: %s", listed.raw)
		}

		// With the CLI, as an operator would.
		viaCLI := d.start("inventory-reconciliation", "inv-cancel-cli", map[string]any{"store_id": "s1", "sku": "W", "pos_count": 1, "erp_count": 90})
		d.waitStatus(viaCLI, "waiting_review")
		var out, errOut bytes.Buffer
		if code := cli.Instances(t.Context(), []string{"cancel", viaCLI, "--reason", "duplicate count", "--server", d.base, "--api-key", engineer}, &out, &errOut); code != 0 ||
			!strings.Contains(out.String(), ": canceled") || !strings.Contains(out.String(), "error: canceled by engineer-1: duplicate count") {
			t.Fatalf("adaptflow instances cancel: exit %d\n%s%s", code, out.String(), errOut.String())
		}

		// Through Temporal, as its CLI or UI would: the same end.
		native := d.start("inventory-reconciliation", "inv-cancel-temporal", map[string]any{"store_id": "s1", "sku": "Z", "pos_count": 1, "erp_count": 90})
		d.waitStatus(native, "waiting_review")
		tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if err := tc.CancelWorkflow(t.Context(), native, ""); err != nil {
			t.Fatal(err)
		}
		if inst := d.waitStatus(native, "canceled", "failed"); inst["status"] != "canceled" || inst["error"] != "canceled" {
			t.Fatalf("canceled through Temporal: %v", inst)
		}
		if *updateHistory {
			recordHistory(t, tc, id, "instance_cancel_v7.json")
			recordHistory(t, tc, native, "instance_cancel_temporal_v7.json")
		}
	})
}

// recordHistories, with -update-history, writes the histories of the
// instances (id: file name) to workflows/testdata, each once its
// workflow has closed (or as it is after 10 s: one that waits on).
func (d *dev) recordHistories(files map[string]string) {
	d.t.Helper()
	if !*updateHistory {
		return
	}
	tc := d.temporalClient()
	defer tc.Close()
	for id, name := range files {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = tc.GetWorkflow(ctx, id, "").Get(ctx, nil) // failed and canceled ones are recorded too
		cancel()
		recordHistory(d.t, tc, id, name)
	}
}

// temporalClient is a client of the dev server's Temporal frontend.
func (d *dev) temporalClient() client.Client {
	d.t.Helper()
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		d.t.Fatal(err)
	}
	return tc
}

// recordCompleted, with -update-history, writes the history of a
// completed workflow of the type (one the test ran: a preview, say, whose
// id the test does not know) to workflows/testdata.
func (d *dev) recordCompleted(workflowType, name string) {
	d.t.Helper()
	if !*updateHistory {
		return
	}
	tc := d.temporalClient()
	defer tc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		list, err := tc.ListWorkflow(d.t.Context(), &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", Query: "WorkflowType = '" + workflowType + "' AND ExecutionStatus = 'Completed'"})
		if err != nil {
			d.t.Fatal(err)
		}
		if len(list.Executions) > 0 {
			recordHistory(d.t, tc, list.Executions[0].Execution.WorkflowId, name)
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no completed %s workflow in visibility", workflowType)
		}
	}
}

func recordHistory(t testing.TB, tc client.Client, id, name string) {
	t.Helper()
	it := tc.GetWorkflowHistory(t.Context(), id, "", false, 0)
	var events []json.RawMessage
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, err := app.ProtoJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, b)
	}
	var buf bytes.Buffer
	buf.WriteString("{\"events\":[\n")
	for i, e := range events {
		if i > 0 {
			buf.WriteString(",\n")
		}
		buf.Write(e)
	}
	buf.WriteString("\n]}\n")
	path := filepath.Join("..", "..", "workflows", "testdata", name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s (%d events)", path, len(events))
}

// TestRestartResumes stops adaptflow dev cleanly while an instance waits for
// a review, starts it again on the same data directory, and finishes the
// instance: nothing lost, no decision recorded twice. A second adaptflow
// dev on the directory while the first runs is refused, naming the first:
// two Temporal servers on one database take each other's shards.
func TestRestartResumes(t *testing.T) {
	// Each run picks its Temporal ports: a port named for both, released
	// by the first and bound again by the second, races with other
	// packages' tests picking free ports (CI run 11 of stop 25 lost it).
	dir := t.TempDir()
	d := startDev(t, dir, "")
	id := d.start("inventory-reconciliation", "inv-r", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 30})
	d.waitStatus(id, "waiting_review")
	second := app.DefaultOptions()
	second.DataDir, second.Listen, second.TemporalAddress, second.APIKey = dir, "127.0.0.1:0", "127.0.0.1:0", adminKey
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a run that was not refused ends there
	defer cancel()
	err := app.Run(ctx, app.ModeDev, second)
	if want := fmt.Sprintf("--data-dir %s: in use by adaptflow dev (pid %d, --listen 127.0.0.1:0); stop it first, or give another directory", dir, os.Getpid()); err == nil || err.Error() != want {
		t.Fatalf("a second adaptflow dev on the directory: %v", err)
	}
	d.stop()

	d = startDev(t, dir, "")
	finishAfterRestart(t, d, id)
}

// startTemporal starts an embedded Temporal server (in memory) for the
// test, stopped at its end; tweak adjusts its options.
func startTemporal(t *testing.T, tweak ...func(*temporalserver.Options)) *temporalserver.Server {
	t.Helper()
	opts := temporalserver.DefaultOptions()
	opts.FrontendAddress = "127.0.0.1:0" // picked, again should it be taken as the server starts
	for _, f := range tweak {
		f(&opts)
	}
	ts, err := temporalserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.Stop() })
	return ts
}

// sweepingDev is a new data directory for adaptflow dev on its SQLite
// store, and start, which starts it on a directory with the sweeper every
// 100 ms and no minimum age for the sweeps' looks at Temporal.
func sweepingDev(t *testing.T) (string, func(dir string) *dev) {
	t.Helper()
	t.Setenv("DATABASE_URL", "") // the data directory's SQLite store, not CI's server
	t.Cleanup(app.LostMinAgeForTest(0))
	return t.TempDir(), func(dir string) *dev {
		return startDev(t, dir, "", func(o *app.Options) { o.SweepEvery = 100 * time.Millisecond })
	}
}

// TestLostWorkflowsOnANewTemporal: Temporal's database is lost while an instance
// waits for a review (adaptflow dev runs again on its store alone). The
// sweep finds Temporal has no workflow of it, and no history of this
// store's from before it either (as it would if the wrong Temporal were
// configured), so it leaves the instance as it is and counts it
// unconfirmed. A person's cancel ends it, with its review: before, the
// cancel was refused (409) and the instance waited for ever. An instance
// started afresh runs as usual.
func TestLostWorkflowsOnANewTemporal(t *testing.T) {
	dir, start := sweepingDev(t)
	d := start(dir)
	id := d.start("inventory-reconciliation", "inv-lost", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 30})
	inst := d.waitStatus(id, "waiting_review")
	review := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	d.stop()
	// The store alone in a new directory: the embedded server keeps its
	// databases open across an in-process restart, so removing them in
	// place would not lose them.
	storeOnly := t.TempDir()
	files, _ := filepath.Glob(filepath.Join(dir, "adaptflow.db*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(storeOnly, filepath.Base(f)), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	d = start(storeOnly)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if m := d.call("GET", "/metrics", "", ""); strings.Contains(m.raw, `adaptflow_swept_instances_total{found="lost_unconfirmed"} `) &&
			!strings.Contains(m.raw, `adaptflow_swept_instances_total{found="lost_unconfirmed"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not count the instance as unconfirmed")
		}
	}
	if inst := d.waitStatus(id, "waiting_review"); inst["error"] != "" {
		t.Fatalf("an unconfirmed instance is left as it is: %v", inst)
	}
	r := d.call("POST", "/v1/instances/"+id+"/cancel", adminKey, `{"reason":"Temporal's database was lost"}`)
	if r.status != http.StatusOK || r.body["status"] != "canceled" ||
		r.body["error"] != "canceled by admin: Temporal's database was lost (its workflow was no longer in Temporal)" || plan(r.body) != "counts_consistent:done post_adjustment:canceled" {
		t.Fatalf("the cancel of an instance whose workflow is gone: %d %s", r.status, r.raw)
	}
	if r := d.call("GET", "/v1/reviews/"+review, adminKey, ""); r.body["status"] != "canceled" {
		t.Fatalf("its review: %s", r.raw)
	}
	again := d.start("inventory-reconciliation", "inv-new", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 3, "erp_count": 3})
	d.waitStatus(again, "completed")
	if m := d.call("GET", "/metrics", "", ""); !strings.Contains(m.raw, `adaptflow_swept_instances_total{found="lost"} 0`) {
		t.Fatal("/metrics counts an instance as lost")
	}
}

// TestStoreLostInstancesComeBack: the store is restored from a backup
// taken before some instances started, while their workflows wait for
// reviews in Temporal. The sweep brings them back into the store from
// their workflows, with the definitions registered since and their open
// reviews: the API answers for them, the reviews are in the inbox, and
// verdicts finish them.
func TestStoreLostInstancesComeBack(t *testing.T) {
	dir, start := sweepingDev(t)
	d := start(dir)
	before := d.start("inventory-reconciliation", "inv-before", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 3, "erp_count": 3})
	d.waitStatus(before, "completed")
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(t.Context(), filepath.Join(dir, "adaptflow.db"), nil, backup); err != nil {
		t.Fatal(err)
	}
	for _, y := range []string{
		"name: count-check\nversion: 3\nsteps:\n  - {id: look, kind: review, review: {queue: counts, sla: 2d, on_timeout: fail}}\n  - {id: done, kind: task, task: noop}\n",
		"name: stock-audit\nversion: 1\nsteps:\n  - {id: check, kind: process, process: {name: count-check, input: {store: s2}}}\n",
	} {
		if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", y); r.status != http.StatusCreated {
			t.Fatalf("register: %d %s", r.status, r.raw)
		}
	}
	id := d.start("count-check", "cc-1", map[string]any{"store": "s1"})
	inst := d.waitStatus(id, "waiting_review")
	review := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	opened := d.expect(d.call("GET", "/v1/reviews/"+review, adminKey, ""), http.StatusOK).body
	parent := d.start("stock-audit", "sa-1", map[string]any{})
	child := app.InstanceIDForTest("count-check", "sub:"+parent+":check")
	childReview := d.waitStatus(child, "waiting_review")["reviews"].([]any)[0].(map[string]any)["id"].(string)
	// A workflow of the process type started by hand, with an input it
	// cannot read: it fails, and is left alone.
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	// Failed, it is the workflow that ended last: a sign of a restore
	// that a round over the ended workflows cannot bring back, and must
	// not ask for again and again (it held up the rounds over the running
	// ones for good: CI run 2 of stop 26).
	if run, err := tc.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{ID: "by-hand", TaskQueue: app.TaskQueue}, workflows.ProcessWorkflow, "not an input"); err != nil {
		t.Fatal(err)
	} else if err := run.Get(t.Context(), nil); err == nil {
		t.Fatal("a process workflow with an input it cannot read did not fail")
	}
	tc.Close()
	decided := d.decisions(id)
	d.stop()
	restoreStore(t, dir, backup)

	d = start(dir)
	inst = d.waitStatus(id, "waiting_review")
	if got := d.decisions(id); got != decided || got == "" {
		t.Fatalf("the decisions of the instance brought back:\n%s\nbefore the restore:\n%s", got, decided)
	}
	if inst["business_key"] != "cc-1" || inst["created_by"] != api.RecoveredBy || inst["version"] != 3.0 || fmt.Sprint(inst["input"]) != "map[store:s1]" {
		t.Fatalf("the instance brought back: %v", inst)
	}
	reviewer := d.newKey("reviewer")
	if r := d.call("GET", "/v1/reviews?queue=counts", reviewer, ""); !strings.Contains(r.raw, review) {
		t.Fatalf("the inbox: %s", r.raw)
	}
	// As it was opened: when, and due when.
	if back := d.expect(d.call("GET", "/v1/reviews/"+review, reviewer, ""), http.StatusOK).body; back["created_at"] != opened["created_at"] || back["due_at"] != opened["due_at"] || back["due_at"] == nil {
		t.Fatalf("the review brought back: opened %v, due %v; it was opened %v, due %v", back["created_at"], back["due_at"], opened["created_at"], opened["due_at"])
	}
	d.expect(d.call("POST", "/v1/reviews/"+review+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	if inst := d.waitStatus(id, "completed"); plan(inst) != "look:done done:done" {
		t.Fatalf("after the verdict: %v", inst)
	}
	// A process step's instance comes back with its parent's link, and
	// its verdict finishes both.
	if c := d.waitStatus(child, "waiting_review"); c["created_by"] != "parent:"+parent+"/check" {
		t.Fatalf("the process step's instance brought back: %v", c)
	}
	d.waitStatus(parent, "running")
	d.expect(d.call("POST", "/v1/reviews/"+childReview+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	d.waitStatus(child, "completed")
	if p := d.waitStatus(parent, "completed"); plan(p) != "check:done" {
		t.Fatalf("the parent after its step's verdict: %v", p)
	}
	if m := d.call("GET", "/metrics", "", ""); !strings.Contains(m.raw, `adaptflow_swept_instances_total{found="recovered"} 3`) {
		t.Fatal("/metrics does not count the instances brought back")
	}
	// The workflow started by hand (it failed: no input it can read) is
	// left alone, and the sweeper's passes go on succeeding.
	lastOK := func() float64 {
		return d.metric("adaptflow_background_task_last_success_timestamp_seconds", `task="sweeper"`)
	}
	since := float64(time.Now().UnixNano()) / 1e9
	for deadline := time.Now().Add(30 * time.Second); lastOK() <= since; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no pass of the sweeper has succeeded since %v (the last at %v)", since, lastOK())
		}
	}
	if r := d.call("GET", "/v1/instances/by-hand", adminKey, ""); r.status != http.StatusNotFound {
		t.Fatalf("the workflow started by hand: %d %s", r.status, r.raw)
	}
}

// restoreStore puts the store of backup (made by sqlite.Snapshot) in
// place of dir's, as a restore of the store alone does: Temporal's
// databases stay as they are.
func restoreStore(t *testing.T, dir, backup string) {
	t.Helper()
	for _, f := range []string{"adaptflow.db-wal", "adaptflow.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(backup, "adaptflow.db"))
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "adaptflow.db"), b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestStoreBehindCatchesUp: the store is restored from a backup taken
// while three instances waited for their first review; since, one went on
// to its second review, one completed, and one's review moved to another
// queue. The restored store held
// both as they were: the first review open (its verdict refused), the
// second never in the inbox, the completed one running. The sweep asks
// each workflow for its latest save, finds the store behind, and saves
// their states and reviews: the second review is in the inbox, and its
// verdict completes the instance.
func TestStoreBehindCatchesUp(t *testing.T) {
	dir, start := sweepingDev(t)
	d := start(dir)
	// The second look escalates once its SLA runs out.
	const looks = "name: two-looks\nversion: 1\nsteps:\n  - {id: look1, kind: review, review: {queue: looks}}\n" +
		"  - {id: look2, kind: review, review: {queue: looks, reason: again, sla: 1s, on_timeout: escalate, escalate: {queue: seniors, sla: 1h, on_timeout: fail, priority: 5}}}\n" +
		"  - {id: done, kind: task, task: noop}\n"
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", looks); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	reviewer := d.newKey("reviewer")
	goesOn, ends, moved := d.start("two-looks", "tl-1", map[string]any{}), d.start("two-looks", "tl-2", map[string]any{}), d.start("two-looks", "tl-3", map[string]any{})
	first := map[string]string{}
	for _, id := range []string{goesOn, ends, moved} {
		first[id] = d.waitStatus(id, "waiting_review")["reviews"].([]any)[0].(map[string]any)["id"].(string)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(t.Context(), filepath.Join(dir, "adaptflow.db"), nil, backup); err != nil {
		t.Fatal(err)
	}
	decide := func(review string) {
		t.Helper()
		d.expect(d.call("POST", "/v1/reviews/"+review+"/decision", reviewer, `{"verdict":"approve"}`), http.StatusOK)
	}
	decide(first[goesOn])
	second := d.secondReview(goesOn)
	// The inbox's review, escalated, as it reads before the store loses it.
	var before map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if before = d.expect(d.call("GET", "/v1/reviews/"+second, reviewer, ""), http.StatusOK).body; before["escalated_at"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second look was not escalated: %v", before)
		}
	}
	decide(first[ends])
	decide(d.secondReview(ends))
	d.waitStatus(ends, "completed")
	d.expect(d.call("POST", "/v1/reviews/"+first[moved]+"/reassign", reviewer, `{"queue":"elsewhere"}`), http.StatusOK)
	// One more started and ended since the backup.
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: quick-one\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	quick := d.start("quick-one", "q-1", map[string]any{})
	d.waitStatus(quick, "completed")
	// A workflow that leaves the sweep's query unanswered (no worker knows
	// its type; so would a history that no longer replays), of the newest
	// instance in progress: it is skipped for a while, and the others are
	// caught up all the same (before, it stopped every pass's queries).
	odd := api.InstanceID("two-looks", "odd")
	tc, err := client.Dial(client.Options{HostPort: d.temporal, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{ID: odd, TaskQueue: app.TaskQueue}, "adaptflow.NotAProcess"); err != nil {
		t.Fatal(err)
	}
	// And one that answers the query with an error: a process workflow
	// started by hand with an input it cannot read fails before it has
	// the query. It is asked again only once it moves.
	broken := api.InstanceID("two-looks", "broken")
	if run, err := tc.ExecuteWorkflow(t.Context(), client.StartWorkflowOptions{ID: broken, TaskQueue: app.TaskQueue}, workflows.ProcessWorkflow, "not an input"); err != nil {
		t.Fatal(err)
	} else if err := run.Get(t.Context(), nil); err == nil {
		t.Fatal("a process workflow with an input it cannot read did not fail")
	}
	if _, err := tc.QueryWorkflow(t.Context(), broken, "", workflows.QuerySaved); err == nil {
		t.Fatal("the failed workflow answered the query")
	} else if qf := (*serviceerror.QueryFailed)(nil); !errors.As(err, &qf) {
		t.Fatalf("the failed workflow's query: %T %v, want QueryFailed", err, err)
	}
	tc.Close()
	decided := map[string]string{}
	for _, id := range []string{goesOn, ends, quick} {
		decided[id] = d.decisions(id)
	}
	d.stop()
	restoreStore(t, dir, backup)
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	// What the restored store lacks of the decisions made until the restart.
	missing := 0
	for _, id := range []string{goesOn, ends, quick} {
		had, err := st.Decisions(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		missing += strings.Count(decided[id], "\n") - len(had)
	}
	if missing < 5 {
		t.Fatalf("the restored store lacks %d decision records; the test means it to lack those of both looks since the backup", missing)
	}
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: odd, Process: "two-looks", ProcessVersion: 1, BusinessKey: "odd", Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveInstanceState(t.Context(), odd, "run-x", 1, []byte(`{"status":"running","process":"two-looks"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: broken, Process: "two-looks", ProcessVersion: 1, BusinessKey: "broken", Input: []byte(`{}`), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveInstanceState(t.Context(), broken, "run-y", 1, []byte(`{"status":"running","process":"two-looks"}`)); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()

	restarted := time.Now()
	d = start(dir)
	if inst := d.waitStatus(ends, "completed"); plan(inst) != "look1:done look2:done done:done" {
		t.Fatalf("the instance that completed since the backup: %v", inst)
	}
	// It finished when its workflow did, before the restart (its cycle
	// time), not when the store caught up.
	if l := d.expect(d.call("GET", "/v1/processes/two-looks/instances?status=finished", adminKey, ""), http.StatusOK).body["instances"].([]any); len(l) != 1 {
		t.Fatalf("finished instances: %v", l)
	} else if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l[0].(map[string]any)["finished_at"])); err != nil || !at.Before(restarted) {
		t.Fatalf("the instance that completed since the backup finished at %v (%v); the restart was at %v", l[0].(map[string]any)["finished_at"], err, restarted)
	}
	var inst map[string]any
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if inst = d.expect(d.call("GET", "/v1/instances/"+goesOn, adminKey, ""), http.StatusOK).body; plan(inst) == "look1:done look2:waiting_review done:pending" {
			break
		}
	}
	if plan(inst) != "look1:done look2:waiting_review done:pending" || inst["status"] != "waiting_review" {
		t.Fatalf("the instance that went on since the backup: %v", inst)
	}
	inbox := d.call("GET", "/v1/reviews?queue=seniors", reviewer, "")
	if !strings.Contains(inbox.raw, second) || strings.Contains(inbox.raw, first[goesOn]) || strings.Contains(inbox.raw, first[ends]) {
		t.Fatalf("the inbox after the catch-up: %s", inbox.raw)
	}
	// The review the store lost is back as it was: opened, escalated and
	// due when the workflow did so, at its escalation's priority (before,
	// it read as opened at the catch-up, due never).
	after := d.expect(d.call("GET", "/v1/reviews/"+second, reviewer, ""), http.StatusOK).body
	for _, k := range []string{"queue", "created_at", "due_at", "escalated_at", "priority", "reason", "step"} {
		if fmt.Sprint(after[k]) != fmt.Sprint(before[k]) {
			t.Fatalf("the review caught up: %s %v, was %v", k, after[k], before[k])
		}
	}
	// The decision records made since the backup are back, from the
	// workflows' histories: the same records, the chain whole.
	for _, id := range []string{goesOn, ends} {
		if got := d.decisions(id); got != decided[id] {
			t.Fatalf("the decisions of %s after the catch-up:\n%s\nbefore the restore:\n%s", id, got, decided[id])
		}
	}
	decide(second)
	d.waitStatus(goesOn, "completed")
	// The instance started and ended since the backup is back, ended when
	// it did: its business key starts no second instance.
	if inst := d.waitStatus(quick, "completed"); inst["business_key"] != "q-1" || inst["created_by"] != api.RecoveredBy {
		t.Fatalf("the instance started and ended since the backup: %v", inst)
	}
	if got := d.decisions(quick); got != decided[quick] {
		t.Fatalf("the decisions of the instance brought back:\n%s\nbefore the restore:\n%s", got, decided[quick])
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK).body; v["ok"] != true {
		t.Fatalf("the audit chain after the catch-up: %v", v)
	}
	if m := d.call("GET", "/metrics", "", "").raw; !strings.Contains(m, fmt.Sprintf("\nadaptflow_decisions_taken_back_total %d\n", missing)) {
		t.Fatalf("/metrics does not count the %d decision records taken back", missing)
	}
	again := d.expect(d.call("POST", "/v1/processes/quick-one/instances", adminKey, `{"business_key":"q-1","input":{}}`), http.StatusOK)
	if again.body["id"] != quick {
		t.Fatalf("a start with its business key: %s", again.raw)
	}
	// The review moved to another queue since is in that queue's inbox.
	if r := d.call("GET", "/v1/reviews?queue=elsewhere", reviewer, ""); !strings.Contains(r.raw, first[moved]) {
		t.Fatalf("the inbox of the queue the review moved to: %s", r.raw)
	}
	if m := d.call("GET", "/metrics", "", ""); !strings.Contains(m.raw, `adaptflow_swept_instances_total{found="caught_up"} 3`) {
		t.Fatal("/metrics does not count the instances caught up")
	}
	// The instance left waiting is asked about once, not at every pass
	// (ten a second here): its workflow has not moved since, nor has the
	// store.
	queries := func() float64 { return d.metric("temporal_request_total", `operation="QueryWorkflow"`) }
	time.Sleep(500 * time.Millisecond)
	q := queries()
	time.Sleep(time.Second)
	if q == 0 || queries() != q {
		t.Fatalf("the sweep asked the waiting instance's workflow again: %v queries, then %v", q, queries())
	}
}

// TestBackupWhileRunning backs up adaptflow dev's data directory while it
// runs (adaptflow backup) with one instance waiting for a review and
// others starting, then runs a new adaptflow dev on the backup: the
// instance completed before is there, and the waiting one finishes. The
// directories' names hold what a "file:" URI reads otherwise ('?', '#',
// '%'): the databases are where they are named, and nowhere else.
func TestBackupWhileRunning(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // the data directory's SQLite store, not CI's server
	parent := t.TempDir()
	dir := filepath.Join(parent, "data #1?mode=ro 100%")
	d := startDev(t, dir, "")
	input := map[string]any{"request_id": "PO-1", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"}
	done := d.start("procurement-approval", "before", input)
	d.waitStatus(done, "completed")
	id := d.start("inventory-reconciliation", "inv-b", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 30})
	d.waitStatus(id, "waiting_review")
	busy := make(chan struct{})
	go func() { // starts go on while the backup runs
		defer close(busy)
		for i := range 20 {
			b, _ := json.Marshal(map[string]any{"business_key": fmt.Sprint("during-", i), "input": input})
			d.call("POST", "/v1/processes/procurement-approval/instances", adminKey, string(b))
		}
	}()
	out := filepath.Join(t.TempDir(), "backup #2?x 50%")
	var stdout, stderr bytes.Buffer
	code := cli.Backup(t.Context(), []string{"--data-dir", dir, "--out", out}, &stdout, &stderr)
	<-busy
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, f := range []string{"temporal.db", "temporal-visibility.db", "adaptflow.db"} {
		if !strings.Contains(stdout.String(), f+"\t") {
			t.Fatalf("backup output:\n%s", stdout.String())
		}
	}
	d.stop()
	for _, f := range []string{"temporal.db", "temporal-visibility.db", "adaptflow.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the data directory: %v", err)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("beside the data directory: %v", entries)
	}

	d = startDev(t, out, "")
	d.waitStatus(done, "completed")
	finishAfterRestart(t, d, id)
}

// TestDataDirFromBeforeTheVisibilitySplit: a data directory whose Temporal
// database holds visibility itself (made before visibility got a database
// of its own) goes on running that way.
func TestDataDirFromBeforeTheVisibilitySplit(t *testing.T) {
	dir := t.TempDir()
	vis := temporalserver.VisibilityFile(filepath.Join(dir, "temporal.db"))
	d := startDev(t, dir, "")
	input := map[string]any{"request_id": "PO-1", "requester": "ann", "amount": 300, "budget_remaining": 5000, "supplier": "ACME"}
	d.waitStatus(d.start("procurement-approval", "before", input), "completed")
	d.stop()
	if _, err := os.Stat(vis); err != nil {
		t.Fatalf("a new data directory has no visibility database of its own: %v", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(vis + suffix) // now it looks like a data directory from before
	}
	d = startDev(t, dir, "")
	d.waitStatus(d.start("procurement-approval", "after", input), "completed")
	d.stop()
	if _, err := os.Stat(vis); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an old data directory got a visibility database: %v", err)
	}
}

// TestKillResumes does the same with kill -9 of the whole process. While
// the process runs, another adaptflow dev on its data directory is
// refused, naming it; its lock goes with it, so the restart after the
// kill takes the directory.
func TestKillResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir, listen := t.TempDir(), freeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// The child's Temporal server picks its own frontend port: a start
	// that finds a port taken tries again on others, which a port named
	// here could not (the failed start keeps it bound).
	cmd.Env = append(os.Environ(), "ADAPTFLOW_CHILD_DATA_DIR="+dir, "ADAPTFLOW_CHILD_LISTEN="+listen, "ADAPTFLOW_CHILD_TEMPORAL=127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	child := &dev{t: t, base: "http://" + listen}
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := http.Get(child.base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("child did not become healthy: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	id := child.start("inventory-reconciliation", "inv-k", map[string]any{"store_id": "s1", "sku": "X", "pos_count": 1, "erp_count": 30})
	child.waitStatus(id, "waiting_review")
	second := app.DefaultOptions()
	second.DataDir, second.Listen, second.TemporalAddress, second.APIKey = dir, "127.0.0.1:0", "127.0.0.1:0", adminKey
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a run that was not refused ends there
	defer cancel()
	if err, want := app.Run(ctx, app.ModeDev, second), fmt.Sprintf("--data-dir %s: in use by adaptflow dev (pid %d, --listen %s)", dir, cmd.Process.Pid, listen); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a second adaptflow dev on the directory: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child exited with %v", err)
	}

	d := startDev(t, dir, "")
	finishAfterRestart(t, d, id)
}

func finishAfterRestart(t *testing.T, d *dev, id string) {
	t.Helper()
	inst := d.waitStatus(id, "waiting_review")
	reviews := inst["reviews"].([]any)
	if len(reviews) != 1 {
		t.Fatalf("reviews after restart: %v", reviews)
	}
	rid := reviews[0].(map[string]any)["id"].(string)
	d.expect(d.call("POST", "/v1/reviews/"+rid+"/decision", adminKey, `{"verdict":"approve"}`), http.StatusOK)
	inst = d.waitStatus(id, "completed")
	if got := plan(inst); got != "counts_consistent:done post_adjustment:done" {
		t.Fatalf("plan %q", got)
	}
	ds := d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", adminKey, ""), http.StatusOK).body["decisions"].([]any)
	// One decision per step (the second opened the review) and the review's
	// outcome after it, each once, in one chain.
	var kinds []string
	prev := ""
	for i, x := range ds {
		m := x.(map[string]any)
		if m["seq"].(float64) != float64(i+1) || m["prev_hash"] != prev {
			t.Fatalf("decision %d: seq %v prev %v, want chain", i, m["seq"], m["prev_hash"])
		}
		prev = m["hash"].(string)
		kind := "decision"
		if rv, ok := m["review"].(map[string]any); ok {
			kind = "review:" + rv["verdict"].(string)
		}
		kinds = append(kinds, kind)
	}
	if got := strings.Join(kinds, " "); got != "decision decision review:approve" {
		t.Fatalf("records %q, want one decision per step and the review's outcome", got)
	}
}

// TestEscalationAcrossRestart stops everything while a review waits for its
// SLA; after the restart the timer still fires once: the review escalates,
// the webhook hears of it exactly once, and the escalation's own SLA ends
// the instance.
func TestEscalationAcrossRestart(t *testing.T) {
	var hits atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	dir := t.TempDir()
	d := startDev(t, dir, "")
	def := `
name: escalating
version: 1
input:
  properties:
    n: {type: number}
steps:
  - id: check
    kind: review
    review: {queue: first-line, reason: check it, sla: 3s, on_timeout: escalate, escalate: {queue: senior, sla: 3s, on_timeout: escalate, notify: "` + hook.URL + `",
      escalate: {queue: head, sla: 3s, on_timeout: reject, notify: "` + hook.URL + `"}}}
  - {id: done, kind: task, task: noop}
`
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", def); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	id := d.start("escalating", "esc-1", map[string]any{"n": 1})
	inst := d.waitStatus(id, "waiting_review")
	rid := inst["reviews"].([]any)[0].(map[string]any)["id"].(string)
	d.stop()

	d = startDev(t, dir, "")
	deadline := time.Now().Add(60 * time.Second)
	for {
		rv := d.expect(d.call("GET", "/v1/reviews/"+rid, adminKey, ""), http.StatusOK)
		if rv.body["queue"] == "head" && rv.body["escalated_at"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not escalated twice after the restart: %s", rv.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	inst = d.waitStatus(id, "rejected")
	if got := plan(inst); got != "check:not_run done:not_run" {
		t.Fatalf("plan after the escalation ran out: %q", got)
	}
	rv := d.expect(d.call("GET", "/v1/reviews/"+rid, adminKey, ""), http.StatusOK)
	if rv.body["status"] != "expired" || rv.body["verdict"] != "reject" {
		t.Fatalf("review %s", rv.raw)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("the webhook heard of the escalations %d times, want once per level", n)
	}
	d.recordHistories(map[string]string{id: "review_escalation_v11.json"}) // v6: the same before reviews kept their times in the state
}

func TestCalendarFileErrorsNameTheField(t *testing.T) {
	if _, err := app.LoadCalendar(""); err != nil {
		t.Fatalf("the embedded calendar: %v", err)
	}
	for body, want := range map[string]string{
		"timezone: UTC\nseason:\n  - {name: peak, from: \"11-15\", to: \"12-31\"}\n": `season: unknown field (line 2; did you mean "seasons"?)`,
		"seasons:\n  - {name: peak, from: \"11-15\", till: \"12-31\"}\n":             `seasons[0].till: unknown field (line 2)`,
		"seasons: peak\n": `seasons: must be a list (got "peak", line 1)`,
	} {
		path := filepath.Join(t.TempDir(), "calendar.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := app.LoadCalendar(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", body, err, want)
		}
	}
}

// flakyPartner is a partner's HTTP service that answers 204, or 502
// "partner is down" while the flag it returns is set (it starts set).
func flakyPartner(t *testing.T) (down *atomic.Bool, url string) {
	t.Helper()
	down = &atomic.Bool{}
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, "partner is down", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return down, srv.URL
}

// TestEndedSinceTheBackupComeBack: the store is restored from a backup
// while nothing is in progress, and an instance started and completed
// since. The workflow that ended last is unknown to the store: the sweep
// reads the workflows that ended recently and brings it back, completed,
// so its business key starts no second instance.
func TestEndedSinceTheBackupComeBack(t *testing.T) {
	dir, start := sweepingDev(t)
	d := start(dir)
	if r := call(t, d.base, "POST", "/v1/processes", adminKey, "application/yaml", "name: quick-one\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	d.waitStatus(d.start("quick-one", "q-0", map[string]any{}), "completed")
	backup := filepath.Join(t.TempDir(), "backup")
	if _, err := sqlite.Snapshot(t.Context(), filepath.Join(dir, "adaptflow.db"), nil, backup); err != nil {
		t.Fatal(err)
	}
	quick := d.start("quick-one", "q-1", map[string]any{})
	d.waitStatus(quick, "completed")
	d.stop()
	restoreStore(t, dir, backup)

	d = start(dir)
	if inst := d.waitStatus(quick, "completed"); inst["business_key"] != "q-1" || inst["created_by"] != api.RecoveredBy || plan(inst) != "a:done" {
		t.Fatalf("the instance started and ended since the backup: %v", inst)
	}
	again := d.expect(d.call("POST", "/v1/processes/quick-one/instances", adminKey, `{"business_key":"q-1","input":{}}`), http.StatusOK)
	if again.body["id"] != quick {
		t.Fatalf("a start with its business key: %s", again.raw)
	}
	if m := d.call("GET", "/metrics", "", ""); !strings.Contains(m.raw, `adaptflow_swept_instances_total{found="recovered"} 1`) {
		t.Fatal("/metrics does not count the instance brought back")
	}
}
