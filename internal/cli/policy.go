package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// Policy runs `adaptflow policy <test|simulate|apply|diff>`.
func Policy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: adaptflow policy <test|simulate|apply|diff|activity> ...")
		return 2
	}
	switch args[0] {
	case "test":
		return policyTest(ctx, args[1:], stdout, stderr)
	case "simulate":
		return policySimulate(ctx, args[1:], stdout, stderr)
	case "apply":
		return policyApply(ctx, args[1:], stdout, stderr, true)
	case "diff":
		return policyApply(ctx, args[1:], stdout, stderr, false)
	case "activity":
		return policyActivity(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "adaptflow policy: unknown command %q (test, simulate, apply, diff, activity)\n", args[0])
	return 2
}

// parseFlags parses fs, allowing the directory argument before or after
// the flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: adaptflow policy test DIR")
		return 2
	}
	b, err := loadDir(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow policy test:", err)
		return 1
	}
	env, err := policies.NewEnv()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	failed, cases := 0, 0
	for _, p := range b.policies {
		def := b.definition(p.policy.Process)
		if def == nil {
			fmt.Fprintf(stdout, "FAIL %s (%s): no definition of process %q in %s; add its YAML\n", p.policy.ID, p.path, p.policy.Process, pos[0])
			failed++
			continue
		}
		if _, err := env.CompilePolicy(p.policy, def); err != nil {
			fmt.Fprintf(stdout, "FAIL %s (%s): %v\n", p.policy.ID, p.path, err)
			failed++
			continue
		}
		fails, err := env.RunTests(ctx, def, p.policy)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s (%s): %v\n", p.policy.ID, p.path, err)
			failed++
			continue
		}
		cases += len(p.policy.Tests)
		if len(fails) == 0 {
			fmt.Fprintf(stdout, "ok   %s: %d case(s)\n", p.policy.ID, len(p.policy.Tests))
			continue
		}
		failed++
		for _, f := range fails {
			facts, _ := json.Marshal(compactFacts(f.Facts))
			fmt.Fprintf(stdout, "FAIL %s, case %q: %s\n     facts: %s\n", f.Policy, f.Case, f.Message, facts)
			if f.Trace != "" {
				fmt.Fprintf(stdout, "     trace: %s\n", f.Trace)
			}
		}
	}
	fmt.Fprintf(stdout, "%d policies, %d cases, %d failing policies\n", len(b.policies), cases, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// compactFacts leaves out the empty fact groups.
func compactFacts(vars map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range vars {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				continue
			}
		case []any:
			if len(x) == 0 {
				continue
			}
		}
		out[k] = v
	}
	return out
}

// storeFlags adds the flags that locate a store for a command's local
// use (what it does with it: "read", "prune", "back up").
func storeFlags(fs *flag.FlagSet, use string) (dataDir, dbURL *string) {
	dataDir = fs.String("data-dir", envOr("ADAPTFLOW_DATA_DIR", ".adaptflow"), "data directory of the store to "+use)
	dbURL = fs.String("database-url", os.Getenv("DATABASE_URL"), "store to "+use+": postgres://... or a SQLite file (default DATA_DIR/adaptflow.db)")
	return dataDir, dbURL
}

// readStore is what the read-only commands need of a store.
type readStore interface {
	api.DefinitionStore
	api.DecisionScanner
	store.ChainReader
	ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error)
	CountDecisions(ctx context.Context, process string, since time.Time) (int, error)
	PruneCounts(ctx context.Context, plan store.PrunePlan) (store.Pruned, error)
	Close() error
}

// openReadOnly opens a store so that nothing can be written through it: a
// SQLite file opened read-only, or PostgreSQL sessions that are read-only.
func openReadOnly(ctx context.Context, dataDir, dbURL string) (readStore, error) {
	path, pg := storeAt(dataDir, dbURL)
	if pg {
		return postgres.Open(ctx, path, postgres.Options{ReadOnly: true})
	}
	return sqlite.OpenReadOnly(ctx, path)
}

// storeAt is where a command's store is: a PostgreSQL URL (pg), or a SQLite
// file (dbURL as a path or sqlite:PATH, else DATA_DIR/adaptflow.db).
func storeAt(dataDir, dbURL string) (path string, pg bool) {
	switch {
	case dbURL == "":
		return filepath.Join(dataDir, "adaptflow.db"), false
	case strings.HasPrefix(dbURL, "postgres://"), strings.HasPrefix(dbURL, "postgresql://"):
		return dbURL, true
	case strings.HasPrefix(dbURL, "sqlite:"):
		return strings.TrimPrefix(strings.TrimPrefix(dbURL, "sqlite:"), "//"), false
	}
	return dbURL, false
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func policySimulate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow policy simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	processName := fs.String("process", "", "process whose recorded decisions to replay (required)")
	sinceFlag := fs.String("since", "30d", "how far back to replay (24h, 30d)")
	examples := fs.Int("examples", 10, "changed decisions to list")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	dataDir, dbURL := storeFlags(fs, "read")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || *processName == "" {
		fmt.Fprintln(stderr, "usage: adaptflow policy simulate --process P [--since 30d] DIR")
		return 2
	}
	d, err := process.ParseDuration(*sinceFlag)
	if err != nil || d <= 0 {
		fmt.Fprintf(stderr, "--since: %q is not a duration such as 24h or 30d\n", *sinceFlag)
		return 2
	}
	since := time.Now().Add(-d)
	b, err := loadDir(pos[0])
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow policy simulate:", err)
		return 1
	}
	st, err := openReadOnly(ctx, *dataDir, *dbURL)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow policy simulate:", err)
		return 1
	}
	defer st.Close()
	env, err := policies.NewEnv()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var docs [][]byte
	for _, p := range b.policiesOf(*processName) {
		docs = append(docs, p.body)
	}
	total, err := st.CountDecisions(ctx, *processName, since)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow policy simulate:", err)
		return 1
	}
	bar := newProgress(stderr, total)
	rep, err := api.SimulateCandidate(ctx, st, readOnlyPolicies{st}, st, env, *processName, since, docs,
		policies.SimulationOptions{Examples: *examples, Progress: bar.update})
	bar.done()
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow policy simulate:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return 0
	}
	printSimulation(stdout, rep, len(docs), *sinceFlag)
	return 0
}

// readOnlyPolicies lets the simulation read policies from a read-only store;
// it never writes (PutPolicy refuses).
type readOnlyPolicies struct{ st readStore }

func (r readOnlyPolicies) PutPolicy(context.Context, store.PolicyRecord, string) (store.PolicyRecord, bool, error) {
	return store.PolicyRecord{}, false, errors.New("simulation never writes")
}

func (r readOnlyPolicies) ActivePolicies(ctx context.Context, process string) ([]store.PolicyRecord, int64, error) {
	return r.st.ActivePolicies(ctx, process)
}

func printSimulation(w io.Writer, rep policies.SimulationReport, candidates int, since string) {
	fmt.Fprintf(w, "Simulated %d decisions of %s from the last %s with %d candidate policies (%d ms).\n", rep.Decisions, rep.Process, since, candidates, rep.DurationMS)
	pct := 0.0
	if rep.Decisions > 0 {
		pct = 100 * float64(rep.Changed) / float64(rep.Decisions)
	}
	fmt.Fprintf(w, "%d decisions would change (%.1f%%), in %d instances.\n", rep.Changed, pct, rep.InstancesAffected)
	if len(rep.Actions) > 0 {
		fmt.Fprintln(w, "\nActions            before    after    change")
		for _, a := range rep.Actions {
			fmt.Fprintf(w, "  %-30s %7d %8d %+9d\n", a.Action, a.Before, a.After, a.Delta)
		}
	}
	fmt.Fprintf(w, "\nReview load: %d -> %d reviews. Steps run (estimate): %d -> %d.\n", rep.Reviews.Before, rep.Reviews.After, rep.StepsRun.Before, rep.StepsRun.After)
	if rep.EvaluationErrors > 0 {
		fmt.Fprintf(w, "%d evaluation errors in the candidate set (missing facts); see the decisions with the API.\n", rep.EvaluationErrors)
	}
	if len(rep.Examples) > 0 {
		fmt.Fprintln(w, "\nChanged decisions:")
		for _, e := range rep.Examples {
			fmt.Fprintf(w, "  %s before %s: [%s] -> [%s]  %s\n", e.InstanceID, e.Step, strings.Join(e.Before, ", "), strings.Join(e.After, ", "), e.Link)
		}
	}
	fmt.Fprintf(w, "\nNote: %s.\n", rep.Note)
}

// policyActivity prints how each policy of a process fared at the
// decision points of a window (GET /v1/policies/activity).
func policyActivity(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy activity", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rf := addRemoteFlags(fs, "engineer")
	processName := fs.String("process", "", "the process (required)")
	since := fs.String("since", "30d", "the window, back from now")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if *processName == "" || *rf.key == "" || len(pos) != 0 {
		fmt.Fprintln(stderr, "usage: adaptflow policy activity --process P [--since 30d] [--server URL] [--api-key KEY] [--json]")
		return 2
	}
	var raw json.RawMessage
	q := url.Values{"process": {*processName}, "since": {*since}}
	if err := rf.remote().do(ctx, "GET", "/v1/policies/activity?"+q.Encode(), "", nil, nil, &raw); err != nil {
		fmt.Fprintf(stderr, "adaptflow policy activity: %v\n", err)
		return 1
	}
	if *asJSON {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	var rep struct {
		Decisions int                       `json:"decisions"`
		Policies  []policies.PolicyActivity `json:"policies"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		fmt.Fprintf(stderr, "adaptflow policy activity: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d decisions of %s in the last %s\n", rep.Decisions, *processName, *since)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tVERSION\tMODE\tMATCHED\tAPPLIED\tREFUSED\tERRORS")
	for _, p := range rep.Policies {
		var applied []string
		for _, kind := range slices.Sorted(maps.Keys(p.Applied)) {
			applied = append(applied, fmt.Sprintf("%s×%d", kind, p.Applied[kind]))
		}
		errs := "0"
		if p.Errors > 0 {
			errs = fmt.Sprintf("%d (%s)", p.Errors, p.LastError)
		}
		fmt.Fprintf(tw, "%s\tv%d\t%s\t%d of %d\t%s\t%d\t%s\n", p.ID, p.Version, p.Mode, p.Matched, p.Evaluated, strings.Join(applied, " "), p.Rejected, errs)
	}
	_ = tw.Flush()
	return 0
}
