package cli

import (
	"context"
	"encoding/json"
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

// keyStore is what the keys commands need of a store.
type keyStore interface {
	api.KeyStore
	api.KeyAdmin
	Close() error
}

// openStore opens a store for writing, applying pending migrations.
func openStore(ctx context.Context, dataDir, dbURL string) (keyStore, error) {
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
		k, errArg := keyFromFlags(*role, *name, *processes, *expiresIn, time.Now())
		if errArg != nil {
			fmt.Fprintln(stderr, "adaptflow keys create:", errArg)
			return 2
		}
		return withKeyStore(ctx, *dataDir, *dbURL, stderr, sub, func(st keyStore) error {
			key, secret := k.key, k.secret
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
		return withKeyStore(ctx, *dataDir, *dbURL, stderr, sub, func(st keyStore) error {
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
		return withKeyStore(ctx, *dataDir, *dbURL, stderr, sub, func(st keyStore) error {
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

type newKey struct {
	key    store.APIKey
	secret string
}

// keyFromFlags checks the flags of `keys create` and makes the key.
func keyFromFlags(role, name, processes, expiresIn string, now time.Time) (newKey, error) {
	if !store.ValidRole(role) {
		return newKey{}, fmt.Errorf("--role: must be system, reviewer, engineer or admin (got %q)", role)
	}
	if strings.TrimSpace(name) == "" || len(name) > 100 {
		return newKey{}, fmt.Errorf("--name: is required (at most 100 characters)")
	}
	k, secret := api.NewKey(name, role, now)
	if processes != "" {
		for _, p := range strings.Split(processes, ",") {
			if !process.ValidName(p) {
				return newKey{}, fmt.Errorf("--processes: %q is not a process name", p)
			}
			k.Processes = append(k.Processes, p)
		}
		if role == store.RoleAdmin {
			return newKey{}, fmt.Errorf("--processes: an admin key cannot be limited to processes")
		}
	}
	if expiresIn != "" {
		d, err := process.ParseDuration(expiresIn)
		if err != nil || d <= 0 {
			return newKey{}, fmt.Errorf("--expires-in: must be a duration such as 12h or 90d (got %q)", expiresIn)
		}
		exp := now.Add(d).UTC()
		k.ExpiresAt = &exp
	}
	return newKey{key: k, secret: secret}, nil
}

func withKeyStore(ctx context.Context, dataDir, dbURL string, stderr io.Writer, sub string, fn func(keyStore) error) int {
	st, err := openStore(ctx, dataDir, dbURL)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow keys %s: %v\n", sub, err)
		return 1
	}
	defer st.Close()
	if err := fn(st); err != nil {
		fmt.Fprintf(stderr, "adaptflow keys %s: %v\n", sub, err)
		return 1
	}
	return 0
}
