// The I/O half of a WebSocket on a TCP (or TLS) connection: it reads the
// transport into the protocol state machine, writes what the protocol
// queues, and runs the timers of one connection.

import { CloseCode } from "../protocol/constants.ts";
import { clearImmediate, setImmediate } from "node:timers";
import { DeflateCodec } from "./_deflate_codec.ts";
import { DeflateSender } from "./_deflate_sender.ts";
import type { Transport } from "./_transport.ts";
import { WriteQueue, type WriteQueueOwner } from "./_write_queue.ts";
import {
  type CloseResult,
  COPY_LIMIT,
  Protocol,
  type ProtocolHandler,
} from "../protocol/_protocol.ts";
import type { Message } from "../protocol/message_assembler.ts";
import type { DeflateSettings } from "../protocol/permessage_deflate.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";
import type { SharedMessage } from "../pubsub/_shared_message.ts";
import type { TopicHub } from "../pubsub/topic_hub.ts";
import {
  type CompressedMessage,
  deliver,
  endReading,
  openSocket,
  type RequestSource,
  settle,
  type Socket,
  type SocketEngine,
  type SocketOptions,
} from "../socket/socket.ts";

/** What a {@linkcode Connection} needs besides its transport. */
export interface ConnectionInit {
  role: "server" | "client";
  /** The handshake's request, or what makes it when first asked for. */
  request: Request | RequestSource;
  remoteAddr: Deno.NetAddr;
  protocol: string;
  extensions: string;
  /** Bytes that arrived after the handshake, already read from the transport. */
  leftover: Uint8Array;
  maxMessageSize: number;
  /** How long the closing handshake and TCP close may take, in ms. */
  closeTimeout: number;
  /** The most fragments one message may have; default no limit. */
  maxFragments?: number;
  /** The negotiated permessage-deflate extension; absent: none. */
  perMessageDeflate?: DeflateSettings;
  /** What `send()` does past its limit. */
  socketOptions?: SocketOptions;
  /** The topic hub the socket may subscribe to. */
  hub?: TopicHub;
  /**
   * Called once the connection has ended and `socket.closed` settled: one
   * function shared by a server's connections, rather than a promise
   * chain each.
   */
  onEnd?: (connection: Connection) => void;
}

/**
 * Starts the one timer that runs the heartbeat of `connections` (a live
 * set: a server's open connections, or a client's one); undefined when
 * `ping` and `idle` are both 0 (off).
 */
export function startHeartbeat(
  connections: Iterable<Connection>,
  ping: number,
  idle: number,
): ReturnType<typeof setInterval> | undefined {
  const tick = Math.min(
    ping > 0 ? ping : Infinity,
    idle > 0 ? idle / 4 : Infinity,
  );
  if (tick === Infinity) return undefined;
  return setInterval(() => {
    const now = Date.now();
    for (const connection of connections) {
      connection.heartbeat(now, ping, idle);
    }
  }, tick);
}

/** Read buffers start small (idle connections hold one) and grow with use. */
const MIN_READ_SIZE = 128;
const MAX_READ_SIZE = 256 * 1024;

/** Why reading is paused. */
const enum Hold {
  None,
  /** The application has not taken the messages already received. */
  Reader,
  /** The peer does not read what we send (our queue is over its mark). */
  Peer,
  /** This read's share of the event loop is used: others go first. */
  Turn,
}

/**
 * Messages handled from one read before the connection lets the others
 * have the event loop: a read of tiny frames holds tens of thousands, and a
 * reader that takes them all at once (a piped echo) would otherwise keep
 * every other connection waiting until it is through.
 */
const TURN_MESSAGES = 64;

/**
 * One WebSocket over a transport. Reading is pull-based: the transport is
 * read only while the socket has room for messages and the outbound queue
 * is under its mark. The socket's messages and end come from the protocol;
 * its sends go to the protocol (through the deflate sender when
 * compressing). After the closing handshake a server closes TCP first, a
 * client waits for the server to (§7.1.1).
 */
export class Connection
  implements ProtocolHandler, SocketEngine, WriteQueueOwner {
  /** The object the application holds. */
  readonly socket: Socket;
  /** Resolves once the transport is closed and every timer cleared. */
  readonly done: Promise<void>;

  #transport: Transport;
  #server: boolean;
  #closeTimeout: number;
  #protocol: Protocol;
  #queue: WriteQueue;
  #codec: DeflateCodec | null = null;
  #sender: DeflateSender | null = null;
  /** A close was asked for and waits behind compressing messages. */
  #closeAsked = false;
  /** Messages delivered from the current read. */
  #delivered = 0;
  #wake: (() => void) | null = null;
  #resumeTimer: ReturnType<typeof setImmediate> | undefined;
  /** The socket's inbox is full: stop decoding until it resumes us. */
  #socketFull = false;
  /** Messages handled from the current read since it last yielded. */
  #turn = 0;
  /** Frame batches decoded since the connection last let the others run. */
  #frameBatches = 0;
  /** The turn was given up after frame batches; the timer that ends it. */
  #frameTurn = false;
  #frameTurnTimer: ReturnType<typeof setTimeout> | undefined;
  /** Decoding stopped to let other connections run (see `TURN_MESSAGES`). */
  #yielded = false;
  #hold = Hold.None;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the peer last sent anything, or reading last resumed (ms). */
  #lastActivity = Date.now();
  #lastPing = 0;
  #terminated = false;
  #result: CloseResult | undefined;
  #onEnd: ((connection: Connection) => void) | undefined;

  constructor(transport: Transport, init: ConnectionInit) {
    this.#transport = transport;
    this.#onEnd = init.onEnd;
    this.#server = init.role === "server";
    this.#closeTimeout = init.closeTimeout;
    // Queued outgoing bytes above which `write()` waits and reading pauses:
    // the protocol's copy limit (see `COPY_LIMIT`).
    this.#queue = new WriteQueue(transport, COPY_LIMIT, this);
    const deflate = init.perMessageDeflate;
    const protocol = this.#protocol = new Protocol(
      {
        role: init.role,
        maxMessageSize: init.maxMessageSize,
        maxFragments: init.maxFragments,
        compression: deflate !== undefined,
      },
      this,
      this.#queue,
    );
    if (deflate !== undefined) {
      const codec = this.#codec = new DeflateCodec(
        init.role,
        deflate,
        init.maxMessageSize,
      );
      this.#sender = new DeflateSender(
        protocol,
        codec,
        () => protocol.fail(CloseCode.InternalError, "Internal error"),
      );
    }
    this.socket = openSocket(this, {
      request: init.request,
      remoteAddr: init.remoteAddr,
      protocol: init.protocol,
      extensions: init.extensions,
      options: init.socketOptions,
      hub: init.hub,
      eagerReadable: deflate !== undefined,
    });
    this.done = this.#run(init.leftover);
  }

  // --- SocketEngine: what the socket asks of its connection -----------------

  get state(): "open" | "closing" | "closed" {
    const state = this.#protocol.state;
    return state === "open" && this.#closeAsked ? "closing" : state;
  }

  get bufferedAmount(): number {
    return this.#queue.pending + (this.#sender?.pendingBytes ?? 0);
  }

  get backlogged(): boolean {
    return this.#queue.backlogged;
  }

  send(message: Message): number {
    if (this.#closeAsked) return 0;
    return this.#sender !== null
      ? this.#sender.send(message)
      : this.#protocol.send(message);
  }

  /**
   * A publication: the shared frame, or with permessage-deflate the shared
   * compressed frame when this connection may use one (no context takeover
   * on our side); a connection with context takeover gets the uncompressed
   * frame, which RFC 7692 allows for any message, rather than a zlib run
   * per subscriber. A client masks, so it frames its own copy.
   */
  sendShared(shared: SharedMessage): number {
    if (this.#closeAsked) return 0;
    if (!this.#server) return this.#protocol.send(shared.message);
    const sender = this.#sender;
    if (sender === null) return this.#protocol.sendEncoded(shared.frame);
    const codec = this.#codec!;
    const settings = codec.shared;
    return sender.sendEncoded(
      settings !== null && shared.payload.length >= codec.threshold
        ? shared.compressedFrame(settings.windowBits, settings.level)
        : shared.frame,
    );
  }

  ready(): Promise<void> | undefined {
    const settled = this.#sender?.settled();
    if (settled !== undefined) return settled.then(() => this.#queue.ready());
    return this.#queue.full ? this.#queue.ready() : undefined;
  }

  close(code: number | undefined, reason: string): void {
    if (this.state !== "open") return;
    if (this.#sender !== null) {
      this.#closeAsked = true;
      this.#sender.close(code, reason);
    } else {
      this.#protocol.close(code, reason);
    }
    this.#startTimer();
    this.#wakeUp();
  }

  resume(): void {
    if (!this.#socketFull) return;
    this.#socketFull = false;
    // Once closed, nothing waits for room: a timer would only outlive us.
    if (this.#isClosed()) return;
    // On the next turn of the event loop, not now: a reader that drains
    // the inbox at once would otherwise let one busy peer keep the loop to
    // itself, and others would wait. `setImmediate` runs after pending I/O;
    // a `setTimeout(0)` re-armed from its own callback is clamped to 1 ms or
    // more, which held a burst of small messages to ~30,000 a second.
    this.#resumeTimer ??= setImmediate(() => {
      this.#resumeTimer = undefined;
      this.#wakeUp();
    });
  }

  inflate(message: CompressedMessage): Promise<Message> {
    return this.#codec!.inflate(message.text, message.payload).catch(
      (error) => {
        // Corrupt data (1007) or a message too big once inflated (1009);
        // 1006 only says the decompressor was closed with the connection.
        if (!(error instanceof WebSocketError)) {
          error = new WebSocketError("Internal error", {
            closeCode: CloseCode.InternalError,
            reason: "Internal error",
          });
        }
        if (error.closeCode !== CloseCode.AbnormalClosure) {
          this.#protocol.fail(error.closeCode, error.reason);
        }
        throw error;
      },
    );
  }

  release(): void {
    this.#codec?.closeInflater();
  }

  /** The queue could not write to the peer (it drops the rest). */
  writeFailed(): void {
    this.#protocol.abort("Writing to the peer failed");
  }

  // --- ProtocolHandler: what the protocol tells its connection --------------

  message(message: Message): boolean {
    this.#delivered++;
    return this.#admit(deliver(this.socket, message));
  }

  compressedMessage(text: boolean, payload: Uint8Array): boolean {
    this.#delivered++;
    return this.#admit(deliver(this.socket, { text, payload }));
  }

  /**
   * A batch of frames: so many of them let the others run too. Counted
   * across reads (a read of 64-byte fragments holds a few thousand frames
   * and completes no message, and the next read resolves at once while
   * the peer keeps sending) until the connection last let the others run.
   */
  frames(): boolean {
    if (++this.#frameBatches < TURN_MESSAGES) return true;
    this.#yielded = true;
    this.#frameTurn = true;
    return false;
  }

  /**
   * Whether decoding goes on after this message: not when the socket has no
   * room, nor once this read has had its share of the event loop.
   */
  #admit(room: boolean): boolean {
    if (!room) {
      this.#socketFull = true;
      return false;
    }
    if (++this.#turn < TURN_MESSAGES) return true;
    this.#yielded = true;
    return false;
  }

  end(result: CloseResult): void {
    this.#result = result;
    this.#codec?.closeDeflater();
    endReading(this.socket, result);
    if (result.closeCode === CloseCode.AbnormalClosure) {
      // The transport failed or timed out: nothing more can be exchanged.
      this.#terminate();
    } else {
      this.#startTimer();
    }
    this.#wakeUp();
  }

  /**
   * Checks for silence, called by the heartbeat timer: pings a peer silent
   * for `ping` ms; after `idle` ms of silence (0 turns either off) it fails
   * the connection. While reading is paused the time counts too, by cause:
   * a peer that does not read what we send (our queue stayed over its mark)
   * gets 1013 `Send queue stalled for …`; an application that does not read
   * what arrived, while the peer reads, 1011 `Messages not read`; a silent
   * peer 1001. Also gives back the write buffer of a connection with nothing
   * queued.
   */
  heartbeat(now: number, ping: number, idle: number): void {
    if (this.#protocol.state !== "open") return;
    // A connection gone quiet does not keep its write buffer.
    this.#queue.trim();
    const silent = now - this.#lastActivity;
    if (idle > 0 && silent >= idle) {
      const hold = this.#hold;
      // Checked first: an application that awaits its `write()`s stops
      // reading because the peer does not read, and its inbox fills too.
      // Paused for the peer counts even when a write has just made the
      // queue dip under its mark (reading resumes only on the next turn).
      if (hold === Hold.Peer || (hold !== Hold.None && this.#queue.full)) {
        this.#protocol.fail(
          CloseCode.TryAgainLater,
          `Send queue stalled for ${formatDuration(idle)}`,
        );
      } else if (hold === Hold.Reader) {
        this.#protocol.fail(CloseCode.InternalError, "Messages not read");
      } else {
        this.#protocol.fail(CloseCode.GoingAway, "Idle timeout");
      }
    } else if (ping > 0 && silent >= ping && now - this.#lastPing >= ping) {
      this.#lastPing = now;
      this.#protocol.ping();
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #startTimer(): void {
    if (this.#timer !== undefined || this.#terminated) return;
    this.#timer = setTimeout(() => {
      this.#protocol.abort("The closing handshake timed out");
      this.#terminate();
    }, this.#closeTimeout);
  }

  /** Closes the transport at once; pending reads and writes then fail. */
  #terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    try {
      this.#transport.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * The other connections had their turn: this one goes on. Static, so
   * that a connection holds no closure for it.
   */
  static #endTurn(connection: Connection): void {
    connection.#resumeTimer = undefined;
    connection.#frameTurnTimer = undefined;
    connection.#yielded = false;
    connection.#turn = 0;
    connection.#frameBatches = 0;
    connection.#frameTurn = false;
    connection.#wakeUp();
  }

  /** Whether closed: a method, so that TypeScript re-reads it after `await`. */
  #isClosed(): boolean {
    return this.#protocol.state === "closed";
  }

  /** Why reading must wait now, if it must. */
  #holdReason(): Hold {
    // Once closing, read on: the peer's close is what we wait for (the
    // socket drops what it has no room for).
    if (this.#yielded) return Hold.Turn;
    if (this.state !== "open") return Hold.None;
    if (this.#socketFull) return Hold.Reader;
    if (this.#queue.full) return Hold.Peer;
    return Hold.None;
  }

  /** Waits until reading may go on. */
  async #waitForRoom(): Promise<void> {
    let hold: Hold;
    while ((hold = this.#holdReason()) !== Hold.None) {
      const wait = new Promise<void>((resolve) => this.#wake = resolve);
      if (hold === Hold.Turn) {
        if (this.#frameTurn) {
          // A timer: the event loop polls for new I/O (the other
          // connections' bytes) when it waits, and a chain of immediates
          // may run a long while without it (Deno 2.9: a read made ready
          // meanwhile resolved after some 60 of them).
          this.#frameTurnTimer ??= setTimeout(Connection.#endTurn, 0, this);
        } else {
          this.#resumeTimer ??= setImmediate(Connection.#endTurn, this);
        }
        await wait;
        continue;
      }
      this.#hold = hold;
      if (hold === Hold.Peer) this.#queue.ready().then(() => this.#wakeUp());
      await wait;
      this.#hold = Hold.None;
      this.#lastActivity = Date.now();
    }
  }

  async #run(leftover: Uint8Array | null): Promise<void> {
    const protocol = this.#protocol;
    const queue = this.#queue;
    // One read buffer, reused: the protocol copies what it keeps.
    let buffer = new Uint8Array(MIN_READ_SIZE);
    // Bytes read and not yet decoded: the decoder stops when the socket is
    // full, and goes on with the rest once it has room.
    let rest: Uint8Array | null = leftover!.length > 0 ? leftover : null;
    // Not kept by this suspended frame for the connection's whole life.
    leftover = null;
    try {
      while (!this.#isClosed()) {
        // Awaited even when nothing holds reading up: skipping it (tried)
        // cost bench (a) 11% of its messages/s, likely as the next read was
        // then made before what the last one queued was written.
        await this.#waitForRoom();
        if (this.#isClosed()) break;
        if (rest === null) {
          const target = protocol.readTarget();
          const n = await this.#transport.read(target ?? buffer);
          if (n === null) {
            protocol.receiveEof();
            break;
          }
          this.#lastActivity = Date.now();
          this.#turn = 0;
          rest = (target ?? buffer).subarray(0, n);
          const size = buffer.length;
          if (target) {
            // Read into a message: the read buffer keeps its size.
          } else if (n === size && size < MAX_READ_SIZE) {
            buffer = new Uint8Array(size * 2);
          } else if (n < size >>> 2 && size > MIN_READ_SIZE) {
            buffer = new Uint8Array(size >>> 1);
          }
        }
        this.#delivered = 0;
        // Answers written while the read is handled wait, and go out in one
        // write: at once when they were all made while it was handled (a
        // piped echo answers synchronously); when the read held several
        // messages and no answer yet (a reader that answers from its own
        // promise callbacks), once this task's microtasks have run, so that
        // the answers to all of them join. Deciding by what the read did,
        // not by timing, treats every connection alike.
        queue.hold();
        const queued = queue.pending;
        let used: number;
        try {
          used = protocol.receive(rest);
        } finally {
          queue.release(this.#delivered > 1 && queue.pending === queued);
        }
        rest = used < rest.length ? rest.subarray(used) : null;
      }
      if (!this.#terminated) await this.#closeTransport();
    } catch (error) {
      if (!this.#terminated) {
        protocol.abort(
          error instanceof Error
            ? error.message
            : "Reading from the peer failed",
        );
      }
    } finally {
      clearTimeout(this.#timer);
      clearImmediate(this.#resumeTimer);
      clearTimeout(this.#frameTurnTimer);
      this.#queue.dispose();
      this.#terminate();
      this.#codec?.closeDeflater();
      settle(
        this.socket,
        this.#result ??
          {
            closeCode: CloseCode.AbnormalClosure,
            reason: "",
            error: new WebSocketError(),
          },
      );
      this.#onEnd?.(this);
    }
  }

  /**
   * After the closing handshake: flush what is queued (the close frame
   * last), then close TCP. A server half-closes first and reads until the
   * peer's FIN so that unread data does not turn the close into a reset
   * that could destroy the close frame in flight; a client waits for the
   * server's FIN.
   */
  async #closeTransport(): Promise<void> {
    await this.#queue.idle();
    if (this.#terminated) return;
    if (this.#server) {
      try {
        await this.#transport.closeWrite();
      } catch {
        return;
      }
    }
    const sink = new Uint8Array(MIN_READ_SIZE);
    while (!this.#terminated && await this.#transport.read(sink) !== null) {
      // Discard: frames after the closing handshake are ignored (§5.5.1).
    }
  }
}

/** A duration for a close reason: `60 s`, `400 ms`. */
function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
