// What an adapter tells of its bus, one line each: a connection lost or
// back, publications failing or working again, losses, bad input.

/**
 * The kinds of {@linkcode PubSubEvent}:
 *
 * - `disconnected`: a connection to the bus was lost, or cannot be made; the
 *   adapter retries (Redis).
 * - `reconnected`: that connection is back, or made at last after failed
 *   attempts (a recovery).
 * - `gave-up`: the adapter stopped retrying; topics are no longer shared.
 * - `publish-failed`: local publications fail, so other nodes miss them
 *   (counted in `stats.failed`).
 * - `publish-recovered`: publishing works again; the message says how many
 *   failed meanwhile (a recovery).
 * - `gap`: messages of another node were lost on the way (`stats.gaps`).
 * - `reset`: a node's numbering went back or jumped implausibly far
 *   (`stats.resets`).
 * - `malformed`: a message on the bus was ignored (`stats.malformed`).
 * - `error`: anything else: a command the bus refused, presence that could
 *   not be written, a hub that threw.
 *
 * @example Paging someone only for what is not a recovery
 * ```ts
 * import type { PubSubEventKind } from "@scope/ws";
 *
 * const page: PubSubEventKind[] = ["gave-up", "publish-failed"];
 * ```
 */
export type PubSubEventKind =
  | "disconnected"
  | "reconnected"
  | "gave-up"
  | "publish-failed"
  | "publish-recovered"
  | "gap"
  | "reset"
  | "malformed"
  | "error";

/**
 * Something an adapter (`RedisPubSub`, {@linkcode BroadcastChannelPubSub})
 * tells its `onEvent` callback. Without `onEvent` and `onError`, each event
 * is logged as one line, `RedisPubSub: <message> (<cause>)`, with
 * `console.error`, or `console.info` for a recovery. Reports of one kind go
 * out once a second at most (the message then says how many were held
 * back); the adapter's `stats` count them all.
 *
 * @example Logging events as JSON lines
 * ```ts
 * import { BroadcastChannelPubSub, type PubSubEvent } from "@scope/ws";
 *
 * const log = (event: PubSubEvent) =>
 *   console.log(JSON.stringify({ kind: event.kind, message: event.message }));
 * const pubsub = new BroadcastChannelPubSub({ onEvent: log });
 * await pubsub.close();
 * ```
 */
export interface PubSubEvent {
  /** What happened. */
  kind: PubSubEventKind;
  /**
   * Whether it is good news: a connection is back, or publishing works
   * again (`reconnected`, `publish-recovered`).
   */
  recovery: boolean;
  /** What happened and what follows, in one line. */
  message: string;
  /** The error behind it, when there is one (node-redis's, say). */
  cause?: unknown;
}
