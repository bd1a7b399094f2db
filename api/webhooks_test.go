package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/store"
)

// A webhook given up can be listed, read and sent again: once delivered
// it is marked so; a redelivery the receiver refuses leaves it pending.
func TestRedeliverUndeliveredWebhooks(t *testing.T) {
	const secret = "hook-secret"
	var mu sync.Mutex
	status := http.StatusServiceUnavailable
	type call struct {
		body                 string
		idempotency, signing string
	}
	var calls []call
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{string(b), r.Header.Get("Idempotency-Key"), r.Header.Get("X-Adaptflow-Signature")})
		w.WriteHeader(status)
	}))
	defer receiver.Close()
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"), func(o *api.Options) { o.WebhookSecret = secret })
	eng, sys := keys[store.RoleEngineer], keys[store.RoleSystem]
	ctx := t.Context()
	keep := func(process, instance, event string) store.UndeliveredWebhook {
		t.Helper()
		w, err := st.AddUndeliveredWebhook(ctx, store.UndeliveredWebhook{Process: process, InstanceID: instance, Event: event, URL: receiver.URL,
			Key: instance + "/" + event, Body: json.RawMessage(`{"event":"` + event + `","instance_id":"` + instance + `"}`), Attempts: 12,
			Error: "webhook: 503 Service Unavailable", FailedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	orders := keep("orders", "i1", "instance.completed")
	returns := keep("returns", "i2", "instance.failed")
	// Those waiting for a redelivery are a gauge, by process.
	res, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	for _, want := range []string{`adaptflow_webhooks_pending{process="orders"} 1`, `adaptflow_webhooks_pending{process="returns"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	list := func(key, query string) []float64 {
		t.Helper()
		r := do(t, srv, "GET", "/v1/webhooks/undelivered"+query, key, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("list %s: %d %+v", query, r.status, r.err)
		}
		var ids []float64
		for _, w := range r.body["webhooks"].([]any) {
			ids = append(ids, w.(map[string]any)["id"].(float64))
		}
		return ids
	}
	id := func(w store.UndeliveredWebhook) float64 { return float64(w.ID) }
	if got := list(eng, ""); fmt.Sprint(got) != fmt.Sprint([]float64{id(returns), id(orders)}) {
		t.Fatalf("pending: %v", got)
	}
	if got := list(sys, "?process=orders"); fmt.Sprint(got) != fmt.Sprint([]float64{id(orders)}) {
		t.Fatalf("orders: %v", got)
	}
	// Pages.
	r := do(t, srv, "GET", "/v1/webhooks/undelivered?limit=1", eng, "", "")
	next, _ := r.body["next"].(string)
	if next == "" || len(r.body["webhooks"].([]any)) != 1 {
		t.Fatalf("first page: %v", r.body)
	}
	if got := list(eng, "?limit=1&after="+next); fmt.Sprint(got) != fmt.Sprint([]float64{id(orders)}) {
		t.Fatalf("second page: %v", got)
	}
	// Bad input names its field.
	for q, field := range map[string]string{"?status=lost": "status", "?limit=0": "limit", "?limit=501": "limit", "?after=x": "after", "?after=-3": "after", "?since=1h": "since"} {
		if r := do(t, srv, "GET", "/v1/webhooks/undelivered"+q, eng, "", ""); r.status != http.StatusBadRequest || r.err.Field != field {
			t.Fatalf("%s: %d %+v, want 400 naming %s", q, r.status, r.err, field)
		}
	}
	for path, want := range map[string]int{"/v1/webhooks/undelivered/x": http.StatusBadRequest, "/v1/webhooks/undelivered/0": http.StatusBadRequest,
		"/v1/webhooks/undelivered/" + strconv.FormatInt(returns.ID+10, 10): http.StatusNotFound} {
		if r := do(t, srv, "GET", path, eng, "", ""); r.status != want {
			t.Fatalf("%s: %d %+v, want %d", path, r.status, r.err, want)
		}
	}
	// Reviewers have no business here; a key limited to processes sees its own.
	if r := do(t, srv, "GET", "/v1/webhooks/undelivered", keys[store.RoleReviewer], "", ""); r.status != http.StatusForbidden {
		t.Fatalf("a reviewer's listing: %d", r.status)
	}
	k, limitedKey := api.NewKey("returns-erp", store.RoleSystem, time.Now())
	k.Processes = []string{"returns"}
	if err := st.PutKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got := list(limitedKey, ""); fmt.Sprint(got) != fmt.Sprint([]float64{id(returns)}) {
		t.Fatalf("a limited key's listing: %v", got)
	}
	ordersPath := "/v1/webhooks/undelivered/" + strconv.FormatInt(orders.ID, 10)
	for _, c := range []struct{ method, path string }{{"GET", "/v1/webhooks/undelivered?process=orders"}, {"GET", ordersPath}, {"POST", ordersPath + "/redeliver"}} {
		if r := do(t, srv, c.method, c.path, limitedKey, "", ""); r.status != http.StatusForbidden {
			t.Fatalf("a limited key: %s %s: %d", c.method, c.path, r.status)
		}
	}
	mu.Lock()
	if len(calls) != 0 {
		t.Fatalf("the refused redelivery was sent: %+v", calls)
	}
	mu.Unlock()

	// The receiver is still down: 502, and the webhook stays pending.
	r = do(t, srv, "POST", ordersPath+"/redeliver", eng, "", "")
	if r.status != http.StatusBadGateway || r.err.Code != "webhook_not_delivered" || !strings.Contains(r.err.Message, "503") {
		t.Fatalf("redelivery to a receiver down: %d %+v", r.status, r.err)
	}
	r = do(t, srv, "GET", ordersPath, eng, "", "")
	if r.body["attempts"] != 13.0 || r.body["redelivered_at"] != nil || !strings.Contains(r.body["error"].(string), "503") {
		t.Fatalf("after a failed redelivery: %v", r.body)
	}

	// It is up again: delivered, as the workflow sent it, signed anew.
	mu.Lock()
	status = http.StatusNoContent
	mu.Unlock()
	before := time.Now()
	r = do(t, srv, "POST", ordersPath+"/redeliver", eng, "", "")
	if r.status != http.StatusOK || r.body["redelivered_by"] != "engineer-key" || r.body["redelivered_at"] == nil || r.body["attempts"] != 14.0 {
		t.Fatalf("redelivery: %d %v %+v", r.status, r.body, r.err)
	}
	mu.Lock()
	last := calls[len(calls)-1]
	n := len(calls)
	mu.Unlock()
	if n != 2 || last.body != string(orders.Body) || last.idempotency != orders.Key {
		t.Fatalf("%d calls, the last %+v", n, last)
	}
	ts, _, _ := strings.Cut(strings.TrimPrefix(last.signing, "t="), ",")
	sec, _ := strconv.ParseInt(ts, 10, 64)
	if at := time.Unix(sec, 0); at.Before(before.Add(-time.Second)) || last.signing != activities.SignWebhook(secret, at, orders.Body) {
		t.Fatalf("signature %q", last.signing)
	}
	// Once only; the listing of what is left, and of what was redelivered.
	if r := do(t, srv, "POST", ordersPath+"/redeliver", eng, "", ""); r.status != http.StatusConflict || !strings.Contains(r.err.Message, "engineer-key") {
		t.Fatalf("a second redelivery: %d %+v", r.status, r.err)
	}
	if got := list(eng, ""); fmt.Sprint(got) != fmt.Sprint([]float64{id(returns)}) {
		t.Fatalf("pending after the redelivery: %v", got)
	}
	if got := list(eng, "?status=redelivered"); fmt.Sprint(got) != fmt.Sprint([]float64{id(orders)}) {
		t.Fatalf("redelivered: %v", got)
	}
	if got := list(eng, "?status=all"); len(got) != 2 {
		t.Fatalf("all: %v", got)
	}
	// Each redelivery is in the audit log, with how it ended (refusals,
	// 4xx, changed nothing and leave none).
	audit := do(t, srv, "GET", "/v1/audit?action=POST%20/v1/webhooks/undelivered/:id/redeliver", keys[store.RoleAdmin], "", "")
	var ends []string
	for _, e := range audit.body["entries"].([]any) {
		e := e.(map[string]any)
		ends = append(ends, fmt.Sprint(e["status"], " ", e["actor"], " ", e["target"]))
	}
	if want := fmt.Sprintf("[502 engineer-key id=%d 200 engineer-key id=%d]", orders.ID, orders.ID); fmt.Sprint(ends) != want {
		t.Fatalf("the audit log of redeliveries: %v, want %s", ends, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
}

// Two redeliveries of one webhook at once (two people, two replicas)
// send it once: the second is refused while the first waits for the
// receiver, and the first's outcome is recorded even when its caller
// went away meanwhile.
func TestConcurrentRedeliveriesSendOnce(t *testing.T) {
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	var sent atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sent.Add(1) == 1 { // the first waits
			arrived <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before the receiver closes, which waits for its handlers
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	hook, err := st.AddUndeliveredWebhook(t.Context(), store.UndeliveredWebhook{Process: "orders", InstanceID: "i1", Event: "instance.completed", URL: receiver.URL,
		Key: "i1/instance.completed", Body: json.RawMessage(`{"event":"instance.completed"}`), Attempts: 12, Error: "webhook: 503", FailedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/webhooks/undelivered/" + strconv.FormatInt(hook.ID, 10) + "/redeliver"
	// The first caller gives up waiting while the receiver holds its answer.
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+eng)
		_, err := srv.Client().Do(req)
		first <- err
	}()
	<-arrived
	second := do(t, srv, http.MethodPost, path, eng, "", "")
	if second.status != http.StatusConflict || !strings.Contains(second.err.Message, "being redelivered") {
		t.Fatalf("a second redelivery while the first is under way: %d %+v", second.status, second.err)
	}
	cancel()
	if err := <-first; err == nil {
		t.Fatal("the first caller's request did not end with its context")
	}
	free()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w, err := st.UndeliveredWebhook(t.Context(), hook.ID)
		if err != nil {
			t.Fatal(err)
		}
		if w.RedeliveredAt != nil && w.RedeliveredBy == "engineer-key" && w.SendingUntil == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first redelivery's outcome was not recorded after its caller left: %+v", w)
		}
	}
	if third := do(t, srv, http.MethodPost, path, eng, "", ""); third.status != http.StatusConflict || !strings.Contains(third.err.Message, "redelivered already") {
		t.Fatalf("a redelivery once delivered: %d %+v", third.status, third.err)
	}
	if n := sent.Load(); n != 1 {
		t.Fatalf("the receiver had it %d times, want 1", n)
	}
}
