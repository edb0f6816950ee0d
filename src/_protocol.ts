import { Opcode } from "./constants.ts";
import { encodeClosePayload, parseClosePayload } from "./close_frame.ts";
import {
  _headerSize,
  _writeFrame,
  _writeHeader,
  FrameDecoder,
} from "./frame.ts";
import {
  type Message,
  MessageAssembler,
  type MessageHandler,
} from "./message_assembler.ts";
import {
  type _DeflateSettings,
  _PerMessageDeflate,
} from "./permessage_deflate.ts";
import { WebSocketError } from "./websocket_error.ts";

/** How a connection ended, as the protocol saw it. */
export interface CloseResult {
  /** The peer's close code (1005 if it sent none), or the failure's code. */
  closeCode: number;
  /** The close reason. */
  reason: string;
  /** Set when the connection did not end with a clean closing handshake. */
  error?: WebSocketError;
}

/** Where the protocol's outgoing frames go: the connection's write queue. */
export interface ProtocolOutput {
  /**
   * Makes room for `size` bytes at the end of the outbound queue, for a
   * frame to be written into, and returns where they start in `batch`;
   * `commit` then queues the part used.
   */
  reserve(size: number): number;
  /** The buffer that the last `reserve` made room in. */
  readonly batch: Uint8Array;
  /** Queues the first `used` bytes of the last `reserve`. */
  commit(used: number): void;
  /** Queues bytes by reference (large payloads), after what is queued. */
  push(bytes: Uint8Array): void;
}

/**
 * What the protocol tells its I/O layer. The names start with `_` because
 * the connection object itself implements them (one object per connection
 * rather than one closure per event).
 */
export interface ProtocolEvents {
  /** A whole data message arrived. */
  _message(message: Message): void;
  /** The protocol reached the closed state; nothing more will be sent. */
  _ended(result: CloseResult): void;
  /**
   * With permessage-deflate: a promise while the reader has no room for
   * another message, `null` once nobody will read messages any more, else
   * `undefined`. The next message is inflated only once the promise
   * resolves, so that inflated messages never pile up in memory, and not at
   * all when nobody reads (it is dropped, as is any message then).
   */
  _room(): Promise<void> | null | undefined;
  /**
   * With permessage-deflate: the backlog of received messages waiting to be
   * inflated or delivered in order shrank, or the protocol closed.
   */
  _drained(): void;
}

/** Options of the protocol state machine. */
export interface ProtocolOptions {
  /** A server expects masked frames; a client masks what it sends. */
  role: "server" | "client";
  /** The largest message accepted, in bytes. */
  maxMessageSize: number;
  /** The most fragments one message may have. */
  maxFragments?: number;
  /** The negotiated permessage-deflate extension; absent: none. */
  perMessageDeflate?: _DeflateSettings;
}

/** Where the connection is in its life (RFC 6455 §4, §7). */
export type ProtocolState = "open" | "closing" | "closed";

const encoder = new TextEncoder();

/**
 * Payloads above this size are queued after their header as they are,
 * without copying. It is the write queue's high-water mark, so that `write()`
 * cannot resolve while such a payload still waits to be written.
 */
const COPY_LIMIT = 64 * 1024;
/** Payload still to come from which reads go straight into the message. */
const DIRECT_READ_MIN = 16 * 1024;
/** Strings up to this many characters take the short text path. */
const SHORT_TEXT = 41;

/**
 * Received bytes (compressed payloads and messages queued behind them)
 * above which the I/O layer should stop reading until inflation catches up.
 */
const BACKLOG_HIGH_WATER_MARK = 64 * 1024;
/** What each queued received item counts for besides its bytes. */
const ITEM_COST = 64;

/** A received item waiting for its turn (with permessage-deflate only). */
type _Inbound =
  | { type: "message"; message: Message; cost: number }
  | { type: "compressed"; text: boolean; pieces: Uint8Array[]; cost: number }
  | { type: "close"; closeCode: number; reason: string; cost: number };

/**
 * The connection state machine, with no I/O: bytes in through `receive`,
 * messages and outgoing bytes out through the events. It answers pings,
 * runs the closing handshake and maps every violation to its close code in
 * one place (`fail`).
 *
 * With permessage-deflate (RFC 7692), inflating and deflating are
 * asynchronous, so order is kept explicitly, in both directions:
 *
 * - Received: once a compressed message is inflating, the messages after it
 *   (compressed or not) and the peer's close frame wait in `#inbound`, and
 *   are delivered or handled in arrival order. Pings are still answered at
 *   once. The I/O layer stops reading while the backlog is above its mark
 *   (`blocked`), and a message is only inflated once the reader has room
 *   (`events._room`), so that memory stays bounded.
 * - Sent: once a message is compressing, later messages and close frames go
 *   through one promise chain, so that nothing overtakes it on the wire;
 *   pongs and pings may, since they can go between messages. Failing the
 *   connection drops the chain and sends its close frame at once.
 *
 * Without the extension, none of this runs: messages and frames go out and
 * in synchronously, as they arrive.
 */
export class Protocol {
  #events: ProtocolEvents;
  #output: ProtocolOutput;
  #client: boolean;
  #decoder: FrameDecoder;
  #assembler: MessageAssembler;
  #state: ProtocolState = "open";
  #closeSent = false;
  #sendAfterClose: TypeError | undefined;
  /** Set when the peer's close frame arrived, even if still waiting in line. */
  #closeReceived = false;
  #deflate: _PerMessageDeflate | null = null;
  #inbound: _Inbound[] = [];
  #backlog = 0;
  #inflating = false;
  /** Outbound steps queued or running in the chain. */
  #outPending = 0;
  /** The end of the outbound chain; made when first needed. */
  #outTail: Promise<void> | undefined;

  constructor(
    options: ProtocolOptions,
    events: ProtocolEvents,
    output: ProtocolOutput,
  ) {
    this.#events = events;
    this.#output = output;
    this.#client = options.role === "client";
    let handler: MessageHandler;
    if (options.perMessageDeflate) {
      this.#deflate = new _PerMessageDeflate(
        options.role,
        options.perMessageDeflate,
        options.maxMessageSize,
      );
      handler = {
        onMessage: (message) => this.#onMessage(message),
        onControl: (opcode, payload) => this.#onControl(opcode, payload),
        onCompressedMessage: (opcode, pieces, size) =>
          this.#onCompressedMessage(opcode, pieces, size),
      };
    } else {
      handler = {
        onMessage: (message) => {
          if (this.#state !== "closed") events._message(message);
        },
        onControl: (opcode, payload) => this.#onControl(opcode, payload),
      };
    }
    const assembler = this.#assembler = new MessageAssembler(handler, options);
    this.#decoder = new FrameDecoder(assembler, {
      role: options.role,
      maxPayloadLength: options.maxMessageSize,
      allowRsv1: this.#deflate !== null,
    });
  }

  /** The current state. */
  get state(): ProtocolState {
    return this.#state;
  }

  /**
   * Whether the I/O layer should stop reading for now: received messages
   * wait for inflation above the backlog mark, or the peer's close frame
   * waits in line (nothing may follow it). `drained` tells when to look
   * again. Always `false` without permessage-deflate.
   */
  get blocked(): boolean {
    return this.#backlog > BACKLOG_HIGH_WATER_MARK ||
      (this.#closeReceived && this.#state !== "closed");
  }

  /**
   * Where the I/O layer may read the next bytes straight into, when they can
   * only be payload of a large binary message in progress; null otherwise.
   * What was read there is then passed to `receive` as usual.
   */
  readTarget(): Uint8Array | null {
    if (this.#state === "closed" || this.#closeReceived) return null;
    const remaining = this.#decoder.payloadRemaining;
    return remaining >= DIRECT_READ_MIN
      ? this.#assembler.directTarget(remaining)
      : null;
  }

  /** Whether `error` is what `send` threw for a send after close. */
  isSendAfterClose(error: unknown): boolean {
    return error !== undefined && error === this.#sendAfterClose;
  }

  /** Feeds bytes from the peer; frames after the peer's close are ignored. */
  receive(chunk: Uint8Array): void {
    if (this.#state === "closed" || this.#closeReceived) return;
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof WebSocketError)) throw error;
      // Bytes after the peer's close frame are ignored, even broken ones.
      if (!this.#closeReceived) this.fail(error.closeCode, error.reason);
    }
  }

  /**
   * Sends a data message: a `string` as text, bytes as binary. With
   * permessage-deflate it may return a promise, which resolves once the
   * message has been compressed and queued behind the ones before it.
   */
  send(message: Message): Promise<void> | undefined {
    if (this.#state !== "open") {
      // Kept, so that the I/O layer can tell this end of a handler's
      // `pipeTo` from a fault of the handler's own.
      throw this.#sendAfterClose ??= new TypeError(
        "Cannot send on a closing or closed WebSocket",
      );
    }
    if (this.#deflate !== null) return this.#sendDeflated(message);
    if (typeof message === "string") {
      if (message.length <= SHORT_TEXT && !this.#client) {
        this.#sendShortText(message);
      } else {
        this.#sendFrame(Opcode.Text, encoder.encode(message));
      }
    } else {
      this.#sendFrame(Opcode.Binary, message);
    }
  }

  /** Sends a ping (heartbeats); the payload is at most 125 bytes. */
  ping(payload: Uint8Array = new Uint8Array(0)): void {
    if (this.#state === "open") this.#sendFrame(Opcode.Ping, payload);
  }

  /**
   * Starts the closing handshake (§7.1.2): sends a close frame and waits for
   * the peer's. Does nothing once closing has started.
   */
  close(code?: number, reason = ""): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    const payload = encodeClosePayload(code, reason);
    this.#inOrder(() => this.#sendClose(payload));
  }

  /**
   * Fails the connection (§7.1.7): sends a close frame with `code` unless one
   * was sent already, and ends in the closed state with an error.
   */
  fail(code: number, reason: string): void {
    if (this.#state === "closed") return;
    // A close frame still waiting behind a compressing message is dropped
    // with it: this one goes at once.
    if (!this.#closeSent) this.#sendClose(encodeClosePayload(code, reason));
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
      closeCode: 1006,
      reason: "",
      error: new WebSocketError(reason, { closeCode: 1006 }),
    });
  }

  #finish(result: CloseResult): void {
    this.#state = "closed";
    const deflate = this.#deflate;
    if (deflate !== null) {
      // Whatever still waits in either direction is dropped, and the zlib
      // streams are freed.
      deflate.close();
      this.#inbound = [];
      this.#backlog = 0;
    }
    this.#events._ended(result);
    this.#events._drained();
  }

  #onControl(opcode: number, payload: Uint8Array): void {
    if (this.#state === "closed" || this.#closeReceived) return;
    if (opcode === Opcode.Ping) {
      // §5.5.3: answer with the same payload; nothing follows our close.
      if (this.#state === "open") this.#sendFrame(Opcode.Pong, payload);
    } else if (opcode === Opcode.Close) {
      // Parsed at once, so that a malformed close fails at once.
      const { closeCode, reason } = parseClosePayload(payload);
      this.#closeReceived = true;
      if (this.#inbound.length > 0) {
        // Messages before it are still inflating: they come first.
        this.#queueInbound({ type: "close", closeCode, reason, cost: 0 });
      } else {
        this.#onPeerClose(closeCode, reason);
      }
    }
    // Unsolicited pongs need no answer (§5.5.3).
  }

  /** The peer's close frame, in its turn. */
  #onPeerClose(closeCode: number, reason: string): void {
    if (this.#state === "closed") return;
    if (this.#state === "open") {
      this.#state = "closing";
      // §5.5.1: echo the status code; an empty close is answered with 1000.
      // It may wait for a message being sent to go first.
      const payload = encodeClosePayload(closeCode === 1005 ? 1000 : closeCode);
      this.#inOrder(() => this.#sendClose(payload));
    }
    this.#inOrder(() => this.#finish({ closeCode, reason }));
  }

  #sendClose(payload: Uint8Array): void {
    this.#closeSent = true;
    this.#sendFrame(Opcode.Close, payload);
  }

  // --- permessage-deflate ---------------------------------------------------

  /** An uncompressed message: delivered now unless others wait before it. */
  #onMessage(message: Message): void {
    if (this.#state === "closed" || this.#closeReceived) return;
    if (this.#inbound.length === 0) {
      this.#events._message(message);
    } else {
      this.#queueInbound({
        type: "message",
        message,
        cost: message.length + ITEM_COST,
      });
    }
  }

  #onCompressedMessage(
    opcode: number,
    pieces: Uint8Array[],
    size: number,
  ): void {
    if (this.#state === "closed" || this.#closeReceived) return;
    this.#queueInbound({
      type: "compressed",
      text: opcode === Opcode.Text,
      pieces,
      cost: size + ITEM_COST,
    });
  }

  #queueInbound(item: _Inbound): void {
    this.#inbound.push(item);
    this.#backlog += item.cost;
    if (!this.#inflating) this.#drainInbound();
  }

  /** Delivers the received items in order, inflating compressed ones. */
  async #drainInbound(): Promise<void> {
    const deflate = this.#deflate!;
    this.#inflating = true;
    try {
      while (this.#inbound.length > 0 && !this.#isClosed()) {
        const item = this.#inbound[0];
        if (item.type === "compressed") {
          let room = this.#events._room();
          while (room) {
            await room;
            if (this.#isClosed()) return;
            room = this.#events._room();
          }
          if (room === null) {
            // Nobody reads: skip the work. The window no longer matches
            // the peer's, but no message is inflated again.
            this.#inbound.shift();
            this.#backlog -= item.cost;
            this.#events._drained();
            continue;
          }
          let message: Message;
          try {
            message = await deflate.inflate(item.text, item.pieces);
          } catch (error) {
            if (this.#isClosed()) return;
            if (error instanceof WebSocketError) {
              this.fail(error.closeCode, error.reason);
            } else {
              this.fail(1011, "Internal error");
            }
            return;
          }
          if (this.#isClosed()) return;
          this.#events._message(message);
        } else if (item.type === "message") {
          this.#events._message(item.message);
        } else {
          this.#onPeerClose(item.closeCode, item.reason);
          if (this.#isClosed()) return;
        }
        this.#inbound.shift();
        this.#backlog -= item.cost;
        this.#events._drained();
      }
    } finally {
      this.#inflating = false;
    }
  }

  /** Whether closed: a method, so that TypeScript re-reads it after `await`. */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  #sendDeflated(message: Message): Promise<void> | undefined {
    const deflate = this.#deflate!;
    const text = typeof message === "string";
    const bytes = text ? encoder.encode(message) : message;
    const opcode = text ? Opcode.Text : Opcode.Binary;
    if (bytes.length < deflate.threshold) {
      if (this.#outPending === 0) {
        this.#sendFrame(opcode, bytes);
        return;
      }
      return this.#chain(() => this.#sendFrame(opcode, bytes));
    }
    return this.#chain(async () => {
      const payload = await deflate.compress(bytes);
      // Failed while compressing: the close frame went out, nothing follows.
      if (this.#state !== "closed") this.#sendFrame(opcode, payload, true);
    });
  }

  /** Runs `step` now if nothing waits in the outbound chain, else after it. */
  #inOrder(step: () => void): void {
    if (this.#outPending === 0) step();
    else this.#chain(step);
  }

  /** Appends `step` to the outbound chain; it is skipped once closed. */
  #chain(step: () => void | Promise<void>): Promise<void> {
    this.#outPending++;
    const run = async () => {
      try {
        if (this.#state !== "closed") await step();
      } catch {
        // Compressing failed: an internal error (a compressor closed by the
        // end of the connection rejects too, and is ignored then).
        this.fail(1011, "Internal error");
      } finally {
        this.#outPending--;
      }
    };
    const done = (this.#outTail ?? Promise.resolve()).then(run);
    this.#outTail = done;
    return done;
  }

  /**
   * A server's short text goes straight into the outbound queue: at most
   * 3 UTF-8 bytes a character keeps it under 126 bytes (a 2-byte header).
   */
  #sendShortText(text: string): void {
    const length = text.length;
    const output = this.#output;
    const at = output.reserve(2 + length * 3);
    const out = output.batch;
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
    output.commit(2 + written);
  }

  #sendFrame(opcode: number, payload: Uint8Array, rsv1 = false): void {
    const output = this.#output;
    const frame = { fin: true, opcode, rsv1 };
    const length = payload.length;
    if (!this.#client && length > COPY_LIMIT) {
      const at = output.reserve(_headerSize(length, false));
      output.commit(_writeHeader(output.batch, at, frame, length));
      output.push(payload);
      return;
    }
    // §5.3: every client frame is masked with a fresh key; the payload is
    // masked in the queue, never in the caller's array.
    const mask = this.#client ? _maskKey() : undefined;
    const at = output.reserve(_headerSize(length, this.#client) + length);
    output.commit(_writeFrame(output.batch, at, frame, payload, mask));
  }
}

/** Random bytes for masking keys, drawn 4 at a time (one call per 1,024 keys). */
let _maskPool = new Uint8Array(0);
let _maskAt = 0;

function _maskKey(): Uint8Array {
  if (_maskAt === _maskPool.length) {
    _maskPool = crypto.getRandomValues(new Uint8Array(4096));
    _maskAt = 0;
  }
  _maskAt += 4;
  return _maskPool.subarray(_maskAt - 4, _maskAt);
}
