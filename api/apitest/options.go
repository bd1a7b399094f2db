package apitest

import (
	"net"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// Options are the API's options over one SQLite store, which serves every
// part, with a Temporal client that never answers (nothing listens at its
// address): Temporal is down. A test sets what else it needs.
func Options(t testing.TB, st *sqlite.Store) api.Options {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()
	tc, err := client.NewLazyClient(client.Options{HostPort: dead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	env, err := policies.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return api.Options{
		Keys: st, KeyAdmin: st, Definitions: st, Policies: st, Instances: st, Decisions: st, Reviews: st, Claims: st, Retries: st, Signals: st, Ended: st, AuditLog: st, Webhooks: st, Verdicts: st, Stats: st,
		Lifecycle: st, Schedules: st, Scanner: st, Chains: st, Examples: st, Temporal: tc, TaskQueue: "q", Env: env, Timeout: 2 * time.Second,
	}
}
