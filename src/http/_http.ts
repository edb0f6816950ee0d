// HTTP/1.1 heads (RFC 9112 §2–§5), with no I/O: what both sides share (field
// syntax, header fields, head bytes as text) and the client's response head.
// The server's request heads and responses are in `_http1.ts`.

/** How a head's header fields are looked up: `Headers`, or `Fields`. */
export interface HeaderFields {
  /** The field's value, repeated lines joined with ", ", or null. */
  get(name: string): string | null;
  has(name: string): boolean;
}

/** An HTTP/1.1 request head, parsed from bytes (RFC 9112 §3, §5). */
export interface RequestHead<H extends HeaderFields = HeaderFields> {
  method: string;
  target: string;
  /** The version from the request line, such as `"HTTP/1.1"`. */
  version: string;
  headers: H;
}

/** RFC 9110 §5.5 field-content: visible bytes, obs-text, spaces and tabs. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * A head's header fields, as `Headers` would hold them but without its
 * cost (a handshake looks up a few fields, then most sockets never make
 * their `Request`): names lower-cased, values without surrounding spaces
 * and tabs.
 */
export class Fields implements HeaderFields, Iterable<[string, string]> {
  /** Name, value, name, value, ... in order. */
  #list: string[] = [];

  /** Adds a field; throws a `TypeError` for a value `Headers` would refuse. */
  append(name: string, value: string): void {
    if (!FIELD_VALUE.test(value)) throw new TypeError("Invalid header value");
    this.#list.push(name.toLowerCase(), value);
  }

  get(name: string): string | null {
    const list = this.#list;
    let value: string | null = null;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] !== name) continue;
      value = value === null ? list[i + 1] : `${value}, ${list[i + 1]}`;
    }
    return value;
  }

  has(name: string): boolean {
    const list = this.#list;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name) return true;
    }
    return false;
  }

  *[Symbol.iterator](): Iterator<[string, string]> {
    const list = this.#list;
    for (let i = 0; i < list.length; i += 2) yield [list[i], list[i + 1]];
  }
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

/** Decodes bytes 0x00–0x7F and 0xA0–0xFF as ISO-8859-1 does. */
const windows1252 = new TextDecoder("latin1");
/** A token's characters, one or more (RFC 9110 §5.6.2), to build patterns. */
export const TOKEN_CHARS = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
/** A whole token: a method, a header name, a subprotocol. */
export const TOKEN: RegExp = new RegExp(`^${TOKEN_CHARS}$`);

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
 * Splits a complete response head, ending in CRLF CRLF, into its first line
 * and its headers; throws a `TypeError` for a malformed line.
 */
function splitHead(head: Uint8Array): { first: string; headers: Fields } {
  const lines = decodeHead(head).split("\r\n");
  // The head ends with an empty line, so the last two entries are empty.
  lines.length -= 2;
  const headers = new Fields();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    // No obsolete line folding, no space before the colon (RFC 9112 §5).
    if (colon <= 0 || !TOKEN.test(name)) {
      throw new TypeError("Malformed header line");
    }
    try {
      headers.append(name, trimSpaces(line.slice(colon + 1)));
    } catch {
      throw new TypeError("Malformed header value");
    }
  }
  return { first: lines[0], headers };
}

/** Removes the spaces and tabs around a field value (RFC 9110 §5.5 OWS). */
export function trimSpaces(value: string): string {
  return trimSpacesIn(value, 0, value.length);
}

/** {@linkcode trimSpaces} of `value`'s characters from `from` to `to`. */
export function trimSpacesIn(value: string, from: number, to: number): string {
  while (from < to && isSpaceOrTab(value.charCodeAt(from))) from++;
  while (to > from && isSpaceOrTab(value.charCodeAt(to - 1))) to--;
  return from === 0 && to === value.length ? value : value.slice(from, to);
}

/**
 * The elements of a comma-separated header value (RFC 9110 §5.6.1), without
 * OWS, lower-cased, empty ones skipped: for token lists such as `Connection`
 * and `Upgrade`.
 */
export function headerTokens(value: string | null): string[] {
  if (!value) return [];
  return value.split(",").map((token) => trimSpaces(token).toLowerCase())
    .filter((token) => token !== "");
}

/**
 * Whether a comma-separated header value (RFC 9110 §5.6.1) has `token` (in
 * lower case) among its elements: `headerTokens(value).includes(token)`
 * without making the list, for the checks every upgrade runs. Letters are
 * compared as ASCII: a head's values are byte strings (one character per
 * byte), where no other character lower-cases to an ASCII letter.
 */
export function hasToken(value: string | null, token: string): boolean {
  if (!value) return false;
  const size = token.length;
  for (let start = 0; start <= value.length;) {
    let end = value.indexOf(",", start);
    if (end === -1) end = value.length;
    let from = start;
    let to = end;
    while (from < to && isSpaceOrTab(value.charCodeAt(from))) from++;
    while (to > from && isSpaceOrTab(value.charCodeAt(to - 1))) to--;
    if (to - from === size) {
      let i = 0;
      while (i < size) {
        const code = value.charCodeAt(from + i);
        // A-Z to a-z.
        const lower = code >= 65 && code <= 90 ? code + 32 : code;
        if (lower !== token.charCodeAt(i)) break;
        i++;
      }
      if (i === size) return true;
    }
    start = end + 1;
  }
  return false;
}

/** Whether a character code is a space or a tab (OWS, RFC 9110 §5.6.3). */
export function isSpaceOrTab(code: number): boolean {
  return code === 32 || code === 9;
}

/**
 * A head's bytes as text, one character per byte (ISO-8859-1, what
 * `Headers` takes as a byte string, RFC 9110 §5.5). `TextDecoder("latin1")`
 * is windows-1252 in the Encoding Standard, which maps 0x80–0x9F to other
 * characters (0x80 to "€"): those bytes, rare in heads, take a slower path.
 */
export function decodeHead(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80 && bytes[i] < 0xa0) return isoLatin1(bytes);
  }
  return windows1252.decode(bytes);
}

function isoLatin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    text += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + 4096) as unknown as number[],
    );
  }
  return text;
}

/**
 * Writes a head as latin1, one byte per code unit: header values and the
 * reason phrase are byte strings (RFC 9110 §5.5), not UTF-8 text.
 */
export function latin1Into(head: string, out: Uint8Array): void {
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
}

/** An HTTP/1.1 response head, parsed from bytes (RFC 9112 §4). */
export interface ResponseHead {
  /** The version from the status line, such as `"HTTP/1.1"`. */
  version: string;
  status: number;
  /** The reason phrase; may be empty. */
  statusText: string;
  headers: Fields;
}

const STATUS_LINE = /^(HTTP\/\d\.\d) (\d{3})(?: ([\t -~\x80-\xff]*))?$/;

/**
 * Parses a complete response head, ending in CRLF CRLF, as a client reads
 * it; throws a `TypeError` that says what is malformed.
 */
export function parseResponseHead(bytes: Uint8Array): ResponseHead {
  const { first, headers } = splitHead(bytes);
  const match = STATUS_LINE.exec(first);
  if (!match) throw new TypeError("Malformed status line");
  return {
    version: match[1],
    status: Number(match[2]),
    statusText: match[3] ?? "",
    headers,
  };
}
