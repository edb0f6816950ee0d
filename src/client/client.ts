// `connect()`: a WebSocket client on `Deno.connect` (TLS for `wss:`) that
// resolves with the same socket `serve()` hands out.

import { computeAccept } from "../engine/_accept_value.ts";
import { Connection, startHeartbeat } from "../engine/_connection.ts";
import {
  type ConnectionLimits,
  resolveConnectionLimits,
} from "../engine/_options.ts";
import {
  closeQuietly,
  readHead,
  type Transport,
  writeAll,
} from "../engine/_transport.ts";
import {
  checkHeaders,
  checkProtocols,
  ClientHandshake,
  parseUrl,
} from "../protocol/_client_handshake.ts";
import { parseResponseHead, type ResponseHead } from "../http/_http.ts";
import {
  checkOptions,
  type PerMessageDeflateOptions,
} from "../protocol/permessage_deflate.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";
import type { WebSocketConnection } from "../socket/socket.ts";

/**
 * Options for {@linkcode connect}.
 *
 * @example Connecting with a subprotocol and a timeout
 * ```ts ignore
 * import { connect, type ConnectOptions } from "@scope/ws";
 *
 * const options: ConnectOptions = {
 *   protocols: ["chat.v1"],
 *   handshakeTimeout: 5_000,
 *   headers: { origin: "https://example.com" },
 * };
 * const socket = await connect("wss://example.com/chat", options);
 * ```
 */
export interface ConnectOptions {
  /**
   * Subprotocols to offer, in order of preference (`Sec-WebSocket-Protocol`);
   * the server picks one of them or none.
   */
  protocols?: string[];
  /**
   * Extra headers for the opening handshake, such as `Origin`,
   * `Authorization` or `Cookie`. They may not set the handshake's own headers
   * (`Upgrade`, `Connection`, `Sec-WebSocket-*`); `Host` may be overridden.
   */
  headers?: HeadersInit;
  /**
   * Aborting it during the handshake rejects with the signal's reason;
   * aborting it later closes the open socket (a close frame with no code).
   */
  signal?: AbortSignal;
  /**
   * How long connecting, the TLS handshake and the opening handshake may
   * take together, in ms. Default 10 s, as the server's.
   */
  handshakeTimeout?: number;
  /** The largest message accepted, in bytes, after reassembly. Default 16 MiB. */
  maxMessageSize?: number;
  /**
   * The most frames one message may be split into; more fails the
   * connection with 1008. Default: no limit, as the server's.
   */
  maxFragments?: number;
  /** The largest HTTP response head accepted, in bytes. Default 16 KiB. */
  maxHeadSize?: number;
  /**
   * How long the closing handshake and the wait for the server to close TCP
   * may take, in ms, before the client closes it itself. Default 5 s.
   */
  closeTimeout?: number;
  /**
   * Ping a server that has sent nothing for this long, in ms, so that
   * proxies see traffic and a dead server is found; 0 turns pings off.
   * Default 30 s, as the server's.
   */
  pingInterval?: number;
  /**
   * Close (1001, "Idle timeout") a server that has sent nothing, not even a
   * pong, for this long, in ms; 0 turns it off. Default 60 s, as the
   * server's: a server that answers pings never reaches it.
   */
  idleTimeout?: number;
  /**
   * Root certificates in PEM format to trust for `wss:`, in addition to the
   * default ones, such as a private certificate authority.
   */
  caCerts?: string[];
  /**
   * Offer permessage-deflate (RFC 7692): `true` for the defaults, or
   * settings. When the server accepts, messages of `threshold` bytes and
   * more are sent compressed. Off by default; it costs about 270 KiB of
   * memory per connection that compresses in both directions.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

/**
 * Opens a WebSocket connection to a `ws:` or `wss:` URL over `Deno.connect`
 * (and TLS for `wss:`), runs the opening handshake (RFC 6455 §4.1), and
 * resolves with the same socket type that {@linkcode serve} hands out.
 * Everything the client sends is masked with a fresh random key (§5.3).
 *
 * It rejects with a `TypeError` for an invalid URL or option (a
 * `RangeError` for a limit out of range), with the signal's reason when
 * `signal` is aborted first, and otherwise with a
 * {@linkcode WebSocketError} (close code 1006) that says what failed: the
 * TCP connection, TLS, a timeout, or an answer that is not a valid
 * `101 Switching Protocols` (the message then gives the HTTP status).
 *
 * @param url A `ws:` or `wss:` URL (`http:` and `https:` are taken as
 * `ws:` and `wss:`, as WHATWG WebSockets do); it may not have a fragment.
 * @param options Subprotocols, headers, limits, timeouts and TLS roots.
 * @returns The open socket.
 *
 * @example Sending a message and reading the answer
 * ```ts ignore
 * import { connect } from "@scope/ws";
 *
 * const socket = await connect("ws://127.0.0.1:8080/");
 * const writer = socket.writable.getWriter();
 * await writer.write("Hello");
 * for await (const message of socket.readable) {
 *   console.log(message);
 *   socket.close({ closeCode: 1000, reason: "Done" });
 * }
 * console.log(await socket.closed); // { closeCode: 1000, reason: "Done" }
 * ```
 *
 * @example A subprotocol, a header and a private CA
 * ```ts ignore
 * import { connect } from "@scope/ws";
 *
 * const socket = await connect("wss://chat.internal/rooms/1", {
 *   protocols: ["chat.v2", "chat.v1"],
 *   headers: { authorization: "Bearer secret" },
 *   caCerts: [await Deno.readTextFile("./ca.pem")],
 *   signal: AbortSignal.timeout(60_000),
 * });
 * console.log(socket.protocol); // "chat.v2", "chat.v1" or ""
 * ```
 */
export async function connect(
  url: string | URL,
  options?: ConnectOptions,
): Promise<WebSocketConnection> {
  const target = parseUrl(url);
  const settings = resolveConnectOptions(options ?? {});
  const handshake = new ClientHandshake(target, settings);
  const signal = settings.signal;
  signal?.throwIfAborted();

  const timeout = settings.handshakeTimeout;
  // One controller stops every step of the handshake: the user's signal and
  // the timeout abort it, which cancels a pending connect and closes the
  // connection under a pending TLS handshake, write or read.
  const stopper = new AbortController();
  let conn: Deno.Conn | undefined;
  const stop = (reason: unknown) => {
    if (stopper.signal.aborted) return;
    stopper.abort(reason);
    if (conn) closeQuietly(conn);
  };
  const timer = setTimeout(
    () =>
      stop(
        new WebSocketError(
          `The WebSocket handshake with ${target.href} timed out after ${timeout} ms`,
        ),
      ),
    timeout,
  );
  const onAbort = () => stop(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });

  let connection: Connection;
  try {
    conn = await open(target, settings.caCerts, stopper.signal);
    // Aborted as the connection opened: `stop` could not close it yet.
    stopper.signal.throwIfAborted();
    try {
      await writeAll(conn, handshake.request);
    } catch (error) {
      throw failure("Sending the WebSocket handshake failed", error);
    }
    const { response, leftover } = await readResponse(
      conn,
      settings.maxHeadSize,
      target,
    );
    let accepted;
    try {
      accepted = handshake.check(response, await computeAccept(handshake.key));
    } catch (error) {
      // The cause keeps the status and headers of a refusal.
      const refused = failure((error as Error).message);
      refused.cause = error;
      throw refused;
    }
    stopper.signal.throwIfAborted();
    connection = new Connection(conn as Transport, {
      role: "client",
      request: new Request(target.href, { headers: handshake.headers }),
      remoteAddr: conn.remoteAddr as Deno.NetAddr,
      protocol: accepted.protocol,
      extensions: accepted.extensions,
      perMessageDeflate: accepted.perMessageDeflate,
      leftover,
      maxMessageSize: settings.maxMessageSize,
      maxFragments: settings.maxFragments,
      closeTimeout: settings.closeTimeout,
    });
  } catch (error) {
    if (conn) closeQuietly(conn);
    if (stopper.signal.aborted) throw stopper.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  const socket = connection.socket;
  // One timer per client socket, stopped when it ends.
  const heartbeat = startHeartbeat(
    [connection],
    settings.pingInterval,
    settings.idleTimeout,
  );
  if (heartbeat !== undefined) {
    connection.done.then(() => clearInterval(heartbeat));
  }
  if (signal) {
    const onAbortOpen = () => socket.close();
    signal.addEventListener("abort", onAbortOpen, { once: true });
    connection.done.then(() =>
      signal.removeEventListener("abort", onAbortOpen)
    );
  }
  return socket;
}

/** What `connect()` runs with: its options checked, with their defaults. */
interface ConnectSettings extends ConnectionLimits {
  protocols: string[];
  headers: Headers;
  deflate: PerMessageDeflateOptions | null;
  caCerts: string[] | undefined;
  signal: AbortSignal | undefined;
}

/**
 * Resolves `connect()`'s options once: the limits as every entry point
 * checks them, the subprotocols, the headers and permessage-deflate. An
 * invalid one is a `TypeError` or `RangeError` that names it.
 */
function resolveConnectOptions(options: ConnectOptions): ConnectSettings {
  return {
    ...resolveConnectionLimits(options),
    protocols: checkProtocols(options.protocols),
    headers: checkHeaders(options.headers),
    deflate: checkOptions(options.perMessageDeflate),
    caCerts: options.caCerts,
    signal: options.signal,
  };
}

/** Connects, with TLS for `wss:`; failures become a `WebSocketError`. */
async function open(
  url: URL,
  caCerts: string[] | undefined,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  const secure = url.protocol === "wss:";
  // `URL` keeps the brackets of an IPv6 literal; sockets want the address.
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? (secure ? 443 : 80) : Number(url.port);
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname, port, signal });
  } catch (error) {
    if (signal.aborted || error instanceof Deno.errors.NotCapable) throw error;
    throw failure(`Cannot connect to ${url.href}`, error);
  }
  if (!secure) return tcp;
  let tls: Deno.TlsConn;
  try {
    tls = await Deno.startTls(tcp, { hostname, caCerts });
  } catch (error) {
    closeQuietly(tcp);
    throw failure(`The TLS handshake with ${url.href} failed`, error);
  }
  // A pending handshake fails once the handshake signal closes the connection.
  const onAbort = () => closeQuietly(tls);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await tls.handshake();
  } catch (error) {
    closeQuietly(tls);
    if (signal.aborted) throw error;
    throw failure(`The TLS handshake with ${url.href} failed`, error);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return tls;
}

/**
 * Reads the response head and the bytes after it, which already belong to
 * the WebSocket (a server may send frames right after its `101`).
 */
async function readResponse(
  conn: Deno.Conn,
  maxSize: number,
  url: URL,
): Promise<{ response: ResponseHead; leftover: Uint8Array }> {
  let read;
  try {
    read = await readHead(conn, maxSize);
  } catch (error) {
    throw failure(
      `Reading the handshake response from ${url.href} failed`,
      error,
    );
  }
  if (read === "eof" || read === "truncated") {
    throw failure(
      "The server closed the connection before answering the WebSocket handshake",
    );
  }
  if (typeof read === "string") {
    throw failure(
      `The handshake response head is larger than ${maxSize} bytes`,
    );
  }
  try {
    return { response: parseResponseHead(read.head), leftover: read.leftover };
  } catch (error) {
    throw failure(`Invalid handshake response: ${(error as Error).message}`);
  }
}

/** A connection failure: close code 1006, the cause kept for debugging. */
function failure(message: string, cause?: unknown): WebSocketError {
  const detail = cause instanceof Error ? `: ${cause.message}` : "";
  const error = new WebSocketError(message + detail);
  if (cause !== undefined) error.cause = cause;
  return error;
}
