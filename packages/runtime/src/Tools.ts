import type { AnyTool } from "@vigil/tools"
import { builtinTools } from "@vigil/tools"
import { Context, Layer } from "effect"

/**
 * The leaf tools sessions offer (`task` and `ask` are added by the session service, which they
 * need). A port, so an embedding server or a test adds its own.
 */
export class Tools extends Context.Tag("vigil/Tools")<Tools, ReadonlyArray<AnyTool>>() {
  static readonly Builtin = Layer.succeed(Tools, builtinTools)
  static readonly with = (extra: ReadonlyArray<AnyTool>) => Layer.succeed(Tools, [...builtinTools, ...extra])
}
