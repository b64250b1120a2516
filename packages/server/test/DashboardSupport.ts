import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Browser } from "playwright-core"
import { chromium } from "playwright-core"

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
export const launchBrowser = async (
  extraArgs: ReadonlyArray<string> = []
): Promise<{ readonly browser: Browser; readonly close: () => Promise<void> }> => {
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
      `--disk-cache-dir=${join(profile, "cache")}`,
      ...extraArgs
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

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
