#!/usr/bin/env bash
# Provides PostgreSQL with pgvector for the tests.
#
#   scripts/postgres.sh install   install PostgreSQL 15 and build pgvector if missing (root, Debian)
#   scripts/postgres.sh start DIR start a throwaway cluster in DIR; prints DATABASE_URL
#   scripts/postgres.sh stop DIR  stop it and remove DIR
#
# pgvector is not packaged for Debian bookworm; it is built from the source
# package of the next release (trixie), against postgresql-server-dev-15.
set -euo pipefail

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_CONFIG=$PG_BIN/pg_config

log() { printf '== postgres: %s\n' "$*" >&2; }

have_pgvector() {
	[ -x "$PG_CONFIG" ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ]
}

install() {
	if [ -x "$PG_BIN/postgres" ] && have_pgvector; then
		return 0
	fi
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "PostgreSQL $PG_VERSION with pgvector is missing: run as root on Debian, or set DATABASE_URL to a server with pgvector" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if [ ! -x "$PG_BIN/postgres" ]; then
		log "installing PostgreSQL $PG_VERSION"
		apt-get update -qq
		apt-get install -y -qq "postgresql-$PG_VERSION" >/dev/null
	fi
	if ! have_pgvector; then
		log "building pgvector from Debian's trixie source package"
		src=/etc/apt/sources.list.d/adaptflow-trixie-src.sources
		if [ ! -f "$src" ]; then
			cat >"$src" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		fi
		apt-get update -qq
		apt-get install -y -qq "postgresql-server-dev-$PG_VERSION" build-essential dpkg-dev >/dev/null
		work=$(mktemp -d)
		(
			cd "$work"
			apt-get source --download-only -qq pgvector >/dev/null
			tar xzf pgvector_*.orig.tar.gz
			cd pgvector-*/
			make -s PG_CONFIG="$PG_CONFIG" >/dev/null
			make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
		)
		rm -rf "$work"
		have_pgvector || { echo "pgvector did not install" >&2; exit 1; }
	fi
}

start() {
	dir=$1
	port=${PGPORT_TEST:-}
	if [ -z "$port" ]; then
		port=55432
		while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	fi
	mkdir -p "$dir"
	# PostgreSQL refuses to run as root: the cluster belongs to postgres.
	run=()
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres "$dir"
		run=(runuser -u postgres --)
	fi
	"${run[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
	"${run[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
	"${run[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE adaptflow_test" >/dev/null
	"${run[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d adaptflow_test -qc "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
	echo "postgres://postgres@127.0.0.1:$port/adaptflow_test?sslmode=disable"
}

stop() {
	dir=$1
	[ -d "$dir/data" ] || return 0
	run=()
	[ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
	"${run[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}

case "${1:-}" in
install) install ;;
start) start "$2" ;;
stop) stop "$2" ;;
*)
	echo "usage: $0 install | start DIR | stop DIR" >&2
	exit 2
	;;
esac
