import type { Store } from "@vigil/store"
import type { Context } from "effect"
import { Effect, Layer } from "effect"
import { Events } from "../src/Events.js"
import { InstanceLease } from "../src/InstanceLease.js"
import { InstanceLocks } from "../src/InstanceLocks.js"
import { Liveness } from "../src/Liveness.js"
import { ProcessControl } from "../src/ProcessControl.js"
import { Rescue } from "../src/Rescue.js"
import { Settings } from "../src/Settings.js"
import { testSettings } from "./support.js"

/**
 * One instance as a server builds it (lease and its lock, liveness, rescue) on `store`, playing
 * `host` with a fake OS port: build several with `Layer.build` for several instances in one test.
 */
export const peer = (store: Layer.Layer<Store>, host: string) =>
  Rescue.Default.pipe(
    Layer.provideMerge(Liveness.Default),
    Layer.provideMerge(Events.Default),
    Layer.provideMerge(InstanceLease.Default),
    Layer.provideMerge(InstanceLocks.Live),
    Layer.provideMerge(ProcessControl.test({ host })),
    Layer.provideMerge(store),
    Layer.provideMerge(Settings.layer(testSettings()))
  )

export type PeerServices = Layer.Layer.Success<ReturnType<typeof peer>>
export type Peer = Context.Context<PeerServices>

/** Runs `effect` as that instance. */
export const within = <A, E>(context: Peer, effect: Effect.Effect<A, E, PeerServices>) => Effect.provide(effect, context)
