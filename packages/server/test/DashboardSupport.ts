import { HttpServer } from "@effect/platform"
import type { Redacted } from "effect"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Option, Scope } from "effect"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Browser } from "playwright-core"
import { chromium } from "playwright-core"
import { ServerLive, urlOf } from "../src/Server.js"
import type { RunningServer } from "./support.js"
import { testSettings } from "./support.js"

/** Debian's chromium unless `VIGIL_CHROMIUM` names another (CI installs it and sets this). */
export const chromiumPath = process.env["VIGIL_CHROMIUM"] ?? "/usr/bin/chromium"
export const chromiumAvailable = existsSync(chromiumPath)
/** In CI a missing browser is a failure: a browser test that silently skipped would prove nothing. */
export const inCi = ["true", "1", "TRUE", "True"].includes(process.env["CI"] ?? "")

const here = dirname(fileURLToPath(import.meta.url))
/** Screenshots and measurements of a run (gitignored). */
export const outputDir = resolve(here, "../test-output")
export const docsDir = resolve(here, "../../../docs")

export const ensureOutputDir = () => mkdirSync(outputDir, { recursive: true })

/**
 * Headless chromium with a fresh profile. The machine has no network: without these flags
 * chromium waits on the network (QUIC, component updates, sync) before it is usable.
 */
export const launchBrowser = async (): Promise<{ readonly browser: Browser; readonly close: () => Promise<void> }> => {
  const profile = mkdtempSync(join(tmpdir(), "vigil-chromium-"))
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--disk-cache-dir=${join(profile, "cache")}`
    ],
    env: { ...process.env, HOME: profile, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile },
    timeout: 30_000
  })
  return {
    browser,
    close: async () => {
      await browser.close().catch(() => undefined)
      rmSync(profile, { recursive: true, force: true })
    }
  }
}

/** The real server layer on a given port (0: the OS picks), so a test can restart it on the same one. */
export const serverOn = async (options: {
  readonly db: string
  readonly port: number
  readonly password?: Redacted.Redacted<string>
}): Promise<RunningServer & { readonly port: number }> => {
  const scope = Effect.runSync(Scope.make())
  const layer = ServerLive({
    port: options.port,
    host: "127.0.0.1",
    db: options.db,
    settings: Effect.succeed(testSettings),
    password: Option.fromNullable(options.password),
    announce: false
  }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  const server = Context.get(context, HttpServer.HttpServer)
  const address = server.address
  return {
    url: urlOf(address),
    db: options.db,
    port: address._tag === "TcpAddress" ? address.port : 0,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
