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
