// The client's opening handshake (RFC 6455 §4.1), with no I/O: its request
// and its checks of the server's answer, with its own subprotocol and
// extension negotiation. The server's side is `_server_handshake.ts`; the
// accept value, asynchronous, `src/engine/_accept_value.ts`.

import {
  headerTokens,
  latin1Into,
  type ResponseHead,
  TOKEN,
} from "../http/_http.ts";
import {
  acceptResponse,
  clientOffer,
  type DeflateSettings,
  type PerMessageDeflateOptions,
} from "./permessage_deflate.ts";

/**
 * Parses a WebSocket URL as the WHATWG `WebSocket` constructor does: `http:`
 * and `https:` become `ws:` and `wss:`, other schemes and fragments (which
 * RFC 6455 §3 forbids) throw a `TypeError`.
 */
export function parseUrl(url: string | URL): URL {
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
export function checkProtocols(protocols: string[] = []): string[] {
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

/** Headers the client's handshake sets itself, which may not be overridden. */
const CLIENT_HANDSHAKE_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "content-length",
  "transfer-encoding",
]);

/** Checks a client's extra headers: none of the handshake's own. */
export function checkHeaders(init: HeadersInit | undefined): Headers {
  const headers = new Headers(init);
  for (const name of headers.keys()) {
    if (CLIENT_HANDSHAKE_HEADERS.has(name)) {
      throw new TypeError(
        `The header "${name}" is set by the WebSocket handshake`,
      );
    }
  }
  return headers;
}

/** A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (§4.1). */
function generateKey(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toBase64();
}

/**
 * A handshake answered with another status than 101: the status and the
 * headers, for a caller that decides whether to try again (408, 429, 503
 * with `Retry-After`).
 */
export class HandshakeStatusError extends TypeError {
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The headers of the answer. */
  readonly headers: Headers;

  constructor(message: string, status: number, headers: Headers) {
    super(message);
    this.name = "TypeError";
    this.status = status;
    this.headers = headers;
  }
}

/** What the client's handshake negotiated. */
export interface ClientAcceptance {
  protocol: string;
  extensions: string;
  perMessageDeflate?: DeflateSettings;
}

/**
 * The client's opening handshake (§4.1): it builds the request and checks
 * the server's answer; throws a `TypeError` saying what is wrong with an
 * answer the client must fail the connection for.
 */
export class ClientHandshake {
  /** The request head, ready to write. */
  readonly request: Uint8Array;
  /** The request's headers, for the socket's `request`. */
  readonly headers: Headers;
  /** The `Sec-WebSocket-Key` sent. */
  readonly key: string;
  #protocols: string[];
  #deflate: PerMessageDeflateOptions | null;

  /**
   * @param url The `ws:` or `wss:` URL (see {@linkcode parseUrl}).
   * @param options The subprotocols to offer (checked), the extra headers
   * (checked), permessage-deflate settings, and the key (default: fresh).
   */
  constructor(
    url: URL,
    options: {
      protocols: string[];
      headers: Headers;
      deflate: PerMessageDeflateOptions | null;
      key?: string;
    },
  ) {
    this.key = options.key ?? generateKey();
    this.#protocols = options.protocols;
    this.#deflate = options.deflate;
    const extra = options.headers;
    // `URL.host` leaves out the port when it is the scheme's default.
    const lines: [string, string][] = [
      ["Host", extra.get("host") ?? url.host],
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", this.key],
      ["Sec-WebSocket-Version", "13"],
    ];
    if (options.protocols.length > 0) {
      lines.push(["Sec-WebSocket-Protocol", options.protocols.join(", ")]);
    }
    if (options.deflate !== null) {
      lines.push(["Sec-WebSocket-Extensions", clientOffer(options.deflate)]);
    }
    for (const [name, value] of extra) {
      if (name !== "host") lines.push([name, value]);
    }
    let text = `GET ${url.pathname}${url.search} HTTP/1.1\r\n`;
    for (const [name, value] of lines) text += `${name}: ${value}\r\n`;
    text += "\r\n";
    // Header values are byte strings (each code unit at most 0xFF).
    this.request = new Uint8Array(text.length);
    latin1Into(text, this.request);
    this.headers = new Headers(lines);
  }

  /**
   * Verifies the server's answer as §4.1 requires of a client, against the
   * accept value of its key (`computeAccept(key)`), and returns the
   * negotiated subprotocol and extensions.
   */
  check(response: ResponseHead, expectedAccept: string): ClientAcceptance {
    const { status, statusText, headers } = response;
    if (status !== 101) {
      const text = statusText ? `${status} ${statusText}` : `${status}`;
      throw new HandshakeStatusError(
        `The server answered the WebSocket handshake with HTTP ${text} instead of 101 Switching Protocols`,
        status,
        new Headers([...headers]),
      );
    }
    if (response.version !== "HTTP/1.1") {
      throw new TypeError(
        `The server answered the WebSocket handshake with ${response.version} instead of HTTP/1.1`,
      );
    }
    if (headers.get("upgrade")?.trim().toLowerCase() !== "websocket") {
      throw new TypeError(
        "The handshake response lacks an Upgrade: websocket header",
      );
    }
    if (!headerTokens(headers.get("connection")).includes("upgrade")) {
      throw new TypeError(
        "The handshake response lacks a Connection: Upgrade header",
      );
    }
    const accept = headers.get("sec-websocket-accept")?.trim();
    if (accept === undefined) {
      throw new TypeError("The handshake response lacks Sec-WebSocket-Accept");
    }
    if (accept !== expectedAccept) {
      throw new TypeError(
        "The handshake response has a wrong Sec-WebSocket-Accept",
      );
    }
    // Only permessage-deflate is ever offered; any other extension in the
    // answer is one the client did not ask for (§4.1, §9.1).
    const extensions = headers.get("sec-websocket-extensions")?.trim() ?? "";
    let perMessageDeflate: DeflateSettings | undefined;
    if (extensions !== "") {
      if (this.#deflate === null) {
        throw new TypeError(
          `The server chose the extension "${extensions}", which the client did not offer`,
        );
      }
      const params = acceptResponse(extensions, this.#deflate);
      if (params !== null) {
        perMessageDeflate = { params, options: this.#deflate };
      }
    }
    const protocol = headers.get("sec-websocket-protocol")?.trim() ?? "";
    if (protocol !== "" && !this.#protocols.includes(protocol)) {
      throw new TypeError(
        `The server chose the subprotocol "${protocol}", which the client did not offer`,
      );
    }
    return {
      protocol,
      extensions: perMessageDeflate ? extensions : "",
      perMessageDeflate,
    };
  }
}
