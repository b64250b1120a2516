import { BashTool } from "./Bash.js"
import { ReadTool, WriteTool } from "./Files.js"
import type { AnyTool } from "./Tool.js"

export * from "./Bash.js"
export * from "./CappedOutput.js"
export * as Containment from "./Containment.js"
export * from "./FileAccess.js"
export * from "./Files.js"
export * as HardStop from "./HardStop.js"
export * from "./LiveClock.js"
export * as ProcessTable from "./ProcessTable.js"
export * from "./Shell.js"
export * from "./ShellEnvironment.js"
export * from "./ThreadBudget.js"
export * from "./Tool.js"

/** The leaf tools every session has; `task` and `ask` come from the session service. */
export const builtinTools: ReadonlyArray<AnyTool> = [BashTool, ReadTool, WriteTool]
