import { CappedOutput, outputCapBytes } from "@vigil/domain"
import { Context, Effect, Layer } from "effect"
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises"
import { join, resolve } from "node:path"

export interface OutputFilesOptions {
  /** The folder of the whole-output files (the server puts it next to its database: `<db dir>/output`). */
  readonly dir: string
  /** At most this many files; the oldest go first. */
  readonly maxFiles?: number
  /** At most this many bytes in all, counting each file being written at its full `maxFileBytes`. */
  readonly maxTotalBytes?: number
  /** A file stops growing here, with a line saying so. */
  readonly maxFileBytes?: number
}

const defaultOutputFileBounds = {
  maxFiles: 100,
  maxTotalBytes: 256 * 1024 * 1024,
  maxFileBytes: 32 * 1024 * 1024
} as const

/**
 * What a running part holds of its output: the head and the tail (`CappedOutput`, 64 KiB), and,
 * once the output outgrows that, a file with every byte, so nothing is lost though memory stays
 * bounded. The file is opened only then: a part that prints little never makes one.
 */
export interface PartOutput {
  /** Hands on a chunk; done once it is written (a slow disk slows the tool, it does not fill memory). */
  readonly add: (chunk: string) => Effect.Effect<void>
  /** The kept output (naming the file when there is one), or null when nothing was printed. */
  readonly text: () => string | null
  /** The file with the whole output, once there is one. */
  readonly fullOutput: () => string | undefined
  /** Closes the file; later chunks (from a body left running) are kept in memory only. */
  readonly close: Effect.Effect<void>
}

export interface OutputFilesShape {
  /** The folder, or undefined when whole output is not kept (only head and tail are). */
  readonly dir: string | undefined
  readonly track: (partId: string) => PartOutput
}

/**
 * Where the whole output of a part that printed more than the cap goes. Off unless a layer names
 * a folder (an embedding app chooses where its data lives); the server's is `<db dir>/output`.
 * Bounded: at most `maxFiles` files and `maxTotalBytes` bytes (defaults 100 and 256 MiB, each file
 * at most 32 MiB); the oldest files are removed to make room for a new one.
 */
export class OutputFiles extends Context.Reference<OutputFiles>()("vigil/OutputFiles", {
  defaultValue: (): OutputFilesShape => ({ dir: undefined, track: () => memoryOnly() })
}) {
  static readonly layer = (options: OutputFilesOptions) => Layer.effect(OutputFiles, make(options))
}

const memoryOnly = (): PartOutput => {
  const capped = new CappedOutput(outputCapBytes)
  return {
    add: (chunk) => Effect.sync(() => capped.add(chunk)),
    text: () => (capped.totalBytes === 0 ? null : capped.text()),
    fullOutput: () => undefined,
    close: Effect.void
  }
}

interface Listed {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
}

const make = (options: OutputFilesOptions) =>
  Effect.gen(function*() {
    const dir = resolve(options.dir)
    const maxFiles = options.maxFiles ?? defaultOutputFileBounds.maxFiles
    const maxTotalBytes = options.maxTotalBytes ?? defaultOutputFileBounds.maxTotalBytes
    const maxFileBytes = Math.min(options.maxFileBytes ?? defaultOutputFileBounds.maxFileBytes, maxTotalBytes)
    yield* Effect.promise(() => mkdir(dir, { recursive: true }))
    /** Files being written: counted at their full bound, never removed. */
    const writing = new Set<string>()
    const opening = yield* Effect.makeSemaphore(1)

    const listed = Effect.promise(async (): Promise<Array<Listed>> => {
      const names = (await readdir(dir)).filter((name) => name.endsWith(".log"))
      const files = await Promise.all(names.map(async (name) => {
        const path = join(dir, name)
        const info = await stat(path).catch(() => undefined)
        return info === undefined ? undefined : { path, size: info.size, mtimeMs: info.mtimeMs }
      }))
      return files.filter((file): file is Listed => file !== undefined).sort((a, b) => a.mtimeMs - b.mtimeMs)
    })

    /** Removes the oldest finished files until one more fits; false when the files being written fill it all. */
    const makeRoom = Effect.gen(function*() {
      const done = (yield* listed).filter((file) => !writing.has(file.path))
      let doneBytes = done.reduce((sum, file) => sum + file.size, 0)
      const fits = () =>
        done.length + writing.size + 1 <= maxFiles && doneBytes + (writing.size + 1) * maxFileBytes <= maxTotalBytes
      const removed: Array<string> = []
      while (!fits() && done.length > 0) {
        const oldest = done.shift()!
        doneBytes -= oldest.size
        yield* Effect.promise(() => unlink(oldest.path).catch(() => undefined))
        removed.push(oldest.path)
      }
      if (removed.length > 0) {
        yield* Effect.logInfo("removed the oldest output files to stay within the bound").pipe(
          Effect.annotateLogs({ removed: removed.length, maxFiles, maxTotalBytes })
        )
      }
      return fits()
    })

    const openFor = (path: string): Effect.Effect<FileHandle | undefined> =>
      opening.withPermits(1)(Effect.gen(function*() {
        if (!(yield* makeRoom)) {
          yield* Effect.logWarning("output folder full of files being written: this part's whole output is not kept").pipe(
            Effect.annotateLogs({ path, writing: writing.size })
          )
          return undefined
        }
        const handle = yield* Effect.tryPromise(() => open(path, "w")).pipe(
          Effect.tapError((error) => Effect.logWarning("cannot open an output file", error.error)),
          Effect.orElseSucceed(() => undefined)
        )
        if (handle !== undefined) writing.add(path)
        return handle
      }))

    const track = (partId: string): PartOutput => {
      const capped = new CappedOutput(outputCapBytes)
      const path = join(dir, `${partId}.log`)
      const lock = Effect.unsafeMakeSemaphore(1)
      let file: FileHandle | undefined
      let written = 0
      let state: "memory" | "file" | "closed" = "memory"

      // Said once, by the first write that has bytes the file has no room for: also when an
      // earlier chunk filled it to the byte (a flood in 64 KiB pipe reads fills 32 MiB exactly).
      let stopped = false
      const write = (text: string) =>
        Effect.promise(async () => {
          if (file === undefined || stopped || text === "") return
          let bytes = Buffer.from(text, "utf8")
          const room = maxFileBytes - written
          const cut = bytes.length > room
          if (cut) bytes = bytes.subarray(0, room)
          if (bytes.length > 0) await file.write(bytes)
          written += bytes.length
          if (cut) {
            stopped = true
            await file.write(`\n… [the output file stops at ${maxFileBytes} bytes, its bound]\n`)
          }
        }).pipe(Effect.catchAllDefect((error) => Effect.logWarning("cannot write an output file", error)))

      const closeFile = Effect.suspend(() => {
        const handle = file
        file = undefined
        if (handle === undefined) return Effect.void
        return Effect.promise(() => handle.close().catch(() => undefined)).pipe(
          Effect.ensuring(Effect.sync(() => writing.delete(path)))
        )
      })

      return {
        add: (chunk) =>
          lock.withPermits(1)(Effect.gen(function*() {
            if (state === "memory" && capped.totalBytes + Buffer.byteLength(chunk) > outputCapBytes) {
              // Everything so far is still in memory (nothing was cut yet): it starts the file.
              file = yield* openFor(path)
              state = file === undefined ? "closed" : "file"
              if (file !== undefined) yield* write(capped.text())
            }
            capped.add(chunk)
            if (state === "file") yield* write(chunk)
          })),
        text: () => (capped.totalBytes === 0 ? null : capped.text({ fullOutput: written > 0 ? path : undefined })),
        fullOutput: () => (written > 0 ? path : undefined),
        close: lock.withPermits(1)(Effect.suspend(() => {
          state = "closed"
          return closeFile
        }))
      }
    }

    return { dir, track } satisfies OutputFilesShape
  })
