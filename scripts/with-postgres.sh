#!/usr/bin/env bash
# A throwaway PostgreSQL server for the PostgreSQL test suites.
#
#   scripts/with-postgres.sh <command…>   start a server, run the command with
#                                         VIGIL_TEST_DATABASE_URL set, stop the server (pass or fail)
#   . scripts/with-postgres.sh            (sourced, as .ci/run does) defines vigil_pg_start and
#                                         vigil_pg_stop; start exports VIGIL_TEST_DATABASE_URL
#
# The server listens on 127.0.0.1 only (VIGIL_PG_PORT, default 54329, or the next free port), keeps
# its data and unix socket in a temp directory, and is gone after stop. If PostgreSQL is not
# installed and this runs as root on Debian, it is installed with apt-get. As root the server runs
# as the `postgres` user (initdb and postgres refuse to run as root).

vigil_pg_bindir() {
  local found
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  found="$({ ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | tail -n 1)"
  if [ -n "$found" ] && [ -x "$found/pg_ctl" ]; then
    echo "$found"
    return 0
  fi
  return 1
}

vigil_pg_install() {
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "with-postgres: PostgreSQL is not installed (no pg_ctl); install it (e.g. apt-get install -y postgresql)" >&2
    return 1
  fi
  echo "with-postgres: installing PostgreSQL with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y postgresql >&2 || { apt-get update >&2 && apt-get install -y postgresql >&2; }
}

# Runs a PostgreSQL binary as the user that owns the data directory.
vigil_pg_run() {
  if [ "$(id -u)" = "0" ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

vigil_pg_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

vigil_pg_start() {
  local bindir port dir
  bindir="$(vigil_pg_bindir)" || { vigil_pg_install && bindir="$(vigil_pg_bindir)"; } || return 1
  port="${VIGIL_PG_PORT:-54329}"
  while vigil_pg_port_busy "$port"; do
    [ -n "${VIGIL_PG_PORT:-}" ] && { echo "with-postgres: port $port is taken" >&2; return 1; }
    port=$((port + 1))
  done
  dir="$(mktemp -d "${TMPDIR:-/tmp}/vigil-pg.XXXXXX")"
  VIGIL_PG_DIR="$dir"
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/false postgres
    chown postgres "$dir"
  fi
  # trust auth on a loopback-only, throwaway server; C locale so text sorts the same as on SQLite.
  vigil_pg_run "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  vigil_pg_run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  vigil_pg_run "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE DATABASE vigil_test" || { vigil_pg_stop; return 1; }
  VIGIL_PG_BINDIR="$bindir"
  export VIGIL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/vigil_test"
  echo "with-postgres: PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (data in $dir)" >&2
}

vigil_pg_stop() {
  if [ -n "${VIGIL_PG_DIR:-}" ] && [ -d "$VIGIL_PG_DIR" ]; then
    if [ -f "$VIGIL_PG_DIR/data/postmaster.pid" ]; then
      vigil_pg_run "${VIGIL_PG_BINDIR:-$(vigil_pg_bindir)}/pg_ctl" -D "$VIGIL_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$VIGIL_PG_DIR"
    echo "with-postgres: stopped" >&2
  fi
  VIGIL_PG_DIR=""
}

# Executed (not sourced): run the command against a server that lives only as long as it does.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ "$#" -eq 0 ]; then
    echo "usage: scripts/with-postgres.sh <command…>   (e.g. scripts/with-postgres.sh npx --yes pnpm@10.34.9 test)" >&2
    exit 2
  fi
  trap vigil_pg_stop EXIT
  trap 'exit 130' INT TERM
  vigil_pg_start
  "$@"
fi
