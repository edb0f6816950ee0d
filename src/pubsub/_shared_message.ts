// A published message, framed once for every subscriber: the UTF-8 bytes,
// the server frame and, per compression setting, the compressed frame are
// each made on first use and then shared.

import zlib from "node:zlib";
import { Opcode } from "../protocol/constants.ts";
import { headerSize, writeFrame } from "../protocol/frame.ts";
import type { Message } from "../protocol/message_assembler.ts";
import type { StreamPosition } from "./history.ts";

const encoder = new TextEncoder();
/** What RFC 7692 §7.2.1 strips from the end of each compressed message. */
const TRAILER_LENGTH = 4;

/**
 * One message on its way to many sockets. A server's frames are not masked
 * (RFC 6455 §5.1), so the same bytes serve every subscriber; they are made
 * when the first subscriber needs them, and never copied per subscriber.
 */
export class SharedMessage {
  /** The message as published. */
  readonly message: Message;
  /** The topic it was published to ("" for a message of no topic). */
  readonly topic: string;
  /** Its place in the topic's history, on a topic that keeps one. */
  readonly position: StreamPosition | undefined;
  #payload: Uint8Array | undefined;
  #frame: Uint8Array | undefined;
  #compressed: Map<number, Uint8Array> | undefined;
  #derived: Map<object, SharedMessage> | undefined;

  constructor(message: Message, topic = "", position?: StreamPosition) {
    this.message = message;
    this.topic = topic;
    this.position = position;
  }

  /**
   * Another message made of this publication (the live protocol's JSON
   * form of it, say), made once per `kind` and then shared like this one.
   */
  derive(
    kind: object,
    make: (shared: SharedMessage) => Message,
  ): SharedMessage {
    const derived = this.#derived ??= new Map();
    let shared = derived.get(kind);
    if (shared === undefined) {
      shared = new SharedMessage(make(this), this.topic, this.position);
      derived.set(kind, shared);
    }
    return shared;
  }

  /** Whether it is a text message. */
  get text(): boolean {
    return typeof this.message === "string";
  }

  /** The payload: the message's UTF-8 bytes for text, made once. */
  get payload(): Uint8Array {
    const message = this.message;
    return this.#payload ??= typeof message === "string"
      ? encoder.encode(message)
      : message;
  }

  /** The whole unmasked frame, made once. */
  get frame(): Uint8Array {
    return this.#frame ??= frameOf(
      this.text ? Opcode.Text : Opcode.Binary,
      this.payload,
      false,
    );
  }

  /**
   * The frame compressed with permessage-deflate from an empty window
   * (valid for every socket whose server side has no context takeover,
   * RFC 7692 §7.1.1.1), once per window size and level, with RSV1 set.
   */
  compressedFrame(windowBits: number, level: number): Uint8Array {
    const key = windowBits * 16 + level + 1;
    const compressed = this.#compressed ??= new Map();
    let frame = compressed.get(key);
    if (frame === undefined) {
      // A sync flush, as the streaming compressor does: the output ends
      // with 00 00 ff ff, which §7.2.1 removes.
      const deflated = zlib.deflateRawSync(this.payload, {
        windowBits,
        level,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      frame = frameOf(
        this.text ? Opcode.Text : Opcode.Binary,
        deflated.subarray(0, deflated.length - TRAILER_LENGTH),
        true,
      );
      compressed.set(key, frame);
    }
    return frame;
  }
}

function frameOf(opcode: number, payload: Uint8Array, rsv1: boolean) {
  const frame = new Uint8Array(
    headerSize(payload.length, false) + payload.length,
  );
  writeFrame(frame, 0, { fin: true, opcode, rsv1 }, payload);
  return frame;
}
