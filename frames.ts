/**
 * The building blocks of the WebSocket pipeline, for composing your own:
 * the RFC 6455 frame decoder and encoder, the message assembler, as
 * synchronous classes with no I/O and as `TransformStream`s, and masking.
 *
 * ```
 * bytes ─▶ FrameDecoderStream ─▶ MessageStream ─▶ messages
 * frames ─▶ FrameEncoderStream ─▶ bytes
 * ```
 *
 * @example Bytes from a client to whole messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameDecoderStream, MessageStream } from "@scope/ws/frames";
 *
 * // RFC 6455 §5.7: a single-frame masked text message, "Hello".
 * const bytes = new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]);
 * const messages = ReadableStream.from([bytes])
 *   .pipeThrough(new FrameDecoderStream({ role: "server" }))
 *   .pipeThrough(new MessageStream());
 * assert.deepEqual(await Array.fromAsync(messages), ["Hello"]);
 * ```
 *
 * @module
 */
export { Opcode } from "./src/protocol/constants.ts";
export { applyMask } from "./src/protocol/mask.ts";
export {
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameDecoderOptions,
  type FrameHandler,
  type FrameHeader,
} from "./src/protocol/frame.ts";
export {
  type Message,
  MessageAssembler,
  type MessageAssemblerOptions,
  type MessageHandler,
} from "./src/protocol/message_assembler.ts";
export { FrameDecoderStream } from "./src/streams/frame_decoder_stream.ts";
export {
  FrameEncoderStream,
  type FrameEncoderStreamOptions,
} from "./src/streams/frame_encoder_stream.ts";
export {
  MessageStream,
  type MessageStreamOptions,
} from "./src/streams/message_stream.ts";
