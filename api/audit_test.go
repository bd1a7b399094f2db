package api_test

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/store"
)

// No change goes unrecorded: the audit entry is written before the change
// is made, so a change whose entry cannot be written is refused, and an
// entry whose end could not be recorded says so (status 0).
func TestNoChangeWithoutItsAuditEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.db")
	srv, keys, _ := newServerAt(t, path)
	admin := keys[store.RoleAdmin]
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	keyNames := func() string {
		t.Helper()
		r := do(t, srv, "GET", "/v1/keys", admin, "", "")
		var names []string
		for _, k := range r.body["keys"].([]any) {
			names = append(names, k.(map[string]any)["name"].(string))
		}
		return strings.Join(names, ",")
	}
	audit := func() []map[string]any {
		t.Helper()
		r := do(t, srv, "GET", "/v1/audit?action=POST%20/v1/keys", admin, "", "")
		var out []map[string]any
		for _, e := range r.body["entries"].([]any) {
			out = append(out, e.(map[string]any))
		}
		return out
	}

	// The audit log refuses writes (a full disk, say): so is the change.
	exec(`CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(FAIL, 'disk full'); END`)
	r := do(t, srv, "POST", "/v1/keys", admin, "application/json", `{"name":"erp","role":"system"}`)
	if r.status != http.StatusServiceUnavailable || r.err.Code != "unavailable" || r.header.Get("Retry-After") == "" || !strings.Contains(r.err.Message, "audit log") {
		t.Fatalf("a change with no audit log: %d %+v", r.status, r.err)
	}
	if names := keyNames(); strings.Contains(names, "erp") {
		t.Fatalf("the key was made with no audit entry: %s", names)
	}
	exec(`DROP TRIGGER no_audit`)

	// The entry is written, but its end cannot be recorded: the change
	// stands, and its entry says its status is not known.
	exec(`CREATE TRIGGER no_settle BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(FAIL, 'disk full'); END`)
	if r := do(t, srv, "POST", "/v1/keys", admin, "application/json", `{"name":"erp","role":"system"}`); r.status != http.StatusCreated {
		t.Fatalf("a change whose end could not be recorded: %d %+v", r.status, r.err)
	}
	exec(`DROP TRIGGER no_settle`)
	if r := do(t, srv, "POST", "/v1/keys", admin, "application/json", `{"name":"crm","role":"system"}`); r.status != http.StatusCreated {
		t.Fatalf("create a key: %d %+v", r.status, r.err)
	}
	// A refused change made none, and leaves no entry.
	if r := do(t, srv, "POST", "/v1/keys", admin, "application/json", `{"name":"x","role":"king"}`); r.status != http.StatusBadRequest {
		t.Fatalf("a key with an unknown role: %d", r.status)
	}
	es := audit()
	if len(es) != 2 || es[0]["status"] != 0.0 || es[1]["status"] != 201.0 || es[0]["actor"] != "admin-key" {
		t.Fatalf("audit entries %v", es)
	}
	if names := keyNames(); !strings.Contains(names, "erp") || !strings.Contains(names, "crm") {
		t.Fatalf("keys %s", names)
	}
}
