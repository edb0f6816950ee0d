// A WebSocket client that reconnects with backoff: one readable and one
// writable over the series of connections that `connect()` opens.

import { report } from "../pubsub/_report.ts";
import { CloseCode } from "../protocol/constants.ts";
import { connect, type ConnectOptions } from "./client.ts";
import { MAX_TIMEOUT } from "../engine/_options.ts";
import { byteLength } from "../protocol/_bytes.ts";
import {
  HandshakeStatusError,
  parseUrl,
} from "../protocol/_client_handshake.ts";
import {
  checkCloseInfo,
  isApplicationCode,
  type WebSocketCloseInfo,
  type WebSocketCloseResult,
  WebSocketError,
} from "../protocol/websocket_error.ts";
import type { WebSocketConnection } from "../socket/socket.ts";

/**
 * How {@linkcode ReconnectingWebSocket} waits between connection attempts:
 * exponential backoff with "full jitter". Before the `n`th retry in a row
 * (from 0) it waits a random time between 0 and
 * `min(maxDelay, initialDelay * multiplier ** n)` ms, so that clients
 * dropped together (a server restart) do not all come back at once. The
 * count starts again only once a connection has stayed open `minUptime`
 * ms, so that a server that accepts and closes at once gets ever longer
 * waits, not a reconnection storm.
 *
 * @example Retrying quickly at first, at most every 10 s, 20 times
 * ```ts ignore
 * import { ReconnectingWebSocket, type RetryOptions } from "@scope/ws";
 *
 * const retry: RetryOptions = {
 *   initialDelay: 100,
 *   maxDelay: 10_000,
 *   multiplier: 2,
 *   maxAttempts: 20,
 * };
 * const socket = new ReconnectingWebSocket("wss://example.com/feed", { retry });
 * ```
 */
export interface RetryOptions {
  /** The ceiling of the first wait, in ms. Default 250. */
  initialDelay?: number;
  /** The largest ceiling of a wait, in ms. Default 30 s. */
  maxDelay?: number;
  /** How much the ceiling grows after each wait, at least 1. Default 2. */
  multiplier?: number;
  /**
   * How many connection attempts in a row may fail before the socket gives
   * up (`closed` then rejects with the last attempt's error, or a
   * `WebSocketError` with the last connection's close code). A connection
   * that closes before it has been open `minUptime` counts as a failed
   * attempt, and so does one that closes with 1011 (server error), 1012
   * (service restart) or 1013 (try again later) whenever it does. Default
   * `Infinity`.
   */
  maxAttempts?: number;
  /**
   * How long a connection must stay open, in ms, before the backoff and the
   * count of attempts start again from the beginning. Default 5 s, as npm's
   * `reconnecting-websocket`.
   */
  minUptime?: number;
}

/**
 * What {@linkcode ReconnectingWebSocket}'s `onOpen` is called with and
 * `opened` resolves with: which connection this is and what its handshake
 * negotiated.
 *
 * @example Resubscribing after a reconnection
 * ```ts ignore
 * import { ReconnectingWebSocket, type ReconnectingOpenInfo } from "@scope/ws";
 *
 * const socket = new ReconnectingWebSocket("wss://example.com/feed", {
 *   onOpen(info: ReconnectingOpenInfo) {
 *     if (info.reconnected) console.log(`back after ${info.attempt} attempts`);
 *     socket.send(JSON.stringify({ subscribe: "prices" }));
 *   },
 * });
 * ```
 */
export interface ReconnectingOpenInfo {
  /** `false` for the first connection, `true` for every one after it. */
  reconnected: boolean;
  /**
   * Which attempt in a row this was, since the last connection that stayed
   * open `retry.minUptime`: 1 when the first try succeeded.
   */
  attempt: number;
  /** The subprotocol the server chose for this connection, or `""`. */
  protocol: string;
  /** The extensions negotiated for this connection, or `""`. */
  extensions: string;
}

/**
 * Options for {@linkcode ReconnectingWebSocket}: every option of
 * {@linkcode connect} (subprotocols, headers, limits, timeouts, `caCerts`,
 * `perMessageDeflate`), used for each connection, plus how to retry, when
 * to stop, how much to queue and what to call on each open.
 *
 * @example Reconnecting unless the server says the session is over
 * ```ts ignore
 * import {
 *   ReconnectingWebSocket,
 *   type ReconnectingWebSocketOptions,
 * } from "@scope/ws";
 *
 * const options: ReconnectingWebSocketOptions = {
 *   protocols: ["chat.v1"],
 *   headers: { authorization: "Bearer t0k3n" },
 *   retry: { initialDelay: 500, maxDelay: 60_000 },
 *   stopCodes: [4001], // the server's "session expired"
 *   maxQueued: 100,
 *   onOpen: () => socket.send("join #general"),
 *   onError: (error) => console.warn("onOpen failed:", error),
 * };
 * const socket = new ReconnectingWebSocket("wss://chat.example.com/", options);
 * ```
 */
export interface ReconnectingWebSocketOptions
  extends Omit<ConnectOptions, "signal"> {
  /** How long to wait between attempts and when to give up. */
  retry?: RetryOptions;
  /**
   * Close codes after which the socket does not reconnect, whether the
   * server sent them or the connection failed with them. 1000 (normal
   * closure) never reconnects, without being listed; every other code
   * (1001 going away, 1006 abnormal closure, 1011, 1012 restart, ...) does.
   */
  stopCodes?: number[];
  /**
   * The most messages kept while no connection can take them (while
   * disconnected, or while the connection is busy). Default 1,000.
   */
  maxQueued?: number;
  /**
   * The most bytes (UTF-8 bytes for text) kept in that queue. Default 1 MiB.
   * A bigger message can only be sent while a connection is open.
   */
  maxQueuedBytes?: number;
  /**
   * Called on every open, the first and each reconnection: the place to
   * authenticate or resubscribe. Messages queued while disconnected go out
   * before anything it sends. A throw or a rejection goes to `onError` and
   * never breaks the socket.
   */
  onOpen?: (info: ReconnectingOpenInfo) => void | Promise<void>;
  /** Told about errors thrown by `onOpen`; default `console.error`. */
  onError?: (error: unknown) => void;
  /** Aborting it closes the socket for good, as `close()` does. */
  signal?: AbortSignal;
}

/**
 * The wait before the `n`th retry in a row (from 0): "full jitter", a random
 * time below `min(maxDelay, initialDelay * multiplier ** n)`.
 */
export function backoffDelay(
  retry: Omit<Required<RetryOptions>, "minUptime">,
  n: number,
  random: () => number,
): number {
  const ceiling = Math.min(
    retry.maxDelay,
    retry.initialDelay * retry.multiplier ** n,
    MAX_TIMEOUT,
  );
  return Math.floor(random() * ceiling);
}

/**
 * How long a `Retry-After` header asks to wait, in ms (RFC 9110 §10.2.3:
 * seconds, or an HTTP date); null when there is none or it is not valid.
 */
export function retryAfterDelay(
  headers: Headers,
  now: number = Date.now(),
): number | null {
  const value = headers.get("retry-after")?.trim();
  if (!value) return null;
  if (/^\d+$/.test(value)) return Math.min(Number(value) * 1000, MAX_TIMEOUT);
  // An HTTP date starts with the day's name ("Sun, 06 Nov 1994 ...").
  const date = /^[a-z]{3}\b/i.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(date)) return null;
  return Math.min(Math.max(date - now, 0), MAX_TIMEOUT);
}

const DEFAULT_RETRY: Required<RetryOptions> = {
  initialDelay: 250,
  maxDelay: 30_000,
  multiplier: 2,
  maxAttempts: Infinity,
  minUptime: 5_000,
};
/**
 * Close codes that say the server could not serve the connection: a
 * failure that grows the backoff and counts toward `maxAttempts`, however
 * long the connection was open.
 */
const FAILURE_CODES: ReadonlySet<number> = new Set([
  CloseCode.InternalError,
  CloseCode.ServiceRestart,
  CloseCode.TryAgainLater,
]);
const DEFAULT_MAX_QUEUED = 1_000;
const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;

type Message = string | Uint8Array;
type Outcome = { result: WebSocketCloseResult } | { error: unknown };

/** A `writable.write()` waiting for the connection to take its message. */
interface WriteWait {
  resolve(): void;
  reject(error: unknown): void;
}

/** A message waiting for a connection. */
interface Entry {
  message: Message;
  size: number;
  wait?: WriteWait;
}

/** The open connection and the one writer that feeds it. */
interface Live {
  socket: WebSocketConnection;
  writer: WritableStreamDefaultWriter<Message>;
  /** Whether it has been open `minUptime`; the timer until then. */
  stable: boolean;
  uptime?: ReturnType<typeof setTimeout>;
}

/**
 * A WebSocket client that reconnects: one `readable` and one `writable` for
 * the socket's whole life, over as many {@linkcode connect} connections as
 * it takes. A separate class rather than an option of
 * {@linkcode WebSocketStream}, whose `opened` and `closed` mean one
 * connection in the WHATWG proposal.
 *
 * - **When it reconnects**: after a connection ends in any way but a close
 *   with 1000 (from either side), a code in `stopCodes`, or `close()`; and
 *   after a failed attempt: a network error, a timeout, or a handshake
 *   answered with HTTP 408, 429 or 5xx. Any other HTTP answer (401, 403,
 *   404, a redirect, ...) will not change by retrying, nor will an invalid
 *   option (`TypeError`) or a missing permission: they end the socket.
 *   Waits follow `retry` (exponential backoff with full jitter, also before
 *   the first reconnection, so that clients dropped together spread out),
 *   plus a 503's or 429's `Retry-After`. A connection that closes before it
 *   has been open `retry.minUptime`, or with 1011, 1012 or 1013, is a
 *   failure as a failed attempt is: the waits go on growing and
 *   `retry.maxAttempts` applies.
 * - **Writing**: `writable.write()` and `send()` go to the open connection
 *   (`write()` resolving once the connection has taken the message, so it
 *   waits while the server is slow), or wait in one bounded queue while
 *   there is none (or while the connection is still busy with earlier
 *   messages); on reconnection the queue goes out first, in order, before
 *   anything written later (including what `onOpen` sends).
 * - **A full queue refuses new messages** (`maxQueued`, `maxQueuedBytes`):
 *   `send()` returns 0 and `writable.write()` rejects with a `RangeError`,
 *   which, as for any `WritableStream` whose sink fails, leaves `writable`
 *   errored (`send()` still works). Refusing the newest rather than dropping
 *   the oldest keeps every promise made: a message the socket accepted is
 *   sent once a connection opens, and the writer learns which one was not.
 * - **At most once**: a message handed to a connection that then drops is
 *   not sent again (nobody knows whether the server got it); messages still
 *   queued when the socket ends for good are dropped.
 * - **Reading**: each connection's messages are read into `readable` only
 *   while it has room, in order, connection after connection.
 *
 * @example Resubscribing on every reconnection
 * ```ts ignore
 * import { ReconnectingWebSocket } from "@scope/ws";
 *
 * const socket = new ReconnectingWebSocket("wss://example.com/prices", {
 *   onOpen({ reconnected }) {
 *     if (reconnected) console.log("reconnected");
 *     socket.send(JSON.stringify({ subscribe: ["EURUSD", "GBPUSD"] }));
 *   },
 * });
 * for await (const message of socket.readable) console.log(message);
 * console.log(await socket.closed); // after close(), or a 1000 from the server
 * ```
 *
 * @example Writing through an outage, and closing
 * ```ts ignore
 * import { ReconnectingWebSocket } from "@scope/ws";
 *
 * const socket = new ReconnectingWebSocket("ws://127.0.0.1:8080/", {
 *   retry: { maxDelay: 5_000 },
 *   maxQueued: 100,
 * });
 * const writer = socket.writable.getWriter();
 * await writer.write("first"); // resolves once queued; sent at the first open
 * if (socket.send("second") === 0) console.log("queue full or closed");
 * await socket.opened;
 * socket.close({ closeCode: 1000, reason: "Done" });
 * ```
 */
export class ReconnectingWebSocket {
  /** The URL connected to, serialized (`http:` and `https:` made `ws:` and `wss:`). */
  readonly url: string;
  /**
   * The messages of every connection, in order: a `string` per text
   * message, a `Uint8Array` per binary one. It ends when the socket ends
   * for good, and errors with the error `closed` rejects with when that end
   * was abnormal. Canceling it closes the socket for good.
   */
  readonly readable: ReadableStream<string | Uint8Array>;
  /**
   * Where to write messages (a `string` as text, a `Uint8Array` as binary):
   * to the open connection, or into the bounded queue while there is none.
   * Closing it closes the socket for good once every queued message has
   * been handed to a connection (waiting for the next one if none is open);
   * aborting it closes the socket at once.
   */
  readonly writable: WritableStream<string | Uint8Array>;
  /**
   * Resolves at the first open, with what `onOpen` gets; rejects when the
   * socket ends before one (after giving up, or on `close()`).
   */
  readonly opened: Promise<ReconnectingOpenInfo>;
  /**
   * Settles once, when the socket ends for good: resolves with the close
   * code and reason after a clean close (the server's answer to `close()`,
   * a 1000 or a stop code from the server; when `close()` is called with
   * no connection open, the code and reason it was given, 1005 for none),
   * rejects with a {@linkcode WebSocketError} (or the `TypeError` of an
   * invalid option) when it gave up or a connection failed with a stop code.
   */
  readonly closed: Promise<WebSocketCloseResult>;

  #options: ConnectOptions;
  #retry: Required<RetryOptions>;
  #stopCodes: Set<number>;
  #maxQueued: number;
  #maxQueuedBytes: number;
  #onOpen: ReconnectingWebSocketOptions["onOpen"];
  #onError: (error: unknown) => void;
  #signal: AbortSignal | undefined;

  #state: "connecting" | "open" | "reconnecting" | "closed" = "connecting";
  #live: Live | undefined;
  /** The handshake in flight, if any, and what aborts it. */
  #handshake: AbortController | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Attempts made since the last connection that stayed open `minUptime`
   * (the one in progress included), and waits before them.
   */
  #attempts = 0;
  #waits = 0;
  #everOpened = false;
  #closeInfo: WebSocketCloseInfo = {};
  /** Why `opened` rejects if the socket ends before opening. */
  #notOpenedError: unknown;
  #settled = false;
  #finalError: unknown;

  #outbox: Entry[] = [];
  #queuedBytes = 0;
  #draining = false;
  #writeWait: WriteWait | undefined;
  #lastHanded: Promise<void> = Promise.resolve();
  #flushWaiters: (() => void)[] = [];
  #writableController!: WritableStreamDefaultController;
  #writableClosing = false;

  /** The readers of connections whose messages are not all read yet. */
  #readers: ReadableStreamDefaultReader<Message>[] = [];
  #readableController!: ReadableStreamDefaultController<Message>;
  #readableDone = false;
  #wakeReader: (() => void) | undefined;

  #resolveOpened!: (info: ReconnectingOpenInfo) => void;
  #rejectOpened!: (error: unknown) => void;
  #resolveClosed!: (result: WebSocketCloseResult) => void;
  #rejectClosed!: (error: unknown) => void;

  /**
   * Starts connecting to `url`.
   *
   * @param url A `ws:` or `wss:` URL (`http:` and `https:` are accepted
   * too), without a fragment; a `TypeError` otherwise.
   * @param options The options of {@linkcode connect} for every connection,
   * plus retry, stop codes, queue bounds, `onOpen`, `onError` and `signal`;
   * a `RangeError` or `TypeError` for an invalid one.
   */
  constructor(url: string | URL, options?: ReconnectingWebSocketOptions) {
    options ??= {};
    this.url = parseUrl(url).href;
    const {
      retry,
      stopCodes = [],
      maxQueued = DEFAULT_MAX_QUEUED,
      maxQueuedBytes = DEFAULT_MAX_QUEUED_BYTES,
      onOpen,
      onError,
      signal,
      ...connectOptions
    } = options;
    this.#options = connectOptions;
    this.#retry = checkRetry(retry);
    if (
      !Array.isArray(stopCodes) || !stopCodes.every(Number.isInteger)
    ) {
      throw new TypeError("The stopCodes option must be an array of integers");
    }
    this.#stopCodes = new Set(stopCodes);
    this.#maxQueued = checkCount("maxQueued", maxQueued);
    this.#maxQueuedBytes = checkCount("maxQueuedBytes", maxQueuedBytes);
    for (const [name, value] of [["onOpen", onOpen], ["onError", onError]]) {
      if (value !== undefined && typeof value !== "function") {
        throw new TypeError(`The ${name} option must be a function`);
      }
    }
    this.#onOpen = onOpen;
    this.#onError = onError ?? console.error;

    this.opened = new Promise((resolve, reject) => {
      this.#resolveOpened = resolve;
      this.#rejectOpened = reject;
    });
    this.closed = new Promise((resolve, reject) => {
      this.#resolveClosed = resolve;
      this.#rejectClosed = reject;
    });
    // Nobody has to await them: an unobserved rejection must not crash.
    this.opened.catch(() => {});
    this.closed.catch(() => {});

    this.readable = new ReadableStream<Message>({
      start: (controller) => {
        this.#readableController = controller;
      },
      pull: () => this.#pull(),
      cancel: (reason) => this.#cancel(reason),
    });
    this.writable = new WritableStream<Message>({
      start: (controller) => {
        this.#writableController = controller;
      },
      write: (message) => this.#write(message),
      close: () => this.#closeWritable(),
      abort: (reason) => this.#closeFor(reason),
    });

    this.#signal = signal;
    if (signal?.aborted) {
      this.#onAbort();
      return;
    }
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#connect();
  }

  /**
   * `"connecting"` until the first open (retries included), `"open"` while
   * a connection is open, `"reconnecting"` between connections, and
   * `"closed"` from `close()` or the end on.
   */
  get state(): "connecting" | "open" | "reconnecting" | "closed" {
    return this.#state;
  }

  /**
   * Sends a message at once if the connection can take it, or queues it;
   * never throws for the socket's state and never waits. A `Uint8Array`
   * that has to wait is copied, so its buffer may be reused at once.
   *
   * @param message A `string` (sent as text) or a `Uint8Array` (binary);
   * anything else throws a `TypeError`.
   * @returns The message's size in bytes (UTF-8 bytes for text) once it is
   * sent or queued, or 0 when it is refused: the queue is full, or the
   * socket is closed. (An empty message returns 0 too, sent or not: check
   * `state` if that matters.)
   *
   * @example Telling a refused message
   * ```ts ignore
   * import { ReconnectingWebSocket } from "@scope/ws";
   *
   * const socket = new ReconnectingWebSocket("ws://127.0.0.1:8080/");
   * if (socket.send("hello") === 0) console.log("not sent: queue full or closed");
   * ```
   */
  send(message: string | Uint8Array): number {
    checkMessage(message);
    if (this.#state === "closed") return 0;
    const size = byteLength(message);
    if (!this.#fits(size)) return 0;
    this.#enqueue(message, size);
    return size;
  }

  /**
   * Closes the socket for good: closes the open connection with this code
   * and reason, or stops a pending retry or handshake. No reconnection
   * follows; messages still queued are dropped (to send them first, close
   * `writable` instead). `closeCode` must be 1000 or 3000–4999; a reason
   * without a code sends 1000.
   *
   * @param closeInfo The close code and a reason of at most 123 UTF-8 bytes.
   *
   * @example Closing with a code and a reason
   * ```ts ignore
   * import { ReconnectingWebSocket } from "@scope/ws";
   *
   * const socket = new ReconnectingWebSocket("ws://127.0.0.1:8080/");
   * await socket.opened;
   * socket.close({ closeCode: 1000, reason: "Bye" });
   * console.log(await socket.closed); // the server's answer: { closeCode: 1000, ... }
   * ```
   */
  close(closeInfo?: WebSocketCloseInfo): void {
    const { closeCode, reason } = checkCloseInfo(closeInfo);
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeInfo = { closeCode, reason };
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#notOpenedError ??= new WebSocketError(
      "The WebSocket was closed before the connection was established",
    );
    this.#wakeFlushWaiters();
    if (this.#live) {
      // The end of the connection settles `closed`.
      this.#live.socket.close(this.#closeInfo);
    } else if (this.#handshake) {
      // The end of the handshake settles `closed`, so that nothing it
      // started is left running.
      this.#handshake.abort(this.#notOpenedError);
    } else {
      this.#settle({ result: this.#ownCloseResult() });
    }
  }

  // Connecting and reconnecting.

  #onAbort = (): void => {
    this.#notOpenedError ??= this.#signal!.reason;
    this.close();
  };

  #connect(): void {
    this.#attempts++;
    const handshake = new AbortController();
    this.#handshake = handshake;
    connect(this.url, { ...this.#options, signal: handshake.signal }).then(
      (socket) => {
        this.#handshake = undefined;
        this.#opened(socket);
      },
      (error) => {
        this.#handshake = undefined;
        this.#failed(error);
      },
    );
  }

  #opened(socket: WebSocketConnection): void {
    const live: Live = {
      socket,
      writer: socket.writable.getWriter(),
      stable: false,
    };
    this.#live = live;
    socket.closed.then(
      (result) => this.#ended(live, { result }),
      (error) => this.#ended(live, { error }),
    );
    if (this.#state === "closed") {
      // `close()` came as the handshake finished.
      socket.close(this.#closeInfo);
      return;
    }
    this.#readers.push(socket.readable.getReader());
    this.#wakeReader?.();
    const info: ReconnectingOpenInfo = {
      reconnected: this.#everOpened,
      attempt: this.#attempts,
      protocol: socket.protocol,
      extensions: socket.extensions,
    };
    // The backoff starts again once the connection has proved stable, not
    // at its open: a server that accepts and closes at once would
    // otherwise be retried at the first delay forever.
    live.uptime = setTimeout(() => {
      live.uptime = undefined;
      live.stable = true;
      this.#attempts = 0;
      this.#waits = 0;
    }, Math.min(this.#retry.minUptime, MAX_TIMEOUT));
    this.#state = "open";
    if (!this.#everOpened) {
      this.#everOpened = true;
      this.#resolveOpened(info);
    }
    // What was queued while disconnected goes before anything `onOpen` sends.
    this.#drain();
    this.#call(() => this.#onOpen?.(info));
  }

  #failed(error: unknown): void {
    if (this.#state === "closed") {
      this.#settle({ result: this.#ownCloseResult() });
    } else if (
      !isRetryable(error) || this.#attempts >= this.#retry.maxAttempts
    ) {
      this.#settle({ error });
    } else {
      this.#retryLater(retryAfter(error));
    }
  }

  #ended(live: Live, outcome: Outcome): void {
    this.#live = undefined;
    clearTimeout(live.uptime);
    // Pending writes on it fail: their messages were handed over, and are
    // not sent again (at most once).
    live.writer.releaseLock();
    // A `write()` waiting for this connection stops waiting: its message is
    // either lost with the connection or still queued for the next one.
    this.#releaseWrite(this.#writeWait);
    this.#wakeFlushWaiters();
    if (this.#state === "closed") {
      this.#settle(outcome);
      return;
    }
    const code = "result" in outcome
      ? outcome.result.closeCode
      : outcome.error instanceof WebSocketError
      ? outcome.error.closeCode
      : CloseCode.AbnormalClosure;
    if (code === CloseCode.NormalClosure || this.#stopCodes.has(code)) {
      this.#settle(outcome);
      return;
    }
    // A connection that did not stay open `minUptime`, or that the server
    // closed because it could not serve it, is a failed attempt: the waits
    // go on growing and `maxAttempts` applies.
    if (!live.stable || FAILURE_CODES.has(code)) {
      // After the reset of a stable connection it is the first failure.
      if (live.stable) this.#attempts = 1;
      if (this.#attempts >= this.#retry.maxAttempts) {
        this.#settle({ error: closeError(outcome, code) });
        return;
      }
    }
    this.#state = "reconnecting";
    this.#retryLater();
  }

  /**
   * Waits the backoff, then tries again: one timer at a time. A server's
   * `Retry-After` (`after` ms) comes on top of the backoff, which keeps
   * clients told the same time from all coming back at once.
   */
  #retryLater(after = 0): void {
    const delay = Math.min(
      after + backoffDelay(this.#retry, this.#waits++, Math.random),
      MAX_TIMEOUT,
    );
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
  }

  /** Ends the socket for good, once. */
  #settle(outcome: Outcome): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#state = "closed";
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    const error = "error" in outcome
      ? outcome.error
      : new WebSocketError("The WebSocket is closed", outcome.result);
    // Queued messages have nowhere to go now.
    this.#outbox = [];
    this.#queuedBytes = 0;
    if (!this.#writableClosing) this.#writableController.error(error);
    const wait = this.#writeWait;
    this.#writeWait = undefined;
    wait?.reject(error);
    this.#wakeFlushWaiters();
    if (!this.#everOpened) {
      this.#rejectOpened("error" in outcome ? error : this.#notOpenedError);
    }
    if ("error" in outcome) {
      this.#finalError = error;
      this.#rejectClosed(error);
    } else {
      this.#resolveClosed(outcome.result);
    }
    this.#wakeReader?.();
  }

  /** What `closed` resolves with after `close()` with no connection open. */
  #ownCloseResult(): WebSocketCloseResult {
    const { closeCode, reason = "" } = this.#closeInfo;
    return {
      closeCode: closeCode ??
        (reason ? CloseCode.NormalClosure : CloseCode.NoStatusReceived),
      reason,
      wasClean: true,
    };
  }

  /** Calls the application's code; what it throws goes to `onError`. */
  #call(callback: () => unknown): void {
    try {
      const result = callback() as Promise<unknown> | undefined;
      if (typeof result?.then === "function") {
        result.then(undefined, (error) => this.#report(error));
      }
    } catch (error) {
      this.#report(error);
    }
  }

  #report(error: unknown): void {
    report(this.#onError, error);
  }

  // Writing: one queue, in order, for `send()` and `writable`.

  #write(message: Message): Promise<void> | void {
    checkMessage(message);
    if (this.#state === "closed") {
      throw new WebSocketError("The WebSocket is closed");
    }
    const size = byteLength(message);
    if (this.#state !== "open") {
      // Disconnected: resolves once queued, within the bounds.
      if (!this.#fits(size)) {
        throw new RangeError(
          `The queue of messages waiting for a connection is full (${this.#outbox.length} messages, ${this.#queuedBytes} bytes)`,
        );
      }
      this.#enqueue(message, size);
      return;
    }
    // Open: waits until the connection takes it (its backpressure). The
    // writable hands over one message at a time, so this adds at most one
    // message to the queue and is never refused.
    return new Promise((resolve, reject) => {
      const wait = { resolve, reject };
      this.#writeWait = wait;
      this.#enqueue(message, size, wait);
    });
  }

  #fits(size: number): boolean {
    return this.#outbox.length < this.#maxQueued &&
      this.#queuedBytes + size <= this.#maxQueuedBytes;
  }

  #enqueue(message: Message, size: number, wait?: WriteWait): void {
    const live = this.#live;
    if (
      this.#state === "open" && live !== undefined &&
      this.#outbox.length === 0 && (live.writer.desiredSize ?? 0) > 0
    ) {
      this.#hand(live, message, wait);
      return;
    }
    // Kept for later: the caller may reuse its buffer meanwhile.
    if (typeof message !== "string") message = message.slice();
    this.#outbox.push({ message, size, wait });
    this.#queuedBytes += size;
    this.#drain();
  }

  /** Hands queued messages to the open connection as it takes them. */
  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      let live: Live | undefined;
      while (
        (live = this.#live) !== undefined && this.#state === "open" &&
        this.#outbox.length > 0
      ) {
        const room = live.writer.desiredSize;
        // Its writable failed: the connection's end follows.
        if (room === null) break;
        if (room <= 0) {
          try {
            await live.writer.ready;
          } catch {
            // Released or failed: the loop looks at the connection again.
          }
          continue;
        }
        const entry = this.#outbox.shift()!;
        this.#queuedBytes -= entry.size;
        this.#hand(live, entry.message, entry.wait);
      }
    } finally {
      this.#draining = false;
      if (this.#outbox.length === 0) this.#wakeFlushWaiters();
    }
  }

  #hand(live: Live, message: Message, wait?: WriteWait): void {
    const written = live.writer.write(message);
    this.#lastHanded = written.then(
      () => this.#releaseWrite(wait),
      () => this.#releaseWrite(wait),
    );
  }

  #releaseWrite(wait: WriteWait | undefined): void {
    if (wait === undefined || this.#writeWait !== wait) return;
    this.#writeWait = undefined;
    wait.resolve();
  }

  #wakeFlushWaiters(): void {
    for (const wake of this.#flushWaiters.splice(0)) wake();
  }

  async #closeWritable(): Promise<void> {
    this.#writableClosing = true;
    // What is queued goes out first, on the next connection if none is
    // open: closing a stream means "deliver what I wrote, then end".
    while (this.#state !== "closed" && this.#outbox.length > 0) {
      await new Promise<void>((resolve) => this.#flushWaiters.push(resolve));
    }
    if (this.#state === "open") await this.#lastHanded;
    this.close();
    await this.closed;
  }

  /** Closes for a stream's cancel or abort reason, as WebSocketStream does. */
  #closeFor(reason: unknown): void {
    if (reason instanceof WebSocketError) {
      // Its reason fits a close frame: the error's constructor checked it.
      const code = reason.closeCode;
      this.close({
        closeCode: isApplicationCode(code) ? code : undefined,
        reason: reason.reason,
      });
    } else {
      this.close();
    }
  }

  // Reading: each connection's readable, in turn, into the one readable.

  async #pull(): Promise<void> {
    while (!this.#readableDone) {
      const reader = this.#readers[0];
      if (reader === undefined) {
        if (this.#settled) {
          this.#readableDone = true;
          if (this.#finalError !== undefined) {
            this.#readableController.error(this.#finalError);
          } else {
            this.#readableController.close();
          }
          return;
        }
        await new Promise<void>((resolve) => this.#wakeReader = resolve);
        this.#wakeReader = undefined;
        continue;
      }
      let read: ReadableStreamReadResult<Message>;
      try {
        read = await reader.read();
      } catch {
        // The connection failed: its end decides what follows.
        read = { done: true, value: undefined };
      }
      if (read.done) {
        if (this.#readers[0] === reader) this.#readers.shift();
        reader.releaseLock();
        continue;
      }
      if (this.#readableDone) return;
      this.#readableController.enqueue(read.value);
      return;
    }
  }

  #cancel(reason: unknown): void {
    this.#closeFor(reason);
    this.#readableDone = true;
    for (const reader of this.#readers.splice(0)) {
      reader.cancel().catch(() => {});
    }
    this.#wakeReader?.();
  }
}

/**
 * Whether a failed attempt is worth repeating: network errors, timeouts and
 * a handshake answered with 408, 429 or 5xx are; other HTTP answers, an
 * invalid option (`TypeError`) and a missing permission are not.
 */
function isRetryable(error: unknown): boolean {
  if (!(error instanceof WebSocketError)) return false;
  const status = handshakeStatus(error);
  if (status === undefined) return true;
  return status === 408 || status === 429 || status >= 500;
}

/** The HTTP status a refused handshake was answered with, if it was. */
function handshakeStatus(error: WebSocketError): number | undefined {
  return error.cause instanceof HandshakeStatusError
    ? error.cause.status
    : undefined;
}

/**
 * The `Retry-After` of a handshake refused with 503 or 429 (RFC 9110
 * §10.2.3, RFC 6585 §4), in ms; 0 for any other failure.
 */
function retryAfter(error: unknown): number {
  const cause = error instanceof WebSocketError ? error.cause : undefined;
  if (
    !(cause instanceof HandshakeStatusError) ||
    (cause.status !== 503 && cause.status !== 429)
  ) {
    return 0;
  }
  return retryAfterDelay(cause.headers) ?? 0;
}

/** Why the socket gave up after a connection that ended with `code`. */
function closeError(outcome: Outcome, code: number): unknown {
  if ("error" in outcome) return outcome.error;
  const { reason } = outcome.result;
  return new WebSocketError(
    `The server closed the connection with ${code}` +
      (reason ? `: ${reason}` : ""),
    { closeCode: code, reason },
  );
}

function checkRetry(retry: RetryOptions = {}): Required<RetryOptions> {
  if (typeof retry !== "object" || retry === null) {
    throw new TypeError("The retry option must be an object");
  }
  const checked = { ...DEFAULT_RETRY };
  for (const name of Object.keys(DEFAULT_RETRY) as (keyof RetryOptions)[]) {
    const value = retry[name];
    if (value === undefined) continue;
    const valid = typeof value === "number" && (
      name === "maxAttempts"
        ? value === Infinity || (Number.isInteger(value) && value >= 1)
        : name === "multiplier"
        ? Number.isFinite(value) && value >= 1
        : value >= 0
    );
    if (!valid) {
      throw new RangeError(`Invalid retry.${name}: ${value}`);
    }
    checked[name] = value;
  }
  return checked;
}

function checkCount(name: string, value: number): number {
  if (typeof value !== "number" || !(value >= 0)) {
    throw new RangeError(`The ${name} option must be 0 or more, got ${value}`);
  }
  return value;
}

function checkMessage(message: unknown): void {
  if (typeof message !== "string" && !(message instanceof Uint8Array)) {
    throw new TypeError("A message must be a string or a Uint8Array");
  }
}
