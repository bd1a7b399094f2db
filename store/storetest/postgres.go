package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

var databases atomic.Int64

// FreshPostgres returns the URL of a new, empty database on the server
// DATABASE_URL names, dropped when the test ends. Without DATABASE_URL the
// test skips on a developer's machine and fails in CI (CI set): PostgreSQL
// tests never skip silently there. with are CREATE DATABASE's options
// ("TEMPLATE template0 LC_CTYPE 'C'").
func FreshPostgres(t testing.TB, with ...string) string {
	t.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("DATABASE_URL is not set: CI runs the PostgreSQL tests against a real server (./scripts/test.sh starts one)")
		}
		t.Skip("DATABASE_URL is not set; ./scripts/test.sh starts a throwaway PostgreSQL with pgvector and sets it")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("adaptflow_t%d_%d", os.Getpid(), databases.Add(1))
	if _, err := admin.Exec(ctx, strings.Join(append([]string{"CREATE DATABASE", name}, with...), " ")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
