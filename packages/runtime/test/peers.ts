import type { Store } from "@vigil/store"
import type { Context } from "effect"
import type { Layer } from "effect"
import { Effect } from "effect"
import { ProcessControl } from "../src/supervision/ProcessControl.js"
import * as Vigil from "../src/Vigil.js"
import { testSettings } from "./support.js"

/**
 * One instance as a server builds it (lease and its lock, liveness, recovery) on `store`, playing
 * `host` with a fake OS port: build several with `Layer.build` for several instances in one test.
 */
export const peer = (store: Layer.Layer<Store>, host: string) =>
  Vigil.layerRecovery(store, { settings: testSettings(), processes: ProcessControl.test({ host }) })

export type PeerServices = Layer.Layer.Success<ReturnType<typeof peer>>
export type Peer = Context.Context<PeerServices>

/** Runs `effect` as that instance. */
export const within = <A, E>(context: Peer, effect: Effect.Effect<A, E, PeerServices>) => Effect.provide(effect, context)
