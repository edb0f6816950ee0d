import {
  computeAccept,
  isUpgradeRequest,
  validateUpgrade,
} from "./_handshake.ts";
import {
  decodeHead,
  findHeadEnd,
  HttpError,
  parseRequestHead,
  type RequestHead,
  serializeResponse,
  serializeSwitchingProtocols,
} from "./_http.ts";
import {
  _Connection,
  _startHeartbeat,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_PING_INTERVAL,
  type Transport,
  type WebSocketConnection,
} from "./connection.ts";
import { DEFAULT_MAX_MESSAGE_SIZE } from "./message_assembler.ts";
import {
  _checkOptions,
  type _DeflateSettings,
  _negotiateServer,
  type PerMessageDeflateOptions,
} from "./permessage_deflate.ts";
import type { WebSocketError } from "./websocket_error.ts";

/**
 * What the server knows about a connection besides its request.
 *
 * @example Refusing upgrades from outside the machine
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   onUpgrade: (_request, { remoteAddr }) => {
 *     if (remoteAddr.hostname !== "127.0.0.1") {
 *       return new Response("Forbidden", { status: 403 });
 *     }
 *   },
 * }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface ServeInfo {
  /** The peer's address. */
  remoteAddr: Deno.NetAddr;
}

/**
 * What an `onUpgrade` hook may return to accept an upgrade.
 *
 * @example Setting a cookie on the 101 answer
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   onUpgrade: () => ({ headers: { "set-cookie": "session=abc; HttpOnly" } }),
 * }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface UpgradeAcceptance {
  /** Extra headers for the `101 Switching Protocols` answer. */
  headers?: HeadersInit;
}

/**
 * Handles one accepted WebSocket.
 *
 * @example A handler that greets, then echoes in upper case
 * ```ts ignore
 * import { serve, type WebSocketHandler } from "@scope/ws";
 *
 * const handler: WebSocketHandler = async (socket) => {
 *   const writer = socket.writable.getWriter();
 *   await writer.write(`Hello from ${new URL(socket.request.url).pathname}`);
 *   for await (const message of socket.readable) {
 *     await writer.write(typeof message === "string" ? message.toUpperCase() : message);
 *   }
 * };
 * serve({ port: 8080 }, handler);
 * ```
 */
export type WebSocketHandler = (
  socket: WebSocketConnection,
) => void | Promise<void>;

/**
 * Options for {@linkcode serve}.
 *
 * @example A server with tighter limits
 * ```ts ignore
 * import { serve, type ServeOptions } from "@scope/ws";
 *
 * const options: ServeOptions = {
 *   port: 8080,
 *   hostname: "127.0.0.1",
 *   maxMessageSize: 1 << 20,
 *   idleTimeout: 120_000,
 * };
 * serve(options, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface ServeOptions {
  /** The port to listen on. Default `8000`, as `Deno.serve`; `0` picks one. */
  port?: number;
  /** The address to listen on. Default `"0.0.0.0"`, as `Deno.serve`. */
  hostname?: string;
  /** Aborting it shuts the server down, as {@linkcode WebSocketServer.shutdown}. */
  signal?: AbortSignal;
  /** Called once listening; default: logs the address. */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * Subprotocols the server speaks (the first one the client offers is
   * chosen), or a function that picks one of the client's offers or none.
   */
  protocols?:
    | string[]
    | ((offered: string[], request: Request) => string | undefined);
  /**
   * Sees each valid upgrade request before it is accepted: return a
   * `Response` to refuse it (origin checks, authentication), or extra headers
   * for the `101` answer, or nothing to accept it.
   */
  onUpgrade?: (
    request: Request,
    info: ServeInfo,
  ) =>
    | Response
    | UpgradeAcceptance
    | void
    | Promise<Response | UpgradeAcceptance | void>;
  /**
   * Answers plain HTTP requests (no WebSocket upgrade) on the same port; the
   * request has no body and the connection closes after the answer.
   * Default: `426 Upgrade Required`.
   */
  onRequest?: (
    request: Request,
    info: ServeInfo,
  ) => Response | Promise<Response>;
  /** Told about handler faults and internal errors; default: logs them. */
  onError?: (error: unknown) => void;
  /** The largest message, in bytes, after reassembly. Default 16 MiB. */
  maxMessageSize?: number;
  /** The largest HTTP request head, in bytes; bigger gets 431. Default 16 KiB. */
  maxHeadSize?: number;
  /** How long a client may take to send its request head, in ms. Default 10 s. */
  handshakeTimeout?: number;
  /**
   * How long the closing handshake and TCP close may take, in ms, before
   * the connection is dropped. Default 5 s.
   */
  closeTimeout?: number;
  /** The most frames one message may be split into; more gets 1008. Default 1,024. */
  maxFragments?: number;
  /**
   * The most open WebSockets; further upgrades are refused with 503.
   * Default: no limit but the process's file descriptors.
   */
  maxConnections?: number;
  /**
   * Ping a peer that has sent nothing for this long, in ms, so that proxies
   * see traffic and dead peers are found; 0 turns pings off. Default 30 s,
   * as Deno's own server, half of nginx's 60 s proxy read timeout.
   */
  pingInterval?: number;
  /**
   * Close (1001, "Idle timeout") a peer that has sent nothing, not even a
   * pong, for this long, in ms; 0 turns it off. Default 60 s: two ping
   * intervals, so a live peer answering pings never reaches it.
   */
  idleTimeout?: number;
  /** A PEM certificate chain: with `key`, serve `wss:` over `Deno.listenTls`. */
  cert?: string;
  /** The PEM private key for `cert`. */
  key?: string;
  /** Called when a WebSocket opens, before the handler. */
  onOpen?: (socket: WebSocketConnection) => void;
  /**
   * Called when a WebSocket has closed, with its close code (1006 when it
   * ended without a closing handshake) and whether the close was clean.
   */
  onClose?: (socket: WebSocketConnection, info: CloseEventInfo) => void;
  /**
   * Compress messages with permessage-deflate (RFC 7692) for clients that
   * offer it, as browsers do: `true` for the defaults, or settings. Off by
   * default, since it costs memory: about 270 KiB more per connection that
   * compresses in both directions (a zlib compressor of ~230 KiB, created
   * at the first message sent compressed, and a decompressor of ~40 KiB,
   * created at the first compressed message received), and CPU time.
   * `maxMessageSize` then limits the inflated size too.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

/**
 * How a WebSocket ended, as told to {@linkcode ServeOptions.onClose}.
 *
 * @example Counting unclean closes
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * let unclean = 0;
 * serve({
 *   onClose: (_socket, { closeCode, wasClean }) => {
 *     if (!wasClean) unclean++;
 *     console.log("closed", closeCode);
 *   },
 * }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface CloseEventInfo {
  /** The close code received, sent on failure, or 1006. */
  closeCode: number;
  /** The close reason. */
  reason: string;
  /** Whether the closing handshake completed. */
  wasClean: boolean;
}

/**
 * A running WebSocket server, as returned by {@linkcode serve}. Disposing of
 * it (`await using`) shuts it down.
 *
 * @example Stopping a server
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * const server = serve({ port: 0 }, (socket) => socket.readable.pipeTo(socket.writable));
 * console.log(`listening on ${server.addr.port}, ${server.connections} open`);
 * await server.shutdown(); // 1001 to every socket, then `finished` resolves
 * ```
 */
export interface WebSocketServer extends AsyncDisposable {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has shut down and every connection closed. */
  readonly finished: Promise<void>;
  /** How many WebSocket connections are open now. */
  readonly connections: number;
  /**
   * Stops accepting, closes every open WebSocket with 1001 (going away),
   * waits for their closing handshakes (bounded by `closeTimeout`), and
   * resolves with `finished`.
   */
  shutdown(): Promise<void>;
}

const DEFAULT_MAX_HEAD_SIZE = 16 * 1024;
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
const DEFAULT_CLOSE_TIMEOUT = 5_000;
/** How long to wait before accepting again after `accept` failed, in ms. */
const ACCEPT_RETRY_DELAY = 100;

/**
 * Serves WebSockets over `Deno.listen`, with the shape of `Deno.serve`:
 * every accepted upgrade calls `handler` with the socket and the upgrade
 * `Request`. Each connection is handled on its own; a failing one never
 * affects another.
 *
 * @param handler Called with each accepted WebSocket.
 * @returns The running server.
 *
 * @example An echo server
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({ port: 8080 }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 *
 * @example Refusing other origins and choosing a subprotocol
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   port: 8080,
 *   protocols: ["chat.v2", "chat.v1"],
 *   onUpgrade: (request) => {
 *     if (request.headers.get("origin") !== "https://example.com") {
 *       return new Response("Forbidden", { status: 403 });
 *     }
 *   },
 * }, async (socket) => {
 *   const writer = socket.writable.getWriter();
 *   await writer.write(`You speak ${socket.protocol}`);
 * });
 * ```
 */
export function serve(handler: WebSocketHandler): WebSocketServer;
/**
 * Serves WebSockets over `Deno.listen`, with the shape of `Deno.serve`:
 * every accepted upgrade calls `handler` with the socket and the upgrade
 * `Request`. Each connection is handled on its own; a failing one never
 * affects another.
 *
 * @param options Where to listen, and the limits and hooks.
 * @param handler Called with each accepted WebSocket.
 * @returns The running server.
 *
 * @example An echo server
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({ port: 8080 }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 *
 * @example Refusing other origins and choosing a subprotocol
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   port: 8080,
 *   protocols: ["chat.v2", "chat.v1"],
 *   onUpgrade: (request) => {
 *     if (request.headers.get("origin") !== "https://example.com") {
 *       return new Response("Forbidden", { status: 403 });
 *     }
 *   },
 * }, async (socket) => {
 *   const writer = socket.writable.getWriter();
 *   await writer.write(`You speak ${socket.protocol}`);
 * });
 * ```
 */
export function serve(
  options: ServeOptions,
  handler: WebSocketHandler,
): WebSocketServer;
export function serve(
  optionsOrHandler: ServeOptions | WebSocketHandler,
  maybeHandler?: WebSocketHandler,
): WebSocketServer {
  const [options, handler] = typeof optionsOrHandler === "function"
    ? [{}, optionsOrHandler]
    : [optionsOrHandler, maybeHandler];
  if (typeof handler !== "function") {
    throw new TypeError("A handler function is required");
  }
  return new _Server(options, handler);
}

class _Server implements WebSocketServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  #options: ServeOptions;
  #handler: WebSocketHandler;
  #listener: Deno.Listener;
  #tls: boolean;
  #sockets = new Set<_Connection>();
  /** Open WebSockets, counted from the moment the 101 is sent. */
  #open = 0;
  #handshaking = new Set<Deno.Conn>();
  /** Connections being served, from accept to the end of their socket. */
  #active = 0;
  #wakeWhenIdle: (() => void) | undefined;
  /** Shared by every connection's task, rather than a closure each. */
  #taskEnded = () => {
    if (--this.#active === 0) this.#wakeWhenIdle?.();
  };
  #stopping = false;
  #cancelRetry: (() => void) | undefined;
  #onError: (error: unknown) => void;
  #deflate: PerMessageDeflateOptions | null;

  constructor(options: ServeOptions, handler: WebSocketHandler) {
    this.#options = options;
    this.#handler = handler;
    this.#deflate = _checkOptions(options.perMessageDeflate);
    this.#onError = options.onError ??
      ((error) => console.error("WebSocket server error:", error));
    const address = {
      port: options.port ?? 8000,
      hostname: options.hostname ?? "0.0.0.0",
    };
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError("The cert and key options go together");
    }
    const { cert, key } = options;
    const tls = cert !== undefined && key !== undefined
      ? { cert, key }
      : undefined;
    this.#tls = tls !== undefined;
    this.#listener = tls
      ? Deno.listenTls({ ...address, ...tls })
      : Deno.listen(address);
    this.addr = this.#listener.addr as Deno.NetAddr;
    const scheme = this.#tls ? "wss" : "ws";
    const onListen = options.onListen ??
      ((addr) =>
        console.log(`Listening on ${scheme}://${addr.hostname}:${addr.port}/`));
    onListen(this.addr);
    const signal = options.signal;
    const onAbort = () => this.shutdown();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) this.shutdown();
    const heartbeat = this.#startHeartbeat();
    this.finished = this.#acceptLoop().finally(() => {
      clearInterval(heartbeat);
      signal?.removeEventListener("abort", onAbort);
    });
  }

  /**
   * One timer for all sockets (not one each, which idle connections would
   * pay for): it pings silent peers and closes idle ones.
   */
  #startHeartbeat(): ReturnType<typeof setInterval> | undefined {
    return _startHeartbeat(
      this.#sockets,
      this.#options.pingInterval ?? DEFAULT_PING_INTERVAL,
      this.#options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    );
  }

  get connections(): number {
    return this.#open;
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#stopping) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping || error instanceof Deno.errors.BadResource) break;
        // Out of file descriptors, say: report it and keep accepting once
        // connections have ended, rather than stop serving for good.
        this.#onError(error);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ACCEPT_RETRY_DELAY);
          this.#cancelRetry = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#cancelRetry = undefined;
        continue;
      }
      if (this.#stopping) {
        conn.close();
        break;
      }
      this.#active++;
      this.#handle(conn).then(this.#taskEnded, this.#taskEnded);
    }
    while (this.#active > 0) {
      await new Promise<void>((resolve) => this.#wakeWhenIdle = resolve);
    }
  }

  shutdown(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      try {
        this.#listener.close();
      } catch {
        // Already closed.
      }
      this.#cancelRetry?.();
      for (const conn of this.#handshaking) _closeQuietly(conn);
      for (const socket of this.#sockets) {
        socket._close(1001, "Server shutting down");
      }
    }
    return this.finished;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    const info: ServeInfo = { remoteAddr: conn.remoteAddr as Deno.NetAddr };
    this.#handshaking.add(conn);
    let socket: _Connection | undefined;
    try {
      socket = await this.#handshake(conn, info);
    } catch (error) {
      if (!_isDisconnect(error)) this.#onError(error);
    } finally {
      this.#handshaking.delete(conn);
    }
    if (!socket) {
      _closeQuietly(conn);
      return;
    }
    this.#sockets.add(socket);
    if (this.#stopping) socket._close(1001, "Server shutting down");
    this.#start(socket);
    // The connection's task follows the socket, not the handler: a handler
    // that never settles must not hold up shutdown. Chained rather than
    // awaited, so that an open socket keeps no suspended frame here.
    return socket.done.then(() => this.#ended(socket));
  }

  /** Runs `onOpen` and the handler; a fault closes the socket with 1011. */
  #start(socket: _Connection): void {
    const fault = (error: unknown) => {
      // A rejection that is only the socket's own end is not a fault: it
      // closed, or a message that arrived while closing could not be sent.
      if (socket._state !== "closed" && !socket._isSendAfterClose(error)) {
        this.#onError(error);
        socket._close(1011, "Internal error");
      }
    };
    try {
      this.#options.onOpen?.(socket);
      const result = this.#handler(socket);
      if (typeof result?.then === "function") result.then(undefined, fault);
    } catch (error) {
      fault(error);
    }
  }

  async #ended(socket: _Connection): Promise<void> {
    this.#sockets.delete(socket);
    this.#open--;
    const ended = await socket.closed.then(
      ({ closeCode, reason }) => ({ closeCode, reason, wasClean: true }),
      (error: WebSocketError) => ({
        closeCode: error.closeCode,
        reason: error.reason,
        wasClean: false,
      }),
    );
    try {
      this.#options.onClose?.(socket, ended);
    } catch (error) {
      this.#onError(error);
    }
  }

  /** Runs the opening handshake; returns the socket, or undefined if refused. */
  async #handshake(
    conn: Deno.Conn,
    info: ServeInfo,
  ): Promise<_Connection | undefined> {
    const options = this.#options;
    const read = await _readHead(
      conn,
      options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE,
      options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    );
    if (read instanceof HttpError) {
      await this.#refuse(conn, read);
      return;
    }
    if (!read) return;
    const text = decodeHead(read.head);
    let head: RequestHead;
    try {
      head = parseRequestHead(text);
    } catch (error) {
      await this.#refuse(conn, error as HttpError);
      return;
    }
    const upgrade = isUpgradeRequest(head);
    let key: string;
    let makeRequest: () => Request;
    try {
      key = upgrade ? validateUpgrade(head) : "";
      makeRequest = _requestMaker(this.#requestUrl(head), text);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      await this.#refuse(conn, error);
      return;
    }
    // The Request is made when first asked for: an idle socket then holds its
    // head as one string, not a Request with its Headers (~2 KiB).
    let made: Request | undefined;
    const request = () => made ??= makeRequest();
    if (!upgrade) {
      await this.#respond(conn, head.method, async () => {
        const onRequest = options.onRequest ?? _upgradeRequired;
        return await onRequest(request(), info);
      });
      return;
    }
    const headers = new Headers({
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-accept": await computeAccept(key),
    });
    let accepted = false;
    let protocol = "";
    let extensions = "";
    let perMessageDeflate: _DeflateSettings | undefined;
    await this.#respond(conn, head.method, async () => {
      const verdict = await options.onUpgrade?.(request(), info);
      if (verdict instanceof Response) return verdict;
      protocol = this.#chooseProtocol(head, request);
      if (protocol) headers.set("sec-websocket-protocol", protocol);
      if (this.#deflate !== null) {
        const negotiated = _negotiateServer(
          head.headers.get("sec-websocket-extensions"),
          this.#deflate,
        );
        if (negotiated !== null) {
          extensions = negotiated.response;
          headers.set("sec-websocket-extensions", extensions);
          perMessageDeflate = {
            params: negotiated.params,
            options: this.#deflate,
          };
        }
      }
      for (const [name, value] of new Headers(verdict?.headers)) {
        headers.append(name, value);
      }
      accepted = true;
      return undefined;
    });
    if (!accepted) return;
    if (this.#open >= (options.maxConnections ?? Infinity)) {
      await this.#refuse(
        conn,
        new HttpError(503, "Too many connections", { "retry-after": "1" }),
      );
      return;
    }
    // Counted from here, so that concurrent handshakes cannot overshoot.
    this.#open++;
    try {
      await _writeAll(conn, serializeSwitchingProtocols(headers));
    } catch (error) {
      this.#open--;
      throw error;
    }
    // Frames are coalesced by the write queue; Nagle's delay would only add
    // latency to the last write of a burst.
    try {
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    } catch {
      // Closed meanwhile (a shutdown): the connection ends on its first read.
    }
    return new _Connection(conn as Transport, {
      role: "server",
      request: made ?? makeRequest,
      remoteAddr: info.remoteAddr,
      protocol,
      extensions,
      perMessageDeflate,
      leftover: read.leftover,
      maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      maxFragments: options.maxFragments,
      closeTimeout: options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    });
  }

  /** The request's URL; throws `HttpError` 400 for a malformed target. */
  #requestUrl(head: RequestHead): string {
    const host = head.headers.get("host") ??
      `${this.addr.hostname}:${this.addr.port}`;
    try {
      return head.target.startsWith("/")
        ? new URL(head.target, `${this.#tls ? "https" : "http"}://${host}`)
          .href
        : new URL(head.target).href;
    } catch {
      throw new HttpError(400, "Malformed request target");
    }
  }

  #chooseProtocol(head: RequestHead, request: () => Request): string {
    const offered = (head.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((token) => token.trim()).filter((token) => token);
    const protocols = this.#options.protocols;
    if (!protocols || offered.length === 0) return "";
    if (typeof protocols === "function") {
      const chosen = protocols(offered, request());
      if (chosen === undefined || chosen === "") return "";
      if (!offered.includes(chosen)) {
        throw new Error(`The chosen subprotocol "${chosen}" was not offered`);
      }
      return chosen;
    }
    return offered.find((token) => protocols.includes(token)) ?? "";
  }

  /**
   * Writes the `Response` that `respond` makes (nothing if it returns
   * nothing), or 500 when it throws, and closes the connection after it.
   */
  async #respond(
    conn: Deno.Conn,
    method: string,
    respond: () => Promise<Response | void>,
  ): Promise<void> {
    let response: Response | void;
    try {
      response = await respond();
    } catch (error) {
      this.#onError(error);
      response = new Response("Internal Server Error", { status: 500 });
    }
    if (!response) return;
    await _writeAll(
      conn,
      await serializeResponse(response, method !== "HEAD"),
    );
    await this.#linger(conn);
  }

  async #refuse(conn: Deno.Conn, error: HttpError): Promise<void> {
    const response = new Response(error.message, {
      status: error.status,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        ...error.headers,
      },
    });
    await _writeAll(conn, await serializeResponse(response));
    await this.#linger(conn);
  }

  /**
   * Half-closes and reads until the peer's FIN (bounded), so that unread
   * request bytes do not turn the close into a reset that destroys the answer.
   */
  async #linger(conn: Deno.Conn): Promise<void> {
    const timer = setTimeout(
      () => _closeQuietly(conn),
      this.#options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    );
    try {
      await conn.closeWrite();
      const sink = new Uint8Array(4096);
      while (await conn.read(sink) !== null) {
        // Discard.
      }
    } catch {
      // Closed by the timer or reset by the peer.
    } finally {
      clearTimeout(timer);
    }
  }
}

function _upgradeRequired(): Response {
  return new Response("Upgrade Required: this is a WebSocket endpoint", {
    status: 426,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      upgrade: "websocket",
      "sec-websocket-version": "13",
    },
  });
}

/** Whether an error only says that the peer went away. */
function _isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.NotConnected;
}

function _closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/**
 * Makes a validated request head's `Request`. A function of its own, so that
 * what it keeps is only the URL and the head's text.
 */
function _requestMaker(url: string, head: string): () => Request {
  return () => {
    const { method, headers } = parseRequestHead(head);
    return new Request(url, { method, headers });
  };
}

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * Reads a request head: the head and the bytes after it (which belong to
 * the WebSocket), `undefined` if the peer left before sending anything, or an
 * `HttpError` (431 for a head over the limit, 400 for a truncated one).
 * Gives up (closing the connection) after `timeout` ms.
 */
async function _readHead(
  conn: Deno.Conn,
  maxSize: number,
  timeout: number,
): Promise<{ head: Uint8Array; leftover: Uint8Array } | HttpError | undefined> {
  let buffer = new Uint8Array(Math.min(4096, maxSize + 4));
  let length = 0;
  const timer = setTimeout(() => _closeQuietly(conn), timeout);
  try {
    while (true) {
      if (length === buffer.length) {
        if (length >= maxSize + 4) {
          return new HttpError(431, "Request head too large");
        }
        const bigger = new Uint8Array(Math.min(length * 2, maxSize + 4));
        bigger.set(buffer);
        buffer = bigger;
      }
      const n = await conn.read(buffer.subarray(length));
      if (n === null) {
        return length === 0
          ? undefined
          : new HttpError(400, "Incomplete request head");
      }
      const end = findHeadEnd(buffer.subarray(0, length + n), length - 3);
      length += n;
      if (end !== -1) {
        if (end > maxSize) return new HttpError(431, "Request head too large");
        return {
          head: buffer.subarray(0, end),
          leftover: buffer.slice(end, length),
        };
      }
      if (length > maxSize) return new HttpError(431, "Request head too large");
    }
  } catch {
    // Timed out (the timer closed the connection) or reset.
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
