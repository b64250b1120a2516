import { Effect } from "effect"
import { spawn } from "node:child_process"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))

/**
 * `fixtures/instantProvider.ts` as a real process, for the scope: its base URL (as a provider's
 * `baseURL`). Killed when the scope closes; it also exits by itself should this process die.
 */
export const instantProvider = Effect.acquireRelease(
  Effect.async<{ readonly baseURL: string; readonly kill: () => void }, Error>((resume) => {
    // A fixture is a test file, run from source under tsx: `@vigil/source` resolves the packages to
    // their sources too, as in the tests themselves (no build needed).
    const child = spawn(process.execPath, ["--conditions=@vigil/source", "--import", "tsx", join(here, "fixtures/instantProvider.ts")], {
      cwd: resolve(here, "../../.."),
      stdio: ["pipe", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    let ready = false
    const kill = () => child.kill("SIGKILL")
    child.stdout!.on("data", (data: Buffer) => {
      out += data.toString()
      const line = out.split("\n").find((candidate) => candidate.startsWith("{"))
      if (line !== undefined && !ready) {
        ready = true
        const { port } = JSON.parse(line) as { readonly port: number }
        resume(Effect.succeed({ baseURL: `http://127.0.0.1:${port}/v1`, kill }))
      }
    })
    child.stderr!.on("data", (data: Buffer) => (err += data.toString()))
    child.once("exit", (code) => ready || resume(Effect.fail(new Error(`the instant provider exited with ${code}: ${out}${err}`))))
    return Effect.sync(kill)
  }),
  ({ kill }) => Effect.sync(kill)
).pipe(Effect.map(({ baseURL }) => baseURL))
