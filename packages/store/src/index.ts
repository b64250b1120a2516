/**
 * `@vigil/store`: the driver-free core (repositories, migrations, the store on the app's own
 * SqlClient). vigil's own clients are `@vigil/store/sqlite` and `@vigil/store/pg`.
 */
export * from "./EventLog.js"
export * from "./InstanceRepo.js"
export * from "./Migrations.js"
export * from "./PartRepo.js"
export * from "./SessionRepo.js"
export * from "./SqliteAutocommit.js"
export * as SqlitePragmas from "./SqlitePragmas.js"
export * from "./Store.js"
export * from "./Tables.js"
