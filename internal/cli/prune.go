package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

const pruneUsage = `usage: adaptflow prune --older-than 400d [--dry-run] [--data-dir DIR | --database-url URL] [--json]`

// Prune runs `adaptflow prune`: it removes from a store, at once, what a
// server with --store-retention removes every hour (store.Prune), and says
// how many rows of each kind went.
func Prune(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr("ADAPTFLOW_DATA_DIR", ".adaptflow"), "data directory of the store")
	dbURL := fs.String("database-url", envOr("DATABASE_URL", ""), "store: postgres://... or a SQLite file (default DATA_DIR/adaptflow.db)")
	olderThan := fs.String("older-than", "", "remove what ended or was recorded longer ago than this, e.g. 400d; at least 1d (required)")
	dryRun := fs.Bool("dry-run", false, "only count what would be removed (the store is opened read-only)")
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 || *olderThan == "" {
		fmt.Fprintln(stderr, pruneUsage)
		return 2
	}
	age, err := process.ParseDuration(*olderThan)
	if err == nil && age < 24*time.Hour {
		err = fmt.Errorf("must be at least 1d (got %s)", *olderThan)
	}
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow prune: --older-than: %v\n", err)
		return 2
	}
	if path, pg := storeAt(*dataDir, *dbURL); !pg {
		if _, err := os.Stat(path); err != nil {
			fmt.Fprintf(stderr, "adaptflow prune: no store at %s (--data-dir, --database-url)\n", path)
			return 1
		}
	}
	before := time.Now().Add(-age)
	report := func(n store.Pruned) {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(n)
			return
		}
		verb := "removed"
		if *dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(stdout, "%s %d instances (with %d decision records, %d reviews, %d verdicts), %d signal observations and %d audit entries\n",
			verb, n.Instances, n.Decisions, n.Reviews, n.Verdicts, n.Observations, n.AuditEntries)
	}
	if *dryRun {
		st, err := openReadOnly(ctx, *dataDir, *dbURL)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow prune:", err)
			return 1
		}
		defer st.Close()
		n, err := st.PruneCounts(ctx, before)
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow prune:", err)
			return 1
		}
		report(n)
		return 0
	}
	return withWriteStore(ctx, *dataDir, *dbURL, stderr, "prune", func(st writeStore) error {
		n, err := st.Prune(ctx, before)
		report(n)
		return err
	})
}
