import { ErrorReason, Instance, Part, Session, SupervisionEvent } from "@vigil/domain"
import { Effect, Record, Schema, String } from "effect"

/** BIGINT columns come back as numbers from SQLite and as strings from PostgreSQL. */
const DbNumber = Schema.Union(Schema.Number, Schema.NumberFromString)
const DbNullNumber = Schema.NullOr(DbNumber)
const JsonReason = Schema.NullOr(Schema.parseJson(ErrorReason))
const JsonUnknown = Schema.parseJson(Schema.Unknown)

/**
 * A row as the database spells it: each field read from its snake_case column (`lastActivityAt`
 * from `last_activity_at`). The store reads on the raw client (`withoutTransforms()`), so a row
 * decodes the same whatever name transforms the app's client has.
 */
const fromColumns = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(
    Record.map(fields, (field, key) =>
      Schema.propertySignature(field as Schema.Schema.Any).pipe(Schema.fromKey(String.camelToSnake(key))))
  ) as unknown as Schema.Schema<Schema.Struct.Type<Fields>, unknown>

const fromRow = <Row, A>(row: Schema.Schema<Row, unknown>, make: (fields: Row) => A) => {
  const decode = Schema.decodeUnknown(Schema.Array(row))
  // A row that does not decode is a bug or a corrupt database, not a condition callers handle.
  return (rows: ReadonlyArray<unknown>): Effect.Effect<Array<A>> =>
    decode(rows).pipe(Effect.map((decoded) => decoded.map((fields) => make(fields))), Effect.orDie)
}

export const decodeSessions = fromRow(
  fromColumns({
    ...Session.fields,
    cancelReason: JsonReason,
    lastActivityAt: DbNumber,
    createdAt: DbNumber
  }),
  (fields) => new Session(fields, { disableValidation: true })
)

export const decodeParts = fromRow(
  fromColumns({
    ...Part.fields,
    input: JsonUnknown,
    error: JsonReason,
    createdAt: DbNumber,
    startedAt: DbNullNumber,
    endedAt: DbNullNumber,
    deadlineAt: DbNullNumber,
    pid: DbNullNumber,
    pgid: DbNullNumber
  }),
  (fields) => new Part(fields, { disableValidation: true })
)

export const decodeInstances = fromRow(
  fromColumns({
    ...Instance.fields,
    pid: DbNumber,
    startedAt: DbNumber,
    heartbeatAt: DbNumber,
    leaseMillis: DbNumber,
    stoppedAt: DbNullNumber
  }),
  (fields) => new Instance(fields, { disableValidation: true })
)

export const decodeEvents = fromRow(
  fromColumns({
    ...SupervisionEvent.fields,
    id: DbNumber,
    at: DbNumber,
    reason: JsonReason,
    data: Schema.NullOr(JsonUnknown)
  }),
  (fields) => new SupervisionEvent(fields, { disableValidation: true })
)

const encodeReasonJson = Schema.encodeSync(Schema.parseJson(ErrorReason))
export const reasonJson = (reason: ErrorReason | null): string | null => reason === null ? null : encodeReasonJson(reason)

const decodeReasonJson = Schema.decodeUnknown(Schema.parseJson(ErrorReason))
/** A reason stored as JSON (a cancel request); one that does not decode is a defect, as for rows. */
export const decodeReason = (json: string): Effect.Effect<ErrorReason> => Effect.orDie(decodeReasonJson(json))
