export * from "../packages/store/node_modules/@effect/sql/dist/dts/index.js"
