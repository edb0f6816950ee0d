/**
 * An RFC 6455 WebSocket server and client for Deno, built on `Deno.listen`
 * and `Deno.connect`, whose sockets speak web-standard streams in the
 * vocabulary of the WHATWG WebSocketStream proposal: each socket has a
 * `readable` of messages (a `string` per text message, a `Uint8Array` per
 * binary message), a `writable` and `send()` to send them, `closed` and
 * `close()`.
 *
 * {@linkcode serve} runs a server with the shape of `Deno.serve`;
 * {@linkcode upgradeWebSocket} gives the same socket inside any `Deno.serve`
 * handler (Hono, Oak, ...), on Deno's own WebSocket;
 * {@linkcode connect} opens a client socket over `Deno.connect` (TLS for
 * `wss:`), and {@linkcode WebSocketStream} wraps it in the WHATWG
 * proposal's shape. `serve()` and `connect()` speak permessage-deflate
 * (RFC 7692) when asked to (see {@linkcode PerMessageDeflateOptions}).
 *
 * Sockets subscribe to topics and a publication reaches every subscriber
 * ({@linkcode TopicHub}); {@linkcode BroadcastChannelPubSub} shares the
 * topics between the Web Workers of a process, and `RedisPubSub` in the
 * `./redis` entry point between processes and machines.
 * {@linkcode LiveTopics} speaks the live topics protocol with the
 * reconnecting `LiveClient` of the `./live-client` entry point (pages and
 * Deno): subscriptions that recover what they missed from the topics'
 * history, publishing from clients that a hook allows, and presence.
 *
 * The codec's building blocks (frame decoder and encoder, message
 * assembler, as classes and as `TransformStream`s) are in the `./frames`
 * entry point.
 *
 * @example An echo server
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({ port: 8080 }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 *
 * @example A client
 * ```ts ignore
 * import { connect } from "@scope/ws";
 *
 * const socket = await connect("ws://127.0.0.1:8080/");
 * socket.send("Hello");
 * ```
 *
 * @module
 */
export { CloseCode, isValidCloseCode } from "./src/protocol/constants.ts";
export {
  type WebSocketCloseInfo,
  type WebSocketCloseResult,
  WebSocketError,
} from "./src/protocol/websocket_error.ts";
export type { PerMessageDeflateOptions } from "./src/protocol/permessage_deflate.ts";
export type { WebSocketConnection } from "./src/socket/socket.ts";
export {
  type HistoryAdapter,
  type PresenceAdapter,
  type PresenceMember,
  type PubSubAdapter,
  type PubSubDeliver,
  type PubSubStats,
  TopicHub,
  type TopicHubOptions,
  type TopicPresence,
} from "./src/pubsub/topic_hub.ts";
export type {
  HistoryOptions,
  HistoryQuery,
  HistoryResult,
  Publication,
  StreamPosition,
} from "./src/pubsub/history.ts";
export {
  type LiveHandleOptions,
  LiveTopics,
  type LiveTopicsOptions,
} from "./src/live/live_topics.ts";
export type {
  PubSubEvent,
  PubSubEventKind,
} from "./src/pubsub/pubsub_event.ts";
export {
  BroadcastChannelPubSub,
  type BroadcastChannelPubSubOptions,
} from "./src/pubsub/broadcast_channel.ts";
export {
  serve,
  type ServeInfo,
  type ServeOptions,
  type UpgradeAcceptance,
  type WebSocketHandler,
  type WebSocketServer,
} from "./src/server/server.ts";
export {
  UpgradeError,
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
  type WebSocketUpgrade,
} from "./src/deno/upgrade.ts";
export { connect, type ConnectOptions } from "./src/client/client.ts";
export {
  type WebSocketOpenInfo,
  WebSocketStream,
  type WebSocketStreamOptions,
} from "./src/client/websocket_stream.ts";
export {
  type ReconnectingOpenInfo,
  ReconnectingWebSocket,
  type ReconnectingWebSocketOptions,
  type RetryOptions,
} from "./src/client/reconnecting_websocket.ts";
