// Reassembles frames into messages (RFC 6455 §5.4): fragmentation rules,
// UTF-8 validation as text arrives (§8.1), and the size limit.

import { CloseCode } from "./constants.ts";
import { Opcode } from "./constants.ts";
import type { FrameHandler, FrameHeader } from "./frame.ts";
import { copyInto } from "./_bytes.ts";
import { decodeUtf8, Utf8Text } from "./_utf8.ts";
import { WebSocketError } from "./websocket_error.ts";

/**
 * A whole WebSocket message: text as a `string`, binary as a `Uint8Array`.
 *
 * @example Telling text from binary
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Message } from "@scope/ws/frames";
 *
 * function describe(message: Message): string {
 *   return typeof message === "string"
 *     ? `text (${message.length} characters)`
 *     : `binary (${message.length} bytes)`;
 * }
 * assert.equal(describe("hi"), "text (2 characters)");
 * ```
 */
export type Message = string | Uint8Array;

/**
 * Receives what a {@linkcode MessageAssembler} makes of the frames.
 *
 * @example Collecting messages and answering pings
 * ```ts
 * import { type MessageHandler, Opcode } from "@scope/ws/frames";
 *
 * const messages: (string | Uint8Array)[] = [];
 * const handler: MessageHandler = {
 *   onMessage: (message) => messages.push(message),
 *   onControl: (opcode) => {
 *     if (opcode === Opcode.Ping) console.log("ping");
 *   },
 * };
 * ```
 */
export interface MessageHandler {
  /** A whole data message. */
  onMessage(message: Message): void;
  /** A control frame (close, ping or pong) with its whole payload. */
  onControl(opcode: number, payload: Uint8Array): void;
  /**
   * A whole message whose first frame had RSV1 set: compressed with
   * permessage-deflate (RFC 7692 §6), its payload still compressed. Only an
   * assembler whose handler has this method accepts RSV1; otherwise it is a
   * protocol error, as any reserved bit without an extension.
   */
  onCompressedMessage?(opcode: number, payload: Uint8Array): void;
}

/**
 * Options for {@linkcode MessageAssembler} and {@linkcode MessageStream}.
 *
 * @example Small messages, few fragments
 * ```ts
 * import { MessageStream, type MessageAssemblerOptions } from "@scope/ws/frames";
 *
 * const limits: MessageAssemblerOptions = { maxMessageSize: 64 * 1024, maxFragments: 16 };
 * const messages = new MessageStream(limits);
 * ```
 */
export interface MessageAssemblerOptions {
  /**
   * The largest message, in bytes, summed over its fragments; a frame that
   * would exceed it fails with 1009 from its header. Default 16 MiB.
   */
  maxMessageSize?: number;
  /**
   * The most frames one message may be split into; more fails with 1008.
   * Default: no limit (reassembly is linear in the message size however it
   * is split, so a fragment costs no more than any other small frame).
   */
  maxFragments?: number;
}

/** The default {@linkcode MessageAssemblerOptions.maxMessageSize}: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
const EMPTY = new Uint8Array(0);
/** Whole text messages up to this many bytes may take the ASCII path. */
const SHORT_TEXT = 64;
/** The least a message buffer grows to. */
const MIN_BUFFER = 64 * 1024;
/**
 * A message buffer grows to at most this many times the bytes received so
 * far (and never past what the message can still be), so that a large
 * message needs few copies while a peer that announces much and sends little
 * cannot make us commit much memory. Growing by a factor, not to the end of
 * the current fragment, keeps reassembly linear in the message size however
 * finely it is fragmented.
 */
const GROWTH = 16;

/**
 * Reassembles fragmented messages (RFC 6455 §5.4) from frame pieces, passes
 * control frames on at once even between fragments, validates text as UTF-8
 * as it arrives (§8.1) and enforces the message size limit. Binary payload
 * is gathered in one growing buffer and text is decoded in large pieces, so
 * reassembly costs the same per byte however finely a message is
 * fragmented. Violations throw
 * a {@linkcode WebSocketError}: 1002 for fragmentation errors, 1007 for
 * invalid UTF-8, 1009 for a message that is too big.
 *
 * @example Decoding frames into messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, FrameDecoder, type Message, MessageAssembler, Opcode } from "@scope/ws/frames";
 *
 * const messages: Message[] = [];
 * const assembler = new MessageAssembler({
 *   onMessage: (message) => messages.push(message),
 *   onControl: () => {},
 * });
 * const decoder = new FrameDecoder(assembler, { role: "client" });
 * const text = (s: string) => new TextEncoder().encode(s);
 * decoder.push(encodeFrame({ fin: false, opcode: Opcode.Text, payload: text("Hel") }));
 * decoder.push(encodeFrame({ fin: true, opcode: Opcode.Continuation, payload: text("lo") }));
 * assert.deepEqual(messages, ["Hello"]);
 * ```
 */
export class MessageAssembler implements FrameHandler {
  #handler: MessageHandler;
  /** Whether RSV1 marks compressed messages (the handler takes them). */
  #inflates: boolean;
  #maxSize: number;
  #maxFragments: number;
  #fragments = 0;
  /** Text that arrives in pieces; made when first needed. */
  #utf8: Utf8Text | null = null;
  /** The opcode of the message in progress, or -1 between messages. */
  #opcode = -1;
  #size = 0;
  /** Binary or compressed payload, copied out of the read buffers. */
  #buffer: Uint8Array = EMPTY;
  #used = 0;
  /** Whether the message in progress is compressed (RSV1 on its first frame). */
  #compressed = false;
  /** Whether payload pieces are kept as they are: binary or compressed. */
  #collect = false;
  /** A text message that came whole in one piece, decoded at once. */
  #whole = "";
  /** Whether the text in progress came in pieces, gathered in `#utf8`. */
  #pieces = false;
  #frameFin = false;
  #controlOpcode = -1;
  #control: Uint8Array = EMPTY;

  /**
   * Creates an assembler that calls `handler` with whole messages.
   *
   * @param handler Receives whole messages and control frames.
   * @param options The message size and fragment limits.
   */
  constructor(handler: MessageHandler, options?: MessageAssemblerOptions) {
    options ??= {};
    this.#handler = handler;
    this.#inflates = typeof handler.onCompressedMessage === "function";
    this.#maxSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#maxFragments = options.maxFragments ?? Infinity;
  }

  /** Whether a fragmented message is in progress. */
  get inMessage(): boolean {
    return this.#opcode !== -1;
  }

  /** Checks fragmentation and the size limit from a frame's header. */
  onFrameStart(header: FrameHeader): void {
    const opcode = header.opcode;
    if (header.rsv !== 0) this.#checkReservedBits(opcode, header.rsv);
    if (opcode >= Opcode.Close) {
      this.#controlOpcode = opcode;
      this.#control = EMPTY;
      return;
    }
    if (opcode === Opcode.Continuation) {
      if (this.#opcode === -1) {
        throw protocolError("Unexpected continuation frame");
      }
    } else {
      if (this.#opcode !== -1) {
        throw protocolError("Expected a continuation frame");
      }
      this.#opcode = opcode;
      this.#size = 0;
      this.#fragments = 0;
      this.#compressed = header.rsv !== 0;
      this.#collect = this.#compressed || opcode === Opcode.Binary;
    }
    this.#controlOpcode = -1;
    if (++this.#fragments > this.#maxFragments) {
      throw new WebSocketError("Too many fragments in one message", {
        closeCode: CloseCode.PolicyViolation,
        reason: "Too many fragments",
      });
    }
    if (this.#size + header.length > this.#maxSize) {
      throw new WebSocketError("Message too big", {
        closeCode: CloseCode.MessageTooBig,
        reason: "Message too big",
      });
    }
    this.#size += header.length;
    this.#frameFin = header.fin;
  }

  /** Takes payload bytes; text is checked as UTF-8 piece by piece. */
  onFramePayload(bytes: Uint8Array): void {
    if (this.#controlOpcode !== -1) {
      this.#control = bytes;
      return;
    }
    if (this.#collect) {
      this.#append(bytes);
    } else if (this.#frameFin && this.#size === bytes.length) {
      // The whole message is in this one piece: decode it from there.
      const text = (bytes.length <= SHORT_TEXT && ascii(bytes)) ||
        decodeUtf8(bytes);
      if (text === null) throw invalidUtf8();
      this.#whole = text;
    } else {
      // §8.1: checked as it arrives, so that an invalid byte fails at once.
      this.#pieces = true;
      if (!(this.#utf8 ??= new Utf8Text()).push(bytes)) throw invalidUtf8();
    }
  }

  /** Completes a control frame or, on the final fragment, a message. */
  onFrameEnd(): void {
    if (this.#controlOpcode !== -1) {
      const opcode = this.#controlOpcode;
      const payload = this.#control;
      this.#controlOpcode = -1;
      this.#control = EMPTY;
      this.#handler.onControl(opcode, payload);
      return;
    }
    if (!this.#frameFin) return;
    if (this.#compressed) {
      const opcode = this.#opcode;
      const payload = this.#take();
      this.#opcode = -1;
      this.#size = 0;
      this.#handler.onCompressedMessage!(opcode, payload);
      return;
    }
    let message: Message;
    if (this.#collect) {
      message = this.#take();
    } else if (this.#pieces) {
      this.#pieces = false;
      // A sequence cut off at the end of the message is invalid too.
      const text = this.#utf8!.end();
      if (text === null) throw invalidUtf8();
      message = text;
    } else {
      // Whole in one piece, or empty.
      message = this.#whole;
      this.#whole = "";
    }
    this.#opcode = -1;
    this.#size = 0;
    this.#handler.onMessage(message);
  }

  /**
   * Copies payload bytes out of the read buffer (which is reused) into the
   * message's buffer, which grows by the `GROWTH` rule.
   */
  #append(bytes: Uint8Array): void {
    const need = this.#used + bytes.length;
    if (
      bytes.length > 64 && bytes.buffer === this.#buffer.buffer &&
      bytes.byteOffset === this.#buffer.byteOffset + this.#used
    ) {
      // Read straight into place through `directTarget` (a few bytes read
      // there are copied onto themselves: cheaper than this test per byte).
      this.#used = need;
      return;
    }
    if (need > this.#buffer.length) this.#grow(need);
    copyInto(this.#buffer, this.#used, bytes);
    this.#used = need;
  }

  /** Grows the buffer to hold at least `need` bytes, by the `GROWTH` rule. */
  #grow(need: number): void {
    const capacity = Math.max(
      need,
      Math.min(Math.max(need * GROWTH, MIN_BUFFER), this.#mostPossible()),
    );
    const grown = new Uint8Array(capacity);
    grown.set(this.#buffer.subarray(0, this.#used));
    this.#buffer = grown;
  }

  /**
   * The most bytes the message in progress can still come to: exact once
   * the final fragment's header is in, else the size limit.
   */
  #mostPossible(): number {
    return this.#frameFin ? this.#size : this.#maxSize;
  }

  /**
   * Where the next `remaining` payload bytes of a binary or compressed
   * message can be read straight into, sparing a copy for large messages;
   * null when there is no such message or it has not proved large yet (the
   * buffer grows by the same rule as `#append`). Bytes read there must then
   * be fed to the decoder as usual.
   */
  directTarget(remaining: number): Uint8Array | null {
    if (!this.#collect || this.#used === 0) return null;
    // Only when it can grow: a buffer already as large as the headers
    // declared, or one that would not grow past its size, would be copied
    // for nothing on every read (a peer trickling bytes makes that O(n²)).
    if (
      this.#buffer.length - this.#used < MIN_BUFFER &&
      this.#buffer.length < Math.min(this.#mostPossible(), this.#used * GROWTH)
    ) {
      this.#grow(this.#used + 1);
    }
    const room = this.#buffer.length - this.#used;
    if (room < MIN_BUFFER) return null;
    return this.#buffer.subarray(
      this.#used,
      this.#used + Math.min(room, remaining),
    );
  }

  /** The collected payload, exactly as long as the message. */
  #take(): Uint8Array {
    // An empty message gets its own array, not the shared EMPTY.
    const payload = this.#used === 0
      ? new Uint8Array(0)
      : this.#buffer.length === this.#used
      ? this.#buffer
      : this.#buffer.slice(0, this.#used);
    this.#buffer = EMPTY;
    this.#used = 0;
    return payload;
  }

  /**
   * RSV1 may only start a compressed message, and only once permessage-
   * deflate is negotiated (RFC 7692 §6.1): never on a continuation or a
   * control frame.
   */
  #checkReservedBits(opcode: number, rsv: number): void {
    if (!this.#inflates || rsv !== 4) {
      throw protocolError("Reserved bits must be 0");
    }
    if (opcode >= Opcode.Close) {
      throw protocolError("Control frames must not be compressed");
    }
    if (opcode === Opcode.Continuation) {
      throw protocolError("RSV1 must be 0 on a continuation frame");
    }
  }
}

function protocolError(reason: string): WebSocketError {
  return new WebSocketError(reason, {
    closeCode: CloseCode.ProtocolError,
    reason,
  });
}

function invalidUtf8(): WebSocketError {
  return new WebSocketError("Invalid UTF-8 in text message", {
    closeCode: CloseCode.InvalidPayload,
    reason: "Invalid UTF-8",
  });
}

/**
 * Decodes short all-ASCII bytes in JavaScript, cheaper than a call into
 * `TextDecoder`; `""` (falsy) when a byte is not ASCII, or for no bytes.
 */
function ascii(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) return "";
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}
