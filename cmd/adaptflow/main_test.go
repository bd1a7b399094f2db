package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // these cases name their stores
	for _, tc := range []struct {
		args   []string
		code   int
		output string
	}{
		{nil, 2, "Usage:"},
		{[]string{"help"}, 0, "adaptflow dev"},
		{[]string{"version"}, 0, "adaptflow "},
		{[]string{"deploy"}, 2, `unknown command "deploy"`},
		{[]string{"dev", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"dev", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"dev", "--listen", "8080"}, 1, `--listen: \"8080\" is not host:port`},
		{[]string{"dev", "--api-key", "short"}, 1, "--api-key: must be at least 16 characters"},
		{[]string{"dev", "--log-level", "loud"}, 2, `--log-level: "loud"`},
		{[]string{"dev", "--retention", "12h"}, 1, "--retention: must be whole hours, at least 1d (got 12h0m0s)"},
		{[]string{"dev", "--retention", "soon"}, 2, `invalid value "soon" for flag -retention`},
		{[]string{"dev", "--store-retention", "2d"}, 1, "--store-retention: must be at least --retention (168h0m0s)"},
		{[]string{"server", "--store-retention", "3h", "--data-dir", "DIR"}, 1, "--store-retention: must be at least 1d, or 0 to keep everything (got 3h0m0s)"},
		{[]string{"worker", "--store-retention", "30d"}, 2, "flag provided but not defined: -store-retention"},
		{[]string{"prune", "--older-than", "12h"}, 2, "--older-than: must be at least 1d"},
		{[]string{"backup"}, 2, "usage: adaptflow backup --out DIR"},
		{[]string{"backup", "--out", "DIR", "--database-url", "postgres://nobody@127.0.0.1:1/none"}, 2, "back it up with pg_dump"},
		{[]string{"backup", "--data-dir", "DIR", "--out", "DIR"}, 1, "adaptflow backup: "},
		{[]string{"server", "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", "--data-dir", "DIR"}, 1, "open store: postgres: connect"},
		{[]string{"migrate", "later"}, 2, `unexpected argument "later"`},
		{[]string{"dev", "--llm-base-url", "http://127.0.0.1:1/v1"}, 1, "--llm-base-url and --llm-model: give both"},
		{[]string{"worker", "--embedding-model", "text-embedding-3-small"}, 1, "--embedding-model: needs --llm-base-url"},
		{[]string{"dev", "--embedding-wait", "2m"}, 1, "--embedding-wait: must be between 100ms and 1m (got 2m0s)"},
		{[]string{"worker", "--llm-timeout", "10m"}, 1, "--llm-timeout: must be between 1s and 4m (got 10m0s)"},
		{[]string{"server", "--request-timeout", "500ms"}, 1, "--request-timeout: must be between 1s and 10m (got 500ms)"},
		{[]string{"dev", "--temporal-tls"}, 2, "flag provided but not defined: -temporal-tls"},
		{[]string{"worker", "--temporal-tls-cert", "client.pem"}, 1, "--temporal-tls-cert and --temporal-tls-key: give both"},
		{[]string{"server", "--data-dir", "DIR", "--temporal-address", "127.0.0.1:1", "--temporal-tls-ca", "/nonexistent/ca.pem"}, 1, "--temporal-tls-ca: open /nonexistent/ca.pem"},
		{[]string{"healthcheck", "--url", "http://127.0.0.1:1/healthz"}, 1, "adaptflow healthcheck:"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			for i, a := range tc.args {
				if a == "DIR" {
					tc.args[i] = t.TempDir()
				}
			}
			code := run(tc.args, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tc.code || !strings.Contains(all, tc.output) {
				t.Fatalf("exit %d, want %d; output:\n%s\nwant it to contain %q", code, tc.code, all, tc.output)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // a SQLite store of its own
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	lines := func() int { return strings.Count(strings.TrimSpace(out.String()), "\n") + 1 }
	if code := run([]string{"migrate", "status", "--data-dir", dir}, &out, &errOut); code != 0 || lines() < 3 || strings.Count(out.String(), "pending") != lines() {
		t.Fatalf("status before: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for range 2 { // applying twice is a no-op the second time
		out.Reset()
		if code := run([]string{"migrate", "--data-dir", dir}, &out, &errOut); code != 0 {
			t.Fatalf("migrate exit %d: %s", code, errOut.String())
		}
	}
	out.Reset()
	if code := run([]string{"migrate", "status", "--data-dir", dir}, &out, &errOut); code != 0 || strings.Count(out.String(), "applied") != lines() {
		t.Fatalf("status after: exit %d\n%s", code, out.String())
	}
}
