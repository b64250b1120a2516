import { defineConfig } from "vitest/config"

// Shared by every package's vitest.config.ts: real processes and SQLite files make some tests
// slower than a unit test, so the timeouts are generous but bounded.
// Inside the workspace every `@vigil/*` import resolves to its TypeScript sources through the
// `@vigil/source` export condition (tsconfig.base.json's customConditions does the same for tsc),
// so a test never needs a build. Vite 7 reads the server conditions: vitest also passes them to
// its workers as `--conditions`. The processes a test spawns (`node packages/server/dist/vigil.mjs`)
// do not get it and run the build, as an installed package does.
const conditions = ["@vigil/source", "module", "node", "development|production"]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    include: ["test/**/*.test.ts"],
    sequence: { concurrent: false }
  }
})
