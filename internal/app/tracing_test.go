package app_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/adaptflow/adaptflow/internal/app"
)

// collector is an OTLP/HTTP trace receiver: it answers as an
// OpenTelemetry collector does and keeps the spans it is sent.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.Span
	names map[string]string // service name of each span, by span id
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want protobuf at /v1/traces", http.StatusNotFound)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s)
				c.names[hex.EncodeToString(s.GetSpanId())] = service
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// With an OTLP endpoint configured, one trace runs from the caller's
// traceparent through the API's span, the workflow start, the workflow and
// its activities.
func TestTracesReachAnOTLPCollector(t *testing.T) {
	col := &collector{names: map[string]string{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	d := startDev(t, t.TempDir(), "", func(o *app.Options) { o.OTLPEndpoint = srv.URL })

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequestWithContext(t.Context(), "POST", d.base+"/v1/processes/procurement-approval/instances",
		strings.NewReader(`{"business_key":"traced-1","input":{"request_id":"PO-1","requester":"ann","amount":300,"budget_remaining":5000,"supplier":"ACME"}}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("start: %d", res.StatusCode)
	}
	d.waitStatus(app.InstanceIDForTest("procurement-approval", "traced-1"), "completed")
	d.stop() // flushes the spans still buffered

	col.mu.Lock()
	defer col.mu.Unlock()
	inTrace := map[string]*tracepb.Span{}
	for _, s := range col.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			inTrace[s.GetName()] = s
		}
	}
	api := inTrace["POST /v1/processes/:name/instances"]
	if api == nil || hex.EncodeToString(api.GetParentSpanId()) != parentID || api.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Fatalf("no server span for the start under the caller's span; spans in the trace: %v", keys(inTrace))
	}
	if svc := col.names[hex.EncodeToString(api.GetSpanId())]; svc != "adaptflow-dev" {
		t.Fatalf("service.name %q", svc)
	}
	for _, want := range []string{"StartWorkflow:", "RunWorkflow:", "StartActivity:Decide", "RunActivity:Decide", "RunActivity:RunTask"} {
		found := false
		for name := range inTrace {
			found = found || strings.HasPrefix(name, want)
		}
		if !found {
			t.Errorf("no %s span in the trace; spans: %v", want, keys(inTrace))
		}
	}
}

func keys(m map[string]*tracepb.Span) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
