import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// Most tests here start real `vigil` processes (the built CLI under node: the global setup builds
// what is stale first), several per test. Under node a start takes well under a second on an idle
// machine, but a loaded 2-core CI machine stretches it several times over (under tsx it took
// 5–10 s, and a 30 s bound failed tests that were only slow): the bound stays generous.
export default mergeConfig(
  shared,
  defineProject({ test: { testTimeout: 120_000, hookTimeout: 120_000, globalSetup: ["../../vitest.build.ts"] } })
)
