import type { AnyTool, ProtectedPaths, ToolDefinition } from "@vigil/tools"
import { fileToolThreads, makeBashTool, makeReadTool, makeWriteTool, ThreadBudget } from "@vigil/tools"
import { Context, Effect, Layer } from "effect"
import { Settings } from "../Settings.js"

/** What the server hands its tools of its own state: what they must not reach or pass on. */
export interface ToolsOptions {
  /** The database, its -wal/-shm, the config file, the data folder: out of reach of every tool. */
  readonly protect?: ProtectedPaths
  /** Values no shell inherits whatever their variable is called (the configured provider keys). */
  readonly secretValues?: ReadonlyArray<string>
  /** The folder this tool works in (file tools are confined to it, shells start in it); else the composition's root. */
  readonly root?: string
}

/**
 * The folder tools work in when a tool names none of its own (`ToolContext.root`): the
 * composition's `root` option. Unset, the process's working directory at the call.
 */
export class ToolRoot extends Context.Reference<ToolRoot>()("vigil/ToolRoot", {
  defaultValue: (): string | undefined => undefined
}) {
  static readonly layer = (root: string | undefined) => Layer.succeed(ToolRoot, root)
}

/**
 * Where the contributions of `Tools.add` go while the tools layer is built. A mutable list on
 * purpose, as `HttpApiBuilder.group` adds its handlers to the API's router: each contribution is a
 * layer of its own, merged by the app, and `Tools.collect` reads the list once they are all built.
 */
export class ToolRegistry extends Context.Tag("vigil/ToolRegistry")<ToolRegistry, {
  readonly add: (tool: AnyTool) => Effect.Effect<void>
  readonly all: Effect.Effect<ReadonlyArray<AnyTool>>
}>() {
  static readonly layer = Layer.sync(ToolRegistry, () => {
    const tools = new Map<string, AnyTool>()
    return {
      add: (tool) =>
        Effect.suspend(() =>
          tools.has(tool.name)
            ? Effect.dieMessage(`the tool "${tool.name}" is contributed twice: each tool name must be unique`)
            : Effect.sync(() => void tools.set(tool.name, tool))
        ),
      // By name: the merged layers are built concurrently, so their order of arrival is not an order.
      all: Effect.sync(() => [...tools.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)))
    }
  })
}

/**
 * The names of the tools the supervision layer treats apart from leaves, read from their
 * definitions (`waitsOn`, `ownsProcesses`), never from their names: a new tool needs no edit
 * elsewhere. The watchdog judges a part of `waitingOnChild` by its child's subtree; a recovery
 * looks for the processes of a part of `owningProcesses` by its marker.
 */
export interface ToolKinds {
  readonly waitingOnChild: ReadonlyArray<string>
  readonly owningProcesses: ReadonlyArray<string>
}

export const toolKinds = (tools: Iterable<AnyTool>): ToolKinds => {
  const waitingOnChild: Array<string> = []
  const owningProcesses: Array<string> = []
  for (const tool of tools) {
    if (tool.waitsOn === "child-session") waitingOnChild.push(tool.name)
    if (tool.ownsProcesses === true) owningProcesses.push(tool.name)
  }
  return { waitingOnChild, owningProcesses }
}

/** A tool that needs services, made one that needs none: it runs in the context it was contributed from. */
const withContext = <I, R>(tool: ToolDefinition<I, R>, context: Context.Context<R>, root: string | undefined): AnyTool => ({
  ...tool,
  run: (input: I, toolContext) =>
    Effect.provide(tool.run(input, root === undefined ? toolContext : { ...toolContext, root }), context)
})

/** One budget of file threads for the builtin `read` and `write`, however they are contributed. */
const fileThreads = new ThreadBudget(fileToolThreads)

/**
 * The leaf tools sessions offer (`task` and `ask` are added by the session service, which they
 * need). A port, so an embedding server or a test adds its own: contribute each with `Tools.add`
 * (or the builtins `Tools.bash`, `Tools.read`, `Tools.write`, `Tools.builtin`), merge the layers,
 * and hand them to the composition (`Vigil.layer({ tools })`), which `collect`s them. The shell's
 * hard stop uses the configured `kill_grace`, its environment `shell_env`.
 */
export class Tools extends Context.Tag("vigil/Tools")<Tools, ReadonlyArray<AnyTool>>() {
  /**
   * Contributes `tool`. A tool may need services (`R`): they are taken from the context this layer
   * is built in, once, so the app provides them as it provides anything else.
   */
  static readonly add = <I, R>(tool: ToolDefinition<I, R>, options: { readonly root?: string } = {}) =>
    Layer.effectDiscard(
      Effect.gen(function*() {
        const registry = yield* ToolRegistry
        const context = yield* Effect.context<R>()
        yield* registry.add(withContext(tool, context, options.root))
      })
    )

  /** Several tools of no requirements at once. */
  static readonly addAll = (tools: ReadonlyArray<AnyTool>, options: { readonly root?: string } = {}) =>
    Layer.mergeAll(Layer.empty, ...tools.map((tool) => Tools.add(tool, options)))

  /** `bash`: `/bin/sh -c` in its own process group, stopped as a tree (kill grace and environment from the settings). */
  static readonly bash = (options: ToolsOptions = {}) =>
    Layer.unwrapEffect(Effect.map(Settings, (settings) =>
      Tools.add(
        makeBashTool({
          killGrace: settings.killGrace,
          environment: { policy: settings.shellEnv, secretValues: options.secretValues ?? [] },
          ...(options.protect ? { protect: options.protect } : {})
        }),
        rootOption(options)
      )))

  /** `read`: a file inside the root, refused when it is protected. */
  static readonly read = (options: ToolsOptions = {}) =>
    Tools.add(makeReadTool({ threads: fileThreads, ...protectOption(options) }), rootOption(options))

  /** `write`: a file inside the root, refused when it is protected. */
  static readonly write = (options: ToolsOptions = {}) =>
    Tools.add(makeWriteTool({ threads: fileThreads, ...protectOption(options) }), rootOption(options))

  /** `bash`, `read` and `write`, the tools vigil's own server offers. */
  static readonly builtin = (options: ToolsOptions = {}) =>
    Layer.mergeAll(Tools.bash(options), Tools.read(options), Tools.write(options))

  /**
   * The tools of `contributions` (layers of `Tools.add`, merged), as the session service reads
   * them: each contribution is built, on a registry of its own, before the list is read.
   */
  static readonly collect = <E, R>(contributions: Layer.Layer<never, E, R>) =>
    Layer.effect(Tools, Effect.flatMap(ToolRegistry, (registry) => registry.all)).pipe(
      Layer.provide(contributions),
      Layer.provide(Layer.fresh(ToolRegistry.layer))
    )
}

const rootOption = (options: ToolsOptions) => (options.root === undefined ? {} : { root: options.root })
const protectOption = (options: ToolsOptions) => (options.protect ? { protect: options.protect } : {})
