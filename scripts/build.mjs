// `pnpm build`: every package's src → dist with `tsc -b` (incremental: only what is stale is
// rebuilt, so `pnpm start` and the process tests' global setup can call it every time), then the
// dashboard's browser script bundled once into packages/server/dist/dashboard, so the built server
// serves it without esbuild (a dev dependency only). Plain Node, no tsx: it must be quick when
// nothing changed. Quiet on success: `pnpm vigil … --json` pipes stdout.
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import process from "node:process"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const server = join(root, "packages/server")

try {
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-b", join(root, "tsconfig.build.json")], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"]
  })
} catch {
  process.stderr.write("build: tsc -b failed (errors above)\n")
  process.exit(1)
}

const sources = join(server, "src/dashboard")
const out = join(server, "dist/dashboard")
const script = join(out, "app.js")
const stylesheet = join(out, "app.css")
const newest = (dir, names) => Math.max(...names.map((name) => statSync(join(dir, name)).mtimeMs))
const clientSources = ["client.ts", "Render.ts", "View.ts"]
if (!existsSync(script) || newest(sources, clientSources) > statSync(script).mtimeMs) {
  // The options live in Bundle.ts (compiled just above), shared with the server's source-mode fallback.
  const { clientBundleOptions } = await import(pathToFileURL(join(out, "Bundle.js")).href)
  const { build } = createRequire(join(server, "package.json"))("esbuild")
  mkdirSync(out, { recursive: true })
  const result = await build({ ...clientBundleOptions, entryPoints: [join(sources, "client.ts")], write: false })
  writeFileSync(script, result.outputFiles[0].text)
}
if (!existsSync(stylesheet) || readFileSync(join(sources, "dashboard.css"), "utf8") !== readFileSync(stylesheet, "utf8")) {
  copyFileSync(join(sources, "dashboard.css"), stylesheet)
}

// The CLI as one file, `packages/server/dist/vigil.mjs`: esbuild bundles dist/bin.js with what it
// imports, keeping of `effect` (and the rest) only what is used. Unbundled, every module that
// imports `effect` loads its whole index (~600 modules with fast-check): 440 ms before the first
// line of vigil runs, on an idle machine, so `vigil --help` took 620 ms and `/health` 1.8 s after
// start. Bundled: about 0.35 s and 0.75 s (`pnpm bench 10`). The library entries stay unbundled
// `dist/*.js`, so an app that embeds vigil shares its own copy of effect. Native and optional
// drivers stay outside (`better-sqlite3`, `pg`, resolved from node_modules at run time: both are
// dependencies of @vigil/server), and the dynamic imports (a command's modules, a provider's SDK)
// stay lazy inside the bundle. Rebuilt when any package's dist is newer than it.
const cli = join(server, "dist/vigil.mjs")
const newestIn = (dir) => {
  let newestMs = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newestMs = Math.max(newestMs, entry.isDirectory() ? newestIn(path) : statSync(path).mtimeMs)
  }
  return newestMs
}
const distFolders = readdirSync(join(root, "packages"))
  .map((name) => join(root, "packages", name, "dist"))
  .filter((dir) => existsSync(dir))
if (!existsSync(cli) || Math.max(...distFolders.map(newestIn).filter((ms) => ms > 0)) > statSync(cli).mtimeMs) {
  const { build } = createRequire(join(server, "package.json"))("esbuild")
  await build({
    entryPoints: [join(server, "dist/bin.js")],
    outfile: cli,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["better-sqlite3", "pg", "pg-native", "bufferutil", "utf-8-validate", "esbuild"],
    // The CommonJS modules inside (ws, undici's helpers) call require: give the ES module one.
    banner: { js: "import { createRequire as __vigilRequire } from \"node:module\"; const require = __vigilRequire(import.meta.url);" },
    logLevel: "warning"
  })
}
