import { defineProject, mergeConfig } from "vitest/config"
import shared from "../../vitest.shared.js"

// The servers here are real processes running the built CLI: the global setup builds what is
// stale first, so a targeted `vitest run` never tests an old build.
export default mergeConfig(shared, defineProject({ test: { globalSetup: ["../../vitest.build.ts"] } }))
