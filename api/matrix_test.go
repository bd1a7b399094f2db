package api_test

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
)

// routeRoles is the access contract: the roles (besides admin, who may do
// everything) each route admits. A route the server has and this table
// lacks fails the test, so every new route gets a decision here.
var routeRoles = map[string][]string{
	"GET /healthz": {"*"}, "GET /metrics": {"*"}, "GET /openapi.json": {"*"},
	"GET /": {"*"}, "GET /ui": {"*"}, "GET /ui/*file": {"*"}, // the web UI: its data comes from /v1
	"POST /v1/processes": {"engineer"}, "GET /v1/processes": {"system", "engineer"}, "GET /v1/processes/:name": {"system", "engineer"},
	"POST /v1/processes/:name/instances": {"system"}, "POST /v1/processes/:name/instances/batch": {"system"}, "POST /v1/processes/:name/schedules/:schedule/pause": {"engineer"}, "POST /v1/processes/:name/schedules/:schedule/resume": {"engineer"}, "POST /v1/processes/:name/pause": {"engineer"}, "POST /v1/processes/:name/resume": {"engineer"}, "GET /v1/processes/:name/instances": {"system", "engineer"}, "GET /v1/processes/:name/diff": {"engineer"}, "GET /v1/policies/activity": {"engineer"}, "GET /v1/instances/:id/timeline": {"system", "engineer"}, "GET /v1/instances": {"system", "engineer"}, "GET /v1/processes/:name/kpis": {"engineer"}, "GET /v1/processes/:name/steps": {"engineer"}, "GET /v1/processes/:name/signals": {"engineer"}, "GET /v1/processes/:name/signals/:signal/observations": {"engineer"}, "POST /v1/processes/:name/classify": {"engineer"}, "POST /v1/processes/:name/classify/evaluate": {"engineer"}, "GET /v1/processes/:name/classify/evaluation": {"engineer"},
	"POST /v1/policies": {"engineer"}, "GET /v1/policies": {"engineer"},
	"GET /v1/policies/:id": {"engineer"}, "GET /v1/policies/:id/versions": {"engineer"}, "GET /v1/policies/:id/versions/:version": {"engineer"},
	"GET /v1/policies/:id/diff": {"engineer"}, "POST /v1/policies/:id/activate": {"engineer"}, "POST /v1/policies/:id/disable": {"engineer"},
	"POST /v1/policies/simulate": {"engineer"}, "GET /v1/policies/shadow-report": {"engineer"},
	"GET /v1/instances/:id": {"system", "engineer"}, "POST /v1/instances/:id/cancel": {"system", "engineer"}, "POST /v1/instances/:id/retry": {"system", "engineer"}, "POST /v1/instances/:id/events": {"system", "engineer"}, "GET /v1/instances/:id/decisions": {"system", "engineer"},
	"GET /v1/decisions/:id/explanation": {"system", "engineer"},
	"GET /v1/reviews":                   {"reviewer"}, "GET /v1/reviews/:id": {"reviewer"}, "POST /v1/reviews/:id/claim": {"reviewer"},
	"GET /v1/queues":               {"reviewer", "engineer"},
	"POST /v1/reviews/:id/release": {"reviewer"}, "POST /v1/reviews/:id/reassign": {"reviewer"}, "POST /v1/reviews/:id/decision": {"reviewer"}, "POST /v1/reviews/decisions": {"reviewer"},
	"POST /v1/keys": {}, "GET /v1/keys": {}, "POST /v1/keys/:id/rotate": {}, "POST /v1/keys/:id/revoke": {},
	"GET /v1/webhooks/undelivered": {"system", "engineer"}, "GET /v1/webhooks/undelivered/:id": {"system", "engineer"}, "POST /v1/webhooks/undelivered/:id/redeliver": {"system", "engineer"},
	"GET /v1/audit": {}, "GET /v1/audit/verify": {},
	"POST /v1/classifiers/:name/examples": {"engineer", "reviewer"}, "GET /v1/classifiers/:name/examples": {"engineer", "reviewer"}, "DELETE /v1/classifiers/:name/examples/:id": {"engineer"}, "DELETE /v1/classifiers/:name/examples": {"engineer"}, "POST /v1/classifiers/:name/examples/batch": {"engineer"},
	"GET /v1/classifiers/:name/quality": {"engineer", "reviewer"},
	"GET /v1/whoami":                    {"system", "engineer", "reviewer"},
}

// TestRouteRoleMatrix calls every route with no key, an unknown key, an
// expired key, a revoked key and a key of each role, and checks the status:
// 401 for the first four, 403 for a role the route does not admit, and
// for one it admits never 401, 403 or 500 (the bodies here are empty or
// the ids unknown, so 400, 404, 409, 415, 422 or 503 are all fine).
func TestRouteRoleMatrix(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = -1 })
	past := time.Now().Add(-time.Hour)
	expired, expiredSecret := api.NewKey("expired", store.RoleAdmin, past.Add(-time.Hour))
	expired.ExpiresAt = &past
	revoked, revokedSecret := api.NewKey("revoked", store.RoleAdmin, past)
	for _, k := range []store.APIKey{expired, revoked} {
		if err := st.PutKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.RevokeKey(t.Context(), revoked.ID, time.Now()); err != nil {
		t.Fatal(err)
	}

	routes := srv.Config.Handler.(*api.Handler).Handler.(*gin.Engine).Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		name := rt.Method + " " + rt.Path
		seen[name] = true
		allowed, ok := routeRoles[name]
		if !ok {
			t.Errorf("route %s is not in the access contract (routeRoles)", name)
			continue
		}
		path := strings.NewReplacer(":name", "nope", ":id", "nope", ":version", "1").Replace(rt.Path)
		body, ct := "", ""
		if rt.Method == http.MethodPost {
			body, ct = "{}", "application/json"
		}
		public := slices.Contains(allowed, "*")
		for who, key := range map[string]string{"no key": "", "unknown key": "af_nope", "expired key": expiredSecret, "revoked key": revokedSecret} {
			a := do(t, srv, rt.Method, path, key, ct, body)
			if !public && a.status != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d, want 401", name, who, a.status)
			}
		}
		for _, role := range []string{store.RoleSystem, store.RoleReviewer, store.RoleEngineer, store.RoleAdmin} {
			a := do(t, srv, rt.Method, path, keys[role], ct, body)
			admitted := public || role == store.RoleAdmin || slices.Contains(allowed, role)
			switch {
			case !admitted && a.status != http.StatusForbidden:
				t.Errorf("%s as %s: %d, want 403", name, role, a.status)
			case admitted && (a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status >= 500 && a.status != http.StatusServiceUnavailable):
				t.Errorf("%s as %s: %d (%s), want it admitted and answered", name, role, a.status, a.err.Message)
			}
		}
	}
	for name := range routeRoles {
		if !seen[name] {
			t.Errorf("the access contract names %s, which the server does not have", name)
		}
	}
}
