// `WebSocketStream`: the WHATWG proposal's client class, a thin layer over
// `connect()`.

import { connect, type ConnectOptions } from "./client.ts";
import { checkProtocols, parseUrl } from "../protocol/_client_handshake.ts";
import {
  checkCloseInfo,
  type WebSocketCloseInfo,
  type WebSocketCloseResult,
  WebSocketError,
} from "../protocol/websocket_error.ts";
import type { WebSocketConnection } from "../socket/socket.ts";

/**
 * Options for {@linkcode WebSocketStream}: the WHATWG `protocols` and
 * `signal`, plus the other options of {@linkcode connect} (headers, limits,
 * timeouts, `caCerts`).
 *
 * @example Offering subprotocols and giving up after 10 s
 * ```ts ignore
 * import { WebSocketStream } from "@scope/ws";
 *
 * const wss = new WebSocketStream("wss://example.com/", {
 *   protocols: ["chat.v2", "chat.v1"],
 *   signal: AbortSignal.timeout(10_000),
 * });
 * ```
 */
export interface WebSocketStreamOptions extends Omit<ConnectOptions, "signal"> {
  /**
   * Aborts the opening handshake: `opened` and `closed` then reject with the
   * signal's reason. As in the WHATWG proposal, aborting it once the
   * connection is open does nothing.
   */
  signal?: AbortSignal;
}

/**
 * What {@linkcode WebSocketStream.opened} resolves with.
 *
 * @example Reading what `opened` resolves with
 * ```ts ignore
 * import { WebSocketStream } from "@scope/ws";
 *
 * const wss = new WebSocketStream("ws://127.0.0.1:8080/");
 * const { readable, writable, protocol, extensions } = await wss.opened;
 * ```
 */
export interface WebSocketOpenInfo {
  /**
   * The messages from the server: a `string` per text message, a
   * `Uint8Array` per binary message. Canceling it starts the closing
   * handshake, with the code and reason of a {@linkcode WebSocketError}
   * reason.
   */
  readable: ReadableStream<string | Uint8Array>;
  /**
   * Where to write messages: a `string` is sent as text, an `ArrayBuffer` or
   * a view as binary. Closing it starts the closing handshake and resolves
   * once the handshake is done; aborting it closes as canceling `readable`.
   */
  writable: WritableStream<string | BufferSource>;
  /** The subprotocol the server chose, or `""`. */
  protocol: string;
  /** The negotiated extensions, or `""`. */
  extensions: string;
}

/**
 * A WebSocket client with the shape of the WHATWG WebSocketStream proposal,
 * so that code written for it runs on Deno without unstable flags. It is a
 * thin layer over {@linkcode connect}: the connection starts at once,
 * `opened` resolves with the streams, `closed` with the server's close code
 * and reason, and `close()` starts the closing handshake.
 *
 * Promises reject with a {@linkcode WebSocketError}, or with the signal's
 * reason when `signal` aborts the handshake; the constructor throws a
 * `TypeError` for an invalid URL or subprotocol list. Both promises are
 * marked as handled, so a failure nobody awaits does not crash the program.
 *
 * @example An echo round trip
 * ```ts ignore
 * import { WebSocketStream } from "@scope/ws";
 *
 * const wss = new WebSocketStream("ws://127.0.0.1:8080/");
 * const { readable, writable } = await wss.opened;
 * const writer = writable.getWriter();
 * await writer.write("Hello");
 * const reader = readable.getReader();
 * console.log((await reader.read()).value); // "Hello"
 * wss.close({ closeCode: 1000, reason: "Done" });
 * console.log(await wss.closed); // { closeCode: 1000, reason: "Done" }
 * ```
 *
 * @example Giving up on a slow handshake
 * ```ts ignore
 * import { WebSocketStream } from "@scope/ws";
 *
 * const wss = new WebSocketStream("wss://example.com/feed", {
 *   protocols: ["feed.v1"],
 *   signal: AbortSignal.timeout(5_000),
 * });
 * try {
 *   const { readable } = await wss.opened;
 *   for await (const message of readable) console.log(message);
 * } catch (error) {
 *   console.error("Could not connect:", error);
 * }
 * ```
 */
export class WebSocketStream {
  /** The URL connected to, serialized (`http:` and `https:` made `ws:` and `wss:`). */
  readonly url: string;
  /** Resolves once the opening handshake is done. */
  readonly opened: Promise<WebSocketOpenInfo>;
  /**
   * Resolves with the server's close code and reason after a clean closing
   * handshake; rejects with a {@linkcode WebSocketError} otherwise.
   */
  readonly closed: Promise<WebSocketCloseResult>;

  #socket: WebSocketConnection | undefined;
  #handshake = new AbortController();

  /**
   * Starts connecting to `url`.
   *
   * @param url A `ws:` or `wss:` URL (`http:` and `https:` are accepted
   * too), without a fragment.
   * @param options Subprotocols to offer, a signal to abort the handshake,
   * and the other options of {@linkcode connect}.
   */
  constructor(url: string | URL, options?: WebSocketStreamOptions) {
    options ??= {};
    const target = parseUrl(url);
    checkProtocols(options.protocols);
    this.url = target.href;
    let resolveOpened!: (info: WebSocketOpenInfo) => void;
    let rejectOpened!: (error: unknown) => void;
    let resolveClosed!: (result: WebSocketCloseResult) => void;
    let rejectClosed!: (error: unknown) => void;
    this.opened = new Promise((resolve, reject) => {
      resolveOpened = resolve;
      rejectOpened = reject;
    });
    this.closed = new Promise((resolve, reject) => {
      resolveClosed = resolve;
      rejectClosed = reject;
    });
    this.opened.catch(() => {});
    this.closed.catch(() => {});

    const signal = options.signal;
    const onAbort = () => this.#handshake.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    connect(target, { ...options, signal: this.#handshake.signal }).then(
      (socket) => {
        signal?.removeEventListener("abort", onAbort);
        this.#socket = socket;
        socket.closed.then(resolveClosed, rejectClosed);
        resolveOpened({
          readable: socket.readable,
          writable: writableFor(socket),
          protocol: socket.protocol,
          extensions: socket.extensions,
        });
      },
      (error) => {
        signal?.removeEventListener("abort", onAbort);
        rejectOpened(error);
        rejectClosed(error);
      },
    );
  }

  /**
   * Starts the closing handshake, or abandons the opening one (`opened` and
   * `closed` then reject). `closeCode` must be 1000 or 3000–4999; a reason
   * without a code sends 1000.
   *
   * @param closeInfo The close code and a reason of at most 123 UTF-8 bytes.
   *
   * @example Closing with a code and a reason
   * ```ts ignore
   * import { WebSocketStream } from "@scope/ws";
   *
   * const wss = new WebSocketStream("ws://127.0.0.1:8080/");
   * await wss.opened;
   * wss.close({ closeCode: 4000, reason: "Bye" });
   * ```
   */
  close(closeInfo?: WebSocketCloseInfo): void {
    const { closeCode, reason } = checkCloseInfo(closeInfo);
    if (this.#socket) {
      this.#socket.close({ closeCode, reason });
    } else {
      this.#handshake.abort(
        new WebSocketError(
          "The WebSocket was closed before the connection was established",
        ),
      );
    }
  }
}

/**
 * The socket's writable, taking any `BufferSource` as the WHATWG proposal
 * does, and whose `close()` resolves once the closing handshake is done.
 */
function writableFor(
  socket: WebSocketConnection,
): WritableStream<string | BufferSource> {
  const writer = socket.writable.getWriter();
  return new WritableStream<string | BufferSource>({
    write(chunk) {
      return writer.write(toMessage(chunk));
    },
    async close() {
      await writer.close();
      await socket.closed;
    },
    abort(reason) {
      return writer.abort(reason);
    },
  });
}

function toMessage(chunk: string | BufferSource): string | Uint8Array {
  if (typeof chunk === "string" || chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) {
    return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
  throw new TypeError("A message must be a string or a BufferSource");
}
