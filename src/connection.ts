import {
  type CloseResult,
  Protocol,
  type ProtocolEvents,
} from "./_protocol.ts";
import { WriteQueue } from "./_write_queue.ts";
import type { Message } from "./message_assembler.ts";
import type { _DeflateSettings } from "./permessage_deflate.ts";
import { type WebSocketCloseInfo, WebSocketError } from "./websocket_error.ts";

/**
 * How a WebSocket closed cleanly: the peer's close code and reason.
 *
 * @example Logging how a socket closed
 * ```ts ignore
 * const { closeCode, reason } = await socket.closed;
 * console.log(`closed with ${closeCode} ${reason}`);
 * ```
 */
export interface WebSocketCloseResult {
  /** The close code from the peer's close frame (1005 if it had none). */
  closeCode: number;
  /** The close reason from the peer's close frame. */
  reason: string;
}

/**
 * One open WebSocket, in the vocabulary of the WHATWG WebSocketStream
 * proposal. Messages are read from `readable` (a `string` per text message,
 * a `Uint8Array` per binary message) and written to `writable`.
 *
 * @example An echo handler
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({ port: 8080 }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface WebSocketConnection {
  /** The messages from the peer; ends on a clean close, errors otherwise. */
  readonly readable: ReadableStream<string | Uint8Array>;
  /** Where to write messages; `write()` waits while the peer is slow. */
  readonly writable: WritableStream<string | Uint8Array>;
  /** The negotiated subprotocol, or `""`. */
  readonly protocol: string;
  /** The negotiated extensions, or `""`. */
  readonly extensions: string;
  /**
   * Resolves with the peer's close code and reason once the closing
   * handshake is done and the TCP connection closed; rejects with a
   * {@linkcode WebSocketError} when the connection ended otherwise.
   */
  readonly closed: Promise<WebSocketCloseResult>;
  /** The opening handshake's request (for a server, the client's upgrade). */
  readonly request: Request;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * Bytes queued to send that the transport has not taken yet. `write()`
   * waits while this is above 64 KiB, so it stays bounded.
   */
  readonly bufferedAmount: number;
  /**
   * Starts the closing handshake. `closeCode` must be 1000 or 3000–4999
   * (default: a close frame with no code); the reason is cut to 123 bytes
   * at a UTF-8 character boundary.
   */
  close(closeInfo?: WebSocketCloseInfo): void;
}

/** The byte stream under a connection: a `Deno.Conn` or `Deno.TlsConn`. */
export interface Transport {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** What {@linkcode _Connection} needs besides its transport. */
export interface ConnectionInit {
  role: "server" | "client";
  /** The handshake's request, or what makes it when first asked for. */
  request: Request | (() => Request);
  remoteAddr: Deno.NetAddr;
  protocol: string;
  extensions: string;
  /** Bytes that arrived after the handshake, already read from the transport. */
  leftover: Uint8Array;
  maxMessageSize: number;
  /** How long the closing handshake and TCP close may take, in ms. */
  closeTimeout: number;
  /** The most fragments one message may have. */
  maxFragments?: number;
  /** The negotiated permessage-deflate extension; absent: none. */
  perMessageDeflate?: _DeflateSettings;
}

/** Ping a peer silent this long (ms): the default of server and client. */
export const DEFAULT_PING_INTERVAL = 30_000;
/** Close a peer silent this long (ms) with 1001: the default of both. */
export const DEFAULT_IDLE_TIMEOUT = 60_000;

/**
 * Starts the one timer that runs the heartbeat of `sockets` (a live set: a
 * server's open sockets, or a client's one); undefined when `ping` and `idle`
 * are both 0 (off).
 */
export function _startHeartbeat(
  sockets: Iterable<_Connection>,
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
    for (const socket of sockets) socket._heartbeat(now, ping, idle);
  }, tick);
}

/** Queued outgoing bytes above which `write()` waits and reading pauses. */
const WRITE_HIGH_WATER_MARK = 64 * 1024;
/** Read buffers start small (idle connections hold one) and grow with use. */
const MIN_READ_SIZE = 512;
const MAX_READ_SIZE = 256 * 1024;

/**
 * The I/O half of a connection: it reads the transport into the protocol
 * state machine only when `readable` has room (pull-based backpressure),
 * feeds `writable` through the write queue, and closes the transport when the
 * protocol is done (§7.1.1: a server closes TCP first; a client waits for it).
 */
export class _Connection implements WebSocketConnection, ProtocolEvents {
  readonly readable: ReadableStream<string | Uint8Array>;
  readonly writable: WritableStream<string | Uint8Array>;
  readonly protocol: string;
  readonly extensions: string;
  readonly closed: Promise<WebSocketCloseResult>;
  readonly remoteAddr: Deno.NetAddr;
  /** Resolves once the transport is closed and every timer cleared. */
  readonly done: Promise<void>;

  #transport: Transport;
  #server: boolean;
  #closeTimeout: number;
  #request: Request | (() => Request);
  #protocol: Protocol;
  #queue: WriteQueue;
  #readableController!: ReadableStreamDefaultController<Message>;
  #readableDone = false;
  /** Messages delivered from the current read. */
  #delivered = 0;
  #wake: (() => void) | null = null;
  /** Waiting for the reader to take a message (permessage-deflate only). */
  #roomWaiters: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the peer last sent anything, or reading last resumed (ms). */
  #lastActivity = Date.now();
  #lastPing = 0;
  #paused = false;
  #terminated = false;
  #result: CloseResult | undefined;
  #resolveClosed!: (result: WebSocketCloseResult) => void;
  #rejectClosed!: (error: WebSocketError) => void;

  constructor(transport: Transport, init: ConnectionInit) {
    this.#transport = transport;
    this.#server = init.role === "server";
    this.#closeTimeout = init.closeTimeout;
    this.#request = init.request;
    this.remoteAddr = init.remoteAddr;
    this.protocol = init.protocol;
    this.extensions = init.extensions;
    this.closed = new Promise((resolve, reject) => {
      this.#resolveClosed = resolve;
      this.#rejectClosed = reject;
    });
    this.#queue = new WriteQueue(transport, WRITE_HIGH_WATER_MARK, () => {
      this.#protocol.abort("Writing to the peer failed");
    });
    this.#protocol = new Protocol(
      {
        role: init.role,
        maxMessageSize: init.maxMessageSize,
        maxFragments: init.maxFragments,
        perMessageDeflate: init.perMessageDeflate,
      },
      this,
      this.#queue,
    );
    this.readable = new ReadableStream<Message>(new _Connection.#Source(this), {
      highWaterMark: 2,
    });
    this.writable = new WritableStream<Message>(new _Connection.#Sink(this));
    this.done = this.#run(init.leftover);
  }

  /**
   * `readable`'s source and `writable`'s sink. Classes rather than object
   * literals, so that their methods are shared: an idle connection then
   * holds no closure per stream callback.
   */
  static #Source = class implements UnderlyingDefaultSource<Message> {
    #connection: _Connection;

    constructor(connection: _Connection) {
      this.#connection = connection;
    }

    start(controller: ReadableStreamDefaultController<Message>): void {
      this.#connection.#readableController = controller;
    }

    pull(): void {
      const connection = this.#connection;
      connection.#wakeUp();
      if (connection.#roomWaiters.length > 0) connection.#wakeRoomWaiters();
    }

    cancel(reason: unknown): void {
      const connection = this.#connection;
      connection.#readableDone = true;
      connection.#wakeRoomWaiters();
      connection.#closeFor(reason);
    }
  };

  static #Sink = class implements UnderlyingSink<Message> {
    #connection: _Connection;

    constructor(connection: _Connection) {
      this.#connection = connection;
    }

    write(message: Message): Promise<void> {
      if (typeof message !== "string" && !(message instanceof Uint8Array)) {
        throw new TypeError("A message must be a string or a Uint8Array");
      }
      const queue = this.#connection.#queue;
      const sent = this.#connection.#protocol.send(message);
      // A compressed message is queued once compressed (permessage-deflate).
      if (sent !== undefined) return sent.then(() => queue.ready());
      return queue.ready();
    }

    close(): void {
      this.#connection.close();
    }

    abort(reason: unknown): void {
      this.#connection.#closeFor(reason);
    }
  };

  get request(): Request {
    const request = this.#request;
    return typeof request === "function" ? this.#request = request() : request;
  }

  get bufferedAmount(): number {
    return this.#queue.pending;
  }

  close(closeInfo: WebSocketCloseInfo = {}): void {
    let code = closeInfo.closeCode;
    const reason = closeInfo.reason ?? "";
    if (code === undefined && reason !== "") code = 1000;
    if (
      code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)
    ) {
      throw new RangeError(
        `The close code must be 1000 or in 3000-4999, got ${code}`,
      );
    }
    this.#closeWith(code, reason);
  }

  /**
   * Closes with any sendable code, as the server does for 1001 (going away)
   * and 1011 (handler fault).
   */
  _close(code: number, reason = ""): void {
    this.#closeWith(code, reason);
  }

  /** Whether `error` is what `writable` failed with for a write after close. */
  _isSendAfterClose(error: unknown): boolean {
    return this.#protocol.isSendAfterClose(error);
  }

  /** The state of the closing handshake. */
  get _state(): "open" | "closing" | "closed" {
    return this.#protocol.state;
  }

  #closeWith(code: number | undefined, reason: string): void {
    if (this.#protocol.state !== "open") return;
    this.#protocol.close(code, reason);
    this.#startTimer();
    this.#wakeUp();
  }

  /** Closes for a stream's cancel or abort reason, as WebSocketStream does. */
  #closeFor(reason: unknown): void {
    if (reason instanceof WebSocketError) {
      // Only codes an application may send go on the wire; the default 1006
      // of a WebSocketError made without one means "no code", and a reason
      // alone then closes with 1000, as in the WHATWG proposal.
      const code = reason.closeCode;
      if (code === 1000 || (code >= 3000 && code <= 4999)) {
        this.#closeWith(code, reason.reason);
      } else {
        this.#closeWith(reason.reason ? 1000 : undefined, reason.reason);
      }
    } else {
      this.#closeWith(undefined, "");
    }
  }

  // ProtocolEvents: what the protocol tells the connection (see there).

  _message(message: Message): void {
    if (this.#readableDone) return;
    const controller = this.#readableController;
    // After our own close, a reader that does not keep up loses messages
    // rather than letting the peer fill memory until the close timeout.
    if (this.#protocol.state === "closing" && controller.desiredSize! <= 0) {
      return;
    }
    controller.enqueue(message);
    this.#delivered++;
  }

  /**
   * A promise while `readable` has no room for another message; `null`
   * once it is done, since nobody reads messages any more.
   */
  _room(): Promise<void> | null | undefined {
    if (this.#readableDone) return null;
    if (this.#readableController.desiredSize! > 0) return undefined;
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  #wakeRoomWaiters(): void {
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }

  _ended(result: CloseResult): void {
    this.#result = result;
    this.#wakeRoomWaiters();
    if (!this.#readableDone) {
      this.#readableDone = true;
      if (result.error) this.#readableController.error(result.error);
      else this.#readableController.close();
    }
    if (result.closeCode === 1006) {
      // The transport failed or timed out: nothing more can be exchanged.
      this.#terminate();
    } else {
      this.#startTimer();
    }
    this.#wakeUp();
  }

  _drained(): void {
    this.#wakeUp();
  }

  /**
   * Checks for idleness, called by the server's one heartbeat timer: pings
   * a peer silent for `ping` ms, fails one silent for `idle` ms with 1001
   * (0 turns either off). While reading is paused for backpressure the peer
   * is not idle, we are. Also gives back the write buffer of a socket with
   * nothing queued.
   */
  _heartbeat(now: number, ping: number, idle: number): void {
    if (this.#protocol.state !== "open") return;
    // Between ticks a socket that has nothing queued gives its write buffer
    // back, so that connections gone quiet do not hold one each.
    this.#queue.trim();
    if (this.#paused) this.#lastActivity = now;
    const silent = now - this.#lastActivity;
    if (idle > 0 && silent >= idle) {
      this.#protocol.fail(1001, "Idle timeout");
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

  /** Whether the pump must wait before reading: nobody has room for more. */
  #mustWait(): boolean {
    // Received messages wait for inflation (permessage-deflate).
    if (this.#protocol.blocked) return true;
    if (this.#protocol.state !== "open") return false;
    if (this.#queue.full) return true;
    return !this.#readableDone && this.#readableController.desiredSize! <= 0;
  }

  async #run(leftover: Uint8Array): Promise<void> {
    const protocol = this.#protocol;
    const queue = this.#queue;
    // One read buffer, reused: the protocol copies what it keeps.
    let buffer = new Uint8Array(MIN_READ_SIZE);
    try {
      if (leftover.length > 0) protocol.receive(leftover);
      while (protocol.state !== "closed") {
        while (this.#mustWait()) {
          this.#paused = true;
          const wait = new Promise<void>((resolve) => this.#wake = resolve);
          if (this.#queue.full) this.#queue.ready().then(() => this.#wakeUp());
          await wait;
          this.#paused = false;
          this.#lastActivity = Date.now();
        }
        if (this._state === "closed") break;
        const target = protocol.readTarget();
        const n = await this.#transport.read(target ?? buffer);
        if (n === null) {
          protocol.abort(
            "The peer closed the connection without a close frame",
          );
          break;
        }
        this.#lastActivity = Date.now();
        this.#delivered = 0;
        // Answers written while the read is handled wait (a reader's answer
        // to the first message can come synchronously, from inside
        // `enqueue`). With several messages in the read, all their answers
        // (an echo, say) go out in one write once this task's microtasks
        // have run; with one, at once.
        queue.hold();
        try {
          protocol.receive((target ?? buffer).subarray(0, n));
        } finally {
          queue.release(this.#delivered > 1);
        }
        const size = buffer.length;
        if (target) {
          // Read into a message: the read buffer keeps its size.
        } else if (n === size && size < MAX_READ_SIZE) {
          buffer = new Uint8Array(size * 2);
        } else if (n < size >>> 2 && size > MIN_READ_SIZE) {
          buffer = new Uint8Array(size >>> 1);
        }
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
      this.#terminate();
      const result = this.#result ??
        { closeCode: 1006, reason: "", error: new WebSocketError() };
      if (result.error) {
        // Nobody has to await `closed`: an unobserved rejection must not
        // crash. Marked here rather than at construction, which would cost
        // every open connection a promise and a closure.
        this.closed.catch(_ignore);
        this.#rejectClosed(result.error);
      } else {
        this.#resolveClosed({
          closeCode: result.closeCode,
          reason: result.reason,
        });
      }
    }
  }

  /**
   * After the closing handshake: flush what is queued (the close frame last),
   * then close TCP. A server half-closes first and reads until the peer's FIN
   * so that unread data does not turn the close into a reset that could
   * destroy the close frame in flight; a client waits for the server's FIN.
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

function _ignore(): void {}
