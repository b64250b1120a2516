import type { AnyTool } from "@vigil/tools"
import { makeBashTool, ReadTool, WriteTool } from "@vigil/tools"
import { Context, Effect, Layer } from "effect"
import { Settings } from "./Settings.js"

/**
 * The leaf tools sessions offer (`task` and `ask` are added by the session service, which they
 * need). A port, so an embedding server or a test adds its own. The shell's hard stop uses the
 * configured `kill_grace`.
 */
export class Tools extends Context.Tag("vigil/Tools")<Tools, ReadonlyArray<AnyTool>>() {
  static readonly with = (extra: ReadonlyArray<AnyTool>) =>
    Layer.effect(
      Tools,
      Effect.map(Settings, (settings): ReadonlyArray<AnyTool> => [
        makeBashTool({ killGrace: settings.killGrace }),
        ReadTool,
        WriteTool,
        ...extra
      ])
    )
  static readonly Builtin = Tools.with([])
}
