/**
 * esbuild's options for the dashboard's browser script (`client.ts` and the pure view modules it
 * imports): ES2022, one file, minified. `pnpm build` (scripts/build.mjs) bundles it with these into
 * `dist/dashboard/app.js`; a server run from source bundles it with the same on first request.
 * No import of esbuild here: it is a dev dependency, and an installed package never loads it.
 */
export const clientBundleOptions = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "none",
  logLevel: "silent"
} as const
