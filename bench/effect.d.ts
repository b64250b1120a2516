export * from "../packages/runtime/node_modules/effect/dist/dts/index.js"
