// HTTP/1.1 for the plain requests that share the WebSocket port, sans-I/O: request heads,
// body framing and decoding, response heads and chunked encoding (RFC 9112, RFC 9110).
/**
 * Everything here is synchronous and touches no socket, timer or `Deno.*` API:
 * the server reads bytes from its connection and hands them to these
 * functions, which answer with decisions, body chunks and bytes to write.
 *
 * One connection, one request at a time:
 *
 * 1. {@linkcode takeRequestHead} finds and parses the next head in the bytes
 *    read so far (`undefined`: read more).
 * 2. {@linkcode decideRequestFraming} says how the body is framed, whether to
 *    send {@linkcode CONTINUE_RESPONSE} first and whether the connection may
 *    carry another request afterwards.
 * 3. A {@linkcode BodyDecoder} turns the bytes after the head into body chunks
 *    and says where the body ends; the rest is the next request (pipelining).
 * 4. {@linkcode serializeResponseHead} writes the `Response`'s head and picks
 *    its framing; a {@linkcode ResponseBodyEncoder} frames the body chunks.
 *
 * Any `HttpError` thrown here means the request cannot be framed or must not
 * be served: answer it with {@linkcode serializeErrorResponse} and close the
 * connection, since where the next request starts is unknown. The parsers are
 * strict on purpose: request smuggling lives in the differences between a
 * lenient parser and the one in front of it (RFC 9112 §11.2).
 *
 * Time limits (a head that trickles in, an idle keep-alive connection, a slow
 * body) are the I/O half's job: nothing here has a clock.
 *
 * @module
 */
import {
  decodeHead,
  Fields,
  headerTokens,
  HttpError,
  latin1Into,
  type RequestHead,
  TOKEN,
  TOKEN_CHARS,
  trimSpaces,
  trimSpacesIn,
} from "./_http.ts";

/** Size limits for one request; each is checked before the bytes it guards are kept. */
export interface Http1Limits {
  /**
   * The largest request head in bytes: empty lines before it, the request
   * line, the header lines and the empty line. Past it: 431, or 414 when the
   * request line alone does not fit.
   */
  maxHeadSize: number;
  /** The largest request body in bytes of content (framing not counted); past it: 413. */
  maxBodySize: number;
  /**
   * The total bytes of chunk extensions in one chunked body. They carry no
   * meaning here and are skipped, but skipping is work that the body limit
   * does not count (Node's CVE-2024-22019); past it: 413, as in Node.
   */
  maxChunkExtensionSize: number;
  /** The largest trailer section of a chunked body, in bytes; past it: 431. */
  maxTrailerSize: number;
}

/**
 * The limits used when none are given: a 16 KiB head (as the upgrade path),
 * 16 MiB of body (as a WebSocket message), 16 KiB of chunk extensions and of
 * trailers (Node's and hyper's figure for extensions).
 */
export const DEFAULT_HTTP1_LIMITS: Readonly<Http1Limits> = Object.freeze({
  maxHeadSize: 16 * 1024,
  maxBodySize: 16 * 1024 * 1024,
  maxChunkExtensionSize: 16 * 1024,
  maxTrailerSize: 16 * 1024,
});

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

// request-line = method SP request-target SP HTTP-version (RFC 9112 §3); the
// target is visible ASCII (RFC 3986 characters), the version case-sensitive.
const REQUEST_LINE = new RegExp(
  `^(${TOKEN_CHARS}) ([\\x21-\\x7e]+) (HTTP\\/(\\d)\\.(\\d))$`,
);
const VERSION = /^HTTP\/(\d)\.(\d)$/;
// Host = uri-host [ ":" port ] (RFC 9110 §7.2): an IP-literal or a reg-name
// (unreserved, pct-encoded, sub-delims), here without the comma, which in
// practice means two Host lines joined (RFC 9112 §3.2).
const HOST =
  /^(?:\[[0-9A-Za-z:.%\-_~!$&'()*+;=]+\]|[0-9A-Za-z\-._~!$&'()*+;=%]*)(?::[0-9]*)?$/;
const QUOTED_STRING =
  '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
// (RFC 9112 §7.1.1); matched on what follows the chunk size.
const CHUNK_EXT = new RegExp(
  `^(?:[ \\t]*;[ \\t]*${TOKEN_CHARS}(?:[ \\t]*=[ \\t]*(?:${TOKEN_CHARS}|${QUOTED_STRING}))?)+$`,
);
const TRAILER_LINE = new RegExp(
  `^${TOKEN_CHARS}:[\\t\\x20-\\x7e\\x80-\\xff]*$`,
);

/** A request head found in the bytes, and how many bytes it took. */
export interface TakenRequestHead {
  head: RequestHead<Fields>;
  /**
   * The head's text, one character per byte, from the request line to the
   * last header line: what {@linkcode parseRequestHead} takes to make the
   * same head again (a socket keeps this string, not the parsed head).
   */
  text: string;
  /** Bytes from the start of the input to just past the head's empty line. */
  size: number;
}

/**
 * The longest request line taken (8 KiB, as nginx's default buffer), when
 * `maxHeadSize` is larger; longer ones get 414.
 */
export const MAX_REQUEST_LINE = 8 * 1024;

/**
 * Finds and parses the request head at the start of `bytes`; returns
 * `undefined` while the head is incomplete. `scanned` is the length of
 * `bytes` at the previous call that returned `undefined` for the same head,
 * so that a head arriving in small pieces is scanned once, not once per
 * piece.
 *
 * This is the server's one head parser: plain requests and WebSocket
 * upgrades alike, so that one malformed head gets one answer. Throws
 * `HttpError`: 400 for any deviation from the grammar (bare CR or LF,
 * obsolete line folding, whitespace before a colon, control characters) or
 * from the Host rules (missing in HTTP/1.1, more than one, not
 * `uri-host [ ":" port ]`: no userinfo); 414 for a request line over
 * {@linkcode MAX_REQUEST_LINE} or `maxHeadSize`; 431 for a head over
 * `maxHeadSize`; 505 for a major version other than 1.
 */
export function takeRequestHead(
  bytes: Uint8Array,
  limits: Http1Limits = DEFAULT_HTTP1_LIMITS,
  scanned = 0,
): TakenRequestHead | undefined {
  const maxHeadSize = limits.maxHeadSize;
  // "A server that is expecting to receive and parse a request-line SHOULD
  // ignore at least one empty line (CRLF) received prior to the
  // request-line" (RFC 9112 §2.2); they count towards the head's size.
  let start = 0;
  while (
    start + 1 < bytes.length && bytes[start] === CR && bytes[start + 1] === LF
  ) {
    start += 2;
  }
  const limit = Math.min(bytes.length, maxHeadSize);
  let end = -1;
  // Bare CR and bare LF are refused as soon as they arrive (§2.2 allows a
  // recipient to accept a bare LF; being strict keeps framing unambiguous).
  // A scan resumes one byte back: a CR that ended the last piece is checked
  // against the byte after it.
  for (let i = Math.max(start, scanned - 1); i < limit; i++) {
    const byte = bytes[i];
    if (byte === LF) {
      if (i === start || bytes[i - 1] !== CR) {
        throw new HttpError(400, "Bare LF in request head");
      }
      if (i - start >= 3 && bytes[i - 2] === LF && bytes[i - 3] === CR) {
        end = i + 1;
        break;
      }
    } else if (byte === CR && i + 1 < bytes.length && bytes[i + 1] !== LF) {
      throw new HttpError(400, "Bare CR in request head");
    }
  }
  // "A server that receives a request-target longer than any URI it wishes
  // to parse MUST respond with a 414 (URI Too Long)" (RFC 9112 §3): decided
  // as soon as the line is longer, before the head is whole.
  const maxLine = Math.min(MAX_REQUEST_LINE, maxHeadSize);
  // The first LF within maxLine + 2 bytes of the start, if any.
  let lineEnd = bytes.indexOf(LF, start) - start;
  if (lineEnd >= maxLine + 2) lineEnd = -1;
  if (
    lineEnd < 0 ? bytes.length - start > maxLine + 1 : lineEnd - 1 > maxLine
  ) {
    throw new HttpError(414, "Request line too long");
  }
  if (end === -1) {
    if (bytes.length < maxHeadSize) return undefined;
    throw bytes.subarray(start, limit).indexOf(LF) === -1
      ? new HttpError(414, "Request line too long")
      : new HttpError(431, "Request head too large");
  }
  const text = decodeHead(bytes.subarray(start, end - 4));
  return { head: parseRequestHead(text), text, size: end };
}

/**
 * Parses a head's text (see {@linkcode TakenRequestHead.text}), checked for
 * bare CR and LF, as {@linkcode takeRequestHead} does; throws `HttpError`.
 */
export function parseRequestHead(text: string): RequestHead<Fields> {
  // Line by line without splitting the text: a line is [start, end).
  let end = text.indexOf("\r\n");
  const match = REQUEST_LINE.exec(end === -1 ? text : text.slice(0, end));
  if (!match) throw new HttpError(400, "Malformed request line");
  // A major version we do not implement (RFC 9110 §2.5, §15.6.6), such as
  // the HTTP/2 connection preface "PRI * HTTP/2.0".
  if (match[4] !== "1") throw new HttpError(505, "HTTP version not supported");
  const headers = new Fields();
  let host: string | undefined;
  while (end !== -1) {
    const start = end + 2;
    end = text.indexOf("\r\n", start);
    const stop = end === -1 ? text.length : end;
    const first = text.charCodeAt(start);
    // "A server that receives an obs-fold in a request message ... MUST
    // either reject the message by sending a 400 (Bad Request)" (§5.2); a
    // whitespace-preceded first line is refused the same way (§2.2).
    if (first === SP || first === HTAB) {
      throw new HttpError(400, "Obsolete line folding in request head");
    }
    const colon = text.indexOf(":", start);
    const name = colon === -1 || colon > stop ? "" : text.slice(start, colon);
    // "A server MUST reject, with a response status code of 400 (Bad
    // Request), any received request message that contains whitespace
    // between a header field name and colon" (§5.1): not a token.
    if (!TOKEN.test(name)) throw new HttpError(400, "Malformed header line");
    const value = trimSpacesIn(text, colon + 1, stop);
    try {
      // Checks the value: field-content, no control characters (RFC 9110
      // §5.5).
      headers.append(name, value);
    } catch {
      throw new HttpError(400, "Malformed header value");
    }
    if (name.length === 4 && name.toLowerCase() === "host") {
      // "... any request message that contains more than one Host header
      // field line" gets 400 (§3.2), even when they agree.
      if (host !== undefined) {
        throw new HttpError(400, "More than one Host header");
      }
      host = value;
    }
  }
  if (host === undefined) {
    // "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field" (§3.2).
    if (match[5] !== "0") throw new HttpError(400, "Missing Host header");
  } else if (!HOST.test(host)) {
    // ... "or a Host header field with an invalid field value" (§3.2).
    throw new HttpError(400, "Invalid Host header");
  }
  return { method: match[1], target: match[2], version: match[3], headers };
}

/** The last origin-form request URL that {@linkcode requestUrl} made. */
const last: {
  target: string;
  host: string | null;
  base: string;
  url: string;
} = { target: "", host: null, base: "", url: "" };

/**
 * The request's URL. Only origin-form (`/path`) and absolute-form targets of
 * http, https, ws and wss (RFC 9112 §3.2) are taken; others (`*`,
 * `host:port`, other schemes) throw `HttpError` 400. `base` stands for the
 * Host a request did not send (HTTP/1.0).
 */
export function requestUrl(head: RequestHead, base: string): string {
  const target = head.target;
  try {
    if (target.startsWith("/")) {
      const host = head.headers.get("host");
      // The URL is a function of these three alone, and clients of one
      // server mostly send the same ones (a reconnecting crowd): the last
      // URL made is used again rather than parsed anew (~2 µs a request).
      if (target === last.target && host === last.host && base === last.base) {
        return last.url;
      }
      const scheme = base.slice(0, base.indexOf("://") + 3);
      const url = new URL(target, host === null ? base : scheme + host).href;
      last.target = target;
      last.host = host;
      last.base = base;
      last.url = url;
      return url;
    }
    const url = new URL(target);
    if (/^(?:https?|wss?):$/.test(url.protocol) && url.host !== "") {
      return url.href;
    }
  } catch {
    // Falls through to the refusal.
  }
  throw new HttpError(400, "Malformed request target");
}

/** How a request body is delimited: a byte count (0: no body) or chunks. */
export type BodyFraming =
  | { readonly type: "length"; readonly length: number }
  | { readonly type: "chunked" };

/** What {@linkcode decideRequestFraming} decided for one request. */
export interface RequestFraming {
  /**
   * The version whose rules apply: `HTTP/1.0`, or `HTTP/1.1` for any 1.x
   * above 0 (RFC 9110 §2.5).
   */
  readonly version: "HTTP/1.1" | "HTTP/1.0";
  readonly body: BodyFraming;
  /**
   * Whether the client waits for {@linkcode CONTINUE_RESPONSE} before
   * sending the body (RFC 9110 §10.1.1). Send it when the body is first
   * read; a server that answers without reading the body may skip it, and
   * then closes the connection or reads and discards the body.
   */
  readonly expectContinue: boolean;
  /** Whether the connection may carry another request after the response (RFC 9112 §9.3). */
  readonly keepAlive: boolean;
}

const NO_BODY: BodyFraming = Object.freeze({ type: "length", length: 0 });
const CHUNKED: BodyFraming = Object.freeze({ type: "chunked" });

/**
 * Decides how a request's body is framed (RFC 9112 §6), whether the client
 * expects `100 Continue` and whether the connection persists; throws
 * `HttpError` for a request that must be refused: 400 (framing that is
 * ambiguous or malformed), 413 (a Content-Length
 * over `maxBodySize`), 417 (an expectation other than 100-continue), 501 (a
 * transfer coding other than chunked), 505 (not HTTP/1.x).
 */
export function decideRequestFraming(
  head: RequestHead,
  limits: Http1Limits = DEFAULT_HTTP1_LIMITS,
): RequestFraming {
  const version = versionOf(head.version);
  const headers = head.headers;
  const transferEncoding = headers.get("transfer-encoding");
  const contentLength = headers.get("content-length");
  let body: BodyFraming;
  if (transferEncoding !== null) {
    // "A server or client that receives an HTTP/1.0 message containing a
    // Transfer-Encoding header field MUST treat the message as if the framing
    // is faulty" (§6.1).
    if (version === "HTTP/1.0") {
      throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    // "A server MAY reject a request that contains both Content-Length and
    // Transfer-Encoding or process such a request in accordance with the
    // Transfer-Encoding alone" (§6.1): refused, so that no front end that
    // believed the Content-Length can be desynchronized from us.
    if (contentLength !== null) {
      throw new HttpError(
        400,
        "Both Transfer-Encoding and Content-Length in a request",
      );
    }
    checkTransferEncoding(transferEncoding);
    body = CHUNKED;
  } else if (contentLength !== null) {
    const length = parseContentLength(contentLength);
    if (length === undefined) {
      throw new HttpError(400, "Invalid Content-Length header");
    }
    if (length > limits.maxBodySize) {
      throw new HttpError(413, "Request body too large");
    }
    body = length === 0 ? NO_BODY : { type: "length", length };
  } else {
    // Neither: the request has no body (§6.3, item 7).
    body = NO_BODY;
  }
  const expectContinue = expects100Continue(headers.get("expect"), version) &&
    body !== NO_BODY;
  return {
    version,
    body,
    expectContinue,
    keepAlive: persists(headers.get("connection"), version),
  };
}

/** The version whose rules apply to a request line's version. */
function versionOf(version: string): "HTTP/1.1" | "HTTP/1.0" {
  const match = VERSION.exec(version);
  if (!match) throw new HttpError(400, "Malformed HTTP version");
  if (match[1] !== "1") throw new HttpError(505, "HTTP version not supported");
  return match[2] === "0" ? "HTTP/1.0" : "HTTP/1.1";
}

/**
 * Checks a request's Transfer-Encoding: accepted only when it is exactly
 * `chunked` (case-insensitive, RFC 9112 §7), once.
 */
function checkTransferEncoding(value: string): void {
  const codings = value.split(",").map((coding) => trimSpaces(coding));
  // Empty list elements are refused although RFC 9110 §5.6.1 asks
  // recipients to skip them: this is the framing field, where two parsers
  // reading one value differently is the whole attack.
  if (codings.some((coding) => coding === "")) {
    throw new HttpError(400, "Malformed Transfer-Encoding header");
  }
  const final = codings[codings.length - 1].toLowerCase();
  // "If a Transfer-Encoding header field is present in a request and the
  // chunked transfer coding is not the final encoding, the message body
  // length cannot be determined reliably; the server MUST respond with the
  // 400 (Bad Request) status code and then close the connection" (§6.3).
  // `chunked;a=b` counts as not chunked: "The chunked coding does not define
  // any parameters. Their presence SHOULD be treated as an error" (§7.1).
  if (final !== "chunked") {
    throw new HttpError(400, "Transfer-Encoding does not end with chunked");
  }
  // "A sender MUST NOT apply the chunked transfer coding more than once to a
  // message body" (§6.1).
  for (let i = 0; i < codings.length - 1; i++) {
    if (codings[i].toLowerCase() === "chunked") {
      throw new HttpError(400, "Chunked applied more than once");
    }
  }
  // The framing is known, but a coding before it (gzip, ...) is one we do not
  // decode: "A server that receives a request message with a transfer coding
  // it does not understand SHOULD respond with 501 (Not Implemented)" (§6.1).
  if (codings.length > 1) {
    throw new HttpError(501, `Unsupported transfer coding: ${codings[0]}`);
  }
}

/**
 * The value of a Content-Length field, or `undefined` when it is invalid.
 * Content-Length = 1*DIGIT (RFC 9110 §8.6): no sign, no spaces inside, no
 * hex. A list of identical values (a repeated header, joined with commas) is
 * that value (RFC 9112 §6.3, item 5); identical means the same digits, so
 * `5, 05` is refused. A number beyond 2^53 is `Infinity` (over any limit).
 */
export function parseContentLength(value: string): number | undefined {
  let digits: string | undefined;
  for (const element of value.split(",")) {
    const trimmed = trimSpaces(element);
    if (!/^[0-9]+$/.test(trimmed)) return undefined;
    if (digits === undefined) digits = trimmed;
    else if (trimmed !== digits) return undefined;
  }
  const significant = digits!.replace(/^0+(?=.)/, "");
  return significant.length > 15 ? Infinity : Number(significant);
}

/**
 * Whether a request's Expect asks for 100 Continue; throws `HttpError` 417
 * for any other expectation ("A server that receives an Expect field value
 * containing a member other than 100-continue MAY respond with a 417",
 * RFC 9110 §10.1.1).
 */
function expects100Continue(
  value: string | null,
  version: "HTTP/1.1" | "HTTP/1.0",
): boolean {
  if (value === null) return false;
  let found = false;
  for (const element of value.split(",")) {
    const expectation = trimSpaces(element).toLowerCase();
    if (expectation === "") continue;
    if (expectation !== "100-continue") {
      throw new HttpError(417, "Unsupported expectation");
    }
    found = true;
  }
  // "A server that receives a 100-continue expectation in an HTTP/1.0
  // request MUST ignore that expectation" (RFC 9110 §10.1.1).
  return found && version === "HTTP/1.1";
}

/** Whether the connection persists after the response (RFC 9112 §9.3). */
function persists(
  connection: string | null,
  version: "HTTP/1.1" | "HTTP/1.0",
): boolean {
  const options = headerTokens(connection);
  // "If the "close" connection option is present, the connection will not
  // persist after the current response; else, If the received protocol is
  // HTTP/1.1 (or later), the connection will persist ...; else, If the
  // received protocol is HTTP/1.0, the "keep-alive" connection option is
  // present, ... the connection will persist".
  if (options.includes("close")) return false;
  return version === "HTTP/1.1" || options.includes("keep-alive");
}

/**
 * The interim response that lets a client send a body it held back
 * (RFC 9110 §15.2.1). Shared: write it, do not change it.
 */
export const CONTINUE_RESPONSE: Uint8Array = encoder.encode(
  "HTTP/1.1 100 Continue\r\n\r\n",
);

/** What one {@linkcode BodyDecoder.push} found. */
export interface BodyChunks {
  /**
   * The body content in the pushed bytes, as one piece whatever the
   * chunking: a view into them when it is one run of bytes (copy it before
   * the input buffer is reused), else the runs joined in a new array, so
   * that a body in 1-byte chunks costs one array per push, not one per
   * chunk. Empty when the push held no content.
   */
  data: Uint8Array;
  /** How many bytes of the input belong to this body; the rest is the next request. */
  consumed: number;
  /** Whether the body is complete. */
  done: boolean;
}

const enum State {
  Length,
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  EndLf,
  Done,
}

/**
 * Decodes one request body from the bytes after its head, as framed by
 * {@linkcode decideRequestFraming}: a byte count, or the chunked coding
 * (RFC 9112 §7.1) with its extensions and trailer fields checked and
 * dropped. Strict: a chunk line must be exactly `1*HEXDIG [chunk-ext] CRLF`
 * and chunk data must be followed by CRLF; anything else is a 400. Errors
 * are `HttpError`s (400, 413 past `maxBodySize` or `maxChunkExtensionSize`,
 * 431 past `maxTrailerSize`) and stay: every later push throws the same.
 */
export class BodyDecoder {
  #state: State;
  #limits: Http1Limits;
  #maxBody: number;
  /** Bytes left in the body (length framing) or in the current chunk. */
  #remaining = 0;
  /** Content bytes received so far. */
  #received = 0;
  #sizeDigits = 0;
  #extensionBytes = 0;
  #trailerBytes = 0;
  /** The current chunk extension or trailer line, bounded by its limit. */
  #line = "";
  /** The error that ended decoding; every later call throws it again. */
  #failure: { error: unknown } | undefined;
  /** Where the data of the current push lies: start, end, start, end, ... */
  #runs: number[] = [];

  /** Starts decoding a body framed as `framing`. */
  constructor(
    framing: BodyFraming,
    limits: Http1Limits = DEFAULT_HTTP1_LIMITS,
  ) {
    this.#limits = limits;
    // Beyond 2^53 a number no longer counts bytes exactly.
    this.#maxBody = Math.min(limits.maxBodySize, Number.MAX_SAFE_INTEGER);
    if (framing.type === "chunked") {
      this.#state = State.Size;
    } else {
      if (framing.length > this.#maxBody) {
        throw new HttpError(413, "Request body too large");
      }
      this.#remaining = framing.length;
      this.#state = framing.length === 0 ? State.Done : State.Length;
    }
  }

  /** Whether the whole body has been decoded. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /** The content bytes decoded so far. */
  get received(): number {
    return this.#received;
  }

  /**
   * Decodes what it can of `input`. Once the body is complete, `consumed`
   * stops at its end and later pushes consume nothing.
   */
  push(input: Uint8Array): BodyChunks {
    if (this.#failure) throw this.#failure.error;
    try {
      if (this.#state === State.Length) {
        const n = Math.min(this.#remaining, input.length);
        this.#remaining -= n;
        this.#received += n;
        if (this.#remaining === 0) this.#state = State.Done;
        return { data: input.subarray(0, n), consumed: n, done: this.done };
      }
      const consumed = this.#pushChunked(input);
      return { data: this.#join(input), consumed, done: this.done };
    } catch (error) {
      this.#failure = { error };
      throw error;
    }
  }

  /**
   * Says that the input has ended (the peer closed); throws `HttpError` 400
   * unless the body was complete.
   */
  finish(): void {
    if (this.#failure) throw this.#failure.error;
    if (this.#state !== State.Done) {
      const error = new HttpError(400, "Incomplete request body");
      this.#failure = { error };
      throw error;
    }
  }

  /** Decodes chunked framing; the data's runs go to `#runs`. */
  #pushChunked(input: Uint8Array): number {
    const runs = this.#runs;
    runs.length = 0;
    let i = 0;
    while (i < input.length) {
      const state = this.#state;
      if (state === State.Done) return i;
      if (state === State.Data) {
        const n = Math.min(this.#remaining, input.length - i);
        runs.push(i, i + n);
        this.#remaining -= n;
        this.#received += n;
        i += n;
        if (this.#remaining === 0) this.#state = State.DataCr;
        continue;
      }
      this.#step(input[i++]);
    }
    return i;
  }

  /** The runs of data `#pushChunked` found in `input`, as one array. */
  #join(input: Uint8Array): Uint8Array {
    const runs = this.#runs;
    if (runs.length === 0) return EMPTY;
    if (runs.length === 2) return input.subarray(runs[0], runs[1]);
    let size = 0;
    for (let r = 0; r < runs.length; r += 2) size += runs[r + 1] - runs[r];
    const out = new Uint8Array(size);
    let at = 0;
    for (let r = 0; r < runs.length; r += 2) {
      const from = runs[r];
      const to = runs[r + 1];
      // A short run is copied byte by byte: a view for `set` would be the
      // very per-chunk object this avoids.
      if (to - from < 64) {
        for (let i = from; i < to; i++) out[at++] = input[i];
      } else {
        out.set(input.subarray(from, to), at);
        at += to - from;
      }
    }
    runs.length = 0;
    return out;
  }

  /** Takes one framing byte of a chunked body. */
  #step(byte: number): void {
    switch (this.#state) {
      case State.Size: {
        const digit = hexValue(byte);
        if (digit !== -1) {
          // chunk-size = 1*HEXDIG; more than 16 digits cannot be a 64-bit
          // size, even with leading zeros.
          if (++this.#sizeDigits > 16) {
            throw new HttpError(400, "Chunk size too long");
          }
          const size = this.#remaining * 16 + digit;
          if (size > Number.MAX_SAFE_INTEGER) {
            throw new HttpError(400, "Chunk size overflows");
          }
          // Checked on the size, before any of the chunk's data is kept.
          if (this.#received + size > this.#maxBody) {
            throw new HttpError(413, "Request body too large");
          }
          this.#remaining = size;
        } else if (this.#sizeDigits === 0) {
          throw new HttpError(400, "Malformed chunk size");
        } else if (byte === CR) {
          this.#state = State.SizeLf;
        } else if (byte === LF) {
          throw new HttpError(400, "Bare LF in chunk line");
        } else if (byte === 59 /* ; */ || byte === SP || byte === HTAB) {
          // BWS ";" starts the chunk extensions (§7.1.1); a space with no
          // ";" after it is refused when the line ends.
          this.#line = "";
          this.#state = State.Extension;
          this.#extension(byte);
        } else {
          throw new HttpError(400, "Malformed chunk size");
        }
        return;
      }
      case State.Extension:
        if (byte === CR) {
          // "A recipient MUST ignore unrecognized chunk extensions" (§7.1.1):
          // checked for grammar, then dropped.
          if (!CHUNK_EXT.test(this.#line)) {
            throw new HttpError(400, "Malformed chunk extension");
          }
          this.#line = "";
          this.#state = State.SizeLf;
        } else {
          this.#extension(byte);
        }
        return;
      case State.SizeLf:
        if (byte !== LF) throw new HttpError(400, "Bare CR in chunk line");
        this.#sizeDigits = 0;
        this.#state = this.#remaining === 0 ? State.TrailerStart : State.Data;
        return;
      case State.DataCr:
        // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF: the data is
        // exactly chunk-size bytes, and CRLF follows (§7.1).
        if (byte !== CR) {
          throw new HttpError(400, "Chunk data not followed by CRLF");
        }
        this.#state = State.DataLf;
        return;
      case State.DataLf:
        if (byte !== LF) {
          throw new HttpError(400, "Chunk data not followed by CRLF");
        }
        this.#state = State.Size;
        return;
      case State.TrailerStart:
      case State.Trailer:
      case State.TrailerLf:
      case State.EndLf:
        this.#trailer(byte);
        return;
    }
  }

  /** Takes one byte of a chunk extension, counted against its limit. */
  #extension(byte: number): void {
    if (byte === LF) throw new HttpError(400, "Bare LF in chunk line");
    // Extensions are tokens, "=", quoted strings and whitespace: no control
    // characters other than HTAB, no DEL.
    if ((byte < SP && byte !== HTAB) || byte === 127) {
      throw new HttpError(400, "Malformed chunk extension");
    }
    if (++this.#extensionBytes > this.#limits.maxChunkExtensionSize) {
      throw new HttpError(413, "Chunk extensions too large");
    }
    this.#line += String.fromCharCode(byte);
  }

  /**
   * Takes one byte of the trailer section: `*( field-line CRLF ) CRLF`
   * (§7.1.2). Trailer fields are checked for syntax and dropped: "A
   * recipient MUST NOT merge a received trailer field into the header
   * section unless its corresponding header field definition explicitly
   * permits and instructs how" (§7.1.2), and none that matter here does.
   */
  #trailer(byte: number): void {
    const state = this.#state;
    // Only field lines count: the empty line that ends the body is free.
    if (
      (state !== State.TrailerStart || byte !== CR) && state !== State.EndLf &&
      ++this.#trailerBytes > this.#limits.maxTrailerSize
    ) {
      throw new HttpError(431, "Trailer section too large");
    }
    switch (state) {
      case State.TrailerStart:
        if (byte === CR) {
          this.#state = State.EndLf;
          return;
        }
        if (byte === SP || byte === HTAB) {
          throw new HttpError(400, "Obsolete line folding in trailer section");
        }
        this.#line = "";
        this.#state = State.Trailer;
        this.#trailerByte(byte);
        return;
      case State.Trailer:
        if (byte === CR) {
          if (!TRAILER_LINE.test(this.#line)) {
            throw new HttpError(400, "Malformed trailer field");
          }
          this.#line = "";
          this.#state = State.TrailerLf;
        } else {
          this.#trailerByte(byte);
        }
        return;
      case State.TrailerLf:
        if (byte !== LF) throw new HttpError(400, "Bare CR in trailer section");
        this.#state = State.TrailerStart;
        return;
      case State.EndLf:
        // The empty line that ends the chunked body; anything else (such as
        // the next request where "0\r\n" lacked its final CRLF) is refused.
        if (byte !== LF) {
          throw new HttpError(400, "Chunked body not ended by CRLF");
        }
        this.#state = State.Done;
        return;
    }
  }

  #trailerByte(byte: number): void {
    if (byte === LF) throw new HttpError(400, "Bare LF in trailer section");
    if ((byte < SP && byte !== HTAB) || byte === 127) {
      throw new HttpError(400, "Malformed trailer field");
    }
    this.#line += String.fromCharCode(byte);
  }
}

/** The value of a hex digit's byte, or -1. */
function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  const lower = byte | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/**
 * Whether a response to `method` with `status` has no content: HEAD, 1xx,
 * 204 and 304 (RFC 9110 §6.4.1, RFC 9112 §6.3). The method is the request
 * line's own token: methods are case-sensitive (RFC 9110 §9.1), so `head`
 * is another method than HEAD, and its response has a body.
 */
export function hasNoContent(method: string, status: number): boolean {
  return method === "HEAD" || status < 200 || status === 204 ||
    status === 304;
}

/** How a response body goes on the wire. */
export type ResponseFraming =
  /** No body bytes at all: HEAD, 1xx, 204, 304 (RFC 9112 §6.3, item 1). */
  | { readonly type: "none" }
  /** Exactly `length` bytes, announced by Content-Length. */
  | { readonly type: "length"; readonly length: number }
  /** The chunked coding (HTTP/1.1 only). */
  | { readonly type: "chunked" }
  /** Until the connection closes (HTTP/1.0 with no known length, §6.3, item 8). */
  | { readonly type: "close" };

/** The request-side facts that shape a response's head. */
export interface ResponseHeadOptions {
  /** The request's method; a response to HEAD has no body. */
  method: string;
  /** The request's version, from {@linkcode RequestFraming.version}. */
  version: "HTTP/1.1" | "HTTP/1.0";
  /**
   * Whether the connection may stay open after this response: the request's
   * {@linkcode RequestFraming.keepAlive}, and false when the server is
   * shutting down or did not read the request body to its end.
   */
  keepAlive: boolean;
  /**
   * The exact length of the body, when the caller knows it (it has read the
   * whole body); it wins over the response's Content-Length header.
   */
  bodyLength?: number;
  /**
   * A Date header value (IMF-fixdate, as `Date.prototype.toUTCString`
   * gives), added unless the response has one (RFC 9110 §6.6.1).
   */
  date?: string;
}

/** A serialized response head, with the framing its body must follow. */
export interface SerializedResponseHead {
  /** The status line and header lines, ending with the empty line. */
  bytes: Uint8Array;
  framing: ResponseFraming;
  /** Whether the connection may carry another request once the body is written. */
  keepAlive: boolean;
}

// Hop-by-hop fields the response's own framing and connection handling
// decide (RFC 9110 §7.6.1); what the app set for them is not sent. Upgrade
// stays: a 426 "MUST send an Upgrade header field" (RFC 9110 §15.5.22).
const HOP_BY_HOP = new Set([
  "connection",
  "content-length",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
]);

const NONE: ResponseFraming = Object.freeze({ type: "none" });
const CHUNKED_RESPONSE: ResponseFraming = Object.freeze({ type: "chunked" });
const CLOSE: ResponseFraming = Object.freeze({ type: "close" });

/**
 * Serializes a `Response`'s status line and headers for an HTTP/1.x client
 * and decides how its body is framed:
 *
 * - HEAD, 1xx, 204 and 304 have no body. HEAD and 304 keep a valid
 *   Content-Length the app set (it is the length a GET would have had,
 *   RFC 9110 §8.6); 1xx and 204 never carry Content-Length or
 *   Transfer-Encoding (RFC 9110 §8.6, RFC 9112 §6.1).
 * - Otherwise the length is `bodyLength` when given, 0 for a null body,
 *   else the app's Content-Length if it is valid (an invalid one is
 *   dropped); with a length: Content-Length. Without one: chunked for
 *   HTTP/1.1, and for HTTP/1.0 a body delimited by closing the connection.
 * - The app's Transfer-Encoding, Connection, Keep-Alive, TE, Trailer and
 *   Proxy-Connection are dropped: this function owns the framing. A
 *   `connection: close` from the app is honoured. When the app's length
 *   turns out wrong, {@linkcode ResponseBodyEncoder} throws and the caller
 *   closes the connection, so a client is never left out of step.
 * - `connection: close` is sent whenever the connection will not persist,
 *   `connection: keep-alive` to an HTTP/1.0 client when it will; after a
 *   1xx the connection is closed (an interim response is not an answer).
 *
 * The status line says HTTP/1.1 even to HTTP/1.0 clients (RFC 9110 §2.5).
 * Header values are written as their latin1 bytes (RFC 9110 §5.5). Throws a
 * `TypeError` for `Response.error()` (status 0).
 */
export function serializeResponseHead(
  response: Response,
  options: ResponseHeadOptions,
): SerializedResponseHead {
  const status = response.status;
  if (status < 100 || status > 999) {
    throw new TypeError(`A response with status ${status} cannot be sent`);
  }
  const headers = response.headers;
  let keepAlive = options.keepAlive && status >= 200 &&
    !headerTokens(headers.get("connection")).includes("close");
  const declaredValue = headers.get("content-length");
  let declared = declaredValue === null
    ? undefined
    : parseContentLength(declaredValue);
  if (declared === Infinity) declared = undefined;
  let framing: ResponseFraming;
  let contentLength: number | undefined;
  if (hasNoContent(options.method, status)) {
    framing = NONE;
    if (options.method === "HEAD" || status === 304) {
      contentLength = declared ?? options.bodyLength;
    }
    if (status === 204 || status < 200) contentLength = undefined;
  } else {
    contentLength = options.bodyLength ??
      (response.body === null ? 0 : declared);
    if (contentLength !== undefined) {
      framing = { type: "length", length: contentLength };
    } else if (options.version === "HTTP/1.1") {
      framing = CHUNKED_RESPONSE;
    } else {
      framing = CLOSE;
      keepAlive = false;
    }
  }
  let head = `HTTP/1.1 ${status} ${
    response.statusText || STATUS_TEXT[status] || ""
  }\r\n`;
  if (options.date !== undefined && !headers.has("date")) {
    head += `date: ${options.date}\r\n`;
  }
  for (const [name, value] of headers) {
    if (!HOP_BY_HOP.has(name)) head += `${name}: ${value}\r\n`;
  }
  if (contentLength !== undefined) {
    head += `content-length: ${contentLength}\r\n`;
  } else if (framing === CHUNKED_RESPONSE) {
    head += "transfer-encoding: chunked\r\n";
  }
  const connection: string[] = [];
  if (!keepAlive) connection.push("close");
  else if (options.version === "HTTP/1.0") connection.push("keep-alive");
  // "A sender of Upgrade MUST also send an "Upgrade" connection option"
  // (RFC 9110 §7.8).
  if (headers.has("upgrade")) connection.push("upgrade");
  if (connection.length > 0) head += `connection: ${connection.join(", ")}\r\n`;
  head += "\r\n";
  const bytes = new Uint8Array(head.length);
  latin1Into(head, bytes);
  return { bytes, framing, keepAlive };
}

/**
 * The last chunk and the empty trailer section that end a chunked body
 * (RFC 9112 §7.1). Shared: write it, do not change it.
 */
export const LAST_CHUNK: Uint8Array = encoder.encode("0\r\n\r\n");

/**
 * One chunk of the chunked coding, `<hex size>\r\n<data>\r\n`, as one copy
 * (one write). Empty data gives empty bytes: a zero-size chunk would be the
 * last chunk and end the body early.
 */
export function encodeChunk(data: Uint8Array): Uint8Array {
  if (data.length === 0) return EMPTY;
  const size = data.length.toString(16);
  const out = new Uint8Array(size.length + data.length + 4);
  for (let i = 0; i < size.length; i++) out[i] = size.charCodeAt(i);
  out[size.length] = CR;
  out[size.length + 1] = LF;
  out.set(data, size.length + 2);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

/**
 * Frames a response body's chunks as its {@linkcode ResponseFraming} says.
 * With a length, the body must be exactly that long: a chunk that would go
 * past it, or an end short of it, throws a `RangeError` (nothing of the
 * chunk is returned), after which the caller closes the connection; the
 * client then sees a cut message rather than one that silently reads into
 * the next response. With no body (HEAD, 204, 304), chunks are dropped.
 */
export class ResponseBodyEncoder {
  #framing: ResponseFraming;
  #written = 0;

  /** Starts a body framed as `framing`. */
  constructor(framing: ResponseFraming) {
    this.#framing = framing;
  }

  /** The bytes to write for one chunk of the body (possibly empty). */
  encode(chunk: Uint8Array): Uint8Array {
    const framing = this.#framing;
    switch (framing.type) {
      case "none":
        return EMPTY;
      case "chunked":
        return encodeChunk(chunk);
      case "close":
        return chunk;
      case "length":
        if (this.#written + chunk.length > framing.length) {
          throw new RangeError(
            `The response body is longer than its content-length of ${framing.length}`,
          );
        }
        this.#written += chunk.length;
        return chunk;
    }
  }

  /** The bytes that end the body: the last chunk when chunked, else none. */
  end(): Uint8Array {
    const framing = this.#framing;
    if (framing.type === "chunked") return LAST_CHUNK;
    if (framing.type === "length" && this.#written < framing.length) {
      throw new RangeError(
        `The response body is shorter than its content-length of ${framing.length}`,
      );
    }
    return EMPTY;
  }
}

/**
 * A whole plain-text response for a refused request, ending with
 * `connection: close`, as one write. The body is the error's message (none
 * for HEAD); the error's headers are added.
 */
export function serializeErrorResponse(
  error: HttpError,
  options: { method?: string; date?: string } = {},
): Uint8Array {
  const body = encoder.encode(error.message);
  const response = new Response(null, {
    status: error.status,
    headers: { "content-type": "text/plain; charset=utf-8", ...error.headers },
  });
  const { bytes, framing } = serializeResponseHead(response, {
    method: options.method ?? "GET",
    version: "HTTP/1.1",
    keepAlive: false,
    bodyLength: body.length,
    date: options.date,
  });
  if (framing.type === "none") return bytes;
  const out = new Uint8Array(bytes.length + body.length);
  out.set(bytes);
  out.set(body, bytes.length);
  return out;
}

/** Reason phrases (RFC 9110 §15, RFC 6585), for responses without a statusText. */
const STATUS_TEXT: Readonly<Record<number, string>> = Object.freeze({
  100: "Continue",
  101: "Switching Protocols",
  103: "Early Hints",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
});
