/**
 * The supervision layer in one constructor, named as the `@effect/*` packages name layers:
 *
 * ```ts
 * import { Vigil, Tools } from "@vigil/runtime"
 * const Supervision = Vigil.layer({
 *   settings: { toolTimeout: Option.some(Duration.minutes(5)) },
 *   tools: Layer.mergeAll(Tools.bash(), Tools.read(), Tools.add(myTool)),
 *   models: MyModels, // a Layer of LanguageModels; the script model when omitted
 *   root: "/srv/work",
 *   outputDir: ".data/output"
 * }).pipe(Layer.provide(MySqlClient))
 * ```
 *
 * Inside, each step is provided to the next (never ordered by position in a merge): settings →
 * store (migrated) → OS port, models, output files, tool root → tools → the lease → startup
 * recovery (`RecoveryComplete`) → tool runner → sessions → watchdog and idle monitor.
 */
import { SqlClient } from "@effect/sql"
import type { Settings as SettingsShape } from "@vigil/domain"
import type { Store } from "@vigil/store"
import { SqlStoreLive } from "@vigil/store"
import { Effect, Layer } from "effect"
import { Events } from "./events/Events.js"
import { InstanceLease, thisInstance } from "./recovery/InstanceLease.js"
import { InstanceLocks } from "./recovery/InstanceLocks.js"
import type { LanguageModels } from "./agent/LanguageModel.js"
import { Liveness } from "./recovery/Liveness.js"
import { OutputFiles } from "./supervision/OutputFiles.js"
import { ProcessControl } from "./supervision/ProcessControl.js"
import { Recovery } from "./recovery/Recovery.js"
import { SupervisionLive } from "./SupervisionLayer.js"
import { ScriptModelLive } from "./agent/ScriptModel.js"
import { Settings } from "./Settings.js"
import type { ToolRegistry } from "./agent/Tools.js"
import { ToolRoot, Tools } from "./agent/Tools.js"


export interface Options<ET = never, RT = never, EM = never, RM = never> {
  /** The supervision settings; what is left out keeps its default (`defaultSettings`). */
  readonly settings?: Partial<SettingsShape>
  /**
   * The leaf tools, as merged layers of `Tools.add` (and the builtins `Tools.bash`, `Tools.read`,
   * `Tools.write`, `Tools.builtin`); `Tools.builtin()` when omitted. A tool's requirements (`RT`)
   * are the composition's: the app provides them. `task` and `ask` are always there.
   */
  readonly tools?: Layer.Layer<never, ET, RT>
  /** The models a prompt can name; the offline `script` model alone when omitted. */
  readonly models?: Layer.Layer<LanguageModels, EM, RM>
  /** The folder tools work in (a tool contributed with a root of its own keeps it); the process's cwd when omitted. */
  readonly root?: string
  /** Where the whole output of a part that printed more than the cap is kept; only head and tail when omitted. */
  readonly outputDir?: string
  /** The OS port (pids, process groups, signals); the live one when omitted. */
  readonly processes?: Layer.Layer<ProcessControl>
  /** The prefix of vigil's tables on the app's database (`vigil_` when omitted): `vigil_sessions` beside the app's `sessions`. */
  readonly tablePrefix?: string
}

/**
 * The whole supervision layer on the repositories of `store` (a store of the server's choice, or a
 * test's flaky one); `layer` is this on the app's own SqlClient.
 */
export const layerWithStore = <ES, RS, ET = never, RT = never, EM = never, RM = never>(
  store: Layer.Layer<Store, ES, RS>,
  options: Options<ET, RT, EM, RM> = {}
) => {
  const tools: Layer.Layer<never, ET, RT | Settings | ToolRegistry> = options.tools ?? Tools.builtin()
  const models: Layer.Layer<LanguageModels, EM, RM> = options.models ?? ScriptModelLive
  return SupervisionLive.pipe(
    Layer.provideMerge(Tools.collect(tools)),
    Layer.provideMerge(Layer.mergeAll(
      options.processes ?? ProcessControl.Live,
      models,
      options.outputDir === undefined ? Layer.empty : OutputFiles.layer({ dir: options.outputDir }),
      ToolRoot.layer(options.root)
    )),
    Layer.provideMerge(store),
    Layer.provideMerge(Settings.layer(options.settings))
  )
}

/**
 * vigil's tables, migrated, on the SqlClient the app provides, with or without name transforms
 * (passed on: the instance locks use it too). A migration that fails is a typed
 * `StoreMigrationFailed` of the layer.
 */
const storeOnClient = (prefix: string | undefined) =>
  SqlStoreLive(prefix === undefined ? {} : { prefix }).pipe(
    Layer.provideMerge(Layer.effect(SqlClient.SqlClient, SqlClient.SqlClient))
  )

/**
 * The whole supervision layer on the app's own `SqlClient.SqlClient` (SQLite or PostgreSQL):
 * vigil migrates its tables on it, and startup recovery has run once the layer is built.
 */
export const layer = <ET = never, RT = never, EM = never, RM = never>(options: Options<ET, RT, EM, RM> = {}) =>
  layerWithStore(storeOnClient(options.tablePrefix), options)

/**
 * For tests: an in-memory SQLite database (or `file`, for a test that restarts on it), the OS port
 * faked (no real pids are signalled), the script model unless `models` says otherwise.
 */
export const layerTest = <ET = never, RT = never, EM = never, RM = never>(
  options: Options<ET, RT, EM, RM> & { readonly file?: string } = {}
) => {
  const { file, ...rest } = options
  // Imported when used: an app on PostgreSQL that never calls it never loads the SQLite driver.
  const store = Layer.unwrapEffect(
    Effect.promise(() => import("@vigil/store/sqlite")).pipe(
      Effect.map(({ SqliteStoreLive }) => Layer.orDie(SqliteStoreLive(file ?? ":memory:", rest.tablePrefix === undefined ? {} : { prefix: rest.tablePrefix })))
    )
  )
  return layerWithStore(store, { processes: ProcessControl.test(), ...rest })
}

/**
 * The identity a dry run acts as: never registered, so the database does not learn of it. Recovery
 * only needs an id that owns nothing (this process is never dead to itself).
 */
const UnregisteredLease = Layer.effect(
  InstanceLease,
  Effect.map(thisInstance, (instance) => InstanceLease.make({ id: instance.id, instance }))
)

/**
 * One instance without sessions: the lease (and its lock), liveness and the recovery of dead
 * owners, on `store`. What `vigil recover` runs (a dry run as an unregistered instance that writes
 * nothing), and what a test builds several of to play several instances on one database. `tools`
 * are the server's (`Tools.builtin()` when omitted): recovery reads from them which tools own
 * processes.
 */
export const layerRecovery = <ES, RS, ET = never, RT = never>(
  store: Layer.Layer<Store, ES, RS>,
  options: {
    readonly settings?: Partial<SettingsShape>
    readonly processes?: Layer.Layer<ProcessControl>
    readonly tools?: Layer.Layer<never, ET, RT>
    readonly dryRun?: boolean
  } = {}
) =>
  Recovery.Default.pipe(
    Layer.provideMerge(Liveness.Default),
    Layer.provideMerge(Events.Default),
    Layer.provideMerge(Tools.collect<ET, RT | Settings | ToolRegistry>(options.tools ?? Tools.builtin())),
    Layer.provideMerge(options.dryRun === true ? UnregisteredLease : InstanceLease.Default),
    Layer.provideMerge(InstanceLocks.Live),
    Layer.provideMerge(options.processes ?? ProcessControl.Live),
    Layer.provideMerge(store),
    Layer.provideMerge(Settings.layer(options.settings))
  )
