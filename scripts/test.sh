#!/usr/bin/env bash
# The whole test suite: formatting, vet, lint (pinned in tools/go.mod), the
# workflow determinism check, and every test. It needs Go; what else it needs
# it installs (as root on Debian) or builds from the module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# The race detector needs cgo and a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
	log "installing gcc for the race detector"
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
	else
		echo "gcc is missing: install a C compiler (the race detector needs cgo)" >&2
		exit 1
	fi
fi
export CGO_ENABLED=1

# Headless Chromium for the web UI's browser test.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
	log "installing Chromium for the web UI test"
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
	else
		echo "chromium is missing: install it (the web UI test drives it headless)" >&2
		exit 1
	fi
fi

# promtool, to check the Prometheus alerting rules in deploy/prometheus:
# unpacked from Debian's prometheus package into a cache (nothing installed
# or started).
promcache="${XDG_CACHE_HOME:-$HOME/.cache}/adaptflow/promtool"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$promcache/promtool" ]; then
	log "promtool for the alerting rules"
	if command -v apt-get >/dev/null && command -v dpkg >/dev/null; then
		promdir=$(mktemp -d /tmp/adaptflow-promtool.XXXXXX)
		if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
		(cd "$promdir" && apt-get download -qq prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb root)
		mkdir -p "$promcache" && mv "$promdir/root/usr/bin/promtool" "$promcache/" && rm -rf "$promdir"
	else
		echo "promtool is missing: install Prometheus's promtool (the alerting rules are checked with it)" >&2
		exit 1
	fi
fi
export PATH="$PATH:$promcache"

# PostgreSQL with pgvector: the one given by DATABASE_URL, or a throwaway
# cluster for this run, removed after it.
if [ -z "${DATABASE_URL:-}" ]; then
	log "PostgreSQL with pgvector (throwaway cluster)"
	scripts/postgres.sh install
	pgdir=$(mktemp -d /tmp/adaptflow-pg.XXXXXX)
	trap 'scripts/postgres.sh stop "$pgdir"' EXIT
	DATABASE_URL=$(scripts/postgres.sh start "$pgdir")
	export DATABASE_URL
else
	log "PostgreSQL from DATABASE_URL"
fi

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:" >&2
	echo "$unformatted" >&2
	exit 1
fi

log "go vet"
go vet ./...

log "golangci-lint"
go tool -modfile=tools/go.mod golangci-lint run ./...

log "workflowcheck (determinism of workflow code)"
go tool -modfile=tools/go.mod workflowcheck ./workflows/...

# The packages that link the whole Temporal server (the app, the binary)
# would need a race build of the server several times slower than the rest
# together, so they run without the race detector; everything else runs
# with it.
server_pkgs='/internal/app$|/cmd/adaptflow$|/internal/temporalserver$'
log "unit tests (race detector on)"
go test -race -count=1 $(go list ./... | grep -Ev "$server_pkgs")

log "integration tests on the embedded Temporal server"
go test -count=1 -timeout 20m $(go list ./... | grep -E "$server_pkgs")

log "all tests passed"
