/**
 * The live topics client: subscribe to topics over one WebSocket that comes
 * back on its own, and miss nothing in between. One dependency-free ES
 * module (`client.js`, plain JavaScript on the standard `WebSocket` and
 * `EventTarget`), so that the same file runs in a browser page, served as
 * is, and in Deno. It speaks the live wire protocol v1 (JSON text frames,
 * readable in the browser's network tab) with the server's live topics
 * handler.
 *
 * - **Reconnects** after any close but its own {@linkcode LiveClient.close},
 *   a 1008 (the server will not take this client) or one of `stopCodes`,
 *   with exponential backoff and full jitter; see
 *   {@linkcode LiveClientOptions}.
 * - **Recovers**: it keeps the last position (offset and epoch) seen per
 *   topic and resubscribes every topic from it on reconnection; the
 *   `subscribed` event says whether everything missed came back.
 * - **Queues** publications while offline (bounded; a full queue refuses
 *   the newest) and sends them after the resubscriptions.
 *
 * @example In a page
 * ```html
 * <script type="module">
 *   import { LiveClient } from "/live-client.js"; // served by your server
 *
 *   const live = new LiveClient(`ws://${location.host}/live`);
 *   live.addEventListener("publication", ({ detail }) => {
 *     document.querySelector("#log").append(detail.data + "\n");
 *   });
 *   live.addEventListener("subscribed", ({ detail }) => {
 *     if (detail.recovering && !detail.recovered) {
 *       document.querySelector("#log").append("(missed lines lost)\n");
 *     }
 *   });
 *   live.subscribe("room/lobby");
 * </script>
 * ```
 *
 * @example In Deno
 * ```ts ignore
 * import { LiveClient } from "@scope/ws/live-client";
 *
 * const live = new LiveClient("ws://127.0.0.1:8080/live");
 * live.addEventListener("disconnected", ({ detail }) => {
 *   if (detail.willRetry) console.log(`back in ${detail.delay} ms`);
 * });
 * live.subscribe("ticker/EURUSD", { last: 1 });
 * await live.publish("room/lobby", "hello");
 * live.close();
 * ```
 *
 * @module
 */

/**
 * Where a publication stands in its topic's history: the offset grows by
 * one per publication in the topic; another epoch means the history was
 * lost (a restart, a flushed key) and the offsets start again.
 *
 * @example
 * ```ts
 * import type { StreamPosition } from "@scope/ws/live-client";
 *
 * const position: StreamPosition = { offset: 7, epoch: "k3x" };
 * ```
 */
export interface StreamPosition {
  /** Grows by one per publication in the topic, from 1; 0 before any. */
  offset: number;
  /** Names the history's lifetime. */
  epoch: string;
}

/**
 * Options of {@linkcode LiveClient}.
 *
 * Between attempts the client waits a random time below
 * `min(maxDelay, initialDelay * multiplier ** n)` ("full jitter"), where
 * `n` counts the retries since the last stable connection (one that stayed
 * up `minUptime` ms), plus one for each close with 1011 (server error),
 * 1012 (restart) or 1013 (try again later): so a connection that keeps
 * dropping or failing its handshake backs off further each time, a server
 * that asks for time gets it even after a long connection, and a stable
 * connection that drops comes back within `initialDelay`.
 *
 * @example Slower retries, giving up after 10 failures in a row
 * ```ts
 * import type { LiveClientOptions } from "@scope/ws/live-client";
 *
 * const options: LiveClientOptions = {
 *   initialDelay: 1_000,
 *   maxDelay: 60_000,
 *   maxAttempts: 10,
 *   maxQueued: 20,
 *   stopCodes: [4001], // the app's "session expired"
 * };
 * ```
 */
export interface LiveClientOptions {
  /** Subprotocols offered in the handshake. */
  protocols?: string | string[];
  /** The ceiling of the first wait, in ms. Default 250. */
  initialDelay?: number;
  /** The largest ceiling of a wait, in ms. Default 30,000. */
  maxDelay?: number;
  /** How much the ceiling grows per retry, at least 1. Default 2. */
  multiplier?: number;
  /**
   * How many connection attempts in a row may end without a stable
   * connection before the client gives up (`disconnected` with
   * `willRetry: false`, then `state` is `"closed"`). Default `Infinity`.
   */
  maxAttempts?: number;
  /**
   * How long a connection must stay up, in ms, before the backoff and the
   * attempt count start again from zero. Default 5,000.
   */
  minUptime?: number;
  /**
   * How long an attempt may take from opening the WebSocket to the
   * server's `connected`, in ms, before it is closed and retried.
   * Default 10,000.
   */
  connectTimeout?: number;
  /**
   * The most publications kept while offline; `publish()` rejects with
   * code `"queue-full"` beyond it (the newest is refused, the queued ones
   * keep their place). 0 refuses every publication made offline.
   * Default 100.
   */
  maxQueued?: number;
  /** Close codes after which the client does not reconnect, besides 1008. */
  stopCodes?: number[];
  /** The jitter's randomness, in [0, 1). Default `Math.random` (tests pass their own). */
  random?: () => number;
}

/**
 * Options of {@linkcode LiveClient.subscribe}.
 *
 * @example A ticker wants the latest price, a chat what it missed
 * ```ts ignore
 * import { LiveClient } from "@scope/ws/live-client";
 *
 * const live = new LiveClient("ws://127.0.0.1:8080/live");
 * live.subscribe("ticker/EURUSD", { last: 1 }); // the latest, on every (re)subscription
 * live.subscribe("room/lobby", { last: 50, recover: true }); // 50 lines, then what it missed
 * ```
 */
export interface SubscribeOptions {
  /**
   * Ask for the latest `last` publications first (on a topic with
   * history). Without `recover`, asked again on every resubscription.
   */
  last?: number;
  /**
   * Resubscribe from the last position seen, to get what was missed.
   * Default: `true` without `last`, `false` with it.
   */
  recover?: boolean;
}

/**
 * `connected`: the server accepted a connection (the first, or a
 * reconnection). Resubscriptions and queued publications are sent already.
 *
 * @example
 * ```ts ignore
 * live.addEventListener("connected", ({ detail }) => {
 *   status.textContent = detail.reconnected ? "back" : "online";
 * });
 * ```
 */
export interface ConnectedDetail {
  /** `false` the first time, `true` after that. */
  reconnected: boolean;
  /** The id the server gave this connection. */
  client: string;
}

/**
 * `disconnected`: a connection or an attempt ended.
 *
 * @example Saying when it comes back
 * ```ts ignore
 * live.addEventListener("disconnected", ({ detail }) => {
 *   status.textContent = detail.willRetry
 *     ? `offline (${detail.code}), retrying in ${detail.delay} ms`
 *     : `closed (${detail.code} ${detail.reason})`;
 * });
 * ```
 */
export interface DisconnectedDetail {
  /** The close code; 1006 when the connection failed without a close frame (a refused handshake too). */
  code: number;
  /** The close reason, `""` for none. */
  reason: string;
  /** Whether the client will try again. `false` after `close()`, 1008, a stop code or `maxAttempts`. */
  willRetry: boolean;
  /** The wait before the next attempt, in ms (0 when not retrying). */
  delay: number;
}

/**
 * `subscribed`: the server confirmed a subscription, on the first
 * subscribe and on each resubscription. The publications it brings follow.
 *
 * @example Resyncing when missed publications are lost
 * ```ts ignore
 * live.addEventListener("subscribed", ({ detail }) => {
 *   if (detail.recovering && !detail.recovered) loadSnapshot(detail.topic);
 * });
 * ```
 */
export interface SubscribedDetail {
  /** The topic subscribed. */
  topic: string;
  /**
   * Whether every publication after the position the client sent follows
   * (none missed). `false` when it sent none (first subscription, `last`,
   * a topic without history), when the epoch changed or when the history
   * no longer reached back.
   */
  recovered: boolean;
  /** Whether the client sent a position, asking to recover. */
  recovering: boolean;
  /** The topic's latest position; absent on a topic without history. */
  position?: StreamPosition;
}

/**
 * `publication`: a message published to a subscribed topic.
 *
 * @example
 * ```ts ignore
 * live.addEventListener("publication", ({ detail }) => {
 *   if (typeof detail.data === "string") show(detail.topic, detail.data);
 * });
 * ```
 */
export interface PublicationDetail {
  /** The topic it was published to. */
  topic: string;
  /** Text as a `string`, binary data as bytes. */
  data: string | Uint8Array;
  /** The publication's offset, on a topic with history. */
  offset?: number;
  /** Its epoch, on a topic with history. */
  epoch?: string;
}

/**
 * `gap`: publications of a topic up to `position` were lost and cannot be
 * recovered; the app should resync the topic. Live ones follow as usual.
 *
 * @example
 * ```ts ignore
 * live.addEventListener("gap", ({ detail }) => loadSnapshot(detail.topic));
 * ```
 */
export interface GapDetail {
  /** The topic that lost publications. */
  topic: string;
  /** The position up to which they were lost: the topic goes on after it. */
  position: StreamPosition;
}

/**
 * `unsubscribed`: the server ended a subscription; the client will not
 * resubscribe it. (The app's own `unsubscribe()` sends no event.)
 *
 * @example
 * ```ts ignore
 * live.addEventListener("unsubscribed", ({ detail }) => {
 *   console.log(`left ${detail.topic}: ${detail.reason}`);
 * });
 * ```
 */
export interface UnsubscribedDetail {
  /** The topic no longer subscribed. */
  topic: string;
  /** The server's reason, `""` for none. */
  reason: string;
}

/**
 * `error`: the server refused a subscription (`topic` says which; the
 * client drops it), sent an error about no command of the client, or sent
 * something that is not the protocol (code `"protocol"`). Failed
 * publications and presence requests reject their promise instead.
 *
 * @example
 * ```ts ignore
 * live.addEventListener("error", ({ detail }) => {
 *   console.warn(detail.topic ?? "live", detail.code, detail.message);
 * });
 * ```
 */
export interface ErrorDetail {
  /** One of {@linkcode LiveErrorCode}'s server codes, or `"protocol"`. */
  code: string;
  /** Says what went wrong, for a person. */
  message: string;
  /** The topic of a refused subscription. */
  topic?: string;
}

/**
 * One member of a topic, as {@linkcode LiveClient.presence} lists it.
 *
 * @example
 * ```ts
 * import type { PresenceMember } from "@scope/ws/live-client";
 *
 * const member: PresenceMember = { client: "c1", info: { name: "Ada" } };
 * ```
 */
export interface PresenceMember {
  /** The member's client id. */
  client: string;
  /** What the server's app said about the member (JSON), if anything. */
  info?: unknown;
}

/**
 * Who is subscribed to a topic: on every server node when the server
 * shares presence (`RedisPubSub` and the hub's `presence` option), else on
 * the node this client is connected to.
 *
 * @example
 * ```ts ignore
 * const { count, members } = await live.presence("room/lobby");
 * ```
 */
export interface Presence {
  /** How many subscriptions the topic has. */
  count: number;
  /** Who they are. */
  members: PresenceMember[];
}

/**
 * The events of {@linkcode LiveClient}, each a `CustomEvent` whose
 * `detail` carries the data.
 *
 * @example
 * ```ts ignore
 * live.addEventListener("publication", (event) => {
 *   const { topic, data, offset } = event.detail; // typed from this map
 * });
 * ```
 */
export interface LiveClientEventMap {
  /** The server accepted a connection. */
  connected: CustomEvent<ConnectedDetail>;
  /** A connection or an attempt ended. */
  disconnected: CustomEvent<DisconnectedDetail>;
  /** The server confirmed a (re)subscription. */
  subscribed: CustomEvent<SubscribedDetail>;
  /** A message arrived on a subscribed topic. */
  publication: CustomEvent<PublicationDetail>;
  /** A topic lost publications that cannot be recovered. */
  gap: CustomEvent<GapDetail>;
  /** The server ended a subscription. */
  unsubscribed: CustomEvent<UnsubscribedDetail>;
  /** A refused subscription, or an error that belongs to no request. */
  error: CustomEvent<ErrorDetail>;
}

/**
 * The `code` of a {@linkcode LiveError}: the server's (`forbidden`,
 * `bad-request`, `too-many-topics`, `not-subscribed`, `unavailable`) or
 * the client's: `disconnected` (the connection dropped before the answer:
 * the publication may or may not have gone out, and is not sent again; or
 * `presence()` was called offline), `closed` (the client was closed or gave
 * up first), `queue-full` (see {@linkcode LiveClientOptions.maxQueued}).
 *
 * @example
 * ```ts
 * import type { LiveErrorCode } from "@scope/ws/live-client";
 *
 * const retryable: LiveErrorCode[] = ["disconnected", "unavailable"];
 * ```
 */
export type LiveErrorCode =
  | "forbidden"
  | "bad-request"
  | "too-many-topics"
  | "not-subscribed"
  | "unavailable"
  | "disconnected"
  | "closed"
  | "queue-full";

/**
 * Why {@linkcode LiveClient.publish} or {@linkcode LiveClient.presence}
 * rejected.
 *
 * @example
 * ```ts ignore
 * import { LiveError } from "@scope/ws/live-client";
 *
 * try {
 *   await live.publish("room/lobby", "hi");
 * } catch (error) {
 *   if (error instanceof LiveError && error.code === "forbidden") alert(error.message);
 * }
 * ```
 */
export declare class LiveError extends Error {
  /**
   * Makes an error with a code.
   *
   * @param code What went wrong.
   * @param message Says it for a person.
   */
  constructor(code: LiveErrorCode, message: string);
  /** What went wrong; see {@linkcode LiveErrorCode}. */
  readonly code: LiveErrorCode;
}

/**
 * A client of the server's live topics over one WebSocket that reconnects
 * on its own; see the module documentation for the rules. It connects at
 * once; events (see {@linkcode LiveClientEventMap}) come as `CustomEvent`s.
 * The client updates its own state before it dispatches an event, and a
 * listener that throws is reported as the platform reports any event
 * listener's error: a browser logs it and runs the other listeners; Deno
 * treats it as an uncaught error, which ends the process unless a
 * `globalThis` "error" listener calls `preventDefault()`.
 *
 * @example A chat that says when it is offline and what it missed
 * ```ts ignore
 * import { LiveClient } from "@scope/ws/live-client";
 *
 * const live = new LiveClient("ws://127.0.0.1:8080/live");
 * live.addEventListener("connected", ({ detail }) => {
 *   console.log(detail.reconnected ? "reconnected" : "connected");
 * });
 * live.addEventListener("disconnected", ({ detail }) => {
 *   console.log(`offline (${detail.code}), retry in ${detail.delay} ms`);
 * });
 * live.addEventListener("subscribed", ({ detail }) => {
 *   if (detail.recovering && !detail.recovered) console.log("missed lines lost");
 * });
 * live.addEventListener("publication", ({ detail }) => console.log(detail.data));
 * live.subscribe("room/lobby");
 * await live.publish("room/lobby", "hello"); // queued while offline
 * ```
 */
export declare class LiveClient extends EventTarget {
  /**
   * Starts connecting to `url`.
   *
   * @param url The server's live endpoint (`ws:` or `wss:`; a browser takes
   * `http:`, `https:` and relative URLs too). A `SyntaxError` when the
   * platform's `WebSocket` refuses it.
   * @param options Backoff, queue and limits; a `RangeError` for an invalid one.
   */
  constructor(url: string | URL, options?: LiveClientOptions);

  /**
   * `"connecting"` (an attempt in progress), `"connected"`,
   * `"disconnected"` (waiting to retry) or `"closed"` (for good).
   *
   * @example
   * ```ts ignore
   * if (live.state !== "connected") showStale();
   * ```
   */
  readonly state: "connecting" | "connected" | "disconnected" | "closed";

  /**
   * The id the server gave the current (or last) connection; `""` before
   * the first.
   *
   * @example
   * ```ts ignore
   * live.addEventListener("connected", () => console.log(live.client));
   * ```
   */
  readonly client: string;

  /**
   * Subscribes to `topic`, now if connected, else on connection; the
   * client resubscribes it on every reconnection (from its last position,
   * or for the `last` N: see {@linkcode SubscribeOptions}) until
   * {@linkcode LiveClient.unsubscribe}. A topic already subscribed is left
   * as it is. The server's answer is a `subscribed` event, or an `error`
   * event with the topic (the subscription is then dropped).
   *
   * @param topic A non-empty string; a `TypeError` otherwise.
   * @param options `last` and `recover` (`last` a positive integer, a
   * `RangeError` otherwise). After {@linkcode LiveClient.close}, a
   * {@linkcode LiveError} with code `closed`.
   * @example
   * ```ts ignore
   * live.subscribe("room/lobby");
   * live.subscribe("ticker/EURUSD", { last: 1 });
   * ```
   */
  subscribe(topic: string, options?: SubscribeOptions): void;

  /**
   * Stops the subscription to `topic`: no more publications, no
   * resubscription. Does nothing for a topic not subscribed.
   *
   * @param topic The topic.
   * @example
   * ```ts ignore
   * live.unsubscribe("room/lobby");
   * ```
   */
  unsubscribe(topic: string): void;

  /**
   * Publishes `data` to `topic` (text as text, bytes as binary): at once
   * if connected, else after the next connection's resubscriptions.
   * Resolves when the server accepted it; rejects with a
   * {@linkcode LiveError} when it refused it (`forbidden`, ...), when the
   * queue is full, when the connection dropped before the answer (not sent
   * again: at most once), or when the client closed first; with a
   * `TypeError` for an invalid topic or data.
   *
   * @param topic A non-empty string.
   * @param data A `string`, or bytes (`Uint8Array`, any view, `ArrayBuffer`).
   * @example
   * ```ts ignore
   * await live.publish("room/lobby", JSON.stringify({ text: "hi" }));
   * ```
   */
  publish(
    topic: string,
    data: string | Uint8Array | ArrayBuffer | ArrayBufferView,
  ): Promise<void>;

  /**
   * Asks who is subscribed to `topic` (across the server's nodes when it
   * shares presence: see {@linkcode Presence}). Rejects
   * with a {@linkcode LiveError}: the server's, or `disconnected` when not
   * connected (ask again on `connected`).
   *
   * @param topic A non-empty string.
   * @example
   * ```ts ignore
   * const { count } = await live.presence("room/lobby");
   * ```
   */
  presence(topic: string): Promise<Presence>;

  /**
   * Closes the connection with 1000 and stops for good: no reconnection;
   * queued publications reject with code `closed`. When a connection or
   * an attempt was open, a last `disconnected` (with `willRetry: false`)
   * follows. Calling it again does nothing.
   *
   * @example
   * ```ts ignore
   * addEventListener("pagehide", () => live.close());
   * ```
   */
  close(): void;

  /**
   * Listens to one of the {@linkcode LiveClientEventMap} events.
   *
   * @example
   * ```ts ignore
   * live.addEventListener("gap", ({ detail }) => loadSnapshot(detail.topic));
   * ```
   */
  addEventListener<K extends keyof LiveClientEventMap>(
    type: K,
    listener: (this: LiveClient, event: LiveClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listens to any event type.
   *
   * @example
   * ```ts ignore
   * live.addEventListener("connected", { handleEvent: (event) => console.log(event) });
   * ```
   */
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Stops listening to one of the {@linkcode LiveClientEventMap} events.
   *
   * @example
   * ```ts ignore
   * live.removeEventListener("publication", onPublication);
   * ```
   */
  removeEventListener<K extends keyof LiveClientEventMap>(
    type: K,
    listener: (this: LiveClient, event: LiveClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Stops listening to any event type.
   *
   * @example
   * ```ts ignore
   * live.removeEventListener("connected", listener);
   * ```
   */
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
