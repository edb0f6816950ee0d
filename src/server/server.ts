// `serve()`: a WebSocket server on `Deno.listen`, shaped like `Deno.serve`.
// It accepts connections, runs the opening handshake and hands each socket
// to the handler.

import { CloseCode } from "../protocol/constants.ts";
import { computeAccept } from "../engine/_accept_value.ts";
import { Connection, startHeartbeat } from "../engine/_connection.ts";
import { report } from "../pubsub/_report.ts";
import {
  Deadline,
  DEFAULT_BODY_TIMEOUT,
  DEFAULT_KEEP_ALIVE_TIMEOUT,
  DEFAULT_MAX_HTTP_CONNECTIONS,
  HttpHandler,
  type HttpSettings,
  type UpgradeHead,
  writeHead,
} from "./_http_server.ts";
import {
  type ConnectionLimits,
  integerOption,
  resolveConnectionLimits,
  resolveSendPolicy,
  timeoutOption,
} from "../engine/_options.ts";
import {
  closeQuietly,
  isDisconnect,
  type Transport,
} from "../engine/_transport.ts";
import { HttpError } from "../http/_http.ts";
import { DEFAULT_HTTP1_LIMITS, parseRequestHead } from "../http/_http1.ts";
import {
  ServerHandshake,
  type ServerHandshakeSettings,
} from "../protocol/_server_handshake.ts";
import {
  checkOptions,
  type PerMessageDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import type { WebSocketCloseResult } from "../protocol/websocket_error.ts";
import {
  type PubSubAdapter,
  TopicHub,
  type TopicHubOptions,
} from "../pubsub/topic_hub.ts";
import {
  closeWith,
  type RequestSource,
  SendAfterCloseError,
  type Socket,
  type SocketOptions,
  stateOf,
  type WebSocketConnection,
} from "../socket/socket.ts";

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
  /**
   * Extra headers for the `101 Switching Protocols` answer. The handshake's
   * own (`Upgrade`, `Connection`, `Sec-WebSocket-*`) are left out.
   */
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
 *   socket.send(`Hello from ${new URL(socket.request.url).pathname}`);
 *   for await (const message of socket.readable) {
 *     socket.send(typeof message === "string" ? message.toUpperCase() : message);
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
  /**
   * Lets several processes or workers listen on the same port
   * (`SO_REUSEPORT`), and Linux spread the connections over them; share
   * their topics with an adapter (`pubsub`). Deno 2.9 needs the
   * `--unstable-net` flag for it and exits the process without it. Linux
   * only (ignored elsewhere). Default `false`.
   */
  reusePort?: boolean;
  /** Aborting it shuts the server down, as {@linkcode WebSocketServer.shutdown}. */
  signal?: AbortSignal;
  /**
   * Called once listening; default: logs the URL to open, `http://` (or
   * `https://` with TLS) when `fetch` serves pages, else `ws://` (`wss://`).
   */
  onListen?: (addr: Deno.NetAddr) => void;
  /**
   * The page origins allowed to open a WebSocket, compared exactly with the
   * `Origin` header, or a function that decides; others get 403 before any
   * other hook runs. Browsers send cookies with an upgrade from any site, so
   * a server that authenticates by cookie needs this. Requests without an
   * `Origin` header (not from a browser page) pass. Each entry must be an
   * origin as browsers send it: `"https://example.com"` or
   * `"http://localhost:8080"`, lower-case, without the scheme's default
   * port, a path or a trailing slash; anything else (and a string instead
   * of an array) is a `TypeError` when the server starts. Default: every
   * origin.
   */
  origins?: readonly string[] | ((origin: string) => boolean);
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
   * for the `101` answer (also as a `Response` with status 101), or nothing
   * to accept it. It runs within `handshakeTimeout`. Extra headers that
   * `Headers` refuses (a value with CR or LF) are reported to `onError` and
   * the client gets 500.
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
   * Answers the requests on the same port that are not WebSocket upgrades,
   * as `Deno.serve`'s handler does, so that an app (`app.fetch` of Hono, say)
   * and the WebSocket endpoints share one port. HTTP/1.1: the `Request`'s
   * body streams from the connection as it is read (up to `maxBodySize`;
   * a client that sent `Expect: 100-continue` gets its `100 Continue` at the
   * first read), the `Response`'s body streams to the client (with a
   * `Content-Length` when it is whole at once, chunked otherwise), and the
   * connection is kept for further requests (`keepAliveTimeout`), an upgrade
   * among them; pipelined requests are answered in order. The handler has
   * `idleTimeout` to return its `Response` (else 503), whose body may then
   * stream as long as it takes. When the client leaves before the answer is
   * whole (its FIN or a reset, once its request was read to its end), or a
   * timeout or shutdown ends the connection, the response body is cancelled
   * and `request.signal` aborts. A throw or rejection, or a `Response` with
   * status 101 (the one 1xx a `Response` may have: no answer to a plain
   * request), is answered with 500 (no details) and goes to `onError`; a
   * response body that fails midway closes the connection, so the client
   * sees a cut response. A malformed, ambiguous (both `Content-Length` and
   * `Transfer-Encoding`) or oversized request is answered with 400, 413,
   * 417, 431, 501 or 505 and the connection closed. Default: `426 Upgrade
   * Required`, and the connection closes.
   *
   * @example A Hono app and WebSockets on one port
   * ```ts ignore
   * import { Hono } from "npm:hono@4";
   * import { serve } from "@scope/ws";
   *
   * const app = new Hono();
   * app.get("/", (c) => c.text("Hello"));
   * app.post("/echo", async (c) => c.json(await c.req.json()));
   * serve(
   *   { port: 8080, fetch: app.fetch },
   *   (socket) => socket.readable.pipeTo(socket.writable),
   * );
   * ```
   */
  fetch?: (
    request: Request,
    info: ServeInfo,
  ) => Response | Promise<Response>;
  /**
   * Told about handler faults and internal errors; default: logs them. If
   * it throws, that goes to `console.error` and nothing else happens.
   */
  onError?: (error: unknown) => void;
  /** The largest message, in bytes, after reassembly. Default 16 MiB. */
  maxMessageSize?: number;
  /**
   * The largest HTTP request head, in bytes; bigger gets 431 (414 when the
   * request line alone is over 8 KiB or this). Default 16 KiB.
   */
  maxHeadSize?: number;
  /**
   * How long a client may take to send a request head, in ms: from the
   * accept for the first, from its first byte for a later one on a
   * kept-alive connection; for an upgrade, until the `101`, hooks
   * included. Default 10 s.
   */
  handshakeTimeout?: number;
  /**
   * The largest HTTP request body (of `fetch` requests), in bytes of
   * content; a bigger one gets 413 and the connection closes, decided from
   * `Content-Length` before the app runs, or when a chunked body passes it
   * (the app's read then fails). Default 16 MiB, as `maxMessageSize`: the
   * app may buffer a body whole (`request.json()`).
   *
   * @example Uploads of up to 100 MiB
   * ```ts ignore
   * import { serve } from "@scope/ws";
   *
   * serve({
   *   maxBodySize: 100 * 1024 * 1024,
   *   fetch: async (request) => {
   *     let size = 0;
   *     for await (const chunk of request.body ?? []) size += chunk.length;
   *     return new Response(`${size} bytes`);
   *   },
   * }, (socket) => socket.readable.pipeTo(socket.writable));
   * ```
   */
  maxBodySize?: number;
  /**
   * How long a client may take to send a whole `fetch` request body, in
   * ms, from the end of its head, however it trickles (each wait also has
   * `idleTimeout`); past it the app's read fails with `Deno.errors.TimedOut`
   * and the connection closes. 0 turns it off. Default 300 s, as Node's
   * `requestTimeout`: 16 MiB at 56 KB/s.
   */
  bodyTimeout?: number;
  /**
   * How long a kept-alive HTTP connection may wait for its next request, in
   * ms, before it is closed; 0 closes the connection after each response.
   * Default 5 s, as Node's: long enough for a page's requests to share a
   * connection, short enough that idle ones do not pile up. Behind a proxy
   * or load balancer that reuses connections, set it above that one's idle
   * timeout (60 s for AWS's ALB), or the proxy may send a request on a
   * connection being closed.
   *
   * @example Behind a load balancer with a 60 s idle timeout
   * ```ts ignore
   * import { serve } from "@scope/ws";
   *
   * serve({
   *   keepAliveTimeout: 65_000,
   *   fetch: () => new Response("ok"),
   * }, (socket) => socket.readable.pipeTo(socket.writable));
   * ```
   */
  keepAliveTimeout?: number;
  /**
   * How long the closing handshake and TCP close may take, in ms, before
   * the connection is dropped. Default 5 s.
   */
  closeTimeout?: number;
  /** The most frames one message may be split into; more gets 1008. Default: no limit. */
  maxFragments?: number;
  /**
   * The most open WebSockets; further upgrades are refused with 503.
   * Default: no limit but the process's file descriptors.
   */
  maxConnections?: number;
  /**
   * The most connections that are not WebSockets: reading a request head,
   * in an upgrade's hooks, serving `fetch` requests, kept alive between
   * them, or lingering after a refusal. A new connection over it closes the
   * oldest idle kept-alive one to make room, or, when none is idle, gets
   * `503` with `Retry-After: 1` and is closed. Open WebSockets do not count
   * (see `maxConnections`). Default 1,000.
   */
  maxHttpConnections?: number;
  /**
   * Ping a peer that has sent nothing for this long, in ms, so that proxies
   * see traffic and dead peers are found; 0 turns pings off. Default 30 s,
   * as Deno's own server, half of nginx's 60 s proxy read timeout.
   */
  pingInterval?: number;
  /**
   * Close a socket after this long, in ms, without reading anything from
   * its peer; 0 turns it off. Default 60 s: two ping intervals, so a live
   * peer answering pings never reaches it. The code tells why: 1001 `Idle
   * timeout` for a silent peer; 1013 `Send queue stalled for 60 s` when
   * the peer did not read what was sent to it (reading was paused) that
   * long; 1011 `Messages not read` when the application left what arrived
   * unread while the peer read.
   * For `fetch` requests it bounds each wait on the client: a request body
   * the app reads that stalls this long fails (`Deno.errors.TimedOut`), and
   * a response the client stops reading for this long is cut off; either
   * closes the connection. It also bounds the handler: one that has not
   * returned its `Response` by then is answered 503 (its body may then
   * stream as long as it takes).
   */
  idleTimeout?: number;
  /**
   * Bytes queued for one socket above which `send()` and publications apply
   * the `backpressure` policy instead of queueing more, once the peer's TCP
   * connection has refused some of them (a burst queued in one task is not
   * written before the task ends, and does not count until then). Default
   * 1 MiB.
   */
  maxBackpressure?: number;
  /**
   * What happens to a message for a socket over `maxBackpressure`:
   * `"close"` closes the socket with 1013 `Send queue over 1 MiB` (the
   * limit); `"drop"` drops the message for that socket and counts it in
   * `droppedMessages`. Default `"close"`.
   */
  backpressure?: "close" | "drop";
  /**
   * The topic hub of the server's sockets (`socket.subscribe`,
   * `server.publish`): give one to share it with other servers or sockets.
   * Default: a hub of the server's own.
   */
  hub?: TopicHub;
  /**
   * Carries the topics to other processes or machines: the server's own hub
   * is made with this adapter, and closes it when the server shuts down.
   * Not with `hub` (give the adapter to that hub instead).
   */
  pubsub?: PubSubAdapter;
  /**
   * Which topics of the server's own hub keep their recent publications, so
   * that a page that reconnects gets what it missed: the same limits for
   * every topic, or a rule over topic names (see
   * {@linkcode TopicHubOptions.history}). Not with `hub` (give it to that
   * hub instead).
   *
   * @example Chat rooms keep their last 100 lines for 10 minutes
   * ```ts ignore
   * import { serve } from "@scope/ws";
   *
   * serve({
   *   history: (topic) =>
   *     topic.startsWith("room/") ? { size: 100, ttl: 600_000 } : undefined,
   * }, (socket) => socket.subscribe("room/lobby"));
   * ```
   */
  history?: TopicHubOptions["history"];
  /**
   * Which topics of the server's own hub share their presence between the
   * nodes of `pubsub` (see {@linkcode TopicHubOptions.presence}). Not with
   * `hub`.
   */
  presence?: TopicHubOptions["presence"];
  /** A PEM certificate chain: with `key`, serve `wss:` over `Deno.listenTls`. */
  cert?: string;
  /** The PEM private key for `cert`. */
  key?: string;
  /** Called when a WebSocket opens, before the handler. */
  onOpen?: (socket: WebSocketConnection) => void;
  /**
   * Called when a WebSocket has closed, with its close code (1006 when it
   * ended without a closing handshake), reason and whether the close was
   * clean.
   */
  onClose?: (socket: WebSocketConnection, info: WebSocketCloseResult) => void;
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
   * Publishes a message to every socket subscribed to `topic` (and through
   * the hub's adapter to other nodes), framed once. Never waits for a
   * socket: each applies its own backpressure policy.
   *
   * @returns How many local sockets it was queued for (on a topic whose
   * history `RedisPubSub` keeps: how many will be offered it once it comes
   * back from Redis). Other processes' subscribers are not counted.
   */
  publish(topic: string, message: string | Uint8Array): number;
  /** How many local sockets subscribe to `topic`. */
  subscriberCount(topic: string): number;
  /** The topics that have at least one local subscriber. */
  topics(): string[];
  /**
   * The server's topic hub (the `hub` option, or the one it made): its
   * topics' history (`hub.history()`) and presence (`hub.presence()`).
   */
  readonly hub: TopicHub;
  /**
   * Stops accepting, abandons the handshakes in progress, closes every
   * open WebSocket with 1001 (going away), waits for their closing
   * handshakes (bounded by `closeTimeout`), and resolves with `finished`.
   */
  shutdown(): Promise<void>;
}

/** How long to wait before accepting again after `accept` failed, in ms. */
const ACCEPT_RETRY_DELAY = 100;

/**
 * Serves WebSockets over `Deno.listen`, with the shape of `Deno.serve`:
 * every accepted upgrade calls `handler` with the socket. Each connection
 * is handled on its own; a failing one never affects another.
 *
 * @param handler Called with each accepted WebSocket.
 * @returns The running server.
 *
 * @example An echo server
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve((socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export function serve(handler: WebSocketHandler): WebSocketServer;
/**
 * Serves WebSockets over `Deno.listen`, with the shape of `Deno.serve`:
 * every accepted upgrade calls `handler` with the socket. Each connection
 * is handled on its own; a failing one never affects another.
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
 * @example Only pages of one origin, choosing a subprotocol
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   port: 8080,
 *   origins: ["https://example.com"],
 *   protocols: ["chat.v2", "chat.v1"],
 * }, (socket) => {
 *   socket.send(`You speak ${socket.protocol}`);
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
  return new Server(options, handler);
}

class Server implements WebSocketServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  #options: ServeOptions;
  #settings: ServeSettings;
  #handler: WebSocketHandler;
  #listener: Deno.Listener;
  #tls: boolean;
  #connections = new Set<Connection>();
  /** Open WebSockets, counted from the moment the 101 is sent. */
  #open = 0;
  /** Connections between their accept and their `101` or their end. */
  #handshaking = new Set<Deadline>();
  /** Checks every deadline in `#handshaking`: one timer, not one each. */
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #sweepEvery: number;
  /** Connections being served, from accept to the end of their socket. */
  #active = 0;
  #wakeWhenIdle: (() => void) | undefined;
  /** Shared by every connection's task, rather than a closure each. */
  #taskEnded = () => {
    if (--this.#active === 0) this.#wakeWhenIdle?.();
  };
  #stopping = false;
  #cancelRetry: (() => void) | undefined;
  #hub: TopicHub;
  #http: HttpHandler;
  #handshake: ServerHandshake;

  constructor(options: ServeOptions, handler: WebSocketHandler) {
    const settings = this.#settings = resolveServeOptions(options);
    this.#options = options;
    this.#handler = handler;
    this.#handshake = new ServerHandshake(settings.handshake);
    // Late by at most an eighth of the shortest timeout a deadline can have.
    const timeouts = [
      settings.http.headTimeout,
      settings.http.closeTimeout,
      settings.http.idleTimeout,
      settings.http.keepAliveTimeout,
      settings.http.bodyTimeout,
    ].filter((timeout) => timeout > 0);
    this.#sweepEvery = Math.min(
      1000,
      Math.max(5, Math.min(...timeouts) / 8),
    );
    this.#http = new HttpHandler(
      settings.http,
      (error) => this.#report(error),
      () => this.#stopping,
    );
    const { listen, tls } = settings;
    this.#tls = tls !== undefined;
    this.#listener = tls
      ? Deno.listenTls({ ...listen, ...tls })
      : Deno.listen(listen);
    this.addr = this.#listener.addr as Deno.NetAddr;
    const { hostname, port } = this.addr;
    this.#http.base = `${this.#tls ? "https" : "http"}://${
      hostname.includes(":") ? `[${hostname}]` : hostname
    }:${port}`;
    // The URL to open: a page's when `fetch` serves one, else the socket's.
    const scheme = options.fetch === undefined
      ? (this.#tls ? "wss" : "ws")
      : (this.#tls ? "https" : "http");
    const onListen = options.onListen ??
      ((addr) =>
        console.log(`Listening on ${scheme}://${addr.hostname}:${addr.port}/`));
    this.#guard(() => onListen(this.addr));
    const signal = options.signal;
    const onAbort = () => this.shutdown();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) this.shutdown();
    // One timer for all sockets (not one each, which idle connections would
    // pay for): it pings silent peers and closes idle ones.
    const heartbeat = startHeartbeat(
      this.#connections,
      settings.pingInterval,
      settings.idleTimeout,
    );
    // Made last: the hub opens the adapter, which must not outlive a
    // constructor that threw.
    const hub = this.#hub = options.hub ??
      new TopicHub({
        pubsub: options.pubsub,
        history: options.history,
        presence: options.presence,
        onError: (error) => this.#report(error),
      });
    this.finished = this.#acceptLoop().finally(async () => {
      clearInterval(heartbeat);
      clearInterval(this.#sweeper);
      signal?.removeEventListener("abort", onAbort);
      if (options.hub === undefined) await hub.close();
    });
  }

  publish(topic: string, message: string | Uint8Array): number {
    return this.#hub.publish(topic, message);
  }

  subscriberCount(topic: string): number {
    return this.#hub.subscriberCount(topic);
  }

  topics(): string[] {
    return this.#hub.topics();
  }

  get hub(): TopicHub {
    return this.#hub;
  }

  get connections(): number {
    return this.#open;
  }

  /** Tells `onError`; if that throws too, `console.error` hears of both. */
  #report(error: unknown): void {
    report(this.#settings.onError, error);
  }

  /** Runs a user callback; what it throws is reported, never propagated. */
  #guard(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.#report(error);
    }
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
        this.#report(error);
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
      // HTTP requests in flight get closeTimeout to finish their response.
      const grace = this.#settings.closeTimeout;
      for (const handshaking of this.#handshaking) handshaking.shutdown(grace);
      for (const connection of this.#connections) {
        closeWith(
          connection.socket,
          CloseCode.GoingAway,
          "Server shutting down",
        );
      }
    }
    return this.finished;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #handle(conn: Deno.Conn): Promise<void> {
    const remoteAddr = conn.remoteAddr as Deno.NetAddr;
    // One deadline for the whole handshake, hooks included: the timer or a
    // shutdown closes the connection and abandons whatever is pending. Plain
    // HTTP requests on the connection re-arm it for each wait.
    const handshaking = new Deadline(conn);
    const full = this.#handshaking.size >= this.#settings.maxHttpConnections &&
      !this.#closeIdle();
    this.#handshaking.add(handshaking);
    this.#sweeper ??= setInterval(this.#sweep, this.#sweepEvery);
    handshaking.arm(this.#settings.handshakeTimeout);
    let connection: Connection | undefined;
    try {
      if (full) {
        await this.#http.refuse(
          handshaking,
          new HttpError(503, "Too many connections", { "retry-after": "1" }),
        );
      } else {
        connection = await this.#upgrade(handshaking, { remoteAddr });
      }
    } catch (error) {
      if (!isDisconnect(error)) this.#report(error);
    } finally {
      handshaking.dispose();
      this.#handshaking.delete(handshaking);
    }
    if (!connection) {
      closeQuietly(conn);
      return;
    }
    this.#connections.add(connection);
    // Counted until `onEnd` (#ended): the connection's life follows the
    // socket, not the handler, which must not hold up shutdown if it never
    // settles. A callback rather than a promise chain, so that an open
    // socket keeps no suspended frame or closure here.
    this.#active++;
    const socket = connection.socket;
    if (this.#stopping) {
      closeWith(socket, CloseCode.GoingAway, "Server shutting down");
    }
    this.#start(socket);
  }

  /** Runs `onOpen` and the handler; a fault closes the socket with 1011. */
  #start(socket: Socket): void {
    const fault = (error: unknown) => {
      // A rejection that is only the socket's own end is not a fault: it
      // closed (a `pipeTo` failing after a 1002), or a message that arrived
      // while closing could not be sent back.
      if (
        stateOf(socket) === "closed" || error instanceof SendAfterCloseError
      ) {
        return;
      }
      this.#report(error);
      closeWith(socket, CloseCode.InternalError, "Internal error");
    };
    try {
      this.#options.onOpen?.(socket);
      const result = this.#handler(socket);
      if (typeof result?.then === "function") result.then(undefined, fault);
    } catch (error) {
      fault(error);
    }
  }

  /** Stops the connections whose deadline has passed. */
  #sweep = (): void => {
    if (this.#handshaking.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    const now = Date.now();
    for (const deadline of this.#handshaking) deadline.check(now);
  };

  /** A connection ended (`onEnd`): its socket's `closed` has settled. */
  #ended = (connection: Connection): void => {
    this.#connections.delete(connection);
    this.#open--;
    const socket = connection.socket;
    socket.closed.then(
      (result) => this.#closedWith(socket, result),
      (error) =>
        this.#closedWith(socket, {
          closeCode: error.closeCode,
          reason: error.reason,
          wasClean: false,
        }),
    ).finally(this.#taskEnded);
  };

  #closedWith(socket: Socket, result: WebSocketCloseResult): void {
    this.#guard(() => this.#options.onClose?.(socket, result));
  }

  /**
   * Closes the oldest idle kept-alive (or lingering) HTTP connection, to
   * make room under `maxHttpConnections`; false when none is idle.
   */
  #closeIdle(): boolean {
    for (const deadline of this.#handshaking) {
      if (deadline.phase === "idle" && !deadline.ended) {
        deadline.stop();
        return true;
      }
    }
    return false;
  }

  /**
   * Serves the connection's plain HTTP requests until an upgrade, then runs
   * the opening handshake: returns the connection, or undefined once the
   * connection was answered and is done.
   */
  async #upgrade(
    handshaking: Deadline,
    info: ServeInfo,
  ): Promise<Connection | undefined> {
    const found = await this.#http.next(handshaking, info);
    if (found === undefined) return;
    const options = this.#options;
    const method = found.head.method;
    const checked = this.#handshake.check(found.head);
    if (checked instanceof HttpError) {
      await this.#http.refuse(handshaking, checked, method);
      return;
    }
    // The Request is made when first asked for: an idle socket then holds its
    // head as one string, not a Request with its Headers (~2 KiB); the
    // socket holds one it made only weakly (see `Socket.request`).
    const source = new HeadRequest(found);
    let made: Request | undefined;
    const request = () => made ??= source.makeRequest();
    let extraHeaders: HeadersInit | undefined;
    if (options.onUpgrade) {
      let verdict: Response | UpgradeAcceptance | void;
      try {
        verdict = await Promise.race([
          options.onUpgrade(request(), info),
          handshaking.stopped,
        ]);
      } catch (error) {
        if (error instanceof Deno.errors.Interrupted) return;
        this.#report(error);
        verdict = new Response("Internal Server Error", { status: 500 });
      }
      if (verdict instanceof Response && verdict.status !== 101) {
        await this.#http.answer(handshaking, method, verdict);
        return;
      }
      extraHeaders = verdict?.headers;
    }
    // Computed once the upgrade is to be accepted: a digest still running
    // when the connection is given up would outlive it.
    let acceptValue: string;
    try {
      acceptValue = await computeAccept(checked.key);
    } catch (error) {
      this.#report(error);
      await this.#http.refuse(
        handshaking,
        this.#handshake.reject(500, "Internal Server Error"),
        method,
      );
      return;
    }
    // The deadline or a shutdown may have stopped the connection meanwhile.
    if (handshaking.ended) return;
    const accepted = this.#handshake.accept(checked, {
      request,
      headers: extraHeaders,
      acceptValue,
    });
    if (accepted instanceof HttpError) {
      // A protocols function that threw or chose what was not offered.
      this.#report(accepted.cause);
      await this.#http.refuse(handshaking, accepted, method);
      return;
    }
    if (this.#open >= this.#settings.maxConnections) {
      await this.#http.refuse(
        handshaking,
        this.#handshake.reject(503, "Too many connections", {
          "retry-after": "1",
        }),
        method,
      );
      return;
    }
    // Counted from here, so that concurrent handshakes cannot overshoot.
    this.#open++;
    const conn = handshaking.conn;
    try {
      await writeHead(conn, accepted.response);
    } catch (error) {
      this.#open--;
      throw error;
    }
    return new Connection(conn as Transport, {
      role: "server",
      request: made ?? source,
      remoteAddr: info.remoteAddr,
      protocol: accepted.protocol,
      extensions: accepted.extensions,
      perMessageDeflate: accepted.perMessageDeflate,
      leftover: found.leftover,
      maxMessageSize: this.#settings.maxMessageSize,
      maxFragments: this.#settings.maxFragments,
      closeTimeout: this.#settings.closeTimeout,
      socketOptions: this.#settings.send,
      hub: this.#hub,
      onEnd: this.#ended,
    });
  }
}

/**
 * Makes an upgrade's `Request` from its head's text again (the same parser,
 * so the same head): what the socket keeps is only the URL and that string.
 */
class HeadRequest implements RequestSource {
  #url: string;
  #text: string;

  constructor({ url, text }: UpgradeHead) {
    this.#url = url;
    this.#text = text;
  }

  makeRequest(): Request {
    const { method, headers } = parseRequestHead(this.#text);
    return new Request(this.#url, { method, headers });
  }
}

/** What a server runs with: its options checked once, with their defaults. */
interface ServeSettings extends ConnectionLimits {
  listen: { port: number; hostname: string; reusePort: boolean };
  tls: { cert: string; key: string } | undefined;
  handshake: ServerHandshakeSettings;
  /** What `send()` and publications do past a socket's limit. */
  send: SocketOptions;
  maxConnections: number;
  maxHttpConnections: number;
  http: HttpSettings;
  onError: (error: unknown) => void;
}

/**
 * Resolves `serve()`'s options once, before it listens: the limits as every
 * entry point checks them, and the server's own. An invalid one is a
 * `TypeError` or `RangeError` that names it.
 */
function resolveServeOptions(options: ServeOptions): ServeSettings {
  if (options.hub !== undefined) {
    for (const name of ["pubsub", "history", "presence"] as const) {
      if (options[name] !== undefined) {
        throw new TypeError(
          `The hub and ${name} options go apart: give ${name} to the hub`,
        );
      }
    }
  }
  // Removed in 0.x without a deprecation period left: say so rather than
  // answer every request with 426.
  if ((options as { onRequest?: unknown }).onRequest !== undefined) {
    throw new TypeError("The onRequest option was removed: use fetch");
  }
  const { cert, key, fetch } = options;
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("The cert and key options go together");
  }
  if (fetch !== undefined && typeof fetch !== "function") {
    throw new TypeError("The fetch option must be a function");
  }
  const limits = resolveConnectionLimits(options);
  return {
    ...limits,
    listen: {
      port: options.port ?? 8000,
      hostname: options.hostname ?? "0.0.0.0",
      reusePort: options.reusePort === true,
    },
    tls: cert !== undefined && key !== undefined ? { cert, key } : undefined,
    handshake: {
      origins: options.origins,
      protocols: options.protocols,
      perMessageDeflate: checkOptions(options.perMessageDeflate),
    },
    send: resolveSendPolicy(options),
    maxConnections: integerOption(
      "maxConnections",
      options.maxConnections,
      Infinity,
      0,
    ),
    maxHttpConnections: integerOption(
      "maxHttpConnections",
      options.maxHttpConnections,
      DEFAULT_MAX_HTTP_CONNECTIONS,
    ),
    http: {
      fetch,
      maxHeadSize: limits.maxHeadSize,
      maxBodySize: integerOption(
        "maxBodySize",
        options.maxBodySize,
        DEFAULT_HTTP1_LIMITS.maxBodySize,
        0,
      ),
      headTimeout: limits.handshakeTimeout,
      keepAliveTimeout: timeoutOption(
        "keepAliveTimeout",
        options.keepAliveTimeout,
        DEFAULT_KEEP_ALIVE_TIMEOUT,
        "off",
      ),
      idleTimeout: limits.idleTimeout,
      closeTimeout: limits.closeTimeout,
      bodyTimeout: timeoutOption(
        "bodyTimeout",
        options.bodyTimeout,
        DEFAULT_BODY_TIMEOUT,
        "off",
      ),
    },
    onError: options.onError ?? logServerError,
  };
}

/** Where a server's faults go when it has no `onError`. */
function logServerError(error: unknown): void {
  console.error("WebSocket server error:", error);
}
