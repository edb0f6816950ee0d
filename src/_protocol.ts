import { Opcode } from "./constants.ts";
import { encodeClosePayload, parseClosePayload } from "./close_frame.ts";
import { _encodeHeader, encodeFrame, FrameDecoder } from "./frame.ts";
import { type Message, MessageAssembler } from "./message_assembler.ts";
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

/** What the protocol asks of its I/O layer. */
export interface ProtocolEvents {
  /** A whole data message arrived. */
  message(message: Message): void;
  /** Bytes to write to the peer, in order. */
  send(bytes: Uint8Array): void;
  /** The protocol reached the closed state; nothing more will be sent. */
  closed(result: CloseResult): void;
}

/** Options of the protocol state machine. */
export interface ProtocolOptions {
  /** A server expects masked frames; a client masks what it sends. */
  role: "server" | "client";
  /** The largest message accepted, in bytes. */
  maxMessageSize: number;
  /** The most fragments one message may have. */
  maxFragments?: number;
}

/** Where the connection is in its life (RFC 6455 §4, §7). */
export type ProtocolState = "open" | "closing" | "closed";

const encoder = new TextEncoder();

/**
 * Payloads above this size are written after their header as they are,
 * without copying; smaller ones are copied next to the header.
 */
const COPY_LIMIT = 16 * 1024;

/**
 * The connection state machine, with no I/O: bytes in through `receive`,
 * messages and outgoing bytes out through the events. It answers pings,
 * runs the closing handshake and maps every violation to its close code in
 * one place (`fail`).
 */
export class Protocol {
  #events: ProtocolEvents;
  #client: boolean;
  #decoder: FrameDecoder;
  #state: ProtocolState = "open";

  constructor(options: ProtocolOptions, events: ProtocolEvents) {
    this.#events = events;
    this.#client = options.role === "client";
    const assembler = new MessageAssembler({
      onMessage: (message) => {
        if (this.#state !== "closed") events.message(message);
      },
      onControl: (opcode, payload) => this.#onControl(opcode, payload),
    }, options);
    this.#decoder = new FrameDecoder(assembler, {
      role: options.role,
      maxPayloadLength: options.maxMessageSize,
    });
  }

  /** The current state. */
  get state(): ProtocolState {
    return this.#state;
  }

  /** Feeds bytes from the peer; frames after the peer's close are ignored. */
  receive(chunk: Uint8Array): void {
    if (this.#state === "closed") return;
    try {
      this.#decoder.push(chunk);
    } catch (error) {
      if (!(error instanceof WebSocketError)) throw error;
      this.fail(error.closeCode, error.reason);
    }
  }

  /** Sends a data message: a `string` as text, bytes as binary. */
  send(message: Message): void {
    if (this.#state !== "open") {
      throw new TypeError("Cannot send on a closing or closed WebSocket");
    }
    if (typeof message === "string") {
      this.#sendFrame(Opcode.Text, encoder.encode(message));
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
    this.#sendFrame(Opcode.Close, encodeClosePayload(code, reason));
  }

  /**
   * Fails the connection (§7.1.7): sends a close frame with `code` unless one
   * was sent already, and ends in the closed state with an error.
   */
  fail(code: number, reason: string): void {
    if (this.#state === "closed") return;
    if (this.#state === "open") {
      this.#sendFrame(Opcode.Close, encodeClosePayload(code, reason));
    }
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
    this.#events.closed(result);
  }

  #onControl(opcode: number, payload: Uint8Array): void {
    if (this.#state === "closed") return;
    if (opcode === Opcode.Ping) {
      // §5.5.3: answer with the same payload; nothing follows our close.
      if (this.#state === "open") this.#sendFrame(Opcode.Pong, payload);
    } else if (opcode === Opcode.Close) {
      const { closeCode, reason } = parseClosePayload(payload);
      if (this.#state === "open") {
        // §5.5.1: echo the status code; an empty close is answered with 1000.
        this.#sendFrame(
          Opcode.Close,
          encodeClosePayload(closeCode === 1005 ? 1000 : closeCode),
        );
      }
      this.#finish({ closeCode, reason });
    }
    // Unsolicited pongs need no answer (§5.5.3).
  }

  #sendFrame(opcode: number, payload: Uint8Array): void {
    const frame = { fin: true, opcode, payload };
    if (this.#client) {
      this.#events.send(
        encodeFrame(frame, crypto.getRandomValues(new Uint8Array(4))),
      );
    } else if (payload.length > COPY_LIMIT) {
      this.#events.send(_encodeHeader(frame, payload.length));
      this.#events.send(payload);
    } else {
      this.#events.send(encodeFrame(frame));
    }
  }
}
