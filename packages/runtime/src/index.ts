/**
 * `@vigil/runtime`: the supervision layer. The folders are the layers of the design
 * (docs/design.md#folder-layout):
 * - `supervision/`: the core: the tool runner, the watchdog, the idle monitor, process control,
 *   held writes and activity;
 * - `recovery/`: who is alive (lease, locks, liveness) and what startup recovery does for the dead;
 * - `agent/`: sessions, the agent loop and its ports (language models, tools);
 * - `events/`: the live bus and the event log;
 * - `scheduler/`: the fair scheduler the server runs its fibers on;
 * - `Vigil.ts` composes them (`SupervisionLayer.ts` is the graph), `Settings.ts` configures them.
 */
export * as Metrics from "./Metrics.js"
export * from "./Settings.js"
export * as Vigil from "./Vigil.js"

export * from "./supervision/PendingWrites.js"
export * from "./supervision/ProcessControl.js"
export * from "./supervision/ToolRunner.js"
export * from "./supervision/Watchdog.js"

export * from "./recovery/InstanceLease.js"
export * from "./recovery/Liveness.js"
export * from "./recovery/Recovery.js"
export * from "./recovery/StartupRecovery.js"

export * from "./agent/LanguageModel.js"
export * from "./agent/ScriptModel.js"
export * from "./agent/SessionService.js"
export * from "./agent/Tools.js"

export * from "./events/Events.js"

export * from "./scheduler/FairScheduler.js"

// Services the composition builds and provides but an embedder does not call: their types are
// named here so an app's inferred layer types stay nameable (declaration emit), nothing more.
export type { Activity } from "./supervision/Activity.js"
export type { IdleMonitor } from "./supervision/IdleMonitor.js"
export type { InstanceLocks } from "./recovery/InstanceLocks.js"
