// `@effect/sql` as the store loads it (the root does not depend on it), so a figure can run
// statements on the very client the runtime's store uses. Types: sql.d.ts.
export * from "../packages/store/node_modules/@effect/sql/dist/esm/index.js"
