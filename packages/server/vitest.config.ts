import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// Most tests here start real `vigil` processes under tsx, several per test: on a loaded 2-core
// machine one start takes 5–10 s, so a 30 s bound failed tests that were only slow.
export default mergeConfig(shared, defineProject({ test: { testTimeout: 120_000, hookTimeout: 120_000 } }))
