#!/usr/bin/env bash
# `pnpm test`: the whole suite with what it needs beside Node: a throwaway PostgreSQL server for
# the PostgreSQL suites (scripts/with-postgres.sh, stopped after, pass or fail) and Chromium for
# the dashboard's browser test. Both are installed with apt-get when missing and this runs as root
# (as in CI). Elsewhere a missing one is said, and its suites are skipped; with CI=true they fail
# instead, so a CI run never passes on a suite it did not run. Arguments go to `vitest run`.
set -euo pipefail
cd "$(dirname "$0")/.."
ci=false
case "${CI:-}" in true | 1 | TRUE | True) ci=true ;; esac

. scripts/with-postgres.sh

chromium_path() {
  local candidate
  for candidate in "${VIGIL_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! chromium_path >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Chromium with apt-get (for the dashboard's browser test)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; } ||
      echo "test: could not install Chromium" >&2
  else
    echo "test: no Chromium (apt-get install chromium, or set VIGIL_CHROMIUM): the browser test is skipped" >&2
  fi
fi
if path="$(chromium_path)"; then export VIGIL_CHROMIUM="$path"; fi

if [ -z "${VIGIL_TEST_DATABASE_URL:-}" ]; then
  trap vigil_pg_stop EXIT
  trap 'exit 130' INT TERM
  if ! vigil_pg_start; then
    if [ "$ci" = true ]; then
      echo "test: could not start PostgreSQL, and CI=true: the PostgreSQL suites must run" >&2
      exit 1
    fi
    echo "test: no PostgreSQL: the PostgreSQL suites are skipped" >&2
  fi
fi

node_modules/.bin/vitest run "$@"
