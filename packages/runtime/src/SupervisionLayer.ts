import { Layer } from "effect"
import { Activity } from "./supervision/Activity.js"
import { Events } from "./events/Events.js"
import { IdleMonitor, IdleMonitorLoop } from "./supervision/IdleMonitor.js"
import { InstanceLease } from "./recovery/InstanceLease.js"
import { Liveness } from "./recovery/Liveness.js"
import { PendingWrites } from "./supervision/PendingWrites.js"
import { Recovery } from "./recovery/Recovery.js"
import { SessionService } from "./agent/SessionService.js"
import { StartupRecoveryLive } from "./recovery/StartupRecovery.js"
import { ToolRunner } from "./supervision/ToolRunner.js"
import { Watchdog, WatchdogLoop } from "./supervision/Watchdog.js"

/**
 * The supervision layer as docs/design.md#the-layer-graph draws it, each step provided to the next:
 * lease → startup recovery (provides RecoveryComplete) → tool runner → sessions → watchdog and
 * idle monitor loops. It needs the settings, the store, the OS port and the language models.
 */
export const SupervisionLive = Layer.mergeAll(WatchdogLoop, IdleMonitorLoop).pipe(
  Layer.provideMerge(Layer.mergeAll(Watchdog.Default, IdleMonitor.Default)),
  Layer.provideMerge(SessionService.Default),
  Layer.provideMerge(ToolRunner.Default),
  Layer.provideMerge(PendingWrites.Default),
  Layer.provideMerge(Activity.Default),
  Layer.provideMerge(StartupRecoveryLive),
  Layer.provideMerge(Recovery.Default),
  Layer.provideMerge(Liveness.Default),
  Layer.provideMerge(InstanceLease.Default),
  Layer.provideMerge(Events.Default)
)
