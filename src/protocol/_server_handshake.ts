// The server's opening handshake (RFC 6455 §4.2), with no I/O: a parsed
// request head and the server's settings in, a `101 Switching Protocols` or
// an HTTP refusal out. `serve()` and `upgradeWebSocket()` both decide here.

import {
  hasToken,
  type HeaderFields,
  HttpError,
  type RequestHead,
  trimSpaces,
} from "../http/_http.ts";
import { parseContentLength } from "../http/_http1.ts";
import {
  type DeflateSettings,
  negotiateServer,
  type PerMessageDeflateOptions,
} from "./permessage_deflate.ts";

/**
 * Which origins may open a WebSocket: a list of serialized origins
 * (`"https://example.com"`), or a function that decides.
 */
export type Origins = readonly string[] | ((origin: string) => boolean);

/** How the server picks a subprotocol among the client's offers. */
export type ProtocolChoice =
  | readonly string[]
  | ((offered: string[], request: Request) => string | undefined);

/** What a server's handshake is configured with, checked once per server. */
export interface ServerHandshakeSettings {
  /** The origins allowed to open a WebSocket (see {@linkcode checkOrigins}). */
  origins?: Origins;
  /** The subprotocols spoken, or a function that picks one of the offers. */
  protocols?: ProtocolChoice;
  /** permessage-deflate settings (already checked), or null for none. */
  perMessageDeflate?: PerMessageDeflateOptions | null;
}

/** An upgrade request that passed every check: what the `101` needs of it. */
export interface UpgradeRequest {
  /** The `Sec-WebSocket-Key`. */
  key: string;
  /** The subprotocols offered, in the client's order of preference. */
  protocols: string[];
  /** The `Sec-WebSocket-Extensions` offered, or null. */
  extensions: string | null;
}

/** The server's answer to an accepted upgrade. */
export interface ServerAcceptance {
  /**
   * The `101 Switching Protocols` head, ending in CRLF CRLF: latin1 text,
   * one byte a character, for the server to write from a buffer it uses
   * again.
   */
  response: string;
  /** The chosen subprotocol, or `""`. */
  protocol: string;
  /** The negotiated extensions (`Sec-WebSocket-Extensions`), or `""`. */
  extensions: string;
  /** The negotiated permessage-deflate, if any. */
  perMessageDeflate?: DeflateSettings;
}

/** The answer to a request without `Upgrade: websocket` on a WebSocket endpoint. */
const UPGRADE_REQUIRED_HEADERS: Readonly<Record<string, string>> = Object
  .freeze({ upgrade: "websocket", "sec-websocket-version": "13" });

// version = DIGIT | (NZDIGIT DIGIT) | ("1" DIGIT DIGIT) | ("2" DIGIT DIGIT)
// (RFC 6455 §4.3): no sign, no spaces (of any kind) around it.
const VERSION = /^(?:\d|[1-9]\d|1\d\d|2[0-4]\d|25[0-5])$/;
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/** Headers of the 101 answer that only the handshake sets (§4.2.2). */
const HANDSHAKE_HEADERS = new Set([
  "upgrade",
  "connection",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "content-length",
  "transfer-encoding",
]);

/** Whether a request asks for a WebSocket at all (`Upgrade: websocket`). */
export function isUpgradeRequest(head: { headers: HeaderFields }): boolean {
  return hasToken(head.headers.get("upgrade"), "websocket");
}

/**
 * Checks the `origins` option once, when the server starts: a function, or
 * an array of origins exactly as browsers serialize them in `Origin`
 * (`scheme://host` or `scheme://host:port`, lower-case, without the
 * scheme's default port, a path or a trailing slash), since the check is an
 * exact comparison. Throws a `TypeError` that says which entry is wrong and
 * what it probably means; a string (substring-matched by mistake) is one.
 */
export function checkOrigins(
  origins: unknown,
): ReadonlySet<string> | ((origin: string) => boolean) | undefined {
  if (origins === undefined) return undefined;
  if (typeof origins === "function") {
    return origins as (origin: string) => boolean;
  }
  if (!Array.isArray(origins)) {
    throw new TypeError(
      `The origins option must be an array of origins or a function, got ${
        typeof origins === "string" ? `the string "${origins}"` : typeof origins
      }`,
    );
  }
  for (const origin of origins) {
    if (typeof origin !== "string") {
      throw new TypeError(
        `The origins option must hold strings, got ${typeof origin}`,
      );
    }
    const serialized = serializeOrigin(origin);
    if (serialized !== origin) {
      throw new TypeError(
        `The origins option has "${origin}", which is not an origin as browsers send it (scheme://host[:port], lower-case, no default port, no path)` +
          (serialized === undefined ? "" : `: "${serialized}"?`),
      );
    }
  }
  return new Set(origins);
}

/** The origin a URL string serializes to, or undefined when it has none. */
function serializeOrigin(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  // `file:` and the like have no host: their origin is opaque ("null").
  return url.host === "" ? undefined : `${url.protocol}//${url.host}`;
}

/**
 * The server's side of the opening handshake (RFC 6455 §4.2), with no I/O,
 * in the shape of python-websockets' `accept`/`reject`: {@linkcode check}
 * takes a parsed request head and says whether it is a valid upgrade that
 * these settings allow, {@linkcode accept} builds the `101` for a checked
 * one, {@linkcode reject} makes a refusal. A refusal is an `HttpError`: its
 * status, a short plain-text message and the headers the answer needs; the
 * caller writes it (`serve()`) or throws it (`upgradeWebSocket()`).
 *
 * What the caller does between `check` and `accept` (an `onUpgrade` hook, a
 * connection limit) is its own business; both calls are synchronous.
 */
export class ServerHandshake {
  #origins: ReadonlySet<string> | ((origin: string) => boolean) | undefined;
  #protocols: ProtocolChoice | undefined;
  #deflate: PerMessageDeflateOptions | null;

  /** Checks the settings: a `TypeError` for `origins` that can never match. */
  constructor(settings: ServerHandshakeSettings = {}) {
    this.#origins = checkOrigins(settings.origins);
    const protocols = settings.protocols;
    if (
      protocols !== undefined && typeof protocols !== "function" &&
      !(Array.isArray(protocols) &&
        protocols.every((protocol) => typeof protocol === "string"))
    ) {
      throw new TypeError(
        "The protocols option must be an array of strings or a function",
      );
    }
    this.#protocols = protocols;
    this.#deflate = settings.perMessageDeflate ?? null;
  }

  /**
   * Checks an upgrade request against RFC 6455 §4.2.1 and the origins
   * allowed. Returns what `accept` needs, or the refusal: 426 (with
   * `Upgrade` and `Sec-WebSocket-Version: 13`) without `Upgrade: websocket`
   * or for another WebSocket version; 400 for an HTTP/1.0 request, a
   * missing Host, a `Connection` without `upgrade`, a missing or malformed
   * `Sec-WebSocket-Version`, a bad `Sec-WebSocket-Key`, or a body
   * (`Content-Length` other than 0, or `Transfer-Encoding`: what follows
   * the head must be WebSocket frames); 505 for a major version other than
   * 1; 405 (with `Allow: GET`) for another method than GET; 403 for an
   * `Origin` the settings do not allow.
   */
  check(head: RequestHead): UpgradeRequest | HttpError {
    const headers = head.headers;
    if (!isUpgradeRequest(head)) {
      return this.reject(
        426,
        "Upgrade Required: this is a WebSocket endpoint",
        UPGRADE_REQUIRED_HEADERS,
      );
    }
    // "An HTTP/1.1 or higher GET request" (§4.2.1, item 1).
    if (!head.version.startsWith("HTTP/1.")) {
      return this.reject(505, "HTTP version not supported");
    }
    if (head.version === "HTTP/1.0") {
      return this.reject(400, "WebSocket upgrades need HTTP/1.1");
    }
    if (head.method !== "GET") {
      return this.reject(405, "WebSocket upgrades must use GET", {
        allow: "GET",
      });
    }
    if (!headers.has("host")) return this.reject(400, "Missing Host header");
    if (!hasToken(headers.get("connection"), "upgrade")) {
      return this.reject(400, "Connection header must include upgrade");
    }
    const version = headers.get("sec-websocket-version");
    if (version === null) {
      return this.reject(400, "Missing Sec-WebSocket-Version header");
    }
    if (!VERSION.test(version)) {
      return this.reject(400, "Malformed Sec-WebSocket-Version header");
    }
    if (version !== "13") {
      // "... and a |Sec-WebSocket-Version| header field indicating the
      // version(s) the server is capable of understanding" (§4.2.2).
      return this.reject(426, "Unsupported WebSocket version", {
        "sec-websocket-version": "13",
      });
    }
    const key = headers.get("sec-websocket-key") ?? "";
    // "a base64-encoded value that, when decoded, is 16 bytes in length"
    // (§4.2.1, item 5): 22 characters and "==" are exactly that.
    if (!KEY.test(key)) {
      return this.reject(400, "Invalid Sec-WebSocket-Key header");
    }
    // The bytes after the head are the client's frames: a body would be
    // taken for them.
    const length = headers.get("content-length");
    if (
      headers.has("transfer-encoding") ||
      (length !== null && parseContentLength(length) !== 0)
    ) {
      return this.reject(400, "A WebSocket upgrade request has no body");
    }
    // Browsers send cookies with an upgrade from any site's page, so a
    // server that authenticates by cookie must check `Origin` (§10.2).
    // Requests without `Origin` do not come from a browser page and pass.
    const origin = headers.get("origin");
    const origins = this.#origins;
    if (origin !== null && origins !== undefined) {
      const allowed = typeof origins === "function"
        ? origins(origin) === true
        : origins.has(origin);
      if (!allowed) return this.reject(403, "Origin not allowed");
    }
    const offered = headers.get("sec-websocket-protocol");
    return {
      key,
      protocols: offered === null
        ? []
        : offered.split(",").map(trimSpaces).filter((token) => token !== ""),
      extensions: headers.get("sec-websocket-extensions"),
    };
  }

  /**
   * Builds the `101 Switching Protocols` answer to a checked upgrade
   * (§4.2.2): the accept value, the subprotocol (the first offer the list
   * has, or the function's pick, which must be one of the offers), the
   * negotiated extensions, and `headers` (an `onUpgrade` hook's), which may
   * add headers (a cookie) but neither override nor repeat the handshake's
   * own: those are left out. A protocols function that throws or picks a
   * subprotocol that was not offered, and headers that `Headers` refuses (a
   * value with CR or LF), give a 500 refusal whose `cause` is the fault,
   * for the caller to report.
   *
   * @param upgrade What `check` returned.
   * @param init The request (made when a protocols function asks for it),
   * extra headers, and the accept value of the upgrade's key
   * (`computeAccept`: asynchronous, so the caller's to await).
   */
  accept(
    upgrade: UpgradeRequest,
    init: {
      request: () => Request;
      headers?: HeadersInit;
      acceptValue: string;
    },
  ): ServerAcceptance | HttpError {
    const protocol = this.protocolFor(upgrade, init.request);
    if (protocol instanceof HttpError) return protocol;
    let extra: Headers | undefined;
    try {
      // Headers refuses a value with CR, LF or NUL (a response splitting
      // attempt, or a bug): no 101 goes out with it.
      if (init.headers !== undefined) extra = new Headers(init.headers);
    } catch (error) {
      return this.#fault(error);
    }
    let head = "HTTP/1.1 101 Switching Protocols\r\n" +
      "upgrade: websocket\r\nconnection: Upgrade\r\n" +
      `sec-websocket-accept: ${init.acceptValue}\r\n`;
    if (protocol !== "") head += `sec-websocket-protocol: ${protocol}\r\n`;
    let extensions = "";
    let perMessageDeflate: DeflateSettings | undefined;
    const deflate = this.#deflate;
    if (deflate !== null) {
      const negotiated = negotiateServer(upgrade.extensions, deflate);
      if (negotiated !== null) {
        extensions = negotiated.response;
        perMessageDeflate = { params: negotiated.params, options: deflate };
        head += `sec-websocket-extensions: ${extensions}\r\n`;
      }
    }
    if (extra !== undefined) {
      for (const [name, value] of extra) {
        if (!HANDSHAKE_HEADERS.has(name)) head += `${name}: ${value}\r\n`;
      }
    }
    head += "\r\n";
    return { response: head, protocol, extensions, perMessageDeflate };
  }

  /**
   * A refusal: the status, a short plain-text message (the answer's body)
   * and the headers the answer needs.
   */
  reject(
    status: number,
    message: string,
    headers: Readonly<Record<string, string>> = {},
  ): HttpError {
    return new HttpError(status, message, { ...headers });
  }

  /**
   * The subprotocol spoken (what `accept` answers with, for a server that
   * writes its own 101): `""` when none was offered or none matches; a 500
   * refusal whose `cause` is the fault when a protocols function throws or
   * picks what was not offered.
   */
  protocolFor(
    upgrade: UpgradeRequest,
    request: () => Request,
  ): string | HttpError {
    try {
      return this.#chooseProtocol(upgrade.protocols, request);
    } catch (error) {
      return this.#fault(error);
    }
  }

  /** The 500 refusal for a fault of the application's, as its `cause`. */
  #fault(error: unknown): HttpError {
    const refusal = this.reject(500, "Internal Server Error");
    refusal.cause = error;
    return refusal;
  }

  #chooseProtocol(offered: string[], request: () => Request): string {
    const supported = this.#protocols;
    if (supported === undefined || offered.length === 0) return "";
    if (typeof supported !== "function") {
      return offered.find((token) => supported.includes(token)) ?? "";
    }
    const chosen = supported(offered, request());
    if (chosen === undefined || chosen === "") return "";
    if (!offered.includes(chosen)) {
      throw new Error(`The chosen subprotocol "${chosen}" was not offered`);
    }
    return chosen;
  }
}
