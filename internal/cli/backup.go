package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/adaptflow/adaptflow/store/sqlite"
)

const backupUsage = `usage: adaptflow backup --out DIR [--data-dir DIR | --database-url FILE] [--json]`

// Backup runs `adaptflow backup`: a consistent copy of the embedded
// store's SQLite database, and in a dev data directory of the embedded
// Temporal's too, taken while the server runs (sqlite.Snapshot). The
// copy is itself a data directory: `adaptflow dev --data-dir DIR` runs
// on it.
func Backup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir, dbURL := storeFlags(fs, "back up")
	out := fs.String("out", "", "directory to write the backup to; it must not exist (required)")
	asJSON := fs.Bool("json", false, "print what was copied as JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 || *out == "" {
		fmt.Fprintln(stderr, backupUsage)
		return 2
	}
	path, pg := storeAt(*dataDir, *dbURL)
	if pg {
		fmt.Fprintln(stderr, "adaptflow backup: the store is PostgreSQL: back it up with pg_dump (and Temporal's persistence with its own tools)")
		return 2
	}
	// Temporal's databases, in a dev data directory: executions, then
	// visibility.
	var temporal []string
	for _, name := range []string{"temporal.db", "temporal-visibility.db"} {
		if f := filepath.Join(*dataDir, name); fileExists(f) {
			temporal = append(temporal, f)
		}
	}
	files, err := sqlite.Snapshot(ctx, path, temporal, *out)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow backup:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"out": *out, "files": files})
		return 0
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "%s\t%.1f MB\n", f.Name, float64(f.Bytes)/(1<<20))
	}
	fmt.Fprintf(stdout, "backed up to %s, checked; run it with: adaptflow dev --data-dir %s\n", *out, *out)
	return 0
}

// fileExists reports whether a file is there.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
