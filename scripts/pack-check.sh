#!/usr/bin/env bash
# `pnpm pack-check`: vigil as an app outside the workspace gets it. Builds, packs every publishable
# package with `pnpm pack` (which rewrites `workspace:^` to versions and applies publishConfig, so
# the tarballs carry only dist conditions), checks the tarballs (no tests, no workspace ranges, a
# LICENSE), then copies a consumer project into a temp folder outside the repository, points its
# `@vigil/*` dependencies at the tarballs, installs with plain `npm` beside an effect of another
# patch than the workspace's, builds with plain `tsc` and runs it with plain `node`. It asserts that
# `npm ls effect` shows one copy.
#
# A consumer: a folder with package.json (its own effect and @effect/* dependencies; `@vigil/*`
# ones are rewritten here), tsconfig.json, src/ and a `test` script (else `node dist/main.js`).
# Default: both of them, `examples/embed` (an agent server of its own on vigil: its routes, its
# SqlClient and `sessions` table, a tool needing its HttpClient, its own model; its `npm test`
# proves ToolTimeout and OrphanedByCrash after a SIGKILL) and `scripts/pack-check/consumer` (the
# server as a library: ServerLive and /health, with `skipLibCheck: false`);
# `bash scripts/pack-check.sh <folder>…` checks the ones given.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
if [ "$#" -gt 0 ]; then consumers=("$@"); else consumers=(examples/embed scripts/pack-check/consumer); fi
effect_version="3.22.3" # the workspace pins 3.22.4: an app on another patch must still get one copy
packages=(domain tools store runtime provider server)
PNPM="npx --yes pnpm@10.34.9"

step() { echo "pack-check: $*"; }
fail() {
  echo "pack-check: FAILED: $*" >&2
  exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-pack-check-XXXXXX")"
case "$work" in "$repo"/*) fail "the temp folder $work is inside the repository" ;; esac
if [ -z "${VIGIL_PACK_CHECK_KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; else step "keeping $work"; fi

step "build (tsc -b, dashboard bundle)"
node scripts/build.mjs

step "pack ${packages[*]} into $work/tarballs"
mkdir -p "$work/tarballs"
for name in "${packages[@]}"; do
  (cd "packages/$name" && $PNPM pack --pack-destination "$work/tarballs" >/dev/null)
  tarball="$work/tarballs/vigil-$name-$(node -p "require('./packages/$name/package.json').version").tgz"
  [ -f "$tarball" ] || fail "no tarball for @vigil/$name at $tarball"
  listing="$(tar -tzf "$tarball")"
  if grep -E '(^|/)test/|\.test\.|(^|/)vitest\.config|\.tsbuildinfo$|tsconfig' <<<"$listing"; then
    fail "@vigil/$name ships test or build files (above)"
  fi
  for required in package/dist/index.js package/dist/index.d.ts package/LICENSE; do
    grep -qx "$required" <<<"$listing" || fail "@vigil/$name lacks $required"
  done
  manifest="$(tar -xzOf "$tarball" package/package.json)"
  if grep -E '"workspace:|@vigil/source|"private"' <<<"$manifest"; then
    fail "@vigil/$name's packed package.json keeps a workspace range, the source condition or private (above)"
  fi
  step "  @vigil/$name: $(wc -l <<<"$listing") files, $(du -k "$tarball" | cut -f1) KB, no tests"
done

check_consumer() {
  local consumer="$1" app
  app="app-$(basename "$consumer")"
  step "consumer $consumer → $work/$app"
  [ -f "$consumer/package.json" ] || fail "$consumer has no package.json"
  mkdir -p "$work/$app"
  (cd "$consumer" && tar --exclude=node_modules --exclude=dist -cf - .) | (cd "$work/$app" && tar -xf -)
  # Every @vigil package at its tarball, directly and (overrides) wherever another one depends on it,
  # so npm never asks the registry for them; effect at the other patch.
  node - "$work/$app/package.json" "$work/tarballs" "$effect_version" "${packages[@]}" <<'NODE'
const fs = require("node:fs")
const [file, tarballs, effectVersion, ...names] = process.argv.slice(2)
const pkg = JSON.parse(fs.readFileSync(file, "utf8"))
pkg.dependencies = pkg.dependencies ?? {}
pkg.overrides = pkg.overrides ?? {}
for (const name of names) {
  const tarball = fs.readdirSync(tarballs).find((entry) => entry.startsWith(`vigil-${name}-`))
  pkg.dependencies[`@vigil/${name}`] = `file:${tarballs}/${tarball}`
  pkg.overrides[`@vigil/${name}`] = `$@vigil/${name}`
}
pkg.dependencies.effect = effectVersion
fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n")
NODE

  cd "$work/$app"
  step "npm install (plain npm, effect@$effect_version)"
  npm install --no-audit --no-fund --loglevel=error >"$work/$app-npm-install.log" 2>&1 || { cat "$work/$app-npm-install.log" >&2; fail "npm install"; }

  step "npm ls effect: one copy"
  copies="$(npm ls effect --all --parseable 2>/dev/null | sort -u)"
  if [ "$(grep -c . <<<"$copies")" != 1 ]; then
    npm ls effect --all >&2 || true
    fail "more than one copy of effect:"$'\n'"$copies"
  fi
  installed="$(node -p "require('effect/package.json').version")"
  [ "$installed" = "$effect_version" ] || fail "effect $installed installed, not $effect_version"
  npm ls effect --all | sed 's/^/  /'

  step "tsc (plain, the consumer's own typescript)"
  npx --no-install tsc -p . || fail "tsc"

  step "node"
  if node -e 'process.exit(require("./package.json").scripts?.test ? 0 : 1)'; then
    npm test --silent || fail "npm test"
  else
    node dist/main.js || fail "node dist/main.js"
  fi
  step "the installed vigil CLI (node_modules/.bin/vigil --help)"
  [ -e node_modules/.bin/vigil ] || fail "no vigil bin: @vigil/server's packed package.json has no bin (publishConfig.bin)"
  node_modules/.bin/vigil --help >/dev/null || fail "vigil --help"
  step "ok"
}

for consumer in "${consumers[@]}"; do
  (check_consumer "$repo/$consumer")
done
step "all ok"
