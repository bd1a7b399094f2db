package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/ports"
)

// pgCluster is a PostgreSQL cluster of the test's own, so it can be stopped
// and started without touching the one the other tests share.
type pgCluster struct {
	t   *testing.T
	dir string
	url string
}

const pgScript = "../../scripts/postgres.sh"

func startCluster(t *testing.T) *pgCluster {
	t.Helper()
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/pg_ctl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL 15 is not installed: ./scripts/test.sh installs it")
		}
		t.Skip("PostgreSQL 15 is not installed (./scripts/postgres.sh install)")
	}
	dir, err := os.MkdirTemp("/tmp", "adaptflow-pgrestart.")
	if err != nil {
		t.Fatal(err)
	}
	// A port below the ephemeral range: while the cluster is down, the
	// app's connection attempts to its port draw their own local ports
	// from that range, and one that drew the port itself would connect to
	// itself and hold it, so the cluster could not start again.
	port, err := ports.Free("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pgScript, "start", dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PGPORT_TEST=%d", port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c := &pgCluster{t: t, dir: dir, url: strings.TrimSpace(string(out))}
	t.Cleanup(func() { _ = exec.Command(pgScript, "stop", dir).Run() })
	return c
}

func (c *pgCluster) pgctl(args ...string) error {
	full := append([]string{"-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"), "-w"}, args...)
	cmd := exec.Command("/usr/lib/postgresql/15/bin/pg_ctl", full...)
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl"}, full...)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		if len(log) > 2000 {
			log = log[len(log)-2000:]
		}
		return fmt.Errorf("pg_ctl %v: %w: %s\nthe server's log ends:\n%s", args, err, stderr.String(), log)
	}
	return nil
}

// TestPostgresRestartLosesNothing stops PostgreSQL while instances run: the
// API answers 503 with Retry-After, activities retry, and once it is back
// every instance completes with each decision recorded exactly once.
func TestPostgresRestartLosesNothing(t *testing.T) {
	pg := startCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startTemporal(t)

	base := app.DefaultOptions()
	base.DataDir = t.TempDir()
	base.DatabaseURL = pg.url
	base.TemporalAddress = ts.Address()
	base.APIKey = adminKey
	workerDone := make(chan error, 1)
	go func() { workerDone <- app.Run(ctx, app.ModeWorker, base) }()
	ready := make(chan string, 1)
	srv := base
	srv.Listen, srv.LoadExamples = "127.0.0.1:0", true
	srv.OnReady = func(addr string) { ready <- addr }
	serverDone := make(chan error, 1)
	go func() { serverDone <- app.Run(ctx, app.ModeServer, srv) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-serverDone:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	d := &dev{t: t, base: "http://" + addr}

	// The decision before `last` falls inside the outage: the wait ends
	// while PostgreSQL is down.
	def := "name: outage\nversion: 1\nsteps:\n  - {id: first, kind: task, task: noop}\n  - {id: pause, kind: wait, duration: 2s}\n  - {id: last, kind: task, task: noop}\n"
	pol := "id: mark\nprocess: outage\nwhen: \"true\"\nactions: [{set: {name: seen, value: true}}]\n"
	for _, reg := range []struct{ path, body string }{{"/v1/processes", def}, {"/v1/policies", pol}} { // in this order
		if r := call(t, d.base, "POST", reg.path, adminKey, "application/yaml", reg.body); r.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", reg.path, r.status, r.raw)
		}
	}
	const n = 20
	ids := make([]string, n)
	for i := range n {
		ids[i] = d.start("outage", fmt.Sprintf("pg-%d", i), map[string]any{})
	}
	for _, id := range ids { // every instance is past its first decision
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := d.call("GET", "/v1/instances/"+id, adminKey, "")
			if r.status == http.StatusOK && len(r.body["decisions"].([]any)) >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached its wait: %s", id, r.raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := pg.pgctl("stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	opt := portOption(t, pg.url)
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(3 * time.Second) // instances keep running into the outage
		if err := pg.pgctl("start", "-o", opt); err != nil {
			t.Error(err)
		}
	}()
	// While it is down, reads and starts get 503 with Retry-After, not 500.
	for _, r := range []resp{
		d.call("GET", "/v1/instances/"+ids[0], adminKey, ""),
		d.call("POST", "/v1/processes/order-fulfillment/instances", adminKey, `{"business_key":"during","input":{"order_id":"B","customer_id":"c","amount":1,"items":[{"sku":"X","qty":1}]}}`),
	} {
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("during the outage: %d %s, want 503", r.status, r.raw)
		}
	}
	res, err := http.Get(d.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("healthz during the outage: %d (Retry-After %q)", res.StatusCode, res.Header.Get("Retry-After"))
	}
	wg.Wait()

	for _, id := range ids {
		inst := d.waitStatus(id, "completed")
		if got := plan(inst); got != "first:done pause:done last:done" {
			t.Fatalf("%s: plan %q", id, got)
		}
		ds := d.expect(d.call("GET", "/v1/instances/"+id+"/decisions", adminKey, ""), http.StatusOK).body["decisions"].([]any)
		if len(ds) != 3 {
			t.Fatalf("%s: %d decision records, want exactly one per step (3)", id, len(ds))
		}
	}
	if v := d.expect(d.call("GET", "/v1/audit/verify", adminKey, ""), http.StatusOK); v.body["ok"] != true {
		t.Fatalf("audit after the restart: %s", v.raw)
	}
	cancel()
	for name, ch := range map[string]chan error{"server": serverDone, "worker": workerDone} {
		if err := <-ch; err != nil {
			t.Errorf("%s stopped with %v", name, err)
		}
	}
}

// portOption gives pg_ctl the options the cluster was started with.
func portOption(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("-p %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", u.Port())
}
