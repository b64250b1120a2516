import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Data, Effect } from "effect"
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { clientBundleOptions } from "./Bundle.js"

/**
 * The live dashboard at `/`: one HTML page, its stylesheet and its script, all served from this
 * package (no CDN: it works offline). The script is `client.ts` and the pure view modules it
 * imports. Built (`dist/dashboard`), `pnpm build` bundled it into `app.js` beside this module and
 * copied the stylesheet to `app.css`: the installed package needs no esbuild. Run from source
 * (tests, tsx) there is no `app.js`, and esbuild (a dev dependency) bundles it once, on the first
 * request for it, and keeps it: starting a server that nobody opens the page of costs nothing.
 */

const here = dirname(fileURLToPath(import.meta.url))
/**
 * This module runs from `src/dashboard` or `dist/dashboard`, or inlined into the CLI's bundle
 * (`dist/vigil.mjs`, one level up): the build's files sit beside it or in `dashboard/` under it,
 * the sources two (or one) levels under the package root.
 */
const built = [here, join(here, "dashboard")].find((dir) => existsSync(join(dir, "app.js")))
const sources = [join(here, "../../src/dashboard"), join(here, "../src/dashboard")].find((dir) =>
  existsSync(join(dir, "client.ts"))
) ?? join(here, "../../src/dashboard")
const prebuilt = built === undefined ? undefined : join(built, "app.js")
const clientEntry = join(sources, "client.ts")
export const stylesheet = built !== undefined && existsSync(join(built, "app.css")) ? join(built, "app.css") : join(sources, "dashboard.css")

export class DashboardBuildError extends Data.TaggedError("DashboardBuildError")<{ readonly cause: unknown }> {}

/** The browser script: the build's bundle when there is one, else bundled from source now. */
const bundleClient = Effect.tryPromise({
  try: async () => {
    if (prebuilt !== undefined) return readFile(prebuilt, "utf8")
    const { build } = await import("esbuild")
    const result = await build({ ...clientBundleOptions, entryPoints: [clientEntry], write: false })
    return result.outputFiles[0]!.text
  },
  catch: (cause) => new DashboardBuildError({ cause })
})

export const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vigil</title>
<link rel="stylesheet" href="/dashboard/app.css">
</head>
<body>
<header>
  <h1>vigil</h1>
  <span id="connection" class="connecting">connecting</span>
  <span id="counts"></span>
  <span id="filter" hidden>session <code id="filter-id"></code> <button id="filter-clear" type="button">× all sessions</button></span>
</header>
<div id="flash" hidden></div>
<main>
  <section class="p-sessions"><h2>Sessions</h2><div class="scroll"><table id="sessions"></table></div></section>
  <section class="p-parts"><h2>Running parts <small>click a part for its live output</small></h2><div class="scroll"><table id="parts"></table></div>
    <div id="tail" hidden></div></section>
  <section class="p-events"><h2>Supervision log <small>newest first · click a session to filter</small></h2><div class="scroll"><table id="events"></table></div></section>
  <section class="p-instances"><h2>Instances</h2><div class="scroll"><table id="instances"></table></div>
    <h3>Last startup recovery</h3><div id="recovery"></div></section>
</main>
<script type="module" src="/dashboard/app.js"></script>
</body>
</html>
`

const asset = (body: string, contentType: string) =>
  HttpServerResponse.text(body, { contentType, headers: { "cache-control": "no-cache" } })

/** `/`, `/dashboard/app.js`, `/dashboard/app.css` on the API's router (so the server's auth covers them). */
export const DashboardLive = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const script = yield* Effect.cached(bundleClient)
    const css = yield* Effect.cached(Effect.tryPromise({
      try: () => readFile(stylesheet, "utf8"),
      catch: (cause) => new DashboardBuildError({ cause })
    }))
    const served = (body: Effect.Effect<string, DashboardBuildError>, contentType: string) =>
      body.pipe(
        Effect.map((text) => asset(text, contentType)),
        Effect.catchAll((error) =>
          Effect.logError("dashboard asset unavailable", error.cause).pipe(
            Effect.as(HttpServerResponse.text(`dashboard unavailable: ${String(error.cause)}`, { status: 500 }))
          )
        )
      )
    yield* router.get("/", Effect.succeed(asset(page, "text/html; charset=utf-8")))
    yield* router.get("/dashboard/app.js", served(script, "text/javascript; charset=utf-8"))
    yield* router.get("/dashboard/app.css", served(css, "text/css; charset=utf-8"))
  })
)
