package app_test

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
)

// TestTwoServersShareTheBackgroundTasks runs the production shape, two
// API servers on one PostgreSQL: each background task runs in one of
// them, and when that one stops, the other takes it over.
func TestTwoServersShareTheBackgroundTasks(t *testing.T) {
	pg := startCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startTemporal(t)

	type server struct {
		base   string
		cancel context.CancelFunc
		done   chan error
	}
	start := func() *server {
		t.Helper()
		o := app.DefaultOptions()
		o.DataDir, o.DatabaseURL, o.TemporalAddress, o.APIKey = t.TempDir(), pg.url, ts.Address(), adminKey
		o.Listen, o.SweepEvery, o.ScheduleEvery, o.CanaryGuardEvery = "127.0.0.1:0", 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		o.ReplicaEvery = 100 * time.Millisecond
		ready := make(chan string, 1)
		o.OnReady = func(addr string) { ready <- addr }
		sctx, scancel := context.WithCancel(ctx)
		s := &server{cancel: scancel, done: make(chan error, 1)}
		go func() { s.done <- app.Run(sctx, app.ModeServer, o) }()
		select {
		case addr := <-ready:
			s.base = "http://" + addr
		case err := <-s.done:
			t.Fatalf("server: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("server did not start")
		}
		return s
	}
	gauge := func(s *server, series string) int {
		t.Helper()
		r := call(t, s.base, "GET", "/metrics", "", "", "")
		m := regexp.MustCompile(regexp.QuoteMeta(series) + ` (\d+)`).FindStringSubmatch(r.raw)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	leader := func(s *server, task string) int {
		t.Helper()
		return gauge(s, `adaptflow_background_task_leader{task="`+task+`"}`)
	}
	a, b := start(), start()
	tasks := []string{"sweeper", "scheduler", "canary_guard"}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still waiting for %s", what)
			}
		}
	}
	for _, task := range tasks {
		waitUntil(task+" to run in one of the two", func() bool { return leader(a, task)+leader(b, task) == 1 })
	}
	// Each counts two replicas, which share each key's rate limit.
	waitUntil("both to count two replicas", func() bool { return gauge(a, "adaptflow_api_replicas") == 2 && gauge(b, "adaptflow_api_replicas") == 2 })
	// Over a few more passes it stays with one.
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		for _, task := range tasks {
			if n := leader(a, task) + leader(b, task); n != 1 {
				t.Fatalf("%s runs in %d servers", task, n)
			}
		}
	}
	// The one that runs the sweeper stops; the other takes it over.
	runs, other := a, b
	if leader(b, "sweeper") == 1 {
		runs, other = b, a
	}
	runs.cancel()
	if err := <-runs.done; err != nil {
		t.Fatalf("stopped server: %v", err)
	}
	for _, task := range tasks {
		waitUntil("the other server to take "+task+" over", func() bool { return leader(other, task) == 1 })
	}
	waitUntil("the other server to count itself alone", func() bool { return gauge(other, "adaptflow_api_replicas") == 1 })
	if r := call(t, other.base, "GET", "/healthz", "", "", ""); r.status != http.StatusOK {
		t.Fatalf("the other server: %d", r.status)
	}
	other.cancel()
	if err := <-other.done; err != nil {
		t.Fatalf("other server: %v", err)
	}
}
