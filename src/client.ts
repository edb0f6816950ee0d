import { computeAccept, generateKey, headerTokens } from "./_handshake.ts";
import { findHeadEnd, parseResponseHead, type ResponseHead } from "./_http.ts";
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
  _acceptResponse,
  _checkOptions,
  _clientOffer,
  type _DeflateSettings,
  type PerMessageDeflateOptions,
} from "./permessage_deflate.ts";
import { WebSocketError } from "./websocket_error.ts";

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
   * connection with 1008. Default 1,024, as the server's.
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

const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
const DEFAULT_MAX_HEAD_SIZE = 16 * 1024;
const DEFAULT_CLOSE_TIMEOUT = 5_000;

/** RFC 9110 §5.6.2 token: what a subprotocol name must be (RFC 6455 §4.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Headers the handshake sets itself, which `headers` may not override. */
const RESERVED_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "content-length",
  "transfer-encoding",
]);

/**
 * Opens a WebSocket connection to a `ws:` or `wss:` URL over `Deno.connect`
 * (and TLS for `wss:`), runs the opening handshake (RFC 6455 §4.1), and
 * resolves with the same socket type that {@linkcode serve} hands out.
 * Everything the client sends is masked with a fresh random key (§5.3).
 *
 * It rejects with a `TypeError` for an invalid URL or option, with the
 * signal's reason when `signal` is aborted first, and otherwise with a
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
  options: ConnectOptions = {},
): Promise<WebSocketConnection> {
  const target = _parseUrl(url);
  const protocols = _checkProtocols(options.protocols);
  const extraHeaders = _checkHeaders(options.headers);
  const deflate = _checkOptions(options.perMessageDeflate);
  const signal = options.signal;
  signal?.throwIfAborted();

  const timeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
  const maxHeadSize = options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE;
  // One controller stops every step of the handshake: the user's signal and
  // the timeout abort it, which cancels a pending connect and closes the
  // connection under a pending TLS handshake, write or read.
  const handshake = new AbortController();
  let conn: Deno.Conn | undefined;
  const stop = (reason: unknown) => {
    if (handshake.signal.aborted) return;
    handshake.abort(reason);
    if (conn) _closeQuietly(conn);
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

  let socket: _Connection;
  try {
    conn = await _open(target, options.caCerts, handshake.signal);
    // Aborted as the connection opened: `stop` could not close it yet.
    handshake.signal.throwIfAborted();
    const key = generateKey();
    const { head, headers } = _requestHead(
      target,
      key,
      protocols,
      extraHeaders,
      deflate === null ? undefined : _clientOffer(deflate),
    );
    await _writeAll(conn, head);
    const { response, leftover } = await _readResponse(
      conn,
      maxHeadSize,
      target,
    );
    const { protocol, extensions, perMessageDeflate } = await _checkResponse(
      response,
      key,
      protocols,
      deflate,
    );
    handshake.signal.throwIfAborted();
    socket = new _Connection(conn as Transport, {
      role: "client",
      request: new Request(target.href, { headers }),
      remoteAddr: conn.remoteAddr as Deno.NetAddr,
      protocol,
      extensions,
      perMessageDeflate,
      leftover,
      maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      maxFragments: options.maxFragments,
      closeTimeout: options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    });
  } catch (error) {
    if (conn) _closeQuietly(conn);
    if (handshake.signal.aborted) throw handshake.signal.reason;
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  // One timer per client socket, stopped when it ends.
  const heartbeat = _startHeartbeat(
    [socket],
    options.pingInterval ?? DEFAULT_PING_INTERVAL,
    options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
  );
  if (heartbeat !== undefined) {
    socket.done.then(() => clearInterval(heartbeat));
  }
  if (signal) {
    const onAbortOpen = () => socket.close();
    signal.addEventListener("abort", onAbortOpen, { once: true });
    socket.done.then(() => signal.removeEventListener("abort", onAbortOpen));
  }
  return socket;
}

/**
 * Parses a WebSocket URL as the WHATWG `WebSocket` constructor does: `http:`
 * and `https:` become `ws:` and `wss:`, other schemes and fragments (which
 * RFC 6455 §3 forbids) throw a `TypeError`.
 */
export function _parseUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Invalid WebSocket URL "${url}"`);
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(
      `A WebSocket URL must use ws: or wss:, got "${parsed.protocol}"`,
    );
  }
  // `href` holds a "#" only when there is a fragment: elsewhere it is escaped.
  if (parsed.href.includes("#")) {
    throw new TypeError("A WebSocket URL must not have a fragment");
  }
  return parsed;
}

/** Checks subprotocol names: tokens, each offered once (RFC 6455 §4.1). */
export function _checkProtocols(protocols: string[] = []): string[] {
  if (!Array.isArray(protocols)) {
    throw new TypeError("The protocols option must be an array of strings");
  }
  const seen = new Set<string>();
  for (const protocol of protocols) {
    if (typeof protocol !== "string" || !TOKEN.test(protocol)) {
      throw new TypeError(`Invalid subprotocol name "${protocol}"`);
    }
    if (seen.has(protocol)) {
      throw new TypeError(`The subprotocol "${protocol}" is offered twice`);
    }
    seen.add(protocol);
  }
  return [...protocols];
}

function _checkHeaders(init: HeadersInit | undefined): Headers {
  const headers = new Headers(init);
  for (const name of headers.keys()) {
    if (RESERVED_HEADERS.has(name)) {
      throw new TypeError(
        `The header "${name}" is set by the WebSocket handshake`,
      );
    }
  }
  return headers;
}

/** Connects, with TLS for `wss:`; failures become a `WebSocketError`. */
async function _open(
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
    throw _failure(`Cannot connect to ${url.href}`, error);
  }
  if (!secure) return tcp;
  let tls: Deno.TlsConn;
  try {
    tls = await Deno.startTls(tcp, { hostname, caCerts });
  } catch (error) {
    _closeQuietly(tcp);
    throw _failure(`The TLS handshake with ${url.href} failed`, error);
  }
  // A pending handshake fails once the handshake signal closes the connection.
  const onAbort = () => _closeQuietly(tls);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await tls.handshake();
  } catch (error) {
    _closeQuietly(tls);
    if (signal.aborted) throw error;
    throw _failure(`The TLS handshake with ${url.href} failed`, error);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return tls;
}

/**
 * Builds the opening handshake request (RFC 6455 §4.1): the path and query
 * of the URL, `Host` with the port when it is not the default, a fresh key,
 * version 13, the offered subprotocols and extensions, and the extra headers.
 */
export function _requestHead(
  url: URL,
  key: string,
  protocols: string[],
  extraHeaders: Headers,
  extensions?: string,
): { head: Uint8Array; headers: Headers } {
  // `URL.host` leaves out the port when it is the scheme's default.
  const lines: [string, string][] = [
    ["Host", extraHeaders.get("host") ?? url.host],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", key],
    ["Sec-WebSocket-Version", "13"],
  ];
  if (protocols.length > 0) {
    lines.push(["Sec-WebSocket-Protocol", protocols.join(", ")]);
  }
  if (extensions !== undefined) {
    lines.push(["Sec-WebSocket-Extensions", extensions]);
  }
  for (const [name, value] of extraHeaders) {
    if (name !== "host") lines.push([name, value]);
  }
  let text = `GET ${url.pathname}${url.search} HTTP/1.1\r\n`;
  for (const [name, value] of lines) text += `${name}: ${value}\r\n`;
  text += "\r\n";
  // Header values are byte strings (each code unit at most 0xFF): latin1.
  const head = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) head[i] = text.charCodeAt(i);
  return { head, headers: new Headers(lines) };
}

/**
 * Reads the response head and the bytes after it, which already belong to
 * the WebSocket (a server may send frames right after its `101`).
 */
async function _readResponse(
  conn: Deno.Conn,
  maxSize: number,
  url: URL,
): Promise<{ response: ResponseHead; leftover: Uint8Array }> {
  let buffer = new Uint8Array(Math.min(4096, maxSize + 4));
  let length = 0;
  while (true) {
    if (length === buffer.length) {
      const bigger = new Uint8Array(Math.min(length * 2, maxSize + 4));
      bigger.set(buffer);
      buffer = bigger;
    }
    let n: number | null;
    try {
      n = await conn.read(buffer.subarray(length));
    } catch (error) {
      throw _failure(
        `Reading the handshake response from ${url.href} failed`,
        error,
      );
    }
    if (n === null) {
      throw _failure(
        "The server closed the connection before answering the WebSocket handshake",
      );
    }
    const end = findHeadEnd(buffer.subarray(0, length + n), length - 3);
    length += n;
    if (end !== -1 && end <= maxSize) {
      let response: ResponseHead;
      try {
        response = parseResponseHead(buffer.subarray(0, end));
      } catch (error) {
        throw _failure(
          `Invalid handshake response: ${(error as Error).message}`,
        );
      }
      return { response, leftover: buffer.slice(end, length) };
    }
    if (end !== -1 || length > maxSize) {
      throw _failure(
        `The handshake response head is larger than ${maxSize} bytes`,
      );
    }
  }
}

/**
 * Verifies the server's answer as RFC 6455 §4.1 requires of a client, and
 * returns the negotiated subprotocol and extensions.
 */
async function _checkResponse(
  response: ResponseHead,
  key: string,
  offered: string[],
  deflate: PerMessageDeflateOptions | null,
): Promise<
  {
    protocol: string;
    extensions: string;
    perMessageDeflate?: _DeflateSettings;
  }
> {
  const { status, statusText, headers } = response;
  if (status !== 101) {
    const text = statusText ? `${status} ${statusText}` : `${status}`;
    throw _failure(
      `The server answered the WebSocket handshake with HTTP ${text} instead of 101 Switching Protocols`,
    );
  }
  if (response.version !== "HTTP/1.1") {
    throw _failure(
      `The server answered the WebSocket handshake with ${response.version} instead of HTTP/1.1`,
    );
  }
  if (headers.get("upgrade")?.trim().toLowerCase() !== "websocket") {
    throw _failure(
      "The handshake response lacks an Upgrade: websocket header",
    );
  }
  if (!headerTokens(headers.get("connection")).includes("upgrade")) {
    throw _failure(
      "The handshake response lacks a Connection: Upgrade header",
    );
  }
  const accept = headers.get("sec-websocket-accept")?.trim();
  if (accept === undefined) {
    throw _failure("The handshake response lacks Sec-WebSocket-Accept");
  }
  if (accept !== await computeAccept(key)) {
    throw _failure(
      "The handshake response has a wrong Sec-WebSocket-Accept",
    );
  }
  // Only permessage-deflate is ever offered; any other extension in the
  // answer is one the client did not ask for (§4.1, §9.1).
  const extensions = headers.get("sec-websocket-extensions")?.trim() ?? "";
  let perMessageDeflate: _DeflateSettings | undefined;
  if (extensions !== "") {
    if (deflate === null) {
      throw _failure(
        `The server chose the extension "${extensions}", which the client did not offer`,
      );
    }
    let params;
    try {
      params = _acceptResponse(extensions, deflate);
    } catch (error) {
      throw _failure((error as Error).message);
    }
    if (params !== null) perMessageDeflate = { params, options: deflate };
  }
  const protocol = headers.get("sec-websocket-protocol")?.trim() ?? "";
  if (protocol !== "" && !offered.includes(protocol)) {
    throw _failure(
      `The server chose the subprotocol "${protocol}", which the client did not offer`,
    );
  }
  return {
    protocol,
    extensions: perMessageDeflate ? extensions : "",
    perMessageDeflate,
  };
}

/** A connection failure: close code 1006, the cause kept for debugging. */
function _failure(message: string, cause?: unknown): WebSocketError {
  const detail = cause instanceof Error ? `: ${cause.message}` : "";
  const error = new WebSocketError(message + detail);
  if (cause !== undefined) error.cause = cause;
  return error;
}

async function _writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  try {
    while (written < bytes.length) {
      written += await conn.write(bytes.subarray(written));
    }
  } catch (error) {
    throw _failure("Sending the WebSocket handshake failed", error);
  }
}

function _closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
