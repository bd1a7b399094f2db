package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/adaptflow/adaptflow/api"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

const pruneUsage = `usage: adaptflow prune [--older-than 400d] [--dry-run] [--data-dir DIR | --database-url URL] [--json]`

// Prune runs `adaptflow prune`: it removes from a store, at once, what a
// server with --store-retention removes every hour: each process's data
// older than its definition's retention, and, with --older-than,
// everything older than that (store.RetentionPlan); it says how many rows
// of each kind went.
func Prune(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir, dbURL := storeFlags(fs, "prune")
	olderThan := fs.String("older-than", "", "also remove what ended or was recorded longer ago than this, e.g. 400d; at least 1d (the definitions' own retentions apply either way)")
	dryRun := fs.Bool("dry-run", false, "only count what would be removed (the store is opened read-only)")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintln(stderr, pruneUsage)
		return 2
	}
	var age time.Duration
	if *olderThan != "" {
		age, err = process.ParseDuration(*olderThan)
		if err == nil && age < 24*time.Hour {
			err = fmt.Errorf("must be at least 1d (got %s)", *olderThan)
		}
		if err != nil {
			fmt.Fprintf(stderr, "adaptflow prune: --older-than: %v\n", err)
			return 2
		}
	}
	if path, pg := storeAt(*dataDir, *dbURL); !pg {
		if _, err := os.Stat(path); err != nil {
			fmt.Fprintf(stderr, "adaptflow prune: no store at %s (--data-dir, --database-url)\n", path)
			return 1
		}
	}
	now := time.Now()
	report := func(plan store.PrunePlan, n store.Pruned) {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(n)
			return
		}
		for _, name := range slices.Sorted(maps.Keys(plan.Processes)) {
			fmt.Fprintf(stdout, "%s: its definition keeps %s (what ended before %s)\n", name, days(now.Sub(plan.Processes[name])), plan.Processes[name].UTC().Format(time.DateTime))
		}
		verb := "removed"
		if *dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(stdout, "%s %d instances (with %d decision records, %d reviews, %d verdicts, %d undelivered webhooks), %d signal observations and %d audit entries\n",
			verb, n.Instances, n.Decisions, n.Reviews, n.Verdicts, n.Webhooks, n.Observations, n.AuditEntries)
	}
	// plan reads the definitions' retentions; with none and no
	// --older-than, there is nothing to prune.
	plan := func(defs api.DefinitionStore) (store.PrunePlan, error) {
		recs, err := defs.Definitions(ctx)
		if err != nil {
			return store.PrunePlan{}, err
		}
		p, err := store.RetentionPlan(recs, age, now)
		if err == nil && p.Empty() {
			err = errors.New("nothing to prune: no --older-than, and no process's definition declares a retention")
		}
		return p, err
	}
	if *dryRun {
		st, err := openReadOnly(ctx, *dataDir, *dbURL)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow prune:", err)
			return 1
		}
		defer st.Close()
		p, err := plan(st)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow prune:", err)
			return 1
		}
		n, err := st.PruneCounts(ctx, p)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow prune:", err)
			return 1
		}
		report(p, n)
		return 0
	}
	return withWriteStore(ctx, *dataDir, *dbURL, stderr, "prune", func(st writeStore) error {
		p, err := plan(st)
		if err != nil {
			return err
		}
		n, err := store.PruneByPlan(ctx, st, p)
		report(p, n)
		return err
	})
}

// days writes a retention in days when it is whole days (90d), else in
// Go's form (36h0m0s).
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
