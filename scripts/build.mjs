// `pnpm build`: every package's src → dist with `tsc -b` (incremental: only what is stale is
// rebuilt, so `pnpm start` and the process tests' global setup can call it every time), then the
// dashboard's browser script bundled once into packages/server/dist/dashboard, so the built server
// serves it without esbuild (a dev dependency only). Plain Node, no tsx: it must be quick when
// nothing changed. Quiet on success: `pnpm vigil … --json` pipes stdout.
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
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
