package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/api/apitest"
	"github.com/adaptflow/adaptflow/store"
)

// The document passes kin-openapi's validation as OpenAPI 3.1.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := apitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Paths.Len() < 30 {
		t.Fatalf("openapi %s with %d paths", doc.OpenAPI, doc.Paths.Len())
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s: needs an operationId and a summary", method, path)
			}
			if (op.Responses.Value("4XX") == nil || op.Responses.Value("5XX") == nil) && path != "/healthz" && path != "/metrics" && path != "/openapi.json" {
				t.Errorf("%s %s: documents no error response", method, path)
			}
		}
	}
}

// Every route the server has is in the document, and every operation in
// the document is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	srv, _, _ := newServerAt(t, t.TempDir()+"/api.db")
	engine, ok := srv.Config.Handler.(*api.Handler).Handler.(*gin.Engine)
	if !ok {
		t.Fatalf("handler is %T", srv.Config.Handler)
	}
	var routes []string
	for _, r := range engine.Routes() {
		routes = append(routes, r.Method+" "+r.Path)
	}
	doc, err := apitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			parts := strings.Split(path, "/")
			for i, p := range parts {
				if strings.HasPrefix(p, "{") {
					parts[i] = ":" + strings.Trim(p, "{}")
				}
			}
			documented = append(documented, method+" "+strings.Join(parts, "/"))
		}
	}
	// The web UI's pages are not part of the API.
	webUI := []string{"GET /", "GET /ui", "GET /ui/*file"}
	for _, r := range routes {
		if !slices.Contains(documented, r) && !slices.Contains(webUI, r) {
			t.Errorf("route %s is not in the OpenAPI document", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("the OpenAPI document has %s, which the server does not serve", d)
		}
	}
	a := do(t, srv, "GET", "/openapi.json", "", "", "")
	if a.status != http.StatusOK || a.body["openapi"] != "3.1.0" {
		t.Fatalf("/openapi.json: %d %v", a.status, a.body["openapi"])
	}
}

// Requests are checked against the document before a handler runs: the
// answer is a 400 naming the field, or 415 for a body of another type.
func TestRequestsAreValidatedAgainstTheDocument(t *testing.T) {
	srv, keys := newServer(t)
	eng, sys, rev, adm := keys[store.RoleEngineer], keys[store.RoleSystem], keys[store.RoleReviewer], keys[store.RoleAdmin]
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", def); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	for _, tc := range []struct {
		name, method, path, key, ct, body string
		status                            int
		field                             string
	}{
		{"unknown field", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"k","input":{},"inptu":{}}`, 400, "inptu"},
		{"missing field", "POST", "/v1/processes/p/instances", sys, "application/json", `{"input":{"n":1}}`, 400, "business_key"},
		{"empty string", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":""}`, 400, "business_key"},
		{"input not object", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"k","input":[1]}`, 400, "input"},
		{"no body", "POST", "/v1/processes/p/instances", sys, "application/json", ``, 400, ""},
		{"two values", "POST", "/v1/processes/p/instances", sys, "application/json", `{"business_key":"k"} {}`, 400, ""},
		{"form body", "POST", "/v1/processes", eng, "application/x-www-form-urlencoded", def, 415, ""},
		{"definition steps type", "POST", "/v1/processes", eng, "application/yaml", "name: q\nsteps: {a: 1}\n", 400, "steps"},
		{"definition step id", "POST", "/v1/processes", eng, "application/json", `{"name":"q","steps":[{"id":"a"},{"kind":"task"}]}`, 400, "steps[1].id"},
		{"policy on_error", "POST", "/v1/policies", eng, "text/yaml", "id: x\nprocess: p\nwhen: 'true'\non_error: explode\nactions: []\n", 400, "on_error"},
		{"policy mode", "POST", "/v1/policies?mode=loud", eng, "application/yaml", "id: x\nprocess: p\nwhen: 'true'\nactions: []\n", 400, "mode"},
		{"unknown query", "GET", "/v1/reviews?stauts=open", rev, "", "", 400, "stauts"},
		{"repeated query", "GET", "/v1/reviews?status=open&status=claimed", rev, "", "", 400, "status"},
		{"limit range", "GET", "/v1/reviews?limit=5000", rev, "", "", 400, "limit"},
		{"limit type", "GET", "/v1/audit?limit=ten", adm, "", "", 400, "limit"},
		{"duration", "GET", "/v1/audit?since=yesterday", adm, "", "", 400, "since"},
		{"required query", "GET", "/v1/policies", eng, "", "", 400, "process"},
		{"path version", "GET", "/v1/policies/x/versions/0", eng, "", "", 400, "version"},
		{"verdict enum", "POST", "/v1/reviews/r1/decision", rev, "application/json", `{"verdict":"maybe"}`, 400, "verdict"},
		{"lease type", "POST", "/v1/reviews/r1/claim", rev, "application/json", `{"lease":30}`, 400, "lease"},
		{"key processes", "POST", "/v1/keys", adm, "application/json", `{"name":"n","role":"system","processes":["p",""]}`, 400, "processes[1]"},
		{"simulate policies", "POST", "/v1/policies/simulate", eng, "application/json", `{"process":"p","policies":[]}`, 400, "policies"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, srv, tc.method, tc.path, tc.key, tc.ct, tc.body)
			if a.status != tc.status || a.err.Field != tc.field || a.err.RequestID == "" || a.err.Message == "" {
				t.Fatalf("got %d %+v, want %d field %q", a.status, a.err, tc.status, tc.field)
			}
			if tc.field != "" && !strings.HasPrefix(a.err.Message, tc.field+": ") {
				t.Fatalf("message %q does not start with the field", a.err.Message)
			}
			if tc.name == "duration" && !strings.Contains(a.err.Message, "must be a duration such as") {
				t.Fatalf("message %q does not say what a duration looks like", a.err.Message)
			}
		})
	}
	// A definition sent without a media type is read as YAML, as before.
	if a := do(t, srv, "POST", "/v1/processes", eng, "", strings.Replace(def, "name: p", "name: q", 1)); a.status != http.StatusCreated {
		t.Fatalf("YAML without a media type: %d %+v", a.status, a.err)
	}
	// What passes the document reaches the handler: a claim on a review
	// that does not exist is a 404, and escalated is a status one can list.
	if a := do(t, srv, "POST", "/v1/reviews/r1/claim", rev, "application/json", `{"lease":"45m"}`); a.status != http.StatusNotFound {
		t.Fatalf("claim: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "GET", "/v1/reviews?status=escalated&limit=10", rev, "", ""); a.status != http.StatusOK {
		t.Fatalf("escalated: %d %+v", a.status, a.err)
	}
}

// The response check the API tests rely on does catch a response that
// drifts from the document.
func TestResponseCheckCatchesDrift(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}}
	if err := apitest.Response("GET", "/v1/whoami", 200, h, []byte(`{"id":"k","name":"n","role":"system"}`)); err != nil {
		t.Fatalf("a conforming answer was refused: %v", err)
	}
	for _, body := range []string{`{"id":"k","name":"n"}`, `{"id":"k","name":"n","role":"root"}`, `{"id":7,"name":"n","role":"system"}`} {
		if err := apitest.Response("GET", "/v1/whoami", 200, h, []byte(body)); err == nil {
			t.Errorf("%s passed the check", body)
		}
	}
	if err := apitest.Response("GET", "/v1/whoami", 401, h, []byte(`{"error":{"code":"x"}}`)); err == nil {
		t.Error("an error without message and request_id passed the check")
	}
}
