// `FrameEncoderStream`: the frame encoder as a `TransformStream` from frames
// to bytes.

import { encodeFrame, type Frame } from "../protocol/frame.ts";
import { maskKey } from "../protocol/mask.ts";

/**
 * Options for {@linkcode FrameEncoderStream}.
 *
 * @example Masking, as a client must
 * ```ts
 * import { FrameEncoderStream } from "@scope/ws/frames";
 *
 * const encoder = new FrameEncoderStream({ mask: true });
 * ```
 */
export interface FrameEncoderStreamOptions {
  /**
   * Mask every frame with a fresh random key, as a client must (RFC 6455
   * §5.3). Default `false` (a server's frames are not masked).
   */
  mask?: boolean;
}

/**
 * A `TransformStream` from frames to their bytes (RFC 6455 §5.2). A frame
 * that {@linkcode encodeFrame} refuses (a reserved opcode, a control frame
 * over 125 bytes or without FIN) errors the stream with its `RangeError` or
 * `TypeError`.
 *
 * @example Encoding frames for a server to send
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameEncoderStream, Opcode } from "@scope/ws/frames";
 *
 * const bytes = ReadableStream.from([
 *   { fin: true, opcode: Opcode.Text, payload: new TextEncoder().encode("Hi") },
 * ]).pipeThrough(new FrameEncoderStream());
 * const [chunk] = await Array.fromAsync(bytes);
 * assert.deepEqual([...chunk], [0x81, 0x02, 0x48, 0x69]);
 * ```
 */
export class FrameEncoderStream extends TransformStream<Frame, Uint8Array> {
  /**
   * Creates a frame encoding stream.
   *
   * @param options Whether to mask the frames.
   */
  constructor(options?: FrameEncoderStreamOptions) {
    options ??= {};
    const mask = options.mask ?? false;
    super({
      transform(frame, controller) {
        controller.enqueue(
          encodeFrame(
            frame,
            mask ? maskKey() : undefined,
          ),
        );
      },
    });
  }
}
