import type { AnyTool, ProtectedPaths } from "@vigil/tools"
import { makeBashTool, makeFileTools } from "@vigil/tools"
import { Context, Effect, Layer } from "effect"
import { Settings } from "./Settings.js"

/** What the server hands its tools of its own state: what they must not reach or pass on. */
export interface ToolsOptions {
  /** The database, its -wal/-shm, the config file, the data folder: out of reach of every tool. */
  readonly protect?: ProtectedPaths
  /** Values no shell inherits whatever their variable is called (the configured provider keys). */
  readonly secretValues?: ReadonlyArray<string>
}

/**
 * The leaf tools sessions offer (`task` and `ask` are added by the session service, which they
 * need). A port, so an embedding server or a test adds its own. The shell's hard stop uses the
 * configured `kill_grace`, its environment `shell_env`.
 */
export class Tools extends Context.Tag("vigil/Tools")<Tools, ReadonlyArray<AnyTool>>() {
  static readonly with = (extra: ReadonlyArray<AnyTool>, options: ToolsOptions = {}) =>
    Layer.effect(
      Tools,
      Effect.map(Settings, (settings): ReadonlyArray<AnyTool> => {
        const files = makeFileTools(options.protect ? { protect: options.protect } : {})
        return [
          makeBashTool({
            killGrace: settings.killGrace,
            environment: { policy: settings.shellEnv, secretValues: options.secretValues ?? [] },
            ...(options.protect ? { protect: options.protect } : {})
          }),
          files.read,
          files.write,
          ...extra
        ]
      })
    )
  static readonly Builtin = Tools.with([])
}
