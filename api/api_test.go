package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/ml/classify/openaitest"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// newServer serves the API on a real store, with a Temporal client pointed
// at a port where nothing listens: Temporal is down.
func newServer(t *testing.T) (*httptest.Server, map[string]string) {
	t.Helper()
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	return srv, keys
}

func newServerAt(t testing.TB, path string, tweak ...func(*api.Options)) (*httptest.Server, map[string]string, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts := apitest.Options(t, st)
	opts.MaxBody = 4096
	for _, f := range tweak {
		f(&opts)
	}
	h, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, role := range []string{store.RoleAdmin, store.RoleSystem, store.RoleEngineer, store.RoleReviewer} {
		k, secret := api.NewKey(role+"-key", role, time.Now())
		if err := st.PutKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
		keys[role] = secret
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, keys, st
}

type answer struct {
	status int
	header http.Header
	err    api.ErrorDetail
	body   map[string]any
}

func do(t testing.TB, srv *httptest.Server, method, path, key, ct, body string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	apitest.CheckResponse(t, method, path, res.StatusCode, res.Header, b)
	a := answer{status: res.StatusCode, header: res.Header}
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil {
		a.err = eb.Error
	}
	_ = json.Unmarshal(b, &a.body)
	return a
}

const def = "name: p\nversion: 1\ninput: {required: [n], properties: {n: {type: number}}}\nsteps: [{id: a, kind: task, task: noop}]\n"

func TestErrorsAndLimits(t *testing.T) {
	srv, keys := newServer(t)
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	for _, tc := range []struct {
		name, method, path, key, ct, body string
		status                            int
		code, field                       string
	}{
		{"no key", "GET", "/v1/processes", "", "", "", 401, "unauthenticated", ""},
		{"wrong role", "POST", "/v1/processes", sys, "application/yaml", def, 403, "permission_denied", ""},
		{"too large", "POST", "/v1/processes", eng, "application/yaml", strings.Repeat("#", 5000), 413, "too_large", ""},
		{"media type", "POST", "/v1/processes/p/instances", sys, "text/plain", `{"business_key":"k","input":{"n":1}}`, 415, "unsupported_media_type", ""},
		{"malformed", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":`, 400, "invalid_argument", ""},
		{"wrong type", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":7}`, 400, "invalid_argument", "business_key"},
		{"schema", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"k","input":{"n":"one"}}`, 400, "invalid_argument", "input.n"},
		{"no route", "GET", "/v1/nothing", sys, "", "", 404, "not_found", ""},
		{"no method", "DELETE", "/v1/processes", eng, "", "", 405, "method_not_allowed", ""},
		{"bad version", "GET", "/v1/processes/p?version=x", eng, "", "", 400, "invalid_argument", "version"},
		{"bad review filter", "GET", "/v1/reviews?status=old", keys[store.RoleReviewer], "", "", 400, "invalid_argument", "status"},
		{"bad queue window", "GET", "/v1/queues?since=yesterday", keys[store.RoleReviewer], "", "", 400, "invalid_argument", "since"},
		{"unknown field of a definition", "POST", "/v1/processes", eng, "application/yaml", strings.Replace(def, "task: noop", "task: noop, tymeout: 1s", 1), 400, "invalid_argument", "steps[0].tymeout"},
		{"policy field of the wrong kind", "POST", "/v1/policies", eng, "application/yaml", "id: x\nprocess: p\npriority: high\nwhen: 'true'\nactions: [{skip: a}]\n", 400, "invalid_argument", "priority"},
		{"bad role", "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"x","role":"root"}`, 400, "invalid_argument", "role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, srv, tc.method, tc.path, tc.key, tc.ct, tc.body)
			if a.status != tc.status || a.err.Code != tc.code || a.err.Field != tc.field || a.err.RequestID == "" || a.err.Message == "" {
				t.Fatalf("got %d %+v, want %d %s field %q", a.status, a.err, tc.status, tc.code, tc.field)
			}
		})
	}
}

func TestTemporalDownIs503(t *testing.T) {
	srv, keys := newServer(t)
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	a := do(t, srv, "POST", "/v1/processes/p/instances", keys[store.RoleSystem], "application/json", `{"business_key":"k","input":{"n":1}}`)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.err.Code != "unavailable" {
		t.Fatalf("got %d %+v (Retry-After %q)", a.status, a.err, a.header.Get("Retry-After"))
	}
	// The instance is stored; reading it needs only the store, so it
	// answers while Temporal is down: starting, with the definition's plan.
	got := do(t, srv, "GET", "/v1/instances/"+api.InstanceID("p", "k"), keys[store.RoleSystem], "", "")
	plan, _ := got.body["plan"].([]any)
	if got.status != http.StatusOK || got.body["status"] != "starting" || len(plan) != 1 || plan[0].(map[string]any)["state"] != "pending" {
		t.Fatalf("read while Temporal is down: %d %v", got.status, got.body)
	}
}

// TestStartWhileTemporalIsDownStaysPending: a start Temporal did not take
// leaves its instance pending, and a sweep while Temporal is still down
// fails and leaves it pending for the next one.
func TestStartWhileTemporalIsDownStaysPending(t *testing.T) {
	var opts api.Options
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.Timeout = 500 * time.Millisecond; opts = *o })
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	if a := do(t, srv, "POST", "/v1/processes/p/instances", keys[store.RoleSystem], "application/json", `{"business_key":"k","input":{"n":1}}`); a.status != http.StatusServiceUnavailable {
		t.Fatalf("start: %d", a.status)
	}
	if in, err := st.Instance(t.Context(), api.InstanceID("p", "k")); err != nil || !in.PendingStart {
		t.Fatalf("instance after a failed start: %+v %v", in, err)
	}
	n, err := api.SweepStarts(t.Context(), api.SweepOptions{Options: opts, MinAge: time.Nanosecond})
	if n != 0 || err == nil || !strings.Contains(err.Error(), api.InstanceID("p", "k")) {
		t.Fatalf("sweep while Temporal is down: %d %v", n, err)
	}
	if left, err := st.PendingStarts(t.Context(), time.Now(), 10); err != nil || len(left) != 1 {
		t.Fatalf("pending after the sweep: %v %v", left, err)
	}
}

// TestSweepPassesStartsThatCanNeverFinish: a pending instance whose
// definition version is gone is taken out of the sweep (loudly) instead of
// holding up the starts behind it.
func TestSweepPassesStartsThatCanNeverFinish(t *testing.T) {
	var opts api.Options
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.Timeout = 500 * time.Millisecond; opts = *o })
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	old := time.Now().Add(-time.Hour)
	for _, in := range []store.Instance{
		{ID: "orphan", Process: "gone", ProcessVersion: 1, BusinessKey: "o", Input: []byte(`{}`), CreatedAt: old, PendingStart: true},
		{ID: "good", Process: "p", ProcessVersion: 1, BusinessKey: "g", Input: []byte(`{"n":1}`), CreatedAt: old.Add(time.Second), PendingStart: true},
	} {
		if _, _, err := st.CreateInstance(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	// Temporal is down, so the good start fails: the sweep got to it, in
	// its second batch of one.
	if _, err := api.SweepStarts(t.Context(), api.SweepOptions{Options: opts, Batch: 1}); err == nil || !strings.Contains(err.Error(), "instance good") {
		t.Fatalf("sweep: %v", err)
	}
	left, err := st.PendingStarts(t.Context(), time.Now(), 10)
	if err != nil || len(left) != 1 || left[0].ID != "good" {
		t.Fatalf("pending after the sweep: %v %v", left, err)
	}
}

// TestDrainWaitsForStartsInFlight: Drain returns only once the workflow
// starts requests began have ended, or says how many are left when its
// context ends first.
func TestDrainWaitsForStartsInFlight(t *testing.T) {
	// A Temporal that accepts connections and never answers.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hole.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tc, err := client.NewLazyClient(client.Options{HostPort: hole.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	var opts api.Options
	_, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.Temporal, o.Timeout = tc, time.Second; opts = *o })
	h, err := api.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/processes/p/instances", strings.NewReader(`{"business_key":"k","input":{"n":1}}`))
		req.Header.Set("Authorization", "Bearer "+keys[store.RoleSystem])
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.Client().Do(req)
		if err != nil {
			answered <- 0
			return
		}
		_ = res.Body.Close()
		answered <- res.StatusCode
	}()
	inFlight := false
	for deadline := time.Now().Add(5 * time.Second); !inFlight && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		err := h.Drain(ctx)
		cancel()
		inFlight = err != nil && strings.Contains(err.Error(), "1 workflow starts still running")
	}
	if !inFlight {
		t.Fatal("Drain never saw the start in flight")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.Drain(ctx); err != nil {
		t.Fatalf("Drain after the start ended: %v", err)
	}
	if status := <-answered; status != http.StatusServiceUnavailable {
		t.Fatalf("start against a Temporal that never answers: %d", status)
	}
}

func TestKeysAreStoredHashedAndShownOnce(t *testing.T) {
	srv, keys := newServer(t)
	a := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"erp","role":"system"}`)
	secret, _ := a.body["key"].(string)
	if a.status != http.StatusCreated || !strings.HasPrefix(secret, "af_") {
		t.Fatalf("create: %d %v", a.status, a.body)
	}
	who := do(t, srv, "GET", "/v1/whoami", secret, "", "")
	if who.status != http.StatusOK || who.body["name"] != "erp" || who.body["role"] != "system" {
		t.Fatalf("whoami: %d %v", who.status, who.body)
	}
	if api.HashKey(secret) == secret || len(api.HashKey(secret)) != 64 {
		t.Fatal("keys must be stored as SHA-256 hashes")
	}
}

func TestHealthz(t *testing.T) {
	srv, _ := newServer(t)
	if a := do(t, srv, "GET", "/healthz", "", "", ""); a.status != http.StatusOK || a.body["status"] != "ok" || a.header.Get("X-Request-Id") == "" {
		t.Fatalf("healthz: %d %v", a.status, a.body)
	}
}

func TestClassifierExamples(t *testing.T) {
	srv, keys := newServer(t)
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	path := "/v1/classifiers/onboarding-requests/examples"
	a := do(t, srv, "POST", path, eng, "application/json", `{"text":"we need an account for our company","label":"business_account"}`)
	if a.status != http.StatusCreated || a.body["label"] != "business_account" || a.body["source"] != "api:engineer-key" {
		t.Fatalf("add: %d %v", a.status, a.body)
	}
	// The same text again replaces its label (a reviewer's correction).
	do(t, srv, "POST", path, keys[store.RoleReviewer], "application/json", `{"text":"we need an account for our company","label":"personal_account"}`)
	list := do(t, srv, "GET", path, eng, "", "")
	es := list.body["examples"].([]any)
	if len(es) != 1 || es[0].(map[string]any)["label"] != "personal_account" {
		t.Fatalf("examples %v", list.body)
	}
	for body, field := range map[string]string{`{"label":"x"}`: "text", `{"text":"hi"}`: "label"} {
		if r := do(t, srv, "POST", path, eng, "application/json", body); r.status != http.StatusBadRequest || r.err.Field != field {
			t.Errorf("%s: %d %+v", body, r.status, r.err)
		}
	}
	if r := do(t, srv, "POST", path, sys, "application/json", `{"text":"a","label":"b"}`); r.status != http.StatusForbidden {
		t.Errorf("system key: %d", r.status)
	}
	// A wrong example is removed by an engineer, once.
	id := es[0].(map[string]any)["id"].(string)
	if r := do(t, srv, "DELETE", path+"/"+id, keys[store.RoleReviewer], "", ""); r.status != http.StatusForbidden {
		t.Errorf("a reviewer deleted an example: %d", r.status)
	}
	if r := do(t, srv, "DELETE", "/v1/classifiers/other/examples/"+id, eng, "", ""); r.status != http.StatusNotFound {
		t.Errorf("deleted through another classifier: %d", r.status)
	}
	if r := do(t, srv, "DELETE", path+"/"+id, eng, "", ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %+v", r.status, r.err)
	}
	if r := do(t, srv, "DELETE", path+"/"+id, eng, "", ""); r.status != http.StatusNotFound || !strings.Contains(r.err.Message, "not found") {
		t.Errorf("deleted twice: %d %+v", r.status, r.err)
	}
	if list := do(t, srv, "GET", path, eng, "", ""); len(list.body["examples"].([]any)) != 0 {
		t.Fatalf("examples after the delete: %v", list.body)
	}
}

func TestKeyLifecycle(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	admin := keys[store.RoleAdmin]
	a := do(t, srv, "POST", "/v1/keys", admin, "application/json", `{"name":"pos","role":"system","expires_in":"90d","processes":["returns"]}`)
	secret, _ := a.body["key"].(string)
	id, _ := a.body["id"].(string)
	if a.status != http.StatusCreated || secret == "" || a.body["expires_at"] == nil || fmt.Sprint(a.body["processes"]) != "[returns]" {
		t.Fatalf("create: %d %v", a.status, a.body)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"name":"x","role":"system","expires_in":"forever"}`, "expires_in"},
		{`{"name":"x","role":"system","processes":["Bad Name"]}`, "processes[0]"},
		{`{"name":"x","role":"admin","processes":["returns"]}`, "processes"},
	} {
		if r := do(t, srv, "POST", "/v1/keys", admin, "application/json", tc.body); r.status != http.StatusBadRequest || r.err.Field != tc.field {
			t.Errorf("%s: %d %+v, want 400 naming %s", tc.body, r.status, r.err, tc.field)
		}
	}
	// The list shows keys, never their secrets.
	list := do(t, srv, "GET", "/v1/keys", admin, "", "")
	raw, _ := json.Marshal(list.body)
	if list.status != http.StatusOK || len(list.body["keys"].([]any)) != 5 || strings.Contains(string(raw), secret) || strings.Contains(string(raw), api.HashKey(secret)) {
		t.Fatalf("list: %d %s", list.status, raw)
	}
	if r := do(t, srv, "GET", "/v1/keys", keys[store.RoleEngineer], "", ""); r.status != http.StatusForbidden {
		t.Fatalf("engineer listed keys: %d", r.status)
	}
	// A key limited to a process may not start another one.
	if r := do(t, srv, "POST", "/v1/processes/payroll/instances", secret, "application/json", `{"business_key":"b","input":{}}`); r.status != http.StatusForbidden {
		t.Fatalf("limited key on another process: %d %+v", r.status, r.err)
	}
	// Rotation: the old secret stops at once, the new one works.
	rot := do(t, srv, "POST", "/v1/keys/"+id+"/rotate", admin, "", "")
	fresh, _ := rot.body["key"].(string)
	if rot.status != http.StatusOK || fresh == "" || fresh == secret || rot.body["rotated_at"] == nil {
		t.Fatalf("rotate: %d %v", rot.status, rot.body)
	}
	if r := do(t, srv, "GET", "/v1/whoami", secret, "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("old secret after rotation: %d", r.status)
	}
	if r := do(t, srv, "GET", "/v1/whoami", fresh, "", ""); r.status != http.StatusOK {
		t.Fatalf("new secret: %d", r.status)
	}
	// Revocation: 401 from then on, with the reason.
	if r := do(t, srv, "POST", "/v1/keys/"+id+"/revoke", admin, "", ""); r.status != http.StatusOK || r.body["revoked_at"] == nil {
		t.Fatalf("revoke: %d %v", r.status, r.body)
	}
	if r := do(t, srv, "GET", "/v1/whoami", fresh, "", ""); r.status != http.StatusUnauthorized || !strings.Contains(r.err.Message, "revoked") {
		t.Fatalf("revoked key: %d %+v", r.status, r.err)
	}
	if r := do(t, srv, "POST", "/v1/keys/"+id+"/rotate", admin, "", ""); r.status != http.StatusConflict {
		t.Fatalf("rotated a revoked key: %d", r.status)
	}
	if r := do(t, srv, "POST", "/v1/keys/nope/revoke", admin, "", ""); r.status != http.StatusNotFound {
		t.Fatalf("revoked an unknown key: %d", r.status)
	}
	// Every change is in the audit log: who, what, from where.
	audit := do(t, srv, "GET", "/v1/audit?action=POST%20/v1/keys", admin, "", "")
	var actions []string
	for _, e := range audit.body["entries"].([]any) {
		e := e.(map[string]any)
		if e["actor"] != "admin-key" || e["remote"] != "127.0.0.1" || e["request_id"] == "" {
			t.Fatalf("audit entry %v", e)
		}
		actions = append(actions, e["action"].(string)+" "+e["target"].(string))
	}
	if want := "POST /v1/keys |POST /v1/keys/:id/rotate id=" + id + "|POST /v1/keys/:id/revoke id=" + id; strings.Join(actions, "|") != want {
		t.Fatalf("audit actions %q, want %q", strings.Join(actions, "|"), want)
	}
	if r := do(t, srv, "GET", "/v1/audit", keys[store.RoleEngineer], "", ""); r.status != http.StatusForbidden {
		t.Fatalf("engineer read the audit log: %d", r.status)
	}
	if r := do(t, srv, "GET", "/v1/audit?limit=0", admin, "", ""); r.status != http.StatusBadRequest || r.err.Field != "limit" {
		t.Fatalf("bad limit: %d %+v", r.status, r.err)
	}

	// An expired key is refused with the reason.
	past := time.Now().Add(-time.Minute)
	old, oldSecret := api.NewKey("old", store.RoleSystem, past.Add(-time.Hour))
	old.ExpiresAt = &past
	if err := st.PutKey(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	if r := do(t, srv, "GET", "/v1/whoami", oldSecret, "", ""); r.status != http.StatusUnauthorized || !strings.Contains(r.err.Message, "expired") {
		t.Fatalf("expired key: %d %+v", r.status, r.err)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = 1 })
	var statuses []int
	var limited answer
	for range 4 {
		a := do(t, srv, "GET", "/v1/whoami", keys[store.RoleSystem], "", "")
		statuses = append(statuses, a.status)
		if a.status == http.StatusTooManyRequests {
			limited = a
		}
	}
	// A burst of two, then 429 with Retry-After and the error shape.
	if statuses[0] != http.StatusOK || statuses[1] != http.StatusOK || statuses[3] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v", statuses)
	}
	if limited.header.Get("Retry-After") == "" || limited.err.Code != "rate_limited" || limited.err.RequestID == "" {
		t.Fatalf("429 answer %+v %v", limited.err, limited.header)
	}
	// Another key has its own bucket.
	if a := do(t, srv, "GET", "/v1/whoami", keys[store.RoleEngineer], "", ""); a.status != http.StatusOK {
		t.Fatalf("another key: %d", a.status)
	}
}

// With several API replicas, each allows a key its share of the limit, so
// that the key's rate across them stays the limit; each keeps the whole
// burst.
func TestRateLimitSharedByReplicas(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = 2 })
	h := srv.Config.Handler.(*api.Handler)
	sys := keys[store.RoleSystem]
	whoami := func() answer { return do(t, srv, "GET", "/v1/whoami", sys, "", "") }
	h.SetReplicas(4) // 0.5 requests a second here
	for i := range 4 {
		if a := whoami(); a.status != http.StatusOK {
			t.Fatalf("request %d of the burst: %d", i, a.status)
		}
	}
	a := whoami()
	if a.status != http.StatusTooManyRequests || !strings.Contains(a.err.Message, "limit of 2 requests per second (across 4 API replicas)") || a.header.Get("Retry-After") != "2" {
		t.Fatalf("over the burst: %d %q Retry-After %q", a.status, a.err.Message, a.header.Get("Retry-After"))
	}
	// Half a second refills a quarter of a request here, where the whole
	// limit would have refilled one.
	time.Sleep(500 * time.Millisecond)
	if a := whoami(); a.status != http.StatusTooManyRequests {
		t.Fatalf("a quarter of the limit refilled a request: %d", a.status)
	}
	h.SetReplicas(1) // the others stopped: the whole limit here again
	time.Sleep(500 * time.Millisecond)
	if a := whoami(); a.status != http.StatusOK {
		t.Fatalf("alone again: %d %+v", a.status, a.err)
	}
}

// A reviewer key limited to a process pages through that process's reviews
// only, in full pages, and may not ask for another process's.
func TestProcessLimitedKeySeesItsReviews(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	now := time.Now()
	for i := range 6 {
		process := []string{"returns", "orders"}[i%2]
		if _, err := st.CreateReview(t.Context(), store.Review{ID: fmt.Sprintf("rv%d", i), InstanceID: fmt.Sprintf("i%d", i), RunID: "r",
			Process: process, Step: "s", Queue: "q", CreatedAt: now.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	created := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"returns desk","role":"reviewer","processes":["returns"]}`)
	if created.status != http.StatusCreated {
		t.Fatalf("create key: %d %+v", created.status, created.err)
	}
	key := created.body["key"].(string)
	page := do(t, srv, "GET", "/v1/reviews?limit=2", key, "", "")
	rs, _ := page.body["reviews"].([]any)
	if page.status != http.StatusOK || len(rs) != 2 || page.body["next"] == nil {
		t.Fatalf("first page: %d %v", page.status, page.body)
	}
	for _, r := range rs {
		if r.(map[string]any)["process"] != "returns" {
			t.Fatalf("a review of another process: %v", r)
		}
	}
	if a := do(t, srv, "GET", "/v1/reviews?process=orders", key, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("another process's reviews: %d %+v", a.status, a.err)
	}
}

// The queue summary counts what waits in each queue and what was closed
// in the window; a key limited to processes counts only theirs.
func TestQueueSummaries(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	ctx := t.Context()
	now := time.Now()
	overdue := now.Add(-time.Minute)
	for i, r := range []store.Review{
		{Process: "returns", Queue: "kyc", CreatedAt: now.Add(-3 * time.Hour), DueAt: &overdue},
		{Process: "returns", Queue: "kyc", CreatedAt: now.Add(-2 * time.Hour)},
		{Process: "orders", Queue: "kyc", CreatedAt: now.Add(-5 * time.Hour)},
		{Process: "orders", Queue: "ops", CreatedAt: now.Add(-30 * time.Hour)},
		{Process: "returns", Queue: "ops", CreatedAt: now.Add(-4 * time.Hour)},
	} {
		r.ID, r.InstanceID, r.RunID, r.Step = fmt.Sprintf("rv%d", i), fmt.Sprintf("i%d", i), "r", "s"
		if _, err := st.CreateReview(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ClaimReview(ctx, "rv1", "ann", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for id, at := range map[string]time.Time{"rv3": now.Add(-26 * time.Hour), "rv4": now.Add(-time.Hour)} {
		if _, err := st.CloseReview(ctx, store.Review{ID: id, Status: store.ReviewDecided, Verdict: store.VerdictApprove, Reviewer: "bob", DecidedAt: &at}); err != nil {
			t.Fatal(err)
		}
	}
	type queue struct {
		Queue               string
		Open, Claimed       int
		Overdue, Decided    int
		OldestAt            time.Time `json:"oldest_at"`
		MeanDecisionSeconds float64   `json:"mean_decision_seconds"`
	}
	get := func(key, query string) []queue {
		t.Helper()
		a := do(t, srv, "GET", "/v1/queues"+query, key, "", "")
		if a.status != http.StatusOK {
			t.Fatalf("queues%s: %d %+v", query, a.status, a.err)
		}
		var qs []queue
		raw, _ := json.Marshal(a.body["queues"])
		if err := json.Unmarshal(raw, &qs); err != nil {
			t.Fatal(err)
		}
		return qs
	}
	got := get(keys[store.RoleReviewer], "")
	if len(got) != 2 || got[0].Queue != "kyc" || got[0].Open != 2 || got[0].Claimed != 1 || got[0].Overdue != 1 ||
		!got[0].OldestAt.Equal(now.Add(-5*time.Hour).Truncate(time.Microsecond)) ||
		got[1].Queue != "ops" || got[1].Open != 0 || got[1].Decided != 1 || got[1].MeanDecisionSeconds != 3*3600 {
		t.Fatalf("queues: %+v", got)
	}
	// A longer window counts the older verdict too; engineers may look.
	if got := get(keys[store.RoleEngineer], "?since=2d"); len(got) != 2 || got[1].Decided != 2 {
		t.Fatalf("queues over 2 days: %+v", got)
	}
	created := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"returns desk","role":"reviewer","processes":["returns"]}`)
	if created.status != http.StatusCreated {
		t.Fatalf("create key: %d %+v", created.status, created.err)
	}
	limited := created.body["key"].(string)
	if got := get(limited, ""); len(got) != 2 || got[0].Open != 1 || got[0].Claimed != 1 || got[1].Decided != 1 {
		t.Fatalf("queues of the returns desk: %+v", got)
	}
	if got := get(keys[store.RoleReviewer], "?process=orders"); len(got) != 1 || got[0].Queue != "kyc" || got[0].Open != 1 {
		t.Fatalf("queues of orders: %+v", got)
	}
	if a := do(t, srv, "GET", "/v1/queues?process=orders", limited, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("another process's queues: %d %+v", a.status, a.err)
	}
}

// TestKeyChangesMadeElsewhereApplyWithinTheCacheTTL: a server trusts a key
// record it read for KeyCacheTTL. A key revoked outside it (the CLI on the
// store, another replica) stops working within that time; one revoked
// through it stops at once (TestKeys).
func TestKeyChangesMadeElsewhereApplyWithinTheCacheTTL(t *testing.T) {
	const ttl = 2 * time.Second
	srv, _, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.KeyCacheTTL = ttl })
	k, secret := api.NewKey("erp", store.RoleSystem, time.Now())
	if err := st.PutKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	// A new key works at once: misses are never cached.
	if r := do(t, srv, "GET", "/v1/whoami", secret, "", ""); r.status != http.StatusOK {
		t.Fatalf("new key: %d", r.status)
	}
	revoked := time.Now()
	if _, err := st.RevokeKey(t.Context(), k.ID, revoked); err != nil {
		t.Fatal(err)
	}
	// Until then the server answers from the record it read: no store read
	// per request.
	if r := do(t, srv, "GET", "/v1/whoami", secret, "", ""); r.status != http.StatusOK && time.Since(revoked) < ttl/2 {
		t.Fatalf("right after an out-of-band revocation: %d; the key record should have come from the cache", r.status)
	}
	for {
		r := do(t, srv, "GET", "/v1/whoami", secret, "", "")
		if r.status == http.StatusUnauthorized {
			break
		}
		if r.status != http.StatusOK || time.Since(revoked) > ttl+time.Second {
			t.Fatalf("key revoked in the store %v ago still answers %d", time.Since(revoked), r.status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With an embeddings model configured, an example is stored with the
// provider's embedding; while the provider is down, it is kept without one
// (embedding_pending), no neighbour until the example embedder embeds it.
func TestClassifierExamplesEmbeddedByTheProvider(t *testing.T) {
	srv, keys, st, llmSrv, dim := newServerWithEmbeddings(t)
	eng := keys[store.RoleEngineer]
	path := "/v1/classifiers/requests/examples"
	text := "please refund my order"
	if a := do(t, srv, "POST", path, eng, "application/json", `{"text":"`+text+`","label":"refund"}`); a.status != http.StatusCreated || a.body["embedding_pending"] != nil {
		t.Fatalf("add: %d %v", a.status, a.body)
	}
	ns, err := st.NearestExamples(t.Context(), "requests", openaitest.Embedding(text, dim), 1)
	if err != nil || len(ns) != 1 || ns[0].Distance > 1e-6 || llmSrv.EmbedCalls() != 1 {
		t.Fatalf("stored example %+v (%d embeddings requests): %v", ns, llmSrv.EmbedCalls(), err)
	}
	llmSrv.SetEmbeddings(dim, http.StatusInternalServerError)
	late := "another one for a refund"
	if a := do(t, srv, "POST", path, eng, "application/json", `{"text":"`+late+`","label":"refund"}`); a.status != http.StatusCreated || a.body["embedding_pending"] != true || a.body["label"] != "refund" {
		t.Fatalf("provider down: %d %v", a.status, a.body)
	}
	if es, _ := st.ExamplesOf(t.Context(), "requests"); len(es) != 2 {
		t.Fatalf("%d examples after the provider failed, want 2", len(es))
	}
	if ns, _ := st.NearestExamples(t.Context(), "requests", openaitest.Embedding(late, dim), 2); len(ns) != 1 || ns[0].Text != text {
		t.Fatalf("neighbours before the late example is embedded: %+v", ns)
	}
	// The sweeper's pass embeds it once the provider answers.
	llmSrv.SetEmbeddings(dim, 0)
	l, err := classify.NewLLM(classify.LLMOptions{BaseURL: llmSrv.BaseURL(), Model: "test-model", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := api.EmbedExamples(t.Context(), api.Options{Examples: st, Embedder: classify.NewEmbedder(l, "test-embed", dim)}); n != 1 || err != nil {
		t.Fatalf("the sweeper embedded %d: %v", n, err)
	}
	if ns, _ := st.NearestExamples(t.Context(), "requests", openaitest.Embedding(late, dim), 1); len(ns) != 1 || ns[0].Text != late || ns[0].Distance > 1e-6 {
		t.Fatalf("nearest to the late example once embedded: %+v", ns)
	}
}

// POST .../examples/batch adds many examples at once, embedded together
// (one request to the provider for them all), each as the single route
// would; a batch with a bad example is refused whole, naming it.
func TestAddExamplesInABatch(t *testing.T) {
	srv, keys, st, llmSrv, dim := newServerWithEmbeddings(t, func(o *api.Options) { o.MaxBody = 1 << 20 })
	eng := keys[store.RoleEngineer]
	path := "/v1/classifiers/requests/examples/batch"
	for _, tc := range []struct{ body, field string }{
		{`{"examples":[]}`, "examples"},
		{`{"examples":[{"text":"a","label":"x"},{"text":"a","label":"y"}]}`, "examples[1].text"},
		{`{"examples":[{"text":"a","label":"x"},{"text":"b","label":"x"},{"text":"c"}]}`, "examples[2].label"},
		{`{"examples":[{"text":"a","label":"x","fields":[1]}]}`, "examples[0].fields"},
		{`{"examples":[{"text":"a","label":"x","extra":1}]}`, "examples[0].extra"},
		{`{"examples":[` + strings.Repeat(`{"text":"a","label":"x"},`, 1000) + `{"text":"a","label":"x"}]}`, "examples"},
	} {
		if a := do(t, srv, "POST", path, eng, "application/json", tc.body); a.status != http.StatusBadRequest || a.err.Field != tc.field {
			t.Errorf("%.80s: %d %+v, want 400 naming %s", tc.body, a.status, a.err, tc.field)
		}
	}
	if es, _ := st.ExamplesOf(t.Context(), "requests"); len(es) != 0 || llmSrv.EmbedCalls() != 0 {
		t.Fatalf("refused batches stored %d examples, asked for %d embeddings", len(es), llmSrv.EmbedCalls())
	}
	if a := do(t, srv, "POST", path, keys[store.RoleReviewer], "application/json", `{"examples":[{"text":"a","label":"x"}]}`); a.status != http.StatusForbidden {
		t.Fatalf("a reviewer's batch: %d", a.status)
	}
	texts := []string{"please refund my order", "when do you open on sunday", "refund the double payment"}
	body := `{"examples":[{"text":"` + texts[0] + `","label":"refund"},{"text":"` + texts[1] + `","label":"question","fields":{"day":"sunday"}},{"text":"` + texts[2] + `","label":"refund"}]}`
	if a := do(t, srv, "POST", path, eng, "application/json", body); a.status != http.StatusCreated || a.body["examples"] != 3.0 || a.body["embedding_pending"] != false {
		t.Fatalf("batch: %d %v", a.status, a.body)
	}
	es, err := st.ExamplesOf(t.Context(), "requests")
	if err != nil || len(es) != 3 || llmSrv.EmbedCalls() != 1 {
		t.Fatalf("%d examples stored (%v), %d embeddings requests (want 3, 1)", len(es), err, llmSrv.EmbedCalls())
	}
	for _, text := range texts {
		if ns, err := st.NearestExamples(t.Context(), "requests", openaitest.Embedding(text, dim), 1); err != nil || len(ns) != 1 || ns[0].Text != text || ns[0].Distance > 1e-6 {
			t.Fatalf("nearest to %q: %+v %v", text, ns, err)
		}
	}
	// The provider down: stored all the same, embedded later.
	llmSrv.SetEmbeddings(dim, http.StatusServiceUnavailable)
	if a := do(t, srv, "POST", path, eng, "application/json", `{"examples":[{"text":"are you open today","label":"question"}]}`); a.status != http.StatusCreated || a.body["embedding_pending"] != true {
		t.Fatalf("batch while the provider is down: %d %v", a.status, a.body)
	}
	if pending, err := st.ExamplesToEmbed(t.Context(), 10); err != nil || len(pending) != 1 || pending[0].Text != "are you open today" {
		t.Fatalf("examples to embed: %+v %v", pending, err)
	}
}

// GET .../examples pages through a classifier's examples, newest first,
// by label, source and a piece of text, with the count of each label: a
// classifier with an imported set holds thousands.
func TestListExamples(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.MaxBody = 1 << 20 })
	eng, rev := keys[store.RoleEngineer], keys[store.RoleReviewer]
	path := "/v1/classifiers/requests/examples"
	var items []string
	for i := range 150 {
		label := "question"
		if i%3 == 0 {
			label = "refund"
		}
		items = append(items, fmt.Sprintf(`{"text":"message %d about my order","label":"%s"}`, i, label))
	}
	if a := do(t, srv, "POST", path+"/batch", eng, "application/json", `{"examples":[`+strings.Join(items, ",")+`]}`); a.status != http.StatusCreated {
		t.Fatalf("batch: %d %v", a.status, a.body)
	}
	if a := do(t, srv, "POST", path, rev, "application/json", `{"text":"Where is my REFUND?","label":"refund"}`); a.status != http.StatusCreated {
		t.Fatalf("add: %d %v", a.status, a.body)
	}
	page := do(t, srv, "GET", path, rev, "", "")
	list, _ := page.body["examples"].([]any)
	if page.status != http.StatusOK || len(list) != 100 || page.body["total"] != 151.0 || page.body["next"] == nil ||
		list[0].(map[string]any)["text"] != "Where is my REFUND?" || page.body["labels"].(map[string]any)["refund"] != 51.0 || page.body["labels"].(map[string]any)["question"] != 100.0 {
		t.Fatalf("first page: %d, %d examples, total %v, labels %v, next %v", page.status, len(list), page.body["total"], page.body["labels"], page.body["next"])
	}
	seen := map[string]bool{}
	for _, e := range list {
		seen[e.(map[string]any)["id"].(string)] = true
	}
	rest := do(t, srv, "GET", path+"?after="+page.body["next"].(string), rev, "", "")
	if rest.status != http.StatusOK {
		t.Fatalf("second page: %d %v %+v", rest.status, rest.body, rest.err)
	}
	for _, e := range rest.body["examples"].([]any) {
		seen[e.(map[string]any)["id"].(string)] = true
	}
	if len(seen) != 151 || rest.body["next"] != nil {
		t.Fatalf("two pages hold %d examples (next %v), want 151", len(seen), rest.body["next"])
	}
	for q, want := range map[string]int{
		"?label=refund&limit=1000":   51,
		"?source=review":             0,
		"?source=api&label=question": 100,
		"?q=refund":                  1,
		"?q=message+1&limit=5":       5, // 1, 10 to 19, 100 to 149: a full page
	} {
		if r := do(t, srv, "GET", path+q, eng, "", ""); r.status != http.StatusOK || len(r.body["examples"].([]any)) != want {
			t.Errorf("%s: %d, %d examples, want %d", q, r.status, len(r.body["examples"].([]any)), want)
		}
	}
	for q, field := range map[string]string{"?limit=0": "limit", "?limit=1001": "limit", "?after=garbage": "after", "?q=" + strings.Repeat("x", 1001): "q"} {
		if r := do(t, srv, "GET", path+q, eng, "", ""); r.status != http.StatusBadRequest || r.err.Field != field {
			t.Errorf("%.40s: %d %+v, want 400 naming %s", q, r.status, r.err, field)
		}
	}
	// Deleted by filter: say which, or all.
	for q, field := range map[string]string{"": "label", "?all=yes": "all", "?all=true&label=refund": "all"} {
		if r := do(t, srv, "DELETE", path+q, eng, "", ""); r.status != http.StatusBadRequest || r.err.Field != field {
			t.Errorf("DELETE %s: %d %+v, want 400 naming %s", q, r.status, r.err, field)
		}
	}
	if r := do(t, srv, "DELETE", path+"?label=refund", rev, "", ""); r.status != http.StatusForbidden {
		t.Fatalf("a reviewer's delete: %d", r.status)
	}
	if r := do(t, srv, "DELETE", path+"?label=refund&q=message", eng, "", ""); r.status != http.StatusOK || r.body["deleted"] != 50.0 {
		t.Fatalf("deleting the refunds: %d %v", r.status, r.body)
	}
	if r := do(t, srv, "GET", path, eng, "", ""); r.body["total"] != 101.0 || r.body["labels"].(map[string]any)["refund"] != 1.0 {
		t.Fatalf("after deleting the refunds: %v %v", r.body["total"], r.body["labels"])
	}
	if r := do(t, srv, "DELETE", path+"?all=true", eng, "", ""); r.status != http.StatusOK || r.body["deleted"] != 101.0 {
		t.Fatalf("deleting all: %d %v", r.status, r.body)
	}
	if r := do(t, srv, "DELETE", path+"?all=true", eng, "", ""); r.status != http.StatusOK || r.body["deleted"] != 0.0 {
		t.Fatalf("deleting none: %d %v", r.status, r.body)
	}
}

// A classifier's label needs an example to learn from: a seed in the
// definition, or examples of it stored first (imported, say), which the
// registration counts.
func TestLabelsLearnFromSeedsOrStoredExamples(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	def := "name: desk\nversion: 1\ninput: {properties: {message: {type: string}}}\nclassify: {name: desk-requests, field: message, labels: [refund, question], examples: [{text: 'refund my card', label: refund}]}\nsteps: [{id: a, kind: task, task: noop}]\n"
	a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def)
	if a.status != http.StatusBadRequest || a.err.Field != "classify.examples" || !strings.Contains(a.err.Message, `label "question" has no example`) || !strings.Contains(a.err.Message, "adaptflow examples import") {
		t.Fatalf("a label with no example: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/classifiers/desk-requests/examples/batch", eng, "application/json", `{"examples":[{"text":"when do you open","label":"question"}]}`); a.status != http.StatusCreated {
		t.Fatalf("examples first: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("the label's examples stored: %d %+v", a.status, a.err)
	}
}

// Each example of a batch counts against the key's rate limit: a batch
// larger than the key's burst is refused, naming it.
func TestExamplesBatchWithinTheRateLimit(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = 10; o.MaxBody = 1 << 20 })
	batch := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"text":"refund %d","label":"refund"}`, i)
		}
		return `{"examples":[` + strings.Join(items, ",") + `]}`
	}
	a := do(t, srv, "POST", "/v1/classifiers/c/examples/batch", keys[store.RoleEngineer], "application/json", batch(25))
	if a.status != http.StatusBadRequest || a.err.Field != "examples" || !strings.Contains(a.err.Message, "a batch of 25 examples is more than this key may send at once") {
		t.Fatalf("a batch over the burst: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "POST", "/v1/classifiers/c/examples/batch", keys[store.RoleEngineer], "application/json", batch(15)); a.status != http.StatusCreated {
		t.Fatalf("a batch within it: %d %+v", a.status, a.err)
	}
	if es, _ := st.ExamplesOf(t.Context(), "c"); len(es) != 15 {
		t.Fatalf("%d examples stored, want 15", len(es))
	}
}

// A request does not wait on an embeddings provider that does not answer:
// it gives up after Options.EmbedWait, and after that requests do not ask
// it at all (the review is shown without its similar cases, the example
// kept without its embedding) until a probe in the background, 30 s later
// at the earliest, finds it answers again.
func TestRequestsDoNotWaitForAHangingEmbeddingsProvider(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	failures := make(chan struct{}, 16)
	srv, keys, st, llmSrv, dim := newServerWithEmbeddings(t, func(o *api.Options) {
		o.EmbedWait = 100 * time.Millisecond
		o.Clock = clock
		o.EmbedObserve = func(outcome string) {
			if outcome == "failed" {
				failures <- struct{}{}
			}
		}
	})
	release := llmSrv.HoldEmbeddings()
	t.Cleanup(release)
	eng := keys[store.RoleEngineer]
	path := "/v1/classifiers/requests/examples"
	// The first request asks the provider and gives up; it would hang
	// until the release otherwise.
	if a := do(t, srv, "POST", path, eng, "application/json", `{"text":"refund my order","label":"refund"}`); a.status != http.StatusCreated || a.body["embedding_pending"] != true {
		t.Fatalf("add while the provider hangs: %d %v", a.status, a.body)
	}
	if n := llmSrv.EmbedCalls(); n != 1 {
		t.Fatalf("%d embeddings requests, want 1", n)
	}
	// The next ones do not ask it.
	similarCasesReview(t, srv, keys, st, dim)
	if item := do(t, srv, "GET", "/v1/reviews/rv1", keys[store.RoleReviewer], "", ""); item.status != http.StatusOK || item.body["similar"] != nil && len(item.body["similar"].([]any)) != 0 {
		t.Fatalf("review while the provider hangs: %d %v", item.status, item.body["similar"])
	}
	if a := do(t, srv, "POST", path, eng, "application/json", `{"text":"a refund please","label":"refund"}`); a.status != http.StatusCreated || a.body["embedding_pending"] != true {
		t.Fatalf("second add: %d %v", a.status, a.body)
	}
	if n := llmSrv.EmbedCalls(); n != 1 {
		t.Fatalf("%d embeddings requests during the pause, want 1", n)
	}
	// After the pause a probe asks it in the background: the request that
	// found the pause over does not wait for it (still hanging, the probe
	// gives up after the wait; nothing is asked meanwhile).
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	if a := do(t, srv, "POST", path, eng, "application/json", `{"text":"refund the order now","label":"refund"}`); a.status != http.StatusCreated || a.body["embedding_pending"] != true {
		t.Fatalf("add as the pause ends: %d %v", a.status, a.body)
	}
	// The first request's failure, then the probe's: the gate has settled
	// on it (paused again from now) before the clock moves on.
	for range 2 {
		select {
		case <-failures:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d embeddings requests, and no failure told for the probe", llmSrv.EmbedCalls())
		}
	}
	if n := llmSrv.EmbedCalls(); n != 2 {
		t.Fatalf("%d embeddings requests, want 2: the probe", n)
	}
	// Once the provider answers, the next probe opens the gate again.
	release()
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a := do(t, srv, "POST", path, eng, "application/json", `{"text":"refund the order please","label":"refund"}`)
		if a.status == http.StatusCreated && a.body["embedding_pending"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("add once the provider answers: %d %v", a.status, a.body)
		}
	}
	if item := do(t, srv, "GET", "/v1/reviews/rv1", keys[store.RoleReviewer], "", ""); item.status != http.StatusOK || len(item.body["similar"].([]any)) == 0 {
		t.Fatalf("review after the pause: %d %v", item.status, item.body["similar"])
	}
}

// A review's similar cases are picked by the provider's embeddings when it
// is configured: the stored example nearest by its stored vector, and the
// definition's seeds; while the provider is down the review is shown
// without them.
func TestSimilarCasesByTheProvidersEmbeddings(t *testing.T) {
	srv, keys, st, llmSrv, dim := newServerWithEmbeddings(t)
	similarCasesReview(t, srv, keys, st, dim)
	item := do(t, srv, "GET", "/v1/reviews/rv1", keys[store.RoleReviewer], "", "")
	if cl, _ := item.body["classification"].(map[string]any); cl == nil || cl["answer"] == nil || cl["answer"].(map[string]any)["confidence"] != 0.42 {
		t.Fatalf("the model's answer is missing from the item: %v", item.body["classification"])
	}
	sim, _ := item.body["similar"].([]any)
	if item.status != http.StatusOK || len(sim) != 4 || llmSrv.EmbedCalls() != 2 ||
		sim[0].(map[string]any)["label"] != "refund" || sim[1].(map[string]any)["label"] != "refund" {
		t.Fatalf("similar cases (%d embeddings requests): %d %v", llmSrv.EmbedCalls(), item.status, item.body["similar"])
	}
	seeds := 0
	for _, s := range sim {
		if s.(map[string]any)["source"] == "seed" {
			seeds++
		}
	}
	if seeds != 2 {
		t.Fatalf("similar cases %v: want both seeds", sim)
	}
	llmSrv.SetEmbeddings(dim, http.StatusServiceUnavailable)
	if item := do(t, srv, "GET", "/v1/reviews/rv1", keys[store.RoleReviewer], "", ""); item.status != http.StatusOK || item.body["similar"] != nil && len(item.body["similar"].([]any)) != 0 {
		t.Fatalf("provider down: %d %v", item.status, item.body["similar"])
	}
}

// similarCasesReview registers process requests, whose classifier has two
// seed examples, stores two examples embedded as the OpenAI test server
// does, and opens review rv1 of a text close to the refund ones.
func similarCasesReview(t *testing.T, srv *httptest.Server, keys map[string]string, st *sqlite.Store, dim int) {
	t.Helper()
	def := `
name: requests
version: 1
input:
  properties:
    message: {type: string}
classify:
  name: requests
  field: message
  labels: [refund, question]
  examples:
    - {text: "refund my card payment", label: refund}
    - {text: "when do you open", label: question}
steps:
  - {id: answer, kind: task, task: noop}
`
	if a := do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("definition: %d %v", a.status, a.body)
	}
	for i, text := range []string{"a refund to my card for the double payment", "are you open on sunday"} {
		e := store.Example{ID: fmt.Sprintf("ex%d", i), Classifier: "requests", Text: text, Label: []string{"refund", "question"}[i], Embedding: openaitest.Embedding(text, dim), CreatedAt: time.Now()}
		if err := st.PutExample(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: "i1", Process: "requests", ProcessVersion: 1, BusinessKey: "b1", Input: []byte(`{"message":"refund the double payment on my card"}`), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// The model's answer is read from the state the workflow saved: this
	// server's Temporal is unreachable.
	if _, err := st.SaveInstanceState(t.Context(), "i1", "r", 1, json.RawMessage(`{"status":"waiting_review","classification":{"label":"refund","confidence":0.42,"fields":{},"model":"embedded"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateReview(t.Context(), store.Review{ID: "rv1", InstanceID: "i1", RunID: "r", Process: "requests", Step: "answer", Queue: "classification", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
}

// newServerWithEmbeddings is a server whose examples are embedded by an
// OpenAI test server's embeddings endpoint, of the store's dimension.
func newServerWithEmbeddings(t *testing.T, tweak ...func(*api.Options)) (*httptest.Server, map[string]string, *sqlite.Store, *openaitest.Server, int) {
	t.Helper()
	llmSrv := openaitest.New(t, openaitest.Reply{Content: "{}"})
	l, err := classify.NewLLM(classify.LLMOptions{BaseURL: llmSrv.BaseURL(), Model: "test-model", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var dim int
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) {
		dim = o.Examples.EmbeddingDim()
		o.Embedder = classify.NewEmbedder(l, "test-embed", dim)
		for _, f := range tweak {
			f(o)
		}
	})
	llmSrv.SetEmbeddings(dim, 0)
	return srv, keys, st, llmSrv, dim
}

// A process step must name a registered process (the version, if it names
// one) other than its own, and its input's templates must compile.
func TestProcessStepRegistration(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	parent := "name: onboard\nversion: 1\nsteps: [{id: kyc, kind: process, process: {name: kyc, input: {who: '${input.name}'}}}]\n"
	for _, tc := range []struct{ body, field, msg string }{
		{parent, "steps[0].process.name", "no process kyc is registered; register it first"},
		{strings.Replace(parent, "name: kyc,", "name: onboard,", 1), "steps[0].process.name", "cannot run its own process"},
		{strings.Replace(parent, "name: kyc,", "name: p, version: 3,", 1), "steps[0].process.version", "p has no version 3"},
		{strings.Replace(parent, "name: kyc,", "name: p,", 1) + "x: 1\n", "x", "unknown field"},
		{strings.Replace(parent, "${input.name}", "${input.name +}", 1), "steps[0].process.input.who", "template ${input.name +}"},
	} {
		do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def) // p, version 1
		a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", tc.body)
		if a.status != http.StatusBadRequest || a.err.Field != tc.field || !strings.Contains(a.err.Message, tc.msg) {
			t.Errorf("%q: %d %+v", tc.body, a.status, a.err)
		}
	}
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", strings.Replace(parent, "name: kyc,", "name: p, version: 1,", 1)); a.status != http.StatusCreated {
		t.Fatalf("a process step running p v1: %d %+v", a.status, a.err)
	}
}

// GET /v1/processes/{name}/diff shows what changed between two versions
// of a definition: by default the latest against the one before.
func TestProcessDiff(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def)
	if a := do(t, srv, "GET", "/v1/processes/p/diff", eng, "", ""); a.status != http.StatusBadRequest || a.err.Field != "from" {
		t.Fatalf("one version only: %d %+v", a.status, a.err)
	}
	v2 := strings.Replace(strings.Replace(def, "version: 1", "version: 2\nsla: 2h", 1), "task: noop", "task: qa_check", 1)
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", v2); a.status != http.StatusCreated {
		t.Fatalf("v2: %d %+v", a.status, a.err)
	}
	a := do(t, srv, "GET", "/v1/processes/p/diff", eng, "", "")
	diff, _ := a.body["diff"].(string)
	if a.status != http.StatusOK || a.body["from"] != 1.0 || a.body["to"] != 2.0 || !strings.Contains(diff, "-       task: noop") || !strings.Contains(diff, "+       task: qa_check") ||
		!strings.Contains(diff, "+ sla: 2h") || strings.Contains(diff, "version") {
		t.Fatalf("diff: %d %v\n%s", a.status, a.body, diff)
	}
	if a := do(t, srv, "GET", "/v1/processes/p/diff?from=2&to=2", eng, "", ""); a.status != http.StatusOK {
		t.Fatalf("a version against itself: %d", a.status)
	} else {
		for _, l := range strings.Split(strings.TrimRight(a.body["diff"].(string), "\n"), "\n") {
			if !strings.HasPrefix(l, "  ") {
				t.Fatalf("a version against itself differs: %q", l)
			}
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/p/diff?from=7", eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("an unknown version: %d", a.status)
	}
	if a := do(t, srv, "GET", "/v1/processes/nope/diff", eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("an unknown process: %d", a.status)
	}
}

// GET .../classify/evaluation answers the classifier's last evaluation,
// and whether its examples, or the definition of the classifier the
// process's version has, changed since.
func TestLastEvaluation(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	v1 := "name: desk\nversion: 1\ninput: {properties: {message: {type: string}}}\nclassify: {name: desk-requests, field: message, labels: [refund, question], examples: [{text: 'refund my card', label: refund}, {text: 'when do you open', label: question}]}\nsteps: [{id: a, kind: task, task: noop}]\n"
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", v1); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	path := "/v1/processes/desk/classify/evaluation"
	if a := do(t, srv, "GET", path, eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("none yet: %d", a.status)
	}
	def, err := process.ParseDefinition([]byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	doc := process.JSON(activities.EvaluateResult{Classifier: "desk-requests", Spec: activities.SpecDigest(*def.Classify), Report: classify.Report{Accuracy: 0.75}})
	if err := st.PutEvaluation(t.Context(), store.Evaluation{Classifier: "desk-requests", Model: "embedded", Doc: doc, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	changed := func(query string) string {
		t.Helper()
		a := do(t, srv, "GET", path+query, eng, "", "")
		if a.status != http.StatusOK || a.body["evaluation"].(map[string]any)["accuracy"] != 0.75 || a.body["evaluated_at"] == nil {
			t.Fatalf("the last evaluation: %d %v", a.status, a.body)
		}
		return fmt.Sprintf("examples %v, definition %v", a.body["examples_changed"], a.body["definition_changed"])
	}
	if got := changed(""); got != "examples false, definition false" {
		t.Fatalf("as evaluated: %s", got)
	}
	if a := do(t, srv, "POST", "/v1/classifiers/desk-requests/examples", eng, "application/json", `{"text":"money back please","label":"refund"}`); a.status != http.StatusCreated {
		t.Fatalf("add: %d %+v", a.status, a.err)
	}
	if got := changed(""); got != "examples true, definition false" {
		t.Fatalf("an example added: %s", got)
	}
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", strings.Replace(strings.Replace(v1, "version: 1", "version: 2", 1), "labels: [refund, question]", "labels: [refund, question], review_below: 0.6", 1)); a.status != http.StatusCreated {
		t.Fatalf("v2: %d %+v", a.status, a.err)
	}
	if got := changed(""); got != "examples true, definition true" {
		t.Fatalf("a new version's classifier: %s", got)
	}
	if got := changed("?version=1"); got != "examples true, definition false" {
		t.Fatalf("the version evaluated: %s", got)
	}
	// The LLM's evaluations are kept apart from the embedded classifier's.
	if a := do(t, srv, "GET", path+"?model=llm", eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("no evaluation of the LLM yet: %d", a.status)
	}
	llm := process.JSON(activities.EvaluateResult{Classifier: "desk-requests", Model: "llm:m", Report: classify.Report{Accuracy: 0.9}})
	if err := st.PutEvaluation(t.Context(), store.Evaluation{Classifier: "desk-requests", Model: "llm", Doc: llm, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if a := do(t, srv, "GET", path+"?model=llm", eng, "", ""); a.status != http.StatusOK || a.body["evaluation"].(map[string]any)["accuracy"] != 0.9 {
		t.Fatalf("the LLM's: %d %v", a.status, a.body)
	}
	changed("") // the embedded classifier's is still there
	if a := do(t, srv, "GET", path+"?model=gpt", eng, "", ""); a.status != http.StatusBadRequest || a.err.Field != "model" {
		t.Fatalf("an unknown model: %d %+v", a.status, a.err)
	}
}
