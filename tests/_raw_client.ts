/**
 * A hand-driven WebSocket and HTTP/1.1 client for tests: it writes exactly
 * the bytes a test builds (masked, fragmented, chopped into small writes) and
 * parses the server's frames and HTTP answers (heads, Content-Length and
 * chunked bodies) with its own minimal reader, independent of src/. Every
 * read and write has a deadline (`timeout`), so that a frame that never comes
 * fails the test in seconds instead of hanging it.
 */

import assert from "node:assert/strict";
import { deadline, sleep, WAIT_LIMIT } from "./_util.ts";

export interface RawFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a frame by hand; masks with a fixed key unless `mask` is false. */
export function frame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  options: { fin?: boolean; rsv?: number; mask?: boolean; key?: number[] } = {},
): Uint8Array {
  const data = typeof payload === "string" ? encoder.encode(payload) : payload;
  const mask = options.mask ?? true;
  const key = options.key ?? [0x37, 0xfa, 0x21, 0x3d];
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const out = new Uint8Array(2 + ext + (mask ? 4 : 0) + len);
  out[0] = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) |
    opcode;
  out[1] = (mask ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  const view = new DataView(out.buffer);
  if (ext === 2) view.setUint16(2, len);
  if (ext === 8) view.setBigUint64(2, BigInt(len));
  let at = 2 + ext;
  if (mask) {
    out.set(key, at);
    at += 4;
  }
  for (let i = 0; i < len; i++) out[at + i] = data[i] ^ (mask ? key[i & 3] : 0);
  return out;
}

/** A close frame payload: the code, then the reason. */
export function closePayload(code: number, reason = ""): Uint8Array {
  const text = encoder.encode(reason);
  const out = new Uint8Array(2 + text.length);
  out[0] = code >> 8;
  out[1] = code & 255;
  out.set(text, 2);
  return out;
}

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

  /** Reads more bytes; false at EOF. */
  async #fill(what: string): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.#wait(this.conn.read(chunk), what);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) n = null;
      else throw error;
    }
    if (n === null) {
      this.#eof = true;
      return false;
    }
    const joined = new Uint8Array(this.#buffer.length + n);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = joined;
    return true;
  }

  async #take(n: number, what: string): Promise<Uint8Array | null> {
    while (this.#buffer.length < n) {
      if (!(await this.#fill(what))) return null;
    }
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
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
    while (await this.#fill("the peer to close TCP or send more")) {
      // Gather.
    }
    const all = decoder.decode(this.#buffer);
    this.#buffer = new Uint8Array(0);
    return all;
  }

  /** Reads one frame from the peer, or null at EOF. */
  async readFrame(): Promise<RawFrame | null> {
    const head = await this.#take(2, "a frame");
    if (!head) return null;
    const take = (n: number) =>
      this.#takeAll(n, "the rest of a frame", "EOF inside a frame");
    let length = head[1] & 127;
    if (length === 126) {
      const ext = await take(2);
      length = (ext[0] << 8) | ext[1];
    } else if (length === 127) {
      const ext = await take(8);
      length = Number(new DataView(ext.buffer).getBigUint64(0));
    }
    const masked = (head[1] & 0x80) !== 0;
    const key = masked ? await take(4) : null;
    const payload = await take(length);
    if (key) { for (let i = 0; i < length; i++) payload[i] ^= key[i & 3]; }
    return {
      fin: (head[0] & 0x80) !== 0,
      rsv: (head[0] >> 4) & 7,
      opcode: head[0] & 15,
      masked,
      payload,
    };
  }

  /**
   * Reads frames until a close frame and returns the frames before it and
   * the close code and reason; then expects the server to close TCP.
   */
  async readUntilClose(): Promise<
    { frames: RawFrame[]; code: number | null; reason: string; eof: boolean }
  > {
    const frames: RawFrame[] = [];
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

export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
