// `upgradeWebSocket()`: this module's socket inside any `Deno.serve` handler
// (Hono, Oak, ...), on top of Deno's own WebSocket (`Deno.upgradeWebSocket`).

import { CloseCode } from "../protocol/constants.ts";
import { byteLength } from "../protocol/_bytes.ts";
import {
  integerOption,
  resolveSendPolicy,
  resolveSocketLimits,
  type SocketLimits,
} from "../engine/_options.ts";
import { HttpError } from "../http/_http.ts";
import { ServerHandshake } from "../protocol/_server_handshake.ts";
import { headerSize } from "../protocol/frame.ts";
import type { Message } from "../protocol/message_assembler.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";
import type { SharedMessage } from "../pubsub/_shared_message.ts";
import type { TopicHub } from "../pubsub/topic_hub.ts";
import {
  type CompressedMessage,
  deliver,
  endReading,
  type EngineEnd,
  itemSize,
  openSocket,
  settle,
  type Socket,
  type SocketEngine,
  type SocketInit,
  type SocketOptions,
  type WebSocketConnection,
} from "../socket/socket.ts";

/**
 * Options for {@linkcode upgradeWebSocket}.
 *
 * @example A chat route with a subprotocol, a topic hub and tighter limits
 * ```ts ignore
 * import { TopicHub, upgradeWebSocket, type UpgradeWebSocketOptions } from "@scope/ws";
 *
 * const hub = new TopicHub();
 * Deno.serve({ port: 8080 }, (request, info) => {
 *   const options: UpgradeWebSocketOptions = {
 *     protocols: ["chat.v2", "chat.v1"],
 *     hub,
 *     remoteAddr: info.remoteAddr,
 *     maxMessageSize: 64 * 1024,
 *     maxQueued: 256 * 1024,
 *   };
 *   const { socket, response } = upgradeWebSocket(request, options);
 *   socket.subscribe("lobby");
 *   return response;
 * });
 * ```
 */
export interface UpgradeWebSocketOptions {
  /**
   * The page origins allowed to open a WebSocket, or a function that
   * decides, as in `serve()`: another page's `Origin` gets an
   * {@linkcode UpgradeError} with 403; requests without `Origin` pass. An
   * entry that is not an origin as browsers send it
   * (`"https://example.com"`: lower-case, no default port, no path), or a
   * string instead of an array, is a `TypeError`. Default: every origin.
   */
  origins?: readonly string[] | ((origin: string) => boolean);
  /**
   * Subprotocols the server speaks (the first one the client offers is
   * chosen), or a function that picks one of the client's offers or none,
   * as in `serve()`.
   */
  protocols?:
    | string[]
    | ((offered: string[], request: Request) => string | undefined);
  /**
   * The topic hub the socket may subscribe to and publish through
   * (`socket.subscribe`, `socket.publish`); the same hub may serve sockets
   * of `serve()` too. Without it, the topic methods throw a `TypeError`.
   */
  hub?: TopicHub;
  /**
   * The peer's address, for `socket.remoteAddr`: pass `info.remoteAddr` of
   * the `Deno.serve` handler (`c.env.remoteAddr` in Hono), since a `Request`
   * does not carry it. Without it, `remoteAddr` is
   * `{ transport: "tcp", hostname: "", port: 0 }`: an empty hostname means
   * unknown.
   */
  remoteAddr?: Deno.NetAddr;
  /**
   * The largest message accepted, in bytes (UTF-8 for text); a bigger one
   * closes the socket with 1009. Deno has read the whole message before this
   * check (Deno itself refuses frames of 64 MiB and more). Default 16 MiB.
   */
  maxMessageSize?: number;
  /**
   * Bytes of received messages kept unread beyond what every socket holds
   * (64 messages or 64 KiB, plus `readable`'s two): Deno's WebSocket cannot
   * stop reading, so when the application does not keep up, the message that
   * would go over this closes the socket with 1011 `Messages not read`. Text
   * counts its UTF-16 length, and every message 64 bytes more. Default 1 MiB.
   */
  maxQueued?: number;
  /**
   * Bytes queued to send above which `send()` and publications apply the
   * `backpressure` policy. Default 1 MiB.
   */
  maxBackpressure?: number;
  /**
   * Over `maxBackpressure`: `"close"` closes the socket with 1013
   * `Send queue over 1 MiB` (the limit), `"drop"` drops the message and
   * counts it in `droppedMessages`. Default `"close"`.
   */
  backpressure?: "close" | "drop";
  /**
   * In ms, handed to Deno (which takes seconds): a peer silent for half of
   * it is pinged, and closed with 1001 when the other half passes without a
   * pong or message. 0 turns it off. Default 60 s, the cadence of `serve()`
   * (a ping after 30 s, the close at 60 s).
   */
  idleTimeout?: number;
  /**
   * In ms: once a close is asked for, how long the closing handshake may
   * take before `closed` rejects with 1006 and the socket lets go of the
   * connection (Deno has no way to drop it sooner). Default 5 s.
   */
  closeTimeout?: number;
}

/**
 * What {@linkcode upgradeWebSocket} returns: the socket, and the response
 * that the handler must return for the upgrade to happen.
 *
 * @example Returning the response
 * ```ts ignore
 * import { upgradeWebSocket, type WebSocketUpgrade } from "@scope/ws";
 *
 * Deno.serve((request) => {
 *   const upgrade: WebSocketUpgrade = upgradeWebSocket(request);
 *   upgrade.socket.send("Welcome");
 *   return upgrade.response;
 * });
 * ```
 */
export interface WebSocketUpgrade {
  /** The socket, usable at once: what it sends waits for the upgrade. */
  socket: WebSocketConnection;
  /**
   * The `101 Switching Protocols` response; extra headers (a cookie) may be
   * set on it before it is returned.
   */
  response: Response;
}

/**
 * Thrown by {@linkcode upgradeWebSocket} for a request it cannot upgrade,
 * with the HTTP answer it deserves: 426 `Upgrade Required` for a request
 * that asks for no WebSocket (a plain `GET`), 400, 405 or 426 for a
 * malformed upgrade, 403 for an `Origin` that `origins` does not allow. A
 * `TypeError`, as `Deno.upgradeWebSocket` throws; Hono's default error
 * handler answers with its {@linkcode getResponse}.
 *
 * @example Answering a plain request to a WebSocket route
 * ```ts ignore
 * import { UpgradeError, upgradeWebSocket } from "@scope/ws";
 *
 * Deno.serve((request) => {
 *   try {
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.readable.pipeTo(socket.writable);
 *     return response;
 *   } catch (error) {
 *     if (error instanceof UpgradeError) return error.getResponse();
 *     throw error;
 *   }
 * });
 * ```
 */
export class UpgradeError extends TypeError {
  /** The HTTP status to answer with. */
  readonly status: number;
  /** Headers the answer needs (`Sec-WebSocket-Version`, `Allow`). */
  readonly headers: Readonly<Record<string, string>>;

  /**
   * Creates the error.
   *
   * @param status The HTTP status to answer with.
   * @param message What is wrong, also the answer's plain-text body.
   * @param headers Headers for the answer.
   */
  constructor(
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "UpgradeError";
    this.status = status;
    this.headers = headers;
  }

  /**
   * The answer: the status, the headers and the message as plain text. A
   * new `Response` on each call (a body is read once).
   *
   * @returns The response to send.
   *
   * @example Answering with it
   * ```ts ignore
   * return new UpgradeError(426, "Upgrade Required").getResponse();
   * ```
   */
  getResponse(): Response {
    return new Response(this.message, {
      status: this.status,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        ...this.headers,
      },
    });
  }
}

/** The default of `maxQueued`, an option that `serve()` does not have. */
const DEFAULT_MAX_QUEUED = 1024 * 1024;
/** `remoteAddr` when the handler did not give one: unknown, not invented. */
const UNKNOWN_ADDR: Deno.NetAddr = Object.freeze({
  transport: "tcp",
  hostname: "",
  port: 0,
});

/**
 * Upgrades a request of a `Deno.serve` handler (or of a framework on it:
 * Hono's `c.req.raw`, Oak's `ctx.request.source`) to a WebSocket, in the
 * spirit of `Deno.upgradeWebSocket`: the handler returns `response`, and
 * `socket` is the same socket `serve()` hands out (`readable`, `writable`,
 * `send()`, `close()`, `closed`, topics with a `hub`). It runs on Deno's own
 * WebSocket, whose differences from `serve()` docs/deno-serve.md lists: Deno checks
 * the frames, there is no compression, and receiving cannot pause
 * (`maxQueued` bounds what waits unread).
 *
 * The request is checked as `serve()` checks it; one that cannot be
 * upgraded throws an {@linkcode UpgradeError} that carries the answer (426
 * for a request without `Upgrade: websocket`).
 *
 * @param request The request the `Deno.serve` handler got.
 * @param options Subprotocols, a topic hub, the peer's address, limits.
 * @returns The socket and the response to return.
 * @throws {UpgradeError} The request is not a valid WebSocket upgrade.
 *
 * @example An echo route in a `Deno.serve` handler
 * ```ts ignore
 * import { upgradeWebSocket } from "@scope/ws";
 *
 * Deno.serve({ port: 8080 }, (request, info) => {
 *   if (new URL(request.url).pathname !== "/ws") return new Response("Hello");
 *   const { socket, response } = upgradeWebSocket(request, {
 *     remoteAddr: info.remoteAddr,
 *   });
 *   socket.readable.pipeTo(socket.writable);
 *   return response;
 * });
 * ```
 *
 * @example A Hono route
 * ```ts ignore
 * import { Hono } from "npm:hono@4";
 * import { upgradeWebSocket } from "@scope/ws";
 *
 * // Deno.serve(app.fetch) hands Hono the handler's info as `c.env`.
 * const app = new Hono<{ Bindings: Deno.ServeHandlerInfo<Deno.NetAddr> }>();
 * app.get("/ws", (c) => {
 *   const { socket, response } = upgradeWebSocket(c.req.raw, {
 *     remoteAddr: c.env.remoteAddr,
 *   });
 *   socket.send(`Hello ${socket.remoteAddr.hostname}`);
 *   return response;
 * });
 * Deno.serve({ port: 8080 }, app.fetch);
 * ```
 */
export function upgradeWebSocket(
  request: Request,
  options?: UpgradeWebSocketOptions,
): WebSocketUpgrade {
  options ??= {};
  const limits = resolveUpgradeOptions(options);
  const handshake = new ServerHandshake({
    origins: options.origins,
    protocols: options.protocols,
  });
  // Only HTTP/1.1 carries an upgrade to a `Deno.serve` handler (HTTP/2
  // forbids the `Upgrade` header), so the version is not Deno's to tell.
  const checked = handshake.check({
    method: request.method,
    target: "",
    version: "HTTP/1.1",
    headers: request.headers,
  });
  if (checked instanceof HttpError) {
    throw new UpgradeError(checked.status, checked.message, checked.headers);
  }
  // Deno writes the 101 itself: what is taken from the decision is the
  // subprotocol (there is no compression).
  const protocol = handshake.protocolFor(checked, () => request);
  // A protocols function that threw (or chose what was not offered) throws
  // out of the handler, as it would have by itself.
  if (protocol instanceof HttpError) throw protocol.cause;
  const upgrade = Deno.upgradeWebSocket(request, {
    idleTimeout: limits.idleTimeout / 1000,
  });
  // Set here rather than through Deno's `protocol` option, whose check
  // splits the offer on ", " only and throws for an offer of "a,b".
  if (protocol !== "") {
    upgrade.response.headers.set("sec-websocket-protocol", protocol);
  }
  const engine = new DenoEngine(upgrade.socket, limits, {
    request,
    remoteAddr: options.remoteAddr ?? UNKNOWN_ADDR,
    protocol,
    extensions: "",
    options: limits.socket,
    hub: options.hub,
  });
  return { socket: engine.socket, response: upgrade.response };
}

/** The checked options an engine runs with, with their defaults. */
interface Limits extends SocketLimits {
  maxQueued: number;
  socket: SocketOptions;
}

/**
 * Resolves `upgradeWebSocket()`'s limits once, as every entry point checks
 * them: an invalid one is a `TypeError` or `RangeError` that names it.
 */
function resolveUpgradeOptions(options: UpgradeWebSocketOptions): Limits {
  return {
    ...resolveSocketLimits(options),
    maxQueued: integerOption(
      "maxQueued",
      options.maxQueued,
      DEFAULT_MAX_QUEUED,
    ),
    socket: resolveSendPolicy(options),
  };
}

/** Queued outgoing bytes above which `ready()` (a `write()`) waits. */
const WRITE_HIGH_WATER_MARK = 64 * 1024;
/**
 * Deno's WebSocket has no drain event: one timer for all engines whose
 * writes wait polls `bufferedAmount`, every ms while writes drain, backing
 * off to this while none does.
 */
const MAX_POLL_DELAY = 64;
/** The codes of Deno's `readyState`. */
const OPEN = 1;

/** The engines whose `ready()` waits, polled by one timer. */
const draining = new Set<DenoEngine>();
let drainTimer: ReturnType<typeof setTimeout> | undefined;
let drainDelay = 1;

function watchDrain(engine: DenoEngine): void {
  draining.add(engine);
  if (drainTimer === undefined) {
    drainDelay = 1;
    drainTimer = setTimeout(pollDrain, drainDelay);
  }
}

function unwatchDrain(engine: DenoEngine): void {
  if (draining.delete(engine) && draining.size === 0) {
    clearTimeout(drainTimer);
    drainTimer = undefined;
  }
}

function pollDrain(): void {
  drainTimer = undefined;
  let drained = false;
  for (const engine of draining) {
    if (engine.drained()) {
      draining.delete(engine);
      drained = true;
    }
  }
  if (draining.size === 0) return;
  drainDelay = drained ? 1 : Math.min(drainDelay * 2, MAX_POLL_DELAY);
  drainTimer = setTimeout(pollDrain, drainDelay);
}

/**
 * The engine of a socket on Deno's WebSocket. Deno frames, checks and
 * moves the bytes; this keeps the socket's contract: sends before Deno's
 * `open` wait here, `ready()` follows `bufferedAmount`, received messages go
 * to the socket within `maxMessageSize` and `maxQueued`, and Deno's `close`
 * event settles the socket once.
 */
class DenoEngine implements SocketEngine, EventListenerObject {
  /** The object the application holds. */
  readonly socket: Socket;
  #ws: WebSocket;
  #limits: Limits;
  #state: "open" | "closing" | "closed" = "open";
  /** Deno's `open` event was seen: `ws.send` works from then on. */
  #opened = false;
  /** Messages sent before `open`, sent on it, in order. */
  #early: Message[] = [];
  #earlyBytes = 0;
  /** A close asked for before `open`, made on it. */
  #pendingClose: [code: number | undefined, reason: string] | undefined;
  /** How this engine failed the connection itself (1009, 1011). */
  #failure: EngineEnd | undefined;
  /** Deno's last error message, for the end it explains. */
  #error = "";
  /** The socket said it has no room; what comes on is counted. */
  #full = false;
  #unread = 0;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #readyWaiters: (() => void)[] = [];

  constructor(
    ws: WebSocket,
    limits: Limits,
    init: SocketInit,
  ) {
    this.#ws = ws;
    this.#limits = limits;
    ws.binaryType = "arraybuffer";
    // The engine is the listener: no closure per socket and event.
    ws.addEventListener("open", this);
    ws.addEventListener("message", this);
    ws.addEventListener("error", this);
    ws.addEventListener("close", this);
    this.socket = openSocket(this, init);
  }

  // --- SocketEngine: what the socket asks of its connection -----------------

  get state(): "open" | "closing" | "closed" {
    // Deno leaves OPEN when the peer's close arrives, before its event.
    return this.#state === "open" && this.#opened &&
        this.#ws.readyState !== OPEN
      ? "closing"
      : this.#state;
  }

  get bufferedAmount(): number {
    return this.#earlyBytes + (this.#opened ? this.#ws.bufferedAmount : 0);
  }

  /**
   * Returns the bytes of the frame Deno will write (text counted in UTF-16
   * units): never 0 for a message queued, even an empty one.
   */
  send(message: Message): number {
    if (this.state !== "open") return 0;
    const size = messageSize(message);
    if (this.#opened) {
      this.#ws.send(message);
    } else {
      this.#early.push(message);
      this.#earlyBytes += size;
    }
    return headerSize(size, false) + size;
  }

  /** Deno frames each send itself: the shared frame cannot be used. */
  sendShared(shared: SharedMessage): number {
    return this.send(shared.message);
  }

  ready(): Promise<void> | undefined {
    if (this.drained()) return undefined;
    const wait = new Promise<void>((resolve) => {
      this.#readyWaiters.push(resolve);
    });
    watchDrain(this);
    return wait;
  }

  close(code: number | undefined, reason: string): void {
    if (this.state !== "open") return;
    this.#state = "closing";
    if (this.#opened) this.#closeDeno(code, reason);
    else this.#pendingClose = [code, reason];
    this.#closeTimer = setTimeout(() => {
      this.#finish({
        closeCode: CloseCode.AbnormalClosure,
        reason: "",
        error: new WebSocketError("The closing handshake timed out"),
      });
    }, this.#limits.closeTimeout);
  }

  /**
   * Deno's WebSocket cannot stop reading: what arrives while the socket is
   * full is counted instead, and the count restarts once it has room.
   */
  resume(): void {
    if (!this.#full) return;
    this.#full = false;
    this.#unread = 0;
  }

  /** Never called: Deno negotiates no compression, nothing is compressed. */
  inflate(_message: CompressedMessage): Promise<Message> {
    return Promise.reject(
      new WebSocketError("Deno's WebSocket delivers no compressed messages", {
        closeCode: CloseCode.InternalError,
        reason: "Internal error",
      }),
    );
  }

  /** Nothing to free: there is no codec. */
  release(): void {}

  /**
   * Whether writes may go on: under the mark, or no longer open. Wakes the
   * waiting writes when so; called by `ready()` and the drain timer.
   */
  drained(): boolean {
    if (
      this.state === "open" && this.bufferedAmount > WRITE_HIGH_WATER_MARK
    ) {
      return false;
    }
    const waiters = this.#readyWaiters;
    if (waiters.length > 0) {
      this.#readyWaiters = [];
      for (const wake of waiters) wake();
    }
    return true;
  }

  // --- Deno's events ----------------------------------------------------------

  handleEvent(event: Event): void {
    switch (event.type) {
      case "message":
        this.#onMessage((event as MessageEvent).data);
        break;
      case "open":
        this.#onOpen();
        break;
      case "close":
        this.#onClose(event as CloseEvent);
        break;
      case "error":
        this.#onError(event as ErrorEvent);
        break;
    }
  }

  #onOpen(): void {
    this.#opened = true;
    const early = this.#early;
    this.#early = [];
    this.#earlyBytes = 0;
    const ws = this.#ws;
    for (const message of early) ws.send(message);
    const pendingClose = this.#pendingClose;
    if (pendingClose !== undefined) this.#closeDeno(...pendingClose);
  }

  #onMessage(data: string | ArrayBuffer): void {
    if (this.#state === "closed" || this.#failure !== undefined) return;
    const message = typeof data === "string" ? data : new Uint8Array(data);
    if (
      this.#state === "open" && tooBig(message, this.#limits.maxMessageSize)
    ) {
      this.#fail(CloseCode.MessageTooBig, "Message too big");
      return;
    }
    // Once closing, a full socket drops what comes: nothing to count.
    if (this.#full && this.state === "open") {
      const cost = itemSize(message);
      if (this.#unread + cost > this.#limits.maxQueued) {
        this.#fail(CloseCode.InternalError, "Messages not read");
        return;
      }
      this.#unread += cost;
    }
    if (!deliver(this.socket, message)) this.#full = true;
  }

  /**
   * After `open`, Deno follows every error with a `close` event, which ends
   * the socket; before it (the upgrade failed), nothing follows.
   */
  #onError(event: ErrorEvent): void {
    this.#error = event.message;
    if (!this.#opened) {
      this.#finish({
        closeCode: CloseCode.AbnormalClosure,
        reason: "",
        error: new WebSocketError(
          event.message || "The WebSocket upgrade failed",
        ),
      });
    }
  }

  /**
   * A clean close has the peer's code and reason. Otherwise Deno gives 0
   * (a protocol error, a reset, or a message that arrived after our close:
   * Deno then drops the connection) or 1001 (no pong within `idleTimeout`).
   */
  #onClose(event: CloseEvent): void {
    if (event.wasClean) {
      this.#finish({ closeCode: event.code, reason: event.reason });
      return;
    }
    const closeCode = event.code === 0 ? CloseCode.AbnormalClosure : event.code;
    const reason = event.code === 0 ? "" : event.reason;
    this.#finish({
      closeCode,
      reason,
      error: new WebSocketError(
        this.#error || reason ||
          "The connection ended without a closing handshake",
        { closeCode, reason },
      ),
    });
  }

  // --- Ending -------------------------------------------------------------------

  /** Sends a close frame; Deno takes any code from a server, and no reason. */
  #closeDeno(code: number | undefined, reason: string): void {
    if (code === undefined) this.#ws.close();
    else this.#ws.close(code, reason);
  }

  /**
   * Fails the connection as the protocol does (RFC 6455 §7.1.7): a close
   * frame with the code, no more messages, and `closed` rejects with it.
   */
  #fail(code: number, reason: string): void {
    const failure: EngineEnd = {
      closeCode: code,
      reason,
      error: new WebSocketError(reason, { closeCode: code, reason }),
    };
    this.#failure = failure;
    this.#dropUnread();
    this.close(code, reason);
    endReading(this.socket, failure);
  }

  #dropUnread(): void {
    this.#unread = 0;
    this.#full = false;
  }

  /** Ends the socket once: reading, `closed`, the waiting writes. */
  #finish(end: EngineEnd): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearTimeout(this.#closeTimer);
    this.#early = [];
    this.#earlyBytes = 0;
    this.#dropUnread();
    this.drained();
    unwatchDrain(this);
    const failure = this.#failure;
    if (failure === undefined) endReading(this.socket, end);
    settle(this.socket, failure ?? end);
  }
}

/** A message's size as `bufferedAmount` counts it (UTF-16 units for text). */
function messageSize(message: Message): number {
  return typeof message === "string" ? message.length : message.byteLength;
}

/** Whether a message is over `max` bytes, text counted in UTF-8. */
function tooBig(message: Message, max: number): boolean {
  if (typeof message !== "string") return message.byteLength > max;
  // Each UTF-16 unit is 1 to 3 bytes of UTF-8: count only when in doubt.
  if (message.length > max) return true;
  if (message.length * 3 <= max) return false;
  return byteLength(message) > max;
}
