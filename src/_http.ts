/** An HTTP/1.1 request head, parsed from bytes (RFC 9112 §3, §5). */
export interface RequestHead {
  method: string;
  target: string;
  /** The version from the request line, such as `"HTTP/1.1"`. */
  version: string;
  headers: Headers;
}

/** A failure to be answered with an HTTP status and a short plain text. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.headers = headers;
  }
}

const latin1 = new TextDecoder("latin1");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP\/\d\.\d)$/;

/**
 * Where the head ends: the index just past the first CRLF CRLF at or after
 * `from`, or -1.
 */
export function findHeadEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(from, 3); i < bytes.length; i++) {
    if (
      bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 &&
      bytes[i - 3] === 13
    ) {
      return i + 1;
    }
  }
  return -1;
}

/**
 * Splits a complete head, ending in CRLF CRLF, into its first line and its
 * headers; `fail` makes the error for a malformed line.
 */
function _splitHead(
  head: Uint8Array | string,
  fail: (message: string) => Error,
): { first: string; headers: Headers } {
  const text = typeof head === "string" ? head : decodeHead(head);
  const lines = text.split("\r\n");
  // The head ends with an empty line, so the last two entries are empty.
  lines.length -= 2;
  const headers = new Headers();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    // No obsolete line folding, no space before the colon (RFC 9112 §5).
    if (colon <= 0 || !TOKEN.test(name)) throw fail("Malformed header line");
    try {
      headers.append(name, line.slice(colon + 1).trim());
    } catch {
      throw fail("Malformed header value");
    }
  }
  return { first: lines[0], headers };
}

/** A head's bytes as text, one character per byte (latin1). */
export function decodeHead(bytes: Uint8Array): string {
  return latin1.decode(bytes);
}

/**
 * Parses a complete head, as bytes or as {@linkcode decodeHead} text, ending
 * in CRLF CRLF; throws `HttpError` 400.
 */
export function parseRequestHead(head: Uint8Array | string): RequestHead {
  const { first, headers } = _splitHead(
    head,
    (message) => new HttpError(400, message),
  );
  const match = REQUEST_LINE.exec(first);
  if (!match) throw new HttpError(400, "Malformed request line");
  return { method: match[1], target: match[2], version: match[3], headers };
}

const REASONS: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Serializes a `Response` as an HTTP/1.1 message that ends the connection. */
export async function serializeResponse(
  response: Response,
  withBody = true,
): Promise<Uint8Array> {
  const body = withBody && response.body
    ? new Uint8Array(await response.arrayBuffer())
    : new Uint8Array(0);
  const reason = response.statusText || REASONS[response.status] || "";
  let head = `HTTP/1.1 ${response.status} ${reason}\r\n`;
  for (const [name, value] of response.headers) {
    if (name === "content-length" || name === "transfer-encoding") continue;
    if (name === "connection") continue;
    head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const out = new Uint8Array(head.length + body.length);
  _latin1Into(head, out);
  out.set(body, head.length);
  return out;
}

/**
 * Writes a head as latin1, one byte per code unit: header values and the
 * reason phrase are byte strings (RFC 9110 §5.5), not UTF-8 text.
 */
function _latin1Into(head: string, out: Uint8Array): void {
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
}

/** Serializes a `101 Switching Protocols` head with the given headers. */
export function serializeSwitchingProtocols(headers: Headers): Uint8Array {
  let head = "HTTP/1.1 101 Switching Protocols\r\n";
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  head += "\r\n";
  const out = new Uint8Array(head.length);
  _latin1Into(head, out);
  return out;
}

/** An HTTP/1.1 response head, parsed from bytes (RFC 9112 §4). */
export interface ResponseHead {
  /** The version from the status line, such as `"HTTP/1.1"`. */
  version: string;
  status: number;
  /** The reason phrase; may be empty. */
  statusText: string;
  headers: Headers;
}

const STATUS_LINE = /^(HTTP\/\d\.\d) (\d{3})(?: ([\t -~\x80-\xff]*))?$/;

/**
 * Parses a complete response head, ending in CRLF CRLF, as a client reads
 * it; throws a `TypeError` that says what is malformed.
 */
export function parseResponseHead(bytes: Uint8Array): ResponseHead {
  const { first, headers } = _splitHead(
    bytes,
    (message) => new TypeError(message),
  );
  const match = STATUS_LINE.exec(first);
  if (!match) throw new TypeError("Malformed status line");
  return {
    version: match[1],
    status: Number(match[2]),
    statusText: match[3] ?? "",
    headers,
  };
}
