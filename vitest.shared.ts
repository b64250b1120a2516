import { defineConfig } from "vitest/config"

// Shared by every package's vitest.config.ts: real processes and SQLite files make some tests
// slower than a unit test, so the timeouts are generous but bounded.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    include: ["test/**/*.test.ts"],
    sequence: { concurrent: false }
  }
})
