/**
 * A hand-driven WebSocket and HTTP/1.1 client for tests: it writes exactly
 * the bytes a test builds (masked, fragmented, chopped into small writes) and
 * reads the server's frames and HTTP answers (heads, Content-Length and
 * chunked bodies) with its own minimal reader, independent of src/ (frames
 * through the wire format of `_wire.ts`). Every read and write has a
 * deadline (`timeout`), so that a frame that never comes fails the test in
 * seconds instead of hanging it.
 */

import assert from "node:assert/strict";
import { concat, deadline, sleep, WAIT_LIMIT } from "./_util.ts";
import {
  frame,
  headerSizeOf,
  readHeader,
  unmask,
  type WireFrame,
} from "./_wire.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
export const GOOD_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

export function upgradeRequest(
  port: number,
  headers: Record<string, string> = {},
  requestLine = "GET /chat?x=1 HTTP/1.1",
): string {
  const all: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": GOOD_KEY,
    "Sec-WebSocket-Version": "13",
    ...headers,
  };
  let head = `${requestLine}\r\n`;
  for (const [name, value] of Object.entries(all)) {
    if (value !== "") head += `${name}: ${value}\r\n`;
  }
  return head + "\r\n";
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  body: string;
}

export class RawClient implements AsyncDisposable {
  readonly conn: Deno.Conn;
  /**
   * How long any one wait for the peer (bytes to read, a write to be taken)
   * may take, in ms; when it passes, the call fails with what it waited for
   * and the connection is closed.
   */
  timeout: number;
  #buffer = new Uint8Array(0);
  #eof = false;

  constructor(conn: Deno.Conn, timeout = WAIT_LIMIT) {
    this.conn = conn;
    this.timeout = timeout;
  }

  /** Connects without sending anything. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connects and completes a valid opening handshake. */
  static async open(
    port: number,
    headers: Record<string, string> = {},
    conn?: Deno.Conn,
  ): Promise<RawClient> {
    const client = conn ? new RawClient(conn) : await RawClient.connect(port);
    try {
      await client.write(upgradeRequest(port, headers));
      const answer = await client.readHead();
      if (answer.status !== 101) {
        throw new Error(`Handshake failed with ${answer.status}`);
      }
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** Writes all of `bytes`; fails if the peer stops taking them. */
  async write(bytes: Uint8Array | string): Promise<void> {
    const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
    let written = 0;
    while (written < data.length) {
      written += await this.#wait(
        this.conn.write(data.subarray(written)),
        "the peer to take the bytes written (it stopped reading?)",
      );
    }
  }

  /** Writes `bytes` in pieces of `size` bytes, one write each. */
  async writeChopped(bytes: Uint8Array, size: number): Promise<void> {
    for (let i = 0; i < bytes.length; i += size) {
      await this.write(bytes.subarray(i, i + size));
      await sleep(0);
    }
  }

  /**
   * Waits `timeout` ms at most for `promise`; past that, closes the
   * connection (so that no read or write stays pending) and fails with what
   * it waited for.
   */
  #wait<T>(promise: Promise<T>, what: string): Promise<T> {
    return deadline(promise, what, this.timeout, () => this.close());
  }

  /** Reads into `into`: how many bytes, or null at EOF (or a reset). */
  async #read(into: Uint8Array, what: string): Promise<number | null> {
    if (this.#eof) return null;
    let n: number | null;
    try {
      n = await this.#wait(this.conn.read(into), what);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) n = null;
      else throw error;
    }
    if (n === null) this.#eof = true;
    return n;
  }

  /** Reads more bytes into the buffer; false at EOF. */
  async #fill(what: string): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    const n = await this.#read(chunk, what);
    if (n === null) return false;
    this.#buffer = this.#joined(this.#buffer, chunk.subarray(0, n));
    return true;
  }

  /**
   * Takes the next `n` bytes into a buffer of their own, or null at EOF.
   * What is not buffered yet is read straight into that buffer.
   */
  async #take(n: number, what: string): Promise<Uint8Array | null> {
    if (this.#buffer.length >= n) {
      const out = this.#buffer.slice(0, n);
      this.#buffer = this.#buffer.subarray(n);
      return out;
    }
    const out = new Uint8Array(n);
    out.set(this.#buffer);
    let at = this.#buffer.length;
    this.#buffer = new Uint8Array(0);
    while (at < n) {
      const read = await this.#read(out.subarray(at), what);
      if (read === null) {
        // Keep what came, for a caller that reads on (EOF is EOF).
        this.#buffer = out.slice(0, at);
        return null;
      }
      at += read;
    }
    return out;
  }

  /** `a` then `b`, as one new array. */
  #joined(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
    const joined = new Uint8Array(a.length + b.length);
    joined.set(a);
    joined.set(b, a.length);
    return joined;
  }

  /** `#take`, failing with `eof` as the message at EOF. */
  async #takeAll(n: number, what: string, eof: string): Promise<Uint8Array> {
    const bytes = await this.#take(n, what);
    if (!bytes) throw new Error(eof);
    return bytes;
  }

  /** Reads up to `pattern`, which it drops; fails at EOF with `eof`. */
  async #readUntil(
    pattern: readonly number[],
    what: string,
    eof: string,
  ): Promise<string> {
    let end: number;
    while ((end = indexOfBytes(this.#buffer, pattern)) === -1) {
      if (!(await this.#fill(what))) throw new Error(eof);
    }
    const text = decoder.decode(this.#buffer.subarray(0, end));
    this.#buffer = this.#buffer.subarray(end + pattern.length);
    return text;
  }

  /**
   * Reads a head (a client's request, or an answer whose bytes matter) as
   * it came: its bytes up to and including the empty line that ends it;
   * fails at EOF.
   */
  async readHeadBytes(): Promise<Uint8Array> {
    let end: number;
    while ((end = indexOfBytes(this.#buffer, CRLF_CRLF)) === -1) {
      if (!(await this.#fill("a head"))) {
        throw new Error("EOF before the end of the head");
      }
    }
    return (await this.#take(end + CRLF_CRLF.length, "a head"))!;
  }

  /** Reads one line, up to CRLF (dropped); fails at EOF. */
  readLine(): Promise<string> {
    return this.#readUntil(CRLF, "a line", "EOF inside a line");
  }

  /** Reads an HTTP answer head: the status and the header fields. */
  async #readStatusAndHeaders(): Promise<
    { status: number; headers: Headers }
  > {
    const text = await this.#readUntil(
      CRLF_CRLF,
      "an HTTP answer head",
      "EOF before the answer head",
    );
    const [statusLine, ...lines] = text.split("\r\n");
    const headers = new Headers();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { status: Number(statusLine.split(" ")[1]), headers };
  }

  /**
   * Reads an HTTP answer head and its body by Content-Length (none without
   * one: the 101 of a handshake is followed by frames).
   */
  async readHead(): Promise<HttpAnswer> {
    const { status, headers } = await this.#readStatusAndHeaders();
    const length = Number(headers.get("content-length") ?? 0);
    const body = length > 0
      ? decoder.decode(
        await this.#takeAll(
          length,
          "the answer body",
          "EOF inside the answer body",
        ),
      )
      : "";
    return { status, headers, body };
  }

  /**
   * Reads one whole HTTP/1.1 answer, framed as RFC 9112 §6.3 says: no body
   * after a HEAD (`method`) or for 1xx, 204 and 304; else a chunked body
   * (decoded here; no trailer fields expected), a Content-Length body, or
   * everything until the server closes.
   */
  async readResponse(method = "GET"): Promise<HttpAnswer> {
    const { status, headers } = await this.#readStatusAndHeaders();
    if (
      method === "HEAD" || status < 200 || status === 204 || status === 304
    ) {
      return { status, headers, body: "" };
    }
    const takeBody = async (n: number) =>
      decoder.decode(
        await this.#takeAll(n, "the answer body", "EOF inside a body"),
      );
    if (headers.get("transfer-encoding") === "chunked") {
      let body = "";
      while (true) {
        const size = parseInt(await this.readLine(), 16);
        if (size === 0) break;
        body += await takeBody(size);
        assert.equal(await this.readLine(), "", "CRLF after chunk data");
      }
      assert.equal(
        await this.readLine(),
        "",
        "the empty line after the last chunk",
      );
      return { status, headers, body };
    }
    const length = headers.get("content-length");
    if (length !== null) {
      return { status, headers, body: await takeBody(Number(length)) };
    }
    return { status, headers, body: await this.readAll() };
  }

  /** Everything (as text) until the peer closes TCP. */
  async readAll(): Promise<string> {
    return decoder.decode(await this.readAllBytes());
  }

  /** Every byte until the peer closes TCP. */
  async readAllBytes(): Promise<Uint8Array> {
    while (await this.#fill("the peer to close TCP or send more")) {
      // Gather.
    }
    const all = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return all;
  }

  /**
   * Reads one frame from the peer (its payload unmasked, in a buffer of its
   * own), or null at EOF. A payload beyond what is buffered is read straight
   * into that buffer, so that a large one costs no copies here.
   */
  async readFrame(): Promise<WireFrame | null> {
    const start = await this.#take(2, "a frame");
    if (!start) return null;
    const rest = "the rest of a frame";
    const eof = "EOF inside a frame";
    const more = await this.#takeAll(headerSizeOf(start[1]) - 2, rest, eof);
    const header = readHeader(this.#joined(start, more))!;
    const payload = await this.#takeAll(header.length, rest, eof);
    unmask(payload, header.key);
    return { ...header, payload, size: header.headerSize + header.length };
  }

  /**
   * Reads frames until a close frame and returns the frames before it and
   * the close code and reason; then expects the server to close TCP.
   */
  async readUntilClose(): Promise<
    { frames: WireFrame[]; code: number | null; reason: string; eof: boolean }
  > {
    const frames: WireFrame[] = [];
    while (true) {
      const f = await this.readFrame();
      if (!f) return { frames, code: null, reason: "", eof: true };
      if (f.opcode !== 8) {
        frames.push(f);
        continue;
      }
      const code = f.payload.length >= 2
        ? (f.payload[0] << 8) | f.payload[1]
        : 1005;
      const reason = decoder.decode(f.payload.subarray(2));
      // Answer the close as a client would (§5.5.1); the server ignores it
      // when its close was itself the answer.
      await this.write(frame(8, f.payload.subarray(0, 2))).catch(() => {});
      const eof = await this.readEof();
      // Like a well-behaved client, close TCP once the server has (§7.1.1).
      if (eof) this.close();
      return { frames, code, reason, eof };
    }
  }

  /**
   * Whether the peer closes TCP next (true) rather than sending more; fails
   * when it does neither in time.
   */
  async readEof(): Promise<boolean> {
    if (this.#buffer.length > 0) return false;
    return !(await this.#fill("the peer to close TCP or send more"));
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

const CRLF = [13, 10];
const CRLF_CRLF = [13, 10, 13, 10];

/** Where `pattern` first occurs in `bytes`, or -1. */
function indexOfBytes(bytes: Uint8Array, pattern: readonly number[]): number {
  for (let i = 0; i + pattern.length <= bytes.length; i++) {
    if (pattern.every((byte, j) => bytes[i + j] === byte)) return i;
  }
  return -1;
}

/** An HTTP answer as it came on the wire: status, header lines, body bytes. */
export interface WireAnswer {
  status: number;
  /** Every header line, in order, the name lower-cased, the value latin1. */
  lines: [name: string, value: string][];
  body: Uint8Array;
}

/**
 * Splits the bytes of an HTTP answer into its parts, the head read as
 * latin1 (every byte one character), as header values are byte strings.
 */
export function parseAnswer(bytes: Uint8Array): WireAnswer {
  const end = indexOfBytes(bytes, CRLF_CRLF);
  assert.notEqual(end, -1, "the answer has a complete head");
  const head = String.fromCharCode(...bytes.subarray(0, end));
  const [statusLine, ...rest] = head.split("\r\n");
  const lines = rest.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return {
    status: Number(statusLine.split(" ")[1]),
    lines,
    body: bytes.subarray(end + 4),
  };
}

/** The values of an answer's header lines named `name`. */
export function headerValues(answer: WireAnswer, name: string): string[] {
  return answer.lines.filter(([n]) => n === name).map(([, value]) => value);
}

export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Sends `message` as a text frame and returns the text that comes back. */
export async function roundTrip(
  client: RawClient,
  message: string,
): Promise<string> {
  await client.write(frame(1, message));
  const echoed = await deadline(client.readFrame(), "echo");
  assert.ok(echoed, "an echo, not the end of the connection");
  return text(echoed.payload);
}

/** A 256 KiB buffer of masked 1-byte text frames (7 bytes each): a flood. */
export function tinyFrames(): Uint8Array {
  const one = frame(1, "x");
  return concat(
    Array.from({ length: Math.floor(256 * 1024 / one.length) }, () => one),
  );
}
