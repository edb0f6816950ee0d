// The RFC 6455 frame codec (§5.2): a synchronous decoder fed bytes in any
// chunking, and the encoder.

import { CloseCode } from "./constants.ts";
import { Opcode } from "./constants.ts";
import { applyMask, xorMask } from "./mask.ts";
import { WebSocketError } from "./websocket_error.ts";

/**
 * One WebSocket frame (RFC 6455 §5.2) with its payload unmasked.
 *
 * @example A final text frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Frame, Opcode } from "@scope/ws/frames";
 *
 * const frame: Frame = {
 *   fin: true,
 *   opcode: Opcode.Text,
 *   payload: new TextEncoder().encode("Hi"),
 * };
 * assert.equal(frame.payload.length, 2);
 * ```
 */
export interface Frame {
  /** Whether this is the last frame of its message. */
  fin: boolean;
  /** The opcode, one of {@linkcode Opcode}. */
  opcode: number;
  /** The payload, unmasked. */
  payload: Uint8Array;
  /** RSV1, used by extensions such as permessage-deflate. */
  rsv1?: boolean;
  /** RSV2, reserved for extensions. */
  rsv2?: boolean;
  /** RSV3, reserved for extensions. */
  rsv3?: boolean;
}

/**
 * A decoded frame header, as seen by a {@linkcode FrameHandler}.
 *
 * @example Telling a final text frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { type FrameHeader, Opcode } from "@scope/ws/frames";
 *
 * const isFinalText = (header: FrameHeader) =>
 *   header.fin && header.opcode === Opcode.Text;
 * assert.equal(isFinalText({ fin: true, rsv: 0, opcode: 1, length: 5 }), true);
 * ```
 */
export interface FrameHeader {
  /** Whether this is the last frame of its message. */
  fin: boolean;
  /** RSV1, RSV2 and RSV3 as bits 4, 2 and 1. */
  rsv: number;
  /** The opcode. */
  opcode: number;
  /** The payload length in bytes. */
  length: number;
}

/**
 * Receives a decoded frame in pieces: the header, then the unmasked payload
 * in one or more pieces as it arrives, then the end. Control frames always
 * come as one piece.
 *
 * @example Counting payload bytes as they arrive
 * ```ts
 * import type { FrameHandler } from "@scope/ws/frames";
 *
 * let bytes = 0;
 * const handler: FrameHandler = {
 *   onFrameStart() {},
 *   onFramePayload(piece) {
 *     bytes += piece.length;
 *   },
 *   onFrameEnd() {},
 * };
 * ```
 */
export interface FrameHandler {
  /** A frame header has been decoded and validated. */
  onFrameStart(header: FrameHeader): void;
  /** More unmasked payload bytes of the current frame (never empty). */
  onFramePayload(bytes: Uint8Array): void;
  /** The current frame's payload is complete. */
  onFrameEnd(): void;
}

/**
 * Options for {@linkcode FrameDecoder} and {@linkcode FrameDecoderStream}.
 *
 * @example A client's decoder with a 1 MiB frame limit
 * ```ts
 * import { FrameDecoderStream, type FrameDecoderOptions } from "@scope/ws/frames";
 *
 * const options: FrameDecoderOptions = { role: "client", maxPayloadLength: 1 << 20 };
 * const decoder = new FrameDecoderStream(options);
 * ```
 */
export interface FrameDecoderOptions {
  /**
   * Which side decodes: a `"server"` requires masked frames from the client,
   * a `"client"` refuses masked frames from the server (RFC 6455 §5.1).
   * Default `"server"`.
   */
  role?: "server" | "client";
  /** Whether RSV1 may be set, as when permessage-deflate is negotiated. */
  allowRsv1?: boolean;
  /**
   * The largest payload length accepted; a bigger frame fails with 1009 from
   * its header, before any payload is buffered. Default: 2^53 − 1, the
   * largest length a number holds exactly (a 64-bit length may be up to
   * 2^63 − 1, RFC 6455 §5.2).
   */
  maxPayloadLength?: number;
}

const enum State {
  Header,
  Payload,
}

function protocolError(reason: string): WebSocketError {
  return new WebSocketError(reason, {
    closeCode: CloseCode.ProtocolError,
    reason,
  });
}

/**
 * The synchronous RFC 6455 frame parser: feed it bytes in any chunking and it
 * calls a {@linkcode FrameHandler}. Headers are validated as soon as their
 * bytes arrive; a violation throws a {@linkcode WebSocketError} carrying 1002
 * (or 1009 for an oversized frame). Data frame payloads are passed on as views
 * of the input, unmasked in place, so input chunks must not be reused.
 *
 * @example Decoding RFC 6455 §5.7's masked "Hello" fed in two pieces
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameDecoder, type FrameHeader } from "@scope/ws/frames";
 *
 * const headers: FrameHeader[] = [];
 * const pieces: string[] = [];
 * let ended = false;
 * const decoder = new FrameDecoder({
 *   onFrameStart: (header) => headers.push(header),
 *   onFramePayload: (bytes) => pieces.push(new TextDecoder().decode(bytes)),
 *   onFrameEnd: () => ended = true,
 * }, { role: "server" });
 * const bytes = new Uint8Array([
 *   0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
 * ]);
 * decoder.push(bytes.subarray(0, 9)); // the header and "Hel"
 * decoder.push(bytes.subarray(9)); // "lo"
 * assert.equal(headers[0].opcode, 1);
 * assert.equal(headers[0].length, 5);
 * assert.deepEqual(pieces, ["Hel", "lo"]);
 * assert.ok(ended);
 * ```
 */
export class FrameDecoder {
  #handler: FrameHandler;
  #server: boolean;
  #rsvAllowed: number;
  #maxPayload: number;
  #state = State.Header;
  /** A header that spans chunks, gathered (made when first needed). */
  #head: Uint8Array | null = null;
  #headLength = 0;
  #remaining = 0;
  #masked = false;
  /** The masking key, byte `n` in bits `8n` to `8n + 7` (see `xorMask`). */
  #mask = 0;
  #maskOffset = 0;
  #control: Uint8Array | null = null;
  #controlLength = 0;
  #error: WebSocketError | null = null;
  #paused = false;

  /**
   * Creates a decoder that calls `handler` with what it decodes.
   *
   * @param handler Receives the decoded frames.
   * @param options The role, allowed RSV bits and size limit.
   */
  constructor(handler: FrameHandler, options?: FrameDecoderOptions) {
    options ??= {};
    this.#handler = handler;
    this.#server = (options.role ?? "server") === "server";
    this.#rsvAllowed = options.allowRsv1 ? 4 : 0;
    this.#maxPayload = options.maxPayloadLength ?? Number.MAX_SAFE_INTEGER;
  }

  /** Whether the decoder is between frames, with no partial frame held. */
  get idle(): boolean {
    return this.#state === State.Header && this.#headLength === 0;
  }

  /**
   * How many payload bytes of the current data frame are still to come; 0
   * between frames and in control frames. Bytes pushed while it is nonzero
   * go to the frame's payload first.
   */
  get payloadRemaining(): number {
    return this.#state === State.Payload && this.#control === null
      ? this.#remaining
      : 0;
  }

  /**
   * Makes the `push` in progress return after the frame that is ending (to
   * be called from the handler's `onFrameEnd`), so that a caller can bound
   * the work done for one chunk and feed the rest later.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Decodes `chunk`, calling the handler for every frame piece it holds.
   * Returns how many bytes it used: all of them, unless the handler called
   * `pause()`; the rest is then to be pushed again later.
   */
  push(chunk: Uint8Array): number {
    if (this.#error) throw this.#error;
    try {
      return this.#push(chunk);
    } catch (error) {
      if (error instanceof WebSocketError) this.#error = error;
      throw error;
    }
  }

  #push(chunk: Uint8Array): number {
    const length = chunk.length;
    let pos = 0;
    while (pos < length) {
      if (this.#paused) {
        this.#paused = false;
        return pos;
      }
      if (this.#state === State.Header) {
        if (
          this.#headLength === 0 && length - pos >= 2 &&
          sizeFromSecondByte(chunk[pos + 1]) <= length - pos
        ) {
          pos += this.#parseHeader(chunk, pos);
          continue;
        }
        // The header spans chunks: gather it in #head, a byte count at a time.
        const head = this.#head ??= new Uint8Array(14);
        const need = this.#headLength < 2 ? 2 : sizeFromSecondByte(head[1]);
        const take = Math.min(need - this.#headLength, length - pos);
        head.set(chunk.subarray(pos, pos + take), this.#headLength);
        this.#headLength += take;
        pos += take;
        if (this.#headLength === 2) this.#checkFirstBytes(head, 0);
        if (
          this.#headLength >= 2 &&
          this.#headLength === sizeFromSecondByte(head[1])
        ) {
          this.#headLength = 0;
          this.#parseHeader(head, 0);
        }
        continue;
      }
      const take = Math.min(this.#remaining, length - pos);
      const piece = chunk.subarray(pos, pos + take);
      pos += take;
      this.#remaining -= take;
      if (this.#masked) {
        xorMask(piece, this.#mask, this.#maskOffset);
        this.#maskOffset += take;
      }
      if (this.#control) {
        this.#control.set(piece, this.#controlLength);
        this.#controlLength += take;
        if (this.#remaining === 0) {
          const payload = this.#control;
          this.#control = null;
          this.#state = State.Header;
          this.#handler.onFramePayload(payload);
          this.#handler.onFrameEnd();
        }
      } else {
        if (this.#remaining === 0) this.#state = State.Header;
        this.#handler.onFramePayload(piece);
        if (this.#remaining === 0) this.#handler.onFrameEnd();
      }
    }
    this.#paused = false;
    return length;
  }

  /** Validates what the first two bytes tell, before the rest arrives. */
  #checkFirstBytes(bytes: Uint8Array, at: number): void {
    const b0 = bytes[at];
    const b1 = bytes[at + 1];
    const rsv = (b0 >> 4) & 7;
    const opcode = b0 & 15;
    if (rsv & ~this.#rsvAllowed) {
      throw protocolError("Reserved bits must be 0");
    }
    if (opcode >= 8) {
      if (opcode > Opcode.Pong) {
        throw protocolError(`Reserved opcode ${opcode}`);
      }
      if (!(b0 & 0x80)) {
        throw protocolError("Control frames must not be fragmented");
      }
      if ((b1 & 127) > 125) {
        throw protocolError("Control frame payloads must not exceed 125 bytes");
      }
    } else if (opcode > Opcode.Binary) {
      throw protocolError(`Reserved opcode ${opcode}`);
    }
    const masked = (b1 & 0x80) !== 0;
    if (this.#server && !masked) {
      throw protocolError("Client frames must be masked");
    }
    if (!this.#server && masked) {
      throw protocolError("Server frames must not be masked");
    }
  }

  /** Parses a header known to be complete at `bytes[at]`; returns its size. */
  #parseHeader(bytes: Uint8Array, at: number): number {
    this.#checkFirstBytes(bytes, at);
    const b0 = bytes[at];
    const b1 = bytes[at + 1];
    const size = sizeFromSecondByte(b1);
    let length = b1 & 127;
    let pos = at + 2;
    if (length === 126) {
      length = (bytes[pos] << 8) | bytes[pos + 1];
      pos += 2;
    } else if (length === 127) {
      const high = ((bytes[pos] << 24) >>> 0) + (bytes[pos + 1] << 16) +
        (bytes[pos + 2] << 8) + bytes[pos + 3];
      if (high >= 0x80000000) {
        throw protocolError(
          "The most significant bit of a 64-bit length must be 0",
        );
      }
      const low = ((bytes[pos + 4] << 24) >>> 0) + (bytes[pos + 5] << 16) +
        (bytes[pos + 6] << 8) + bytes[pos + 7];
      length = high * 0x100000000 + low;
      pos += 8;
    }
    if (length > this.#maxPayload) {
      throw new WebSocketError("Frame payload too big", {
        closeCode: CloseCode.MessageTooBig,
        reason: "Message too big",
      });
    }
    this.#masked = (b1 & 0x80) !== 0;
    if (this.#masked) {
      this.#mask = (bytes[pos] | (bytes[pos + 1] << 8) |
        (bytes[pos + 2] << 16) | (bytes[pos + 3] << 24)) >>> 0;
      pos += 4;
    }
    const opcode = b0 & 15;
    this.#maskOffset = 0;
    this.#remaining = length;
    this.#handler.onFrameStart({
      fin: (b0 & 0x80) !== 0,
      rsv: (b0 >> 4) & 7,
      opcode,
      length,
    });
    if (length === 0) {
      this.#handler.onFrameEnd();
    } else {
      this.#state = State.Payload;
      if (opcode >= 8) {
        this.#control = new Uint8Array(length);
        this.#controlLength = 0;
      }
    }
    return size;
  }
}

/** The header size that the second header byte implies. */
function sizeFromSecondByte(b1: number): number {
  const len = b1 & 127;
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

/** The size of a frame header for a payload of `length` bytes. */
export function headerSize(length: number, masked: boolean): number {
  return 2 + (length < 126 ? 0 : length < 65536 ? 2 : 8) + (masked ? 4 : 0);
}

/** Writes a frame header into `target` at `at`; returns its size. */
export function writeHeader(
  target: Uint8Array,
  at: number,
  frame: Omit<Frame, "payload">,
  length: number,
  mask?: Uint8Array,
): number {
  target[at] = (frame.fin ? 0x80 : 0) | (frame.rsv1 ? 0x40 : 0) |
    (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0) | (frame.opcode & 15);
  const maskBit = mask ? 0x80 : 0;
  let pos = at + 2;
  if (length < 126) {
    target[at + 1] = maskBit | length;
  } else if (length < 65536) {
    target[at + 1] = maskBit | 126;
    target[at + 2] = length >>> 8;
    target[at + 3] = length & 255;
    pos += 2;
  } else {
    target[at + 1] = maskBit | 127;
    const high = Math.floor(length / 0x100000000);
    target[at + 2] = high >>> 24;
    target[at + 3] = (high >>> 16) & 255;
    target[at + 4] = (high >>> 8) & 255;
    target[at + 5] = high & 255;
    target[at + 6] = length >>> 24;
    target[at + 7] = (length >>> 16) & 255;
    target[at + 8] = (length >>> 8) & 255;
    target[at + 9] = length & 255;
    pos += 8;
  }
  if (mask) {
    target[pos] = mask[0];
    target[pos + 1] = mask[1];
    target[pos + 2] = mask[2];
    target[pos + 3] = mask[3];
    pos += 4;
  }
  return pos - at;
}

/**
 * Encodes a frame into a new array: header, masking key if `mask` is given
 * (clients must mask, RFC 6455 §5.3), and the payload, masked in the copy so
 * that `frame.payload` is left unchanged. It refuses what a peer would have
 * to fail the connection for (§5.2, §5.5): a reserved opcode, a control
 * frame with more than 125 bytes of payload or without FIN. The RSV bits are
 * left to the caller, as extensions define them.
 *
 * @param frame The frame to encode.
 * @param mask A 4-byte masking key; omit for frames a server sends.
 * @returns The frame's bytes.
 * @throws {RangeError} For a reserved opcode, a control payload over 125
 * bytes or a masking key shorter than 4 bytes.
 * @throws {TypeError} For a control frame without FIN.
 *
 * @example Encoding RFC 6455 §5.7's unmasked "Hello"
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, Opcode } from "@scope/ws/frames";
 *
 * const bytes = encodeFrame({
 *   fin: true,
 *   opcode: Opcode.Text,
 *   payload: new TextEncoder().encode("Hello"),
 * });
 * assert.deepEqual([...bytes], [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
 * ```
 */
export function encodeFrame(frame: Frame, mask?: Uint8Array): Uint8Array {
  const { opcode } = frame;
  const length = frame.payload.length;
  if (
    !Number.isInteger(opcode) || opcode < 0 || opcode > Opcode.Pong ||
    (opcode > Opcode.Binary && opcode < Opcode.Close)
  ) {
    throw new RangeError(`The opcode ${opcode} is reserved or invalid`);
  }
  if (opcode >= Opcode.Close) {
    if (length > 125) {
      throw new RangeError(
        `A control frame's payload is at most 125 bytes, got ${length}`,
      );
    }
    if (!frame.fin) throw new TypeError("A control frame cannot be fragmented");
  }
  if (mask !== undefined && mask.length < 4) {
    throw new RangeError("A masking key has 4 bytes");
  }
  const out = new Uint8Array(headerSize(length, mask !== undefined) + length);
  writeFrame(out, 0, frame, frame.payload, mask);
  return out;
}

/**
 * Writes a whole frame into `target` at `at`, where there must be room for
 * `headerSize(payload.length, mask !== undefined) + payload.length` bytes;
 * the payload is masked in `target`, never in place. Returns the size.
 */
export function writeFrame(
  target: Uint8Array,
  at: number,
  frame: Omit<Frame, "payload">,
  payload: Uint8Array,
  mask?: Uint8Array,
): number {
  const start = at + writeHeader(target, at, frame, payload.length, mask);
  const end = start + payload.length;
  target.set(payload, start);
  if (mask) applyMask(target.subarray(start, end), mask);
  return end - at;
}
