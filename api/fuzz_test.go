package api_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
)

// fuzzRoutes are the routes that read a body.
var fuzzRoutes = []string{
	"/v1/processes", "/v1/policies", "/v1/processes/p/instances", "/v1/reviews/rv_x/decision", "/v1/reviews/rv_x/claim",
	"/v1/keys", "/v1/classifiers/c/examples", "/v1/policies/simulate", "/v1/policies/x/activate", "/v1/policies/x/disable",
}

// FuzzJSONHandlers posts arbitrary bodies, as JSON and as YAML, to every
// route that reads one: the answer is never a 500, and every error has the
// one error shape with a message.
func FuzzJSONHandlers(f *testing.F) {
	srv, keys, _ := newServerAt(f, filepath.Join(f.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = -1 })
	for _, seed := range []string{
		`{}`, `[]`, `null`, `{"name":"erp","role":"system","expires_in":"1d","processes":["p"]}`,
		`{"business_key":"b","input":{"n":1}}`, `{"verdict":"correct","label":"x","fields":{"a":1}}`, `{"lease":"5m"}`,
		`{"text":"hello","label":"greeting"}`, `{"process":"p","since":"30d","policies":["id: a"]}`, `{"version":1,"mode":"shadow","note":"n"}`,
		"name: p\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n", "id: a\nprocess: p\nwhen: 'true'\nactions: [{skip: a}]\n",
		`{"business_key":` + strings.Repeat("[", 200), "\xff\xfe", `{"verdict":"approve","comment":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		for i := range fuzzRoutes {
			f.Add(uint8(i), false, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, yaml bool, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		ct := "application/json"
		if yaml {
			ct = "application/yaml"
		}
		a := do(t, srv, http.MethodPost, path, keys[store.RoleAdmin], ct, string(body))
		if a.status >= 500 && a.status != http.StatusServiceUnavailable {
			t.Fatalf("POST %s %q: %d %+v", path, body, a.status, a.err)
		}
		if a.status >= 400 && (a.err.Code == "" || a.err.Message == "") {
			t.Fatalf("POST %s %q: %d without the error shape", path, body, a.status)
		}
	})
}
