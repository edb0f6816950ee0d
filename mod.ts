/**
 * An RFC 6455 WebSocket server for Deno, built on `Deno.listen`, whose
 * whole surface is web-standard streams in the vocabulary of the WHATWG
 * WebSocketStream proposal: each socket has a `readable` of messages (a
 * `string` per text message, a `Uint8Array` per binary message), a
 * `writable` to send them, `closed` and `close()`.
 *
 * The pipeline's stages are public too: {@linkcode FrameDecoderStream}
 * (bytes to frames), {@linkcode MessageStream} (frames to messages) and
 * {@linkcode FrameEncoderStream} (frames to bytes).
 *
 * The client side speaks to any WebSocket server with the same streams:
 * {@linkcode connect} opens a socket over `Deno.connect` (TLS for `wss:`),
 * and {@linkcode WebSocketStream} wraps it in the WHATWG proposal's shape.
 *
 * Both sides speak permessage-deflate (RFC 7692) when asked to, with the
 * `perMessageDeflate` option (see {@linkcode PerMessageDeflateOptions}).
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
 * await socket.writable.getWriter().write("Hello");
 * ```
 *
 * @module
 */
export { CloseCode, isValidCloseCode, Opcode } from "./src/constants.ts";
export {
  type WebSocketCloseInfo,
  WebSocketError,
} from "./src/websocket_error.ts";
export { applyMask } from "./src/mask.ts";
export {
  encodeFrame,
  type Frame,
  type FrameDecoderOptions,
} from "./src/frame.ts";
export {
  type Message,
  type MessageAssemblerOptions,
} from "./src/message_assembler.ts";
export { FrameDecoderStream } from "./src/frame_decoder_stream.ts";
export {
  FrameEncoderStream,
  type FrameEncoderStreamOptions,
} from "./src/frame_encoder_stream.ts";
export {
  MessageStream,
  type MessageStreamOptions,
} from "./src/message_stream.ts";
export type {
  WebSocketCloseResult,
  WebSocketConnection,
} from "./src/connection.ts";
export {
  type CloseEventInfo,
  serve,
  type ServeInfo,
  type ServeOptions,
  type UpgradeAcceptance,
  type WebSocketHandler,
  type WebSocketServer,
} from "./src/server.ts";
export { connect, type ConnectOptions } from "./src/client.ts";
export type { PerMessageDeflateOptions } from "./src/permessage_deflate.ts";
export {
  type WebSocketOpenInfo,
  WebSocketStream,
  type WebSocketStreamOptions,
} from "./src/websocket_stream.ts";
export {
  type ReconnectingOpenInfo,
  ReconnectingWebSocket,
  type ReconnectingWebSocketOptions,
  type RetryOptions,
} from "./src/reconnecting_websocket.ts";
