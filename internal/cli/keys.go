package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

const keysUsage = `usage:
  adaptflow keys create --role ROLE --name NAME [--processes a,b] [--expires-in 90d] [--data-dir DIR | --database-url URL] [--json]
  adaptflow keys list   [--data-dir DIR | --database-url URL] [--json]
  adaptflow keys revoke ID [--data-dir DIR | --database-url URL]`

// writeStore is what the commands that write to a store directly (keys,
// prune) need of it.
type writeStore interface {
	api.KeyStore
	api.KeyAdmin
	api.DefinitionStore
	store.PruneStore
	Close() error
}

// openStore opens a store for writing, applying pending migrations.
func openStore(ctx context.Context, dataDir, dbURL string) (writeStore, error) {
	path, pg := storeAt(dataDir, dbURL)
	if pg {
		return postgres.Open(ctx, path, postgres.Options{Migrate: true})
	}
	return sqlite.Open(ctx, path)
}

// Keys runs `adaptflow keys create|list|revoke` against a store directly,
// for the first keys of a deployment and for recovery; a running server
// offers the same through /v1/keys.
func Keys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, keysUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("adaptflow keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr("ADAPTFLOW_DATA_DIR", ".adaptflow"), "data directory of the store")
	dbURL := fs.String("database-url", "", "store: postgres://... or a SQLite file (default DATA_DIR/adaptflow.db; $DATABASE_URL)")
	asJSON := fs.Bool("json", false, "print JSON")
	var role, name, processes, expiresIn *string
	if sub == "create" {
		role = fs.String("role", "", "system, reviewer, engineer or admin (required)")
		name = fs.String("name", "", "who or what uses the key (required)")
		processes = fs.String("processes", "", "comma-separated processes the key is limited to (default: all)")
		expiresIn = fs.String("expires-in", "", "how long the key works, e.g. 90d (default: until revoked)")
	}
	rest, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if *dbURL == "" {
		*dbURL = envOr("DATABASE_URL", "")
	}
	switch sub {
	case "create":
		req := api.KeyRequest{Name: *name, Role: *role, ExpiresIn: *expiresIn}
		if *processes != "" {
			req.Processes = strings.Split(*processes, ",")
		}
		key, secret, err := api.NewKeyFrom(req, time.Now())
		var fe *process.FieldError
		if errors.As(err, &fe) {
			flagName, _, _ := strings.Cut(strings.ReplaceAll(fe.Path, "_", "-"), "[")
			fmt.Fprintf(stderr, "adaptflow keys create: --%s: %s\n", flagName, fe.Message)
			return 2
		}
		if err != nil {
			fmt.Fprintln(stderr, "adaptflow keys create:", err)
			return 1
		}
		return withWriteStore(ctx, *dataDir, *dbURL, stderr, "keys "+sub, func(st writeStore) error {
			if err := st.PutKey(ctx, key); err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(map[string]any{"id": key.ID, "name": key.Name, "role": key.Role, "processes": key.Processes, "expires_at": key.ExpiresAt, "key": secret})
			}
			fmt.Fprintf(stdout, "created key %s (%s, %s); its secret, shown once:\n%s\n", key.ID, key.Name, key.Role, secret)
			return nil
		})
	case "list":
		return withWriteStore(ctx, *dataDir, *dbURL, stderr, "keys "+sub, func(st writeStore) error {
			ks, err := st.Keys(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(map[string]any{"keys": ks})
			}
			now := time.Now()
			for _, k := range ks {
				state := "active"
				if err := k.Usable(now); err != nil {
					state = err.Error()
				}
				scope := "all processes"
				if len(k.Processes) > 0 {
					scope = strings.Join(k.Processes, ",")
				}
				fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Role, scope, state)
			}
			return nil
		})
	case "revoke":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, keysUsage)
			return 2
		}
		return withWriteStore(ctx, *dataDir, *dbURL, stderr, "keys "+sub, func(st writeStore) error {
			k, err := st.RevokeKey(ctx, rest[0], time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked key %s (%s)\n", k.ID, k.Name)
			return nil
		})
	}
	fmt.Fprintln(stderr, keysUsage)
	return 2
}

// withWriteStore runs fn on the store, reporting a failure as command.
func withWriteStore(ctx context.Context, dataDir, dbURL string, stderr io.Writer, command string, fn func(writeStore) error) int {
	st, err := openStore(ctx, dataDir, dbURL)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow %s: %v\n", command, err)
		return 1
	}
	defer st.Close()
	if err := fn(st); err != nil {
		fmt.Fprintf(stderr, "adaptflow %s: %v\n", command, err)
		return 1
	}
	return 0
}
