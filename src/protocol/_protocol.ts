// The RFC 6455 connection state machine, with no I/O: bytes in through
// `receive`, messages and the end out through a handler, frames out into a
// sink. It answers pings, runs the closing handshake and fails the
// connection with the right close code.

import { CloseCode } from "./constants.ts";
import { Opcode } from "./constants.ts";
import { encodeClosePayload, parseClosePayload } from "./_close_frame.ts";
import { FrameDecoder, headerSize, writeFrame, writeHeader } from "./frame.ts";
import {
  type Message,
  MessageAssembler,
  type MessageHandler,
} from "./message_assembler.ts";
import { maskKey } from "./mask.ts";
import { WebSocketError } from "./websocket_error.ts";

/** How a connection ended, as the protocol saw it. */
export interface CloseResult {
  /** The peer's close code (1005 if it sent none), the failure's, or 1006. */
  closeCode: number;
  /** The close reason. */
  reason: string;
  /** Set when the connection did not end with a clean closing handshake. */
  error?: WebSocketError;
}

/** What the protocol tells its owner. */
export interface ProtocolHandler {
  /**
   * A whole data message arrived. Returning `false` asks the protocol to
   * stop decoding after it (the owner has no room for more): `receive` then
   * returns early and the rest of the chunk is to be fed again later.
   */
  message(message: Message): boolean | void;
  /**
   * A whole message whose first frame had RSV1 set, with permessage-deflate
   * negotiated (RFC 7692 §6): its payload is still compressed. Returning
   * `false` stops decoding, as for `message`.
   */
  compressedMessage(text: boolean, payload: Uint8Array): boolean | void;
  /**
   * Another `FRAME_BATCH` frames were decoded. Returning `false` stops
   * decoding after the current frame, as for `message`: a message in 1-byte
   * fragments brings tens of thousands of frames in one read and ends none,
   * so an owner that bounds the work of a read by messages alone would
   * never stop it.
   */
  frames?(): boolean | void;
  /** The protocol reached the closed state: nothing more goes either way. */
  end(result: CloseResult): void;
}

/**
 * Where frames go: the connection's outbound queue. Small frames are
 * written into its batch buffer at an offset (`reserve`, then `commit`),
 * large payloads are queued by reference (`push`).
 */
export interface FrameSink {
  /**
   * Makes room for `size` bytes at the end of the queue and returns where
   * they start in `batch`; `commit` then queues the part used.
   */
  reserve(size: number): number;
  /** The buffer that the last `reserve` made room in. */
  readonly batch: Uint8Array;
  /** Queues the first `used` bytes of the last `reserve`. */
  commit(used: number): void;
  /** Queues bytes by reference, after what is queued. */
  push(bytes: Uint8Array): void;
}

/** Options of the protocol state machine. */
export interface ProtocolOptions {
  /** A server expects masked frames; a client masks what it sends. */
  role: "server" | "client";
  /** The largest message accepted, in bytes. */
  maxMessageSize: number;
  /** The most fragments one message may have; default no limit. */
  maxFragments?: number;
  /** Whether permessage-deflate was negotiated (RSV1 marks compression). */
  compression?: boolean;
}

/**
 * Where the connection is in its life (RFC 6455 §4, §7): `open`; `closing`
 * once our close frame is sent and the peer's awaited; `closed` once both
 * are exchanged, or the connection failed or broke.
 */
export type ProtocolState = "open" | "closing" | "closed";

const encoder = new TextEncoder();

/**
 * Payloads above this size are queued after their header by reference,
 * without copying (servers only: a client masks a copy). It is the write
 * queue's high-water mark, so that `write()` cannot resolve while such a
 * payload still waits to be written.
 */
export const COPY_LIMIT = 64 * 1024;
/** Payload still to come from which reads go straight into the message. */
const DIRECT_READ_MIN = 16 * 1024;
/** Frames decoded per call of the handler's `frames()`. */
const FRAME_BATCH = 256;
/** Strings up to this many characters take the short text path. */
const SHORT_TEXT = 41;

/** Takes the bytes that follow the peer's close frame: they are ignored. */
const DISCARD = {
  push: (chunk: Uint8Array): number => chunk.length,
  payloadRemaining: 0,
};

/** Stands for the decoder until the first bytes arrive: no payload pends. */
const UNSTARTED = {
  push: (chunk: Uint8Array): number => chunk.length,
  payloadRemaining: 0,
};

/**
 * The connection state machine (RFC 6455 §5, §7), with no I/O. Feed it the
 * peer's bytes with `receive`; it calls its handler with each message and
 * once with the end, and writes every frame it sends (pongs, close frames,
 * the application's messages) into its sink, in order.
 *
 * Once the peer's close frame has arrived, the decoder is swapped for one
 * that discards: what follows a close frame is ignored (§5.5.1), even when
 * malformed.
 */
export class Protocol {
  #handler: ProtocolHandler;
  #sink: FrameSink;
  #client: boolean;
  #options: ProtocolOptions;
  #input: Pick<FrameDecoder, "push" | "payloadRemaining"> = UNSTARTED;
  // Made with the first bytes from the peer: an idle subscriber, which never
  // sends, then keeps none of the decoder's state (about 0.4 KiB).
  #decoder!: FrameDecoder;
  #assembler!: MessageAssembler;
  #state: ProtocolState = "open";

  constructor(
    options: ProtocolOptions,
    handler: ProtocolHandler,
    sink: FrameSink,
  ) {
    this.#handler = handler;
    this.#sink = sink;
    this.#client = options.role === "client";
    this.#options = options;
  }

  /** Makes the decoder and the assembler for the first bytes received. */
  #start(): void {
    const options = this.#options;
    const assembler = this.#assembler = new CountingAssembler(
      options.compression ? new CompressedEvents(this) : new Events(this),
      options,
      this,
    );
    this.#input = this.#decoder = new FrameDecoder(assembler, {
      role: options.role,
      maxPayloadLength: options.maxMessageSize,
      allowRsv1: options.compression ?? false,
    });
  }

  /** The current state. */
  get state(): ProtocolState {
    return this.#state;
  }

  /**
   * Where the next bytes read may go straight into, when they can only be
   * payload of a large binary or compressed message in progress; null
   * otherwise. What was read there is then passed to `receive` as usual.
   */
  readTarget(): Uint8Array | null {
    const remaining = this.#input.payloadRemaining;
    return remaining >= DIRECT_READ_MIN
      ? this.#assembler.directTarget(remaining)
      : null;
  }

  /**
   * Feeds bytes from the peer. Returns how many it used: all of them,
   * unless the handler asked to stop after a message; the rest is to be fed
   * again later. A violation fails the connection with its close code; the
   * messages before it have been handed over already.
   */
  receive(chunk: Uint8Array): number {
    if (this.#input === UNSTARTED) this.#start();
    try {
      const used = this.#input.push(chunk);
      // Once the peer's close has ended it, the rest of the chunk is
      // discarded (§5.5.1), not left over to be fed again.
      return this.#state === "closed" ? chunk.length : used;
    } catch (error) {
      if (!(error instanceof WebSocketError)) throw error;
      this.fail(error.closeCode, error.reason);
      return chunk.length;
    }
  }

  /**
   * The peer closed TCP. After the closing handshake that is the expected
   * end; before it, the connection closed abnormally (1006).
   */
  receiveEof(): void {
    this.abort("The peer closed the connection without a close frame");
  }

  /**
   * Sends a data message: a `string` as text, bytes as binary. Returns the
   * bytes queued (header included), or 0 once closing or closed.
   */
  send(message: Message): number {
    if (this.#state !== "open") return 0;
    if (typeof message !== "string") {
      return this.#sendFrame(Opcode.Binary, message, false);
    }
    if (message.length <= SHORT_TEXT && !this.#client) {
      return this.#sendShortText(message);
    }
    return this.#sendFrame(Opcode.Text, encoder.encode(message), false);
  }

  /**
   * Sends a data frame made elsewhere (a compressed payload, with RSV1).
   * Returns the bytes queued, or 0 once closing or closed.
   */
  sendFrame(opcode: number, payload: Uint8Array, rsv1: boolean): number {
    if (this.#state !== "open") return 0;
    return this.#sendFrame(opcode, payload, rsv1);
  }

  /**
   * Queues a whole frame encoded once for many sockets (a server's frames
   * are not masked, so the same bytes serve every subscriber). Returns the
   * bytes queued, or 0 once closing or closed.
   */
  sendEncoded(frame: Uint8Array): number {
    if (this.#state !== "open" || this.#client) return 0;
    this.#sink.push(frame);
    return frame.length;
  }

  /** Sends a ping (a heartbeat); the payload is at most 125 bytes. */
  ping(payload: Uint8Array = new Uint8Array(0)): void {
    if (this.#state === "open") this.#sendFrame(Opcode.Ping, payload, false);
  }

  /**
   * Starts the closing handshake (§7.1.2): sends a close frame and waits
   * for the peer's. Does nothing once closing has started.
   */
  close(code?: number, reason = ""): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#sendClose(code, reason);
  }

  /**
   * Fails the connection (§7.1.7): sends a close frame with `code` unless
   * one was sent already, and ends in the closed state with an error.
   */
  fail(code: number, reason: string): void {
    if (this.#state === "closed") return;
    // Closing means our close frame went out: `close()` sent it.
    if (this.#state === "open") this.#sendClose(code, reason);
    this.#finish({
      closeCode: code,
      reason,
      error: new WebSocketError(reason, { closeCode: code, reason }),
    });
  }

  /**
   * The transport ended before the closing handshake completed (the peer
   * closed TCP, a read or write failed, or a close timed out): 1006.
   */
  abort(reason = "Connection closed abnormally"): void {
    if (this.#state === "closed") return;
    this.#finish({
      closeCode: CloseCode.AbnormalClosure,
      reason: "",
      error: new WebSocketError(reason, {
        closeCode: CloseCode.AbnormalClosure,
      }),
    });
  }

  #finish(result: CloseResult): void {
    this.#state = "closed";
    this.#input = DISCARD;
    this.#handler.end(result);
  }

  /** A data message from the assembler; none arrive once closed. */
  onMessage(message: Message): void {
    if (this.#handler.message(message) === false) this.#decoder.pause();
  }

  /** A compressed message from the assembler (permessage-deflate). */
  onCompressedMessage(opcode: number, payload: Uint8Array): void {
    const text = opcode === Opcode.Text;
    if (this.#handler.compressedMessage(text, payload) === false) {
      this.#decoder.pause();
    }
  }

  /** Another `FRAME_BATCH` frames were decoded. */
  onFrames(): void {
    if (this.#state !== "closed" && this.#handler.frames?.() === false) {
      this.#decoder.pause();
    }
  }

  onControl(opcode: number, payload: Uint8Array): void {
    if (opcode === Opcode.Ping) {
      // §5.5.3: answer with the same payload; nothing follows our close.
      if (this.#state === "open") this.#sendFrame(Opcode.Pong, payload, false);
    } else if (opcode === Opcode.Close) {
      // A malformed close frame throws here, failing the connection.
      const { closeCode, reason } = parseClosePayload(payload);
      if (this.#state === "open") {
        // §5.5.1: echo the status code; an empty close is answered with
        // 1000. The reason is not echoed.
        this.#sendClose(
          closeCode === CloseCode.NoStatusReceived
            ? CloseCode.NormalClosure
            : closeCode,
          "",
        );
      }
      this.#decoder.pause();
      this.#finish({ closeCode, reason });
    }
    // Unsolicited pongs need no answer (§5.5.3).
  }

  #sendClose(code: number | undefined, reason: string): void {
    this.#sendFrame(Opcode.Close, encodeClosePayload(code, reason), false);
  }

  /**
   * A server's short text goes straight into the outbound queue: at most
   * 3 UTF-8 bytes a character keeps it under 126 bytes (a 2-byte header).
   */
  #sendShortText(text: string): number {
    const length = text.length;
    const sink = this.#sink;
    const at = sink.reserve(2 + length * 3);
    const out = sink.batch;
    const start = at + 2;
    let i = 0;
    for (; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      out[start + i] = code;
    }
    const written = i === length ? length : i + encoder.encodeInto(
      text.slice(i),
      out.subarray(start + i, start + length * 3),
    ).written;
    out[at] = 0x80 | Opcode.Text;
    out[at + 1] = written;
    sink.commit(2 + written);
    return 2 + written;
  }

  #sendFrame(opcode: number, payload: Uint8Array, rsv1: boolean): number {
    const sink = this.#sink;
    const frame = { fin: true, opcode, rsv1 };
    const length = payload.length;
    if (!this.#client && length > COPY_LIMIT) {
      const at = sink.reserve(headerSize(length, false));
      const size = writeHeader(sink.batch, at, frame, length);
      sink.commit(size);
      sink.push(payload);
      return size + length;
    }
    // §5.3: every client frame is masked with a fresh key; the payload is
    // masked in the queue, never in the caller's array.
    const mask = this.#client ? maskKey() : undefined;
    const at = sink.reserve(headerSize(length, this.#client) + length);
    const size = writeFrame(sink.batch, at, frame, payload, mask);
    sink.commit(size);
    return size;
  }
}

/**
 * The assembler's handler: a class rather than closures, so that a
 * connection holds one small object for it.
 */
class Events {
  protocol: Protocol;

  constructor(protocol: Protocol) {
    this.protocol = protocol;
  }

  onMessage(message: Message): void {
    this.protocol.onMessage(message);
  }

  onControl(opcode: number, payload: Uint8Array): void {
    this.protocol.onControl(opcode, payload);
  }
}

/** With permessage-deflate: the assembler accepts RSV1 and passes it on. */
class CompressedEvents extends Events {
  onCompressedMessage(opcode: number, payload: Uint8Array): void {
    this.protocol.onCompressedMessage(opcode, payload);
  }
}

/** The assembler, telling the protocol of every `FRAME_BATCH` frames. */
class CountingAssembler extends MessageAssembler {
  #protocol: Protocol;
  #frames = 0;

  constructor(
    handler: MessageHandler,
    options: ProtocolOptions,
    protocol: Protocol,
  ) {
    super(handler, options);
    this.#protocol = protocol;
  }

  override onFrameEnd(): void {
    super.onFrameEnd();
    if (++this.#frames === FRAME_BATCH) {
      this.#frames = 0;
      this.#protocol.onFrames();
    }
  }
}
