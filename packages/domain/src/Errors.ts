import { Schema } from "effect"

/** Errors that cross HTTP: the server maps each to its status. */
export class SessionNotFound extends Schema.TaggedError<SessionNotFound>()("SessionNotFound", {
  sessionId: Schema.String,
  message: Schema.String
}) {}

export class PartNotFound extends Schema.TaggedError<PartNotFound>()("PartNotFound", {
  partId: Schema.String,
  message: Schema.String
}) {}

export class SessionBusy extends Schema.TaggedError<SessionBusy>()("SessionBusy", {
  sessionId: Schema.String,
  status: Schema.String,
  /** The instance whose turn holds the session: the one to send a reply to. */
  ownerId: Schema.optional(Schema.String),
  message: Schema.String
}) {}

export class UnknownTool extends Schema.TaggedError<UnknownTool>()("UnknownTool", {
  tool: Schema.String,
  known: Schema.Array(Schema.String),
  message: Schema.String
}) {}

export class UnknownModel extends Schema.TaggedError<UnknownModel>()("UnknownModel", {
  model: Schema.String,
  known: Schema.Array(Schema.String),
  message: Schema.String
}) {}

export class InvalidToolInput extends Schema.TaggedError<InvalidToolInput>()("InvalidToolInput", {
  tool: Schema.String,
  message: Schema.String
}) {}

export class RequestNotFound extends Schema.TaggedError<RequestNotFound>()("RequestNotFound", {
  requestId: Schema.String,
  message: Schema.String
}) {}
