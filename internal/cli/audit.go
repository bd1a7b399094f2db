package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/adaptflow/adaptflow/store"
)

// Audit runs `adaptflow audit verify`: it walks the hash chains of the
// decision records and policy versions of a store, read-only.
func Audit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: adaptflow audit verify [--data-dir DIR | --database-url PATH] [--json]")
		return 2
	}
	fs := flag.NewFlagSet("adaptflow audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir, dbURL := storeFlags(fs, "read")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, err := parseFlags(fs, args[1:]); err != nil {
		return 2
	}
	st, err := openReadOnly(ctx, *dataDir, *dbURL)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow audit verify:", err)
		return 1
	}
	defer st.Close()
	rep, err := store.Verify(ctx, st)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow audit verify:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprintf(stdout, "checked %d decision records in %d runs and %d policy versions\n", rep.Decisions, rep.Runs, rep.PolicyVersions)
		for i, f := range rep.Problems {
			where := f.ID
			if f.Kind == "decision" {
				where = fmt.Sprintf("%s (instance %s, run %s, seq %d)", f.ID, f.InstanceID, f.RunID, f.Seq)
			}
			label := "problem"
			if i == 0 {
				label = "FIRST"
			}
			fmt.Fprintf(stdout, "%s %s %s: %s\n", label, f.Kind, where, f.Message)
		}
		if rep.OK {
			fmt.Fprintln(stdout, "ok: every chain is intact")
		}
	}
	if !rep.OK {
		return 1
	}
	return 0
}
