export * from "./Api.js"
export * from "./Cli.js"
export * from "./Server.js"
