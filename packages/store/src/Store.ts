import { Layer } from "effect"
import { EventLog } from "./EventLog.js"
import { InstanceRepo } from "./InstanceRepo.js"
import { MigrationsLive } from "./Migrations.js"
import { PartRepo } from "./PartRepo.js"
import { SessionRepo } from "./SessionRepo.js"
import { SqliteLive } from "./Sqlite.js"

export const RepositoriesLive = Layer.mergeAll(
  SessionRepo.Default,
  PartRepo.Default,
  InstanceRepo.Default,
  EventLog.Default
)

/**
 * The whole store on one SQLite file: the repositories can only be built after the migrations
 * ran (a provide, not an order in a merge), and the SqlClient stays visible for what needs it.
 */
export const SqliteStoreLive = (filename: string) =>
  RepositoriesLive.pipe(
    Layer.provideMerge(MigrationsLive),
    Layer.provideMerge(SqliteLive(filename))
  )
