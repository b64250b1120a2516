import { assert, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "vitest"

/**
 * A small tmpfs in a temp folder: a real filesystem that fills up, as a full disk does. Needs root
 * (and mount); elsewhere `undefined`, and the caller's suite is skipped, except in CI as root, where
 * a test that fails says the full-disk test did not run. Unmounted after the file's tests.
 */
export const mountFullDiskFolder = (): string | undefined => {
  const mountPoint = (() => {
    if (process.getuid?.() !== 0) return undefined
    const dir = mkdtempSync(join(tmpdir(), "vigil-full-"))
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir], { stdio: "ignore" })
      return dir
    } catch {
      rmSync(dir, { recursive: true, force: true })
      return undefined
    }
  })()
  afterAll(() => {
    if (mountPoint === undefined) return
    try {
      execFileSync("umount", ["-l", mountPoint], { stdio: "ignore" })
    } finally {
      rmSync(mountPoint, { recursive: true, force: true })
    }
  })
  const ci = (process.env["CI"] ?? "") !== "" && process.env["CI"] !== "false"
  it.runIf(ci && process.getuid?.() === 0 && mountPoint === undefined)("in CI as root a tmpfs can be mounted for the full-disk test", () => {
    assert.fail("mount -t tmpfs failed as root with CI=true: the full-disk test did not run")
  })
  return mountPoint
}

/** Writes a file until the filesystem refuses more (ENOSPC). */
export const fillDisk = (file: string) => {
  const fd = openSync(file, "w")
  const block = Buffer.alloc(64 * 1024, 1)
  try {
    for (;;) writeSync(fd, block)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error
  } finally {
    closeSync(fd)
  }
}
