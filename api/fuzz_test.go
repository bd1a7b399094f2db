package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// fuzzProcess is the process the fuzzed routes act on: every kind of step
// and each part of a definition a route reads (a classifier, a schedule).
const fuzzProcess = `
name: p
version: 1
input:
  properties:
    n: {type: number}
    message: {type: string}
classify:
  name: c
  fields: [message]
  labels: [refund, question]
  extract: [{name: amount, type: number, pattern: '([0-9]+)'}]
  review_below: 0.5
  examples:
    - {text: "refund my card payment", label: refund}
    - {text: "when do you open", label: question}
signals:
  - {name: order_volume, kind: arrival_rate}
schedules:
  - {id: nightly, cron: "0 2 * * *", input: {n: 1}}
steps:
  - {id: check, kind: review, review: {queue: first-line, reason: check it, sla: 1h, on_timeout: fail}}
  - {id: goods, kind: event, event: {name: goods_received, timeout: 1d, on_timeout: fail}}
  - {id: done, kind: task, task: noop}
`

// fuzzSeeds are bodies each route reads well or nearly so, and some it
// must refuse.
var fuzzSeeds = []string{
	`{}`, `[]`, `null`, `{"name":"erp","role":"system","expires_in":"1d","processes":["p"]}`,
	`{"business_key":"b","input":{"n":1}}`, `{"verdict":"correct","label":"refund","fields":{"amount":1}}`, `{"lease":"5m"}`,
	`{"text":"hello","label":"question"}`, `{"process":"p","since":"30d","policies":["id: a"]}`, `{"version":1,"mode":"shadow","note":"n"}`,
	`{"version":1,"mode":"canary","percent":10,"guard":{"min_instances":5}}`,
	`{"instances":[{"business_key":"b1","input":{"n":1}},{"business_key":"b2","input":{"n":"x"}}]}`,
	`{"name":"goods_received","id":"e1","data":{"condition":"unopened"}}`, `{"queue":"senior","note":"n"}`,
	`{"ids":["rv1","rv2"],"verdict":"approve","comment":"ok"}`, `{"text":"refund 12 please"}`, `{"input":{"message":"refund"}}`,
	`{"reason":"r"}`, `{"note":"n"}`,
	fuzzProcess, "id: a\nprocess: p\nwhen: 'input.n > 1'\nactions: [{skip: done}]\n",
	`{"business_key":` + strings.Repeat("[", 200), "\xff\xfe", `{"verdict":"approve","comment":"` + strings.Repeat("x", 5000) + `"}`,
}

// FuzzJSONHandlers posts arbitrary bodies, as JSON and as YAML, to every
// operation of the API's contract that acts (POST, DELETE), its path
// naming things that exist: the answer is never a 500, and every error
// has the one error shape with a message. (This server's Temporal is
// unreachable: what would start or signal a workflow answers 503.)
func FuzzJSONHandlers(f *testing.F) {
	srv, keys, st := newServerAt(f, filepath.Join(f.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = -1 })
	admin := keys[store.RoleAdmin]
	ids := fuzzFixtures(f, srv, admin, st)
	routes := contractRoutes(f, ids, "post", "delete")
	for _, seed := range fuzzSeeds {
		yaml := strings.Contains(seed, "\n")
		for i := range routes {
			f.Add(uint8(i), yaml, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, yaml bool, body []byte) {
		r := routes[int(route)%len(routes)]
		ct := "application/json"
		if yaml {
			ct = "application/yaml"
		}
		a := do(t, srv, r.method, r.path, admin, ct, string(body))
		if a.status >= 500 && a.status != http.StatusServiceUnavailable && (a.status != http.StatusBadGateway || !strings.HasSuffix(r.path, "/redeliver")) {
			t.Fatalf("%s %s %q: %d %+v", r.method, r.path, body, a.status, a.err)
		}
		if a.status >= 400 && (a.err.Code == "" || a.err.Message == "") {
			t.Fatalf("%s %s %q: %d without the error shape", r.method, r.path, body, a.status)
		}
	})
}

// fuzzFixtures registers the process and a policy of it, and stores an
// instance waiting for its review, a classifier's example, a key and a
// webhook given up: the ids the fuzzed routes' paths name, by parameter.
func fuzzFixtures(t testing.TB, srv *httptest.Server, admin string, st *sqlite.Store) map[string]string {
	t.Helper()
	post := func(path, ct, body string, want int) answer {
		a := do(t, srv, http.MethodPost, path, admin, ct, body)
		if a.status != want {
			t.Fatalf("POST %s: %d %+v", path, a.status, a.err)
		}
		return a
	}
	post("/v1/processes", "application/yaml", fuzzProcess, http.StatusCreated)
	post("/v1/policies", "application/yaml", "id: x\nprocess: p\nwhen: 'input.n > 1'\nactions: [{skip: done}]\n", http.StatusCreated)
	example := post("/v1/classifiers/c/examples", "application/json", `{"text":"refund 12 on my card","label":"refund"}`, http.StatusCreated)
	key := post("/v1/keys", "application/json", `{"name":"pos","role":"system"}`, http.StatusCreated)
	revoked := post("/v1/keys", "application/json", `{"name":"old-pos","role":"system"}`, http.StatusCreated)
	ctx, now := t.Context(), time.Now()
	if _, _, err := st.CreateInstance(ctx, store.Instance{ID: "i1", Process: "p", ProcessVersion: 1, BusinessKey: "b1", Input: []byte(`{"n":1,"message":"refund 12"}`), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveInstanceState(ctx, "i1", "r", 1, json.RawMessage(`{"status":"waiting_review","process":"p","version":1,`+
		`"plan":[{"id":"check","kind":"review","origin":"main","state":"waiting_review"},{"id":"goods","kind":"event","origin":"main","state":"pending"},{"id":"done","kind":"task","origin":"main","state":"pending"}],`+
		`"results":{},"vars":{},"reviews":[{"id":"rv1","step":"check","queue":"first-line","status":"open"}],"decisions":[]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateReview(ctx, store.Review{ID: "rv1", InstanceID: "i1", RunID: "r", Process: "p", Step: "check", Queue: "first-line", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// Its receiver is gone: a redelivery answers 502.
	hook, err := st.AddUndeliveredWebhook(ctx, store.UndeliveredWebhook{Process: "p", InstanceID: "i1", Event: "instance.completed", URL: "http://127.0.0.1:1/hook",
		Key: "i1/instance.completed", Body: json.RawMessage(`{"event":"instance.completed"}`), Attempts: 12, Error: "webhook: 503", FailedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"processes": "p", "schedules": "nightly", "instances": "i1", "policies": "x", "reviews": "rv1", "classifiers": "c",
		"examples": fmt.Sprint(example.body["id"]), "keys": fmt.Sprint(key.body["id"]), "undelivered": fmt.Sprint(hook.ID),
		"revoke": fmt.Sprint(revoked.body["id"]), "versions": "1", "signals": "order_volume", "decisions": "dc_none",
	}
}

type route struct{ method, path string }

// contractRoutes are the contract's operations of the methods given, each path
// parameter filled from ids by the collection it follows
// (/v1/reviews/{id}: ids["reviews"]); a key revoked, from ids["revoke"],
// so that the others' key stays one to rotate.
func contractRoutes(t testing.TB, ids map[string]string, methods ...string) []route {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`([a-z_]+)/\{([a-z_]+)\}`)
	var out []route
	for path, ops := range doc.Paths {
		for method := range ops {
			if !slices.Contains(methods, method) {
				continue
			}
			filled := param.ReplaceAllStringFunc(path, func(m string) string {
				parts := param.FindStringSubmatch(m)
				id, ok := ids[parts[1]]
				if parts[1] == "keys" && strings.HasSuffix(path, "/revoke") {
					id = ids["revoke"]
				}
				if !ok {
					t.Fatalf("%s: no id for {%s}", path, parts[2])
				}
				return parts[1] + "/" + id
			})
			out = append(out, route{strings.ToUpper(method), filled})
		}
	}
	slices.SortFunc(out, func(a, b route) int { return strings.Compare(a.method+a.path, b.method+b.path) })
	if len(out) < 20 {
		t.Fatalf("only %d %v routes in the contract", len(out), methods)
	}
	return out
}

// FuzzQueries sends arbitrary query strings to every GET operation of the
// contract, its path naming things that exist: the answer is never a 500,
// and every error has the one error shape with a message.
func FuzzQueries(f *testing.F) {
	srv, keys, st := newServerAt(f, filepath.Join(f.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = -1 })
	admin := keys[store.RoleAdmin]
	routes := contractRoutes(f, fuzzFixtures(f, srv, admin, st), "get")
	for _, seed := range []string{
		"", "limit=10", "limit=-1", "limit=abc", "limit=99999999999999999999", "after=x", "after=%ff", "since=30d", "since=-1h", "since=2026-01-01T00:00:00Z",
		"status=pending", "status=finished", "status=nope", "queue=first-line&claimed=true", "process=p&instance_id=i1", "input.n=1", "input.n=x", "input.zzz=1",
		"sla=overdue", "from=2026-01-01&to=2025-01-01", "bucket=1h", "signal=order_volume&window=7d", "version=1&mode=shadow", "%zz", "a=1&a=2&a=3",
		"process=" + strings.Repeat("x", 3000),
	} {
		for i := range routes {
			f.Add(uint8(i), seed)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, query string) {
		r := routes[int(route)%len(routes)]
		if _, err := url.ParseRequestURI(r.path + "?" + query); err != nil || strings.ContainsAny(query, "# ") {
			return // not a query string a client can send
		}
		a := do(t, srv, r.method, r.path+"?"+query, admin, "", "")
		if a.status >= 500 && a.status != http.StatusServiceUnavailable {
			t.Fatalf("%s %s?%s: %d %+v", r.method, r.path, query, a.status, a.err)
		}
		if a.status >= 400 && (a.err.Code == "" || a.err.Message == "") {
			t.Fatalf("%s %s?%s: %d without the error shape", r.method, r.path, query, a.status)
		}
	})
}
