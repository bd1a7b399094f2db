package api_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

func TestListInstances(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	for _, d := range []string{def, strings.Replace(def, "name: p", "name: other", 1)} {
		if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", d); a.status != http.StatusCreated {
			t.Fatalf("register: %d %+v", a.status, a.err)
		}
	}
	ctx := t.Context()
	now := time.Now()
	for i, in := range []struct{ id, process, status string }{
		{"i-done", "p", "completed"},
		{"i-failed", "p", "failed"},
		{"i-waiting", "p", "waiting_review"},
		{"i-new", "p", ""}, // its workflow has saved nothing yet
		{"i-other", "other", "failed"},
	} {
		created := now.Add(time.Duration(i-10) * time.Hour)
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: in.id, Process: in.process, ProcessVersion: 1, BusinessKey: "bk-" + in.id, Input: []byte(`{"n":1}`), CreatedBy: "erp", CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
		if in.status != "" {
			if _, err := st.SaveInstanceState(ctx, in.id, "run", 1, json.RawMessage(`{"status":"`+in.status+`"}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(a answer) string {
		t.Helper()
		if a.status != http.StatusOK {
			t.Fatalf("list: %d %+v", a.status, a.err)
		}
		var out []string
		for _, x := range a.body["instances"].([]any) {
			m := x.(map[string]any)
			out = append(out, m["id"].(string)+":"+m["status"].(string))
		}
		return strings.Join(out, " ")
	}
	for query, want := range map[string]string{
		"":                          "i-new:starting i-waiting:waiting_review i-failed:failed i-done:completed",
		"?status=failed":            "i-failed:failed",
		"?status=in_progress":       "i-new:starting i-waiting:waiting_review",
		"?status=finished":          "i-failed:failed i-done:completed",
		"?status=starting":          "i-new:starting",
		"?business_key=bk-i-done":   "i-done:completed",
		"?since=8h30m":              "i-new:starting i-waiting:waiting_review",
		"?status=failed&since=30d":  "i-failed:failed",
		"?business_key=nope":        "",
		"?status=rejected&limit=10": "",
	} {
		if got := ids(do(t, srv, "GET", "/v1/processes/p/instances"+query, sys, "", "")); got != want {
			t.Errorf("%q: %s, want %s", query, got, want)
		}
	}
	// A finished instance says when it finished; pages of two follow one
	// another with the cursor.
	first := do(t, srv, "GET", "/v1/processes/p/instances?limit=2", eng, "", "")
	if ids(first) != "i-new:starting i-waiting:waiting_review" || first.body["next"] == nil {
		t.Fatalf("first page: %v", first.body)
	}
	second := do(t, srv, "GET", "/v1/processes/p/instances?limit=2&after="+first.body["next"].(string), eng, "", "")
	if ids(second) != "i-failed:failed i-done:completed" {
		t.Fatalf("second page: %v", second.body)
	}
	done := second.body["instances"].([]any)[1].(map[string]any)
	if done["finished_at"] == nil || done["business_key"] != "bk-i-done" || done["created_by"] != "erp" || done["version"] != 1.0 {
		t.Fatalf("a finished instance: %v", done)
	}

	for query, field := range map[string]string{
		"?status=sleeping": "status", "?limit=0": "limit", "?limit=501": "limit", "?since=soon": "since", "?since=-1h": "since", "?after=garbage": "after",
	} {
		if a := do(t, srv, "GET", "/v1/processes/p/instances"+query, sys, "", ""); a.status != http.StatusBadRequest || a.err.Field != field {
			t.Errorf("%s: %d %+v, want 400 naming %s", query, a.status, a.err, field)
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/nope/instances", sys, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("unknown process: %d %+v", a.status, a.err)
	}
	limited := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"other-erp","role":"system","processes":["other"]}`)
	secret, _ := limited.body["key"].(string)
	if a := do(t, srv, "GET", "/v1/processes/p/instances", secret, "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a key limited to another process: %d %+v", a.status, a.err)
	}
	if got := ids(do(t, srv, "GET", "/v1/processes/other/instances", secret, "", "")); got != "i-other:failed" {
		t.Fatalf("a key limited to its process: %s", got)
	}
}
