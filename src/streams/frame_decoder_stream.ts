// `FrameDecoderStream`: the frame decoder as a `TransformStream` from bytes
// to frames.

import { concat } from "../protocol/_bytes.ts";
import {
  type Frame,
  FrameDecoder,
  type FrameDecoderOptions,
  type FrameHeader,
} from "../protocol/frame.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";

/**
 * A `TransformStream` from bytes, in any chunking, to whole frames
 * (RFC 6455 §5.2). A violation errors the stream with a
 * {@linkcode WebSocketError} carrying its close code (1002, or 1009 for a
 * frame over `maxPayloadLength`), and so does input that ends inside a frame
 * (1006: closed abnormally). Input chunks are unmasked in place and
 * payloads may be views of them.
 *
 * @example Decoding a masked frame from a client
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameDecoderStream } from "@scope/ws/frames";
 *
 * // RFC 6455 §5.7: a single-frame masked text message, "Hello".
 * const bytes = new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]);
 * const frames = ReadableStream.from([bytes])
 *   .pipeThrough(new FrameDecoderStream({ role: "server" }));
 * const [frame] = await Array.fromAsync(frames);
 * assert.equal(frame.opcode, 1);
 * assert.equal(new TextDecoder().decode(frame.payload), "Hello");
 * ```
 */
export class FrameDecoderStream extends TransformStream<Uint8Array, Frame> {
  /**
   * Creates a frame decoding stream.
   *
   * @param options The role, allowed RSV bits and payload size limit.
   */
  constructor(options?: FrameDecoderOptions) {
    options ??= {};
    let header: FrameHeader;
    let pieces: Uint8Array[] = [];
    let out: Frame[] = [];
    const decoder = new FrameDecoder({
      onFrameStart(h) {
        header = h;
        pieces = [];
      },
      onFramePayload(bytes) {
        pieces.push(bytes);
      },
      onFrameEnd() {
        out.push({
          fin: header.fin,
          opcode: header.opcode,
          payload: concat(pieces, header.length),
          rsv1: (header.rsv & 4) !== 0,
          rsv2: (header.rsv & 2) !== 0,
          rsv3: (header.rsv & 1) !== 0,
        });
      },
    }, options);
    super({
      transform(chunk, controller) {
        out = [];
        decoder.push(chunk);
        for (const frame of out) controller.enqueue(frame);
      },
      flush() {
        if (!decoder.idle) {
          throw new WebSocketError("The stream ended inside a frame");
        }
      },
    });
  }
}
