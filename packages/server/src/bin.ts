#!/usr/bin/env node
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Logger } from "effect"
import { main } from "./Cli.js"

// Logs go to stderr, so stdout carries only what a command prints (the URL, a report, a table).
// Failures are reported once by `main` (a bad config is one line), not again by runMain.
main(process.argv).pipe(
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.prettyLogger({ stderr: true }))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
