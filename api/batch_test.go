package api_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
)

// TestBatchStartRefusals: a batch no start of can be right is refused
// whole, naming the field; one whose inputs the process refuses in part
// has those refused, each naming its field, and the others stored. With
// Temporal down, the first start fails with 503, the rest are not tried,
// and all stay stored for the sweep to start.
func TestBatchStartRefusals(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.Timeout = 300 * time.Millisecond; o.MaxBody = 1 << 20 })
	sys := keys[store.RoleSystem]
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf(`{"business_key":"k%d","input":{"n":1}}`, i)
	}
	for _, tc := range []struct {
		name, path, key, body string
		status                int
		field                 string
	}{
		{"no instances", "/v1/processes/p/instances/batch", sys, `{"instances":[]}`, 400, "instances"},
		{"too many", "/v1/processes/p/instances/batch", sys, `{"instances":[` + strings.Join(many, ",") + `]}`, 400, "instances"},
		{"a key missing", "/v1/processes/p/instances/batch", sys, `{"instances":[{"business_key":"a"},{"input":{"n":1}}]}`, 400, "instances[1].business_key"},
		{"a key twice", "/v1/processes/p/instances/batch", sys, `{"instances":[{"business_key":"a"},{"business_key":"b"},{"business_key":"a"}]}`, 400, "instances[2].business_key"},
		{"an unknown field", "/v1/processes/p/instances/batch", sys, `{"instances":[{"business_key":"a","inptu":{}}]}`, 400, "instances[0].inptu"},
		{"an unknown process", "/v1/processes/nope/instances/batch", sys, `{"instances":[{"business_key":"a"}]}`, 404, ""},
		{"an unknown version", "/v1/processes/p/instances/batch", sys, `{"version":9,"instances":[{"business_key":"a"}]}`, 404, ""},
		{"a reviewer", "/v1/processes/p/instances/batch", keys[store.RoleReviewer], `{"instances":[{"business_key":"a"}]}`, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, srv, "POST", tc.path, tc.key, "application/json", tc.body)
			if a.status != tc.status || a.err.Field != tc.field {
				t.Fatalf("got %d %+v, want %d naming %q", a.status, a.err, tc.status, tc.field)
			}
		})
	}
	if n, err := st.Instances(t.Context(), store.InstanceFilter{Process: "p"}); err != nil || len(n) != 0 {
		t.Fatalf("refused batches stored %d instances (%v)", len(n), err)
	}

	// Two inputs the process refuses, and 60 it takes: Temporal is down, so
	// the first starts fail, and those after them are not tried.
	items := []string{`{"business_key":"b","input":{"n":"two"}}`, `{"business_key":"d","input":{}}`}
	for i := range 60 {
		items = append(items, fmt.Sprintf(`{"business_key":"k%02d","input":{"n":%d}}`, i, i))
	}
	a := do(t, srv, "POST", "/v1/processes/p/instances/batch", sys, "application/json", `{"instances":[`+strings.Join(items, ",")+`]}`)
	if a.status != http.StatusOK || a.body["created"] != 0.0 || a.body["existing"] != 0.0 || a.body["failed"] != 62.0 {
		t.Fatalf("batch with Temporal down: %d %v", a.status, a.body)
	}
	results := a.body["results"].([]any)
	for i, w := range []struct{ key, field string }{{"b", "instances[0].input.n"}, {"d", "instances[1].input.n"}} {
		r := results[i].(map[string]any)
		if e, _ := r["error"].(map[string]any); r["business_key"] != w.key || r["status"] != 400.0 || e["field"] != w.field {
			t.Fatalf("result %d: %v, want 400 naming %s", i, r, w.field)
		}
	}
	notTried := 0
	for i, r := range results[2:] {
		r := r.(map[string]any)
		e, _ := r["error"].(map[string]any)
		if r["business_key"] != fmt.Sprintf("k%02d", i) || r["status"] != 503.0 || e["code"] != "unavailable" {
			t.Fatalf("result %d: %v, want 503", i+2, r)
		}
		if strings.HasPrefix(e["message"].(string), "not tried") {
			notTried++
		}
	}
	if notTried < 60-32 {
		t.Fatalf("%d starts not tried after the first failed, want at least %d", notTried, 60-32)
	}
	// The valid ones are stored, pending: the sweep starts them.
	pending, err := st.PendingStarts(t.Context(), time.Now(), 100)
	if err != nil || len(pending) != 60 || pending[0].BusinessKey != "k00" {
		t.Fatalf("pending after the batch: %+v %v", pending, err)
	}
}

// TestBatchCountsAgainstTheRateLimit: each start of a batch counts as a
// request of the key's rate limit, so a batch is no way around it.
func TestBatchCountsAgainstTheRateLimit(t *testing.T) {
	srv, keys, _ := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.RateLimit = 2; o.Timeout = 100 * time.Millisecond })
	sys := keys[store.RoleSystem]
	do(t, srv, "POST", "/v1/processes", keys[store.RoleEngineer], "application/yaml", def)
	batch := func(keys ...string) string {
		items := make([]string, len(keys))
		for i, k := range keys {
			items[i] = fmt.Sprintf(`{"business_key":%q,"input":{"n":1}}`, k)
		}
		return `{"instances":[` + strings.Join(items, ",") + `]}`
	}
	// Bursts of 4: a batch of 6 can never pass.
	if a := do(t, srv, "POST", "/v1/processes/p/instances/batch", sys, "application/json", batch("a", "b", "c", "d", "e", "f")); a.status != http.StatusBadRequest ||
		a.err.Field != "instances" || !strings.Contains(a.err.Message, "at once (5") {
		t.Fatalf("a batch over the burst: %d %+v", a.status, a.err)
	}
	// The refused batch's request took one of the 4; this one takes 2.
	if a := do(t, srv, "POST", "/v1/processes/p/instances/batch", sys, "application/json", batch("a", "b")); a.status != http.StatusOK {
		t.Fatalf("a batch within the limit: %d %+v", a.status, a.err)
	}
	a := do(t, srv, "POST", "/v1/processes/p/instances/batch", sys, "application/json", batch("d", "e", "f"))
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || !strings.Contains(a.err.Message, "a batch of 3 starts counts as 3") {
		t.Fatalf("a batch over the limit: %d %+v", a.status, a.err)
	}
}
