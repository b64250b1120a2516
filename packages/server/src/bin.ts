#!/usr/bin/env node
// Modules, not the package index: `@effect/platform-node`'s index loads every module it has,
// with @effect/cluster, @effect/rpc and @effect/sql behind them, which was a third of the time
// `vigil --help` took. (The other imports of @effect/platform-node here and in provider do the same.)
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Logger } from "effect"
import { main } from "./Cli.js"

// Logs go to stderr, so stdout carries only what a command prints (the URL, a report, a table).
// Failures are reported once by `main` (a bad config is one line), not again by runMain.
main(process.argv).pipe(
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
