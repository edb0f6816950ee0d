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
 * | export                          | what it is                                                                                                                                                                   |
 * | ------------------------------- | ---------------------------------------------------------------------------------------------------------------------------------------------------------------------------- |
 * | `FrameDecoder`                  | The frame parser: `push(bytes)` in any chunking calls a handler with each header, the unmasked payload pieces and the end. Violations throw a `WebSocketError` (1002, 1009). |
 * | `MessageAssembler`              | Takes the decoder's calls and produces whole messages and control frames (1002, 1007, 1008, 1009).                                                                           |
 * | `FrameDecoderStream`            | Bytes → `Frame`s (`role`, default `"server"`; `allowRsv1`; `maxPayloadLength`). It unmasks its input chunks in place.                                                        |
 * | `MessageStream`                 | `Frame`s → messages (`maxMessageSize`, `maxFragments`, `onControl`).                                                                                                         |
 * | `FrameEncoderStream`            | `Frame`s → bytes (`mask: true` for a client).                                                                                                                                |
 * | `encodeFrame(frame, mask?)`     | One frame's bytes.                                                                                                                                                           |
 * | `applyMask(data, key, offset?)` | XOR with a masking key, four bytes at a time, in place.                                                                                                                      |
 * | `Opcode`                        | The opcodes by name.                                                                                                                                                         |
 *
 * The streams error with a `WebSocketError` carrying the close code, and
 * with 1006 when their input ends inside a frame or a fragmented message.
 * `CloseCode`, `isValidCloseCode` and `WebSocketError` are in `@scope/ws`.
 * In the server and the client the decoder and the assembler run fused, fed
 * each TCP chunk whole, rather than as two streams (see the project's
 * docs/design.md).
 *
 * @example Bytes from a client to whole messages, control frames aside
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Frame, FrameDecoderStream, MessageStream } from "@scope/ws/frames";
 *
 * // RFC 6455 §5.7: a single-frame masked text message, "Hello".
 * const bytes = new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]);
 * const controls: Frame[] = [];
 * const messages = ReadableStream.from([bytes])
 *   .pipeThrough(
 *     new FrameDecoderStream({ role: "server", maxPayloadLength: 1 << 20 }),
 *   )
 *   .pipeThrough(new MessageStream({ onControl: (frame) => controls.push(frame) }));
 * assert.deepEqual(await Array.fromAsync(messages), ["Hello"]);
 * assert.deepEqual(controls, []);
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
