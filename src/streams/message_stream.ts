// `MessageStream`: the message assembler as a `TransformStream` from frames
// to whole messages.

import type { Frame } from "../protocol/frame.ts";
import {
  type Message,
  MessageAssembler,
  type MessageAssemblerOptions,
} from "../protocol/message_assembler.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";

/**
 * Options for {@linkcode MessageStream}.
 *
 * @example Answering pings seen between fragments
 * ```ts
 * import { MessageStream, Opcode } from "@scope/ws/frames";
 *
 * const messages = new MessageStream({
 *   maxMessageSize: 1 << 20,
 *   onControl(frame) {
 *     if (frame.opcode === Opcode.Ping) console.log("ping", frame.payload);
 *   },
 * });
 * ```
 */
export interface MessageStreamOptions extends MessageAssemblerOptions {
  /**
   * Called with each control frame (close, ping, pong) as it arrives, even
   * between the fragments of a message. Default: control frames are dropped.
   */
  onControl?: (frame: Frame) => void;
}

/**
 * A `TransformStream` from frames to whole messages: it reassembles
 * fragments (continuation opcode 0), validates text as UTF-8 as it arrives
 * and enforces the size limit; violations error the stream with a
 * {@linkcode WebSocketError} carrying 1002, 1007 or 1009, and input that
 * ends inside a fragmented message with one carrying 1006 (closed
 * abnormally).
 *
 * @example Reassembling a fragmented text message
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageStream, Opcode } from "@scope/ws/frames";
 *
 * const encode = (text: string) => new TextEncoder().encode(text);
 * const messages = ReadableStream.from([
 *   { fin: false, opcode: Opcode.Text, payload: encode("Hel") },
 *   { fin: true, opcode: Opcode.Continuation, payload: encode("lo") },
 * ]).pipeThrough(new MessageStream());
 * assert.deepEqual(await Array.fromAsync(messages), ["Hello"]);
 * ```
 */
export class MessageStream extends TransformStream<Frame, Message> {
  /**
   * Creates a message assembling stream.
   *
   * @param options The size limit and a control frame callback.
   */
  constructor(options?: MessageStreamOptions) {
    options ??= {};
    let out: Message[] = [];
    const onControl = options.onControl;
    const assembler = new MessageAssembler({
      onMessage(message) {
        out.push(message);
      },
      onControl(opcode, payload) {
        onControl?.({ fin: true, opcode, payload });
      },
    }, options);
    super({
      transform(frame, controller) {
        out = [];
        const rsv = (frame.rsv1 ? 4 : 0) | (frame.rsv2 ? 2 : 0) |
          (frame.rsv3 ? 1 : 0);
        const length = frame.payload.length;
        assembler.onFrameStart({
          fin: frame.fin,
          rsv,
          opcode: frame.opcode,
          length,
        });
        if (length > 0) assembler.onFramePayload(frame.payload);
        assembler.onFrameEnd();
        for (const message of out) controller.enqueue(message);
      },
      flush() {
        if (assembler.inMessage) {
          throw new WebSocketError(
            "The stream ended inside a fragmented message",
          );
        }
      },
    });
  }
}
