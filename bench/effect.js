// `effect` does not resolve from bench/ (the workspace root does not depend on it). This takes it
// from the runtime package's own dependency tree: the very files the packages' sources load, so
// the benchmark and the code it measures share one Effect instance. Types: effect.d.ts.
export * from "../packages/runtime/node_modules/effect/dist/esm/index.js"
