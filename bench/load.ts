/**
 * The load generator: a plain `Deno.connect` WebSocket client that must cost
 * less than the servers it measures. It does its own opening handshake, sends
 * frames encoded and masked once before the run, keeps a fixed number of
 * messages in flight per connection (closed loop: every echo that comes back
 * releases the next message), and counts echoes by parsing frame headers only
 * (payload bytes are skipped, never copied or decoded).
 *
 * @module
 */

/** The RFC 6455 §1.3 sample key, whose accept value is well known. */
export const HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
/** The accept value of `HANDSHAKE_KEY`. */
export const HANDSHAKE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MAX_HEAD_SIZE = 16 * 1024;

const OPCODE_TEXT = 1;
const OPCODE_BINARY = 2;
const OPCODE_CLOSE = 8;

/** What one load run does. */
export interface LoadOptions {
  /** The server's address. Default `"127.0.0.1"`. */
  hostname?: string;
  /** The server's port. */
  port: number;
  /** How many WebSocket connections to open. */
  connections: number;
  /** How many messages each connection keeps in flight. */
  inFlight: number;
  /** The payload of every message. */
  payload: Uint8Array;
  /** Send text frames (the payload must be UTF-8) instead of binary ones. */
  text?: boolean;
  /** Milliseconds of load before counting starts. Default 0. */
  warmup?: number;
  /** Milliseconds counted after the warm-up. Default 1000. */
  duration?: number;
  /**
   * Messages each connection sends in all; when given, the run ends once
   * every one is echoed, `warmup` and `duration` are ignored and the whole
   * run is counted.
   */
  messages?: number;
  /** Record each counted message's round-trip time. Default false. */
  latency?: boolean;
  /**
   * Milliseconds allowed, once sending stops, for the messages in flight to
   * come back and the closing handshakes to finish. Default 10 000.
   */
  closeTimeout?: number;
  /** Called as the measured window opens (after the warm-up). */
  onCountStart?: () => void;
  /** Called as the measured window closes. */
  onCountEnd?: () => void;
}

/** What one load run measured. */
export interface LoadResult {
  /** Echoed messages counted in the measured window. */
  messages: number;
  /** Echoed payload bytes counted in the measured window. */
  bytes: number;
  /** The length of the measured window, in seconds. */
  seconds: number;
  /** Round-trip times of the counted messages, in ms, if asked for. */
  latencies: number[];
  /** Messages sent over the whole run. */
  totalSent: number;
  /** Messages echoed over the whole run. */
  totalEchoed: number;
  /** Echoed payload bytes over the whole run. */
  totalBytes: number;
  /** Connections that did not finish the closing handshake in time. */
  unclean: number;
}

/**
 * Encodes one masked client frame (RFC 6455 §5.2, §5.3).
 *
 * @param opcode The frame's opcode.
 * @param payload The unmasked payload.
 * @param key The 4-byte masking key.
 * @returns The frame's bytes.
 */
export function encodeMaskedFrame(
  opcode: number,
  payload: Uint8Array,
  key: Uint8Array,
): Uint8Array {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = new Uint8Array(6 + extra + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65536) {
    frame[1] = 0x80 | 126;
    new DataView(frame.buffer).setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  const at = 2 + extra;
  frame.set(key, at);
  for (let i = 0; i < length; i++) {
    frame[at + 4 + i] = payload[i] ^ key[i & 3];
  }
  return frame;
}

/** An open client connection, right after the opening handshake. */
export interface OpenedSocket {
  /** The TCP connection. */
  conn: Deno.TcpConn;
  /** Bytes that came after the `101` head (the first frames, if any). */
  leftover: Uint8Array;
}

/**
 * Connects and runs the opening handshake (RFC 6455 §4.1), checking the
 * `101` status and `Sec-WebSocket-Accept`.
 *
 * @param hostname The server's address.
 * @param port The server's port.
 * @param path The request target: an absolute path, `/` by default.
 * @returns The connection and the bytes read past the response head.
 * @throws {RangeError} When `path` is not an absolute path of visible ASCII.
 */
export async function openSocket(
  hostname: string,
  port: number,
  path = "/",
): Promise<OpenedSocket> {
  // §4.1: the Request-URI is the resource name (path and query); a space
  // or a line break would break the request head.
  if (!/^\/[\x21-\x7e]*$/.test(path)) {
    throw new RangeError(`Invalid path: ${JSON.stringify(path)}`);
  }
  const conn = await Deno.connect({ hostname, port });
  try {
    conn.setNoDelay(true);
    await writeAll(
      conn,
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${HANDSHAKE_KEY}\r\n` +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    const buffer = new Uint8Array(MAX_HEAD_SIZE);
    let length = 0;
    while (true) {
      const n = await conn.read(buffer.subarray(length));
      if (n === null) {
        throw new Error("The server closed the connection in the handshake");
      }
      length += n;
      const end = _findHeadEnd(buffer, length);
      if (end !== -1) {
        _checkResponseHead(new TextDecoder().decode(buffer.subarray(0, end)));
        return { conn, leftover: buffer.slice(end, length) };
      }
      if (length === buffer.length) {
        throw new Error("The handshake response head is too large");
      }
    }
  } catch (error) {
    conn.close();
    throw error;
  }
}

function _findHeadEnd(buffer: Uint8Array, length: number): number {
  for (let i = 3; i < length; i++) {
    if (
      buffer[i] === 10 && buffer[i - 1] === 13 && buffer[i - 2] === 10 &&
      buffer[i - 3] === 13
    ) {
      return i + 1;
    }
  }
  return -1;
}

function _checkResponseHead(head: string): void {
  const lines = head.split("\r\n");
  if (!/^HTTP\/1\.1 101\b/.test(lines[0])) {
    throw new Error(`The server refused the upgrade: ${lines[0]}`);
  }
  const accept = lines.find((line) =>
    line.toLowerCase().startsWith("sec-websocket-accept:")
  );
  if (accept?.slice(accept.indexOf(":") + 1).trim() !== HANDSHAKE_ACCEPT) {
    throw new Error("The server sent a wrong Sec-WebSocket-Accept");
  }
}

/**
 * Writes all of `bytes`; `Deno.Conn.write` may write only part.
 *
 * @param conn Where to write.
 * @param bytes What to write.
 */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** State shared by the connections of one run. */
interface _Run {
  /** Whether echoes are counted in the measured window. */
  counting: boolean;
  latency: boolean;
  messages: number;
  bytes: number;
  latencies: number[];
  totalSent: number;
  totalEchoed: number;
  totalBytes: number;
}

const CLOSE_FRAME_PAYLOAD = new Uint8Array([0x03, 0xe8]); // 1000

/**
 * One connection of the closed loop. The read side parses server frames
 * (unmasked, §5.1) header by header and skips payloads; the write side sends
 * the next messages from a block of pre-encoded frames in one write, and
 * never blocks reading (a server echoing 1 MiB messages would otherwise
 * deadlock against a client that stops reading while it writes).
 */
class _LoadConnection {
  #conn: Deno.TcpConn;
  #leftover: Uint8Array;
  #run: _Run;
  #frames: Uint8Array;
  #frameSize: number;
  #closeFrame: Uint8Array;
  #readSize: number;
  /** Messages this connection may still send, when the run has a count. */
  #budget: number;
  #outstanding = 0;
  #toSend = 0;
  #writing: Promise<void> | null = null;
  #closeSent = false;
  #closeReceived = false;
  #sendTimes: Float64Array;
  #sendHead = 0;
  #sendTail = 0;
  // Parser state: the current frame's header bytes, or the payload to skip.
  #head = new Uint8Array(10);
  #headLength = 0;
  #skip = 0;
  /** The current frame's opcode, or its message's for a continuation. */
  #opcode = 0;
  /** The opcode of the data message in progress. */
  #dataOpcode = 0;
  #fin = false;
  #messageBytes = 0;
  #writeError: unknown = null;

  constructor(
    opened: OpenedSocket,
    run: _Run,
    frames: Uint8Array,
    frameSize: number,
    closeFrame: Uint8Array,
    budget: number,
  ) {
    this.#conn = opened.conn;
    this.#leftover = opened.leftover;
    this.#run = run;
    this.#frames = frames;
    this.#frameSize = frameSize;
    this.#closeFrame = closeFrame;
    this.#budget = budget;
    this.#sendTimes = new Float64Array(frames.length / frameSize + 1);
    this.#readSize = frameSize > 64 * 1024 ? 256 * 1024 : 64 * 1024;
  }

  /** Sends the first messages and reads until the server closes. */
  async run(): Promise<void> {
    const inFlight = this.#frames.length / this.#frameSize;
    const buffer = new Uint8Array(this.#readSize);
    try {
      this.#queue(Math.min(inFlight, this.#budget));
      if (this.#leftover.length > 0) this.#parse(this.#leftover);
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        this.#parse(buffer.subarray(0, n));
      }
      await this.#writing;
      if (this.#writeError) throw this.#writeError;
      if (!this.#closeReceived) {
        throw new Error("The server closed TCP without a close frame");
      }
    } finally {
      try {
        this.#conn.close();
      } catch {
        // Already closed by `abort`.
      }
    }
  }

  /** Stops sending messages; closes once the ones in flight are back. */
  stop(): void {
    this.#budget = 0;
    this.#toSend = 0;
    this.#maybeClose();
  }

  /** Closes TCP at once, for a connection that did not finish in time. */
  abort(): boolean {
    if (this.#closeReceived) return false;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    return true;
  }

  #queue(count: number): void {
    if (count === 0) return;
    this.#budget -= count;
    this.#toSend += count;
    if (!this.#writing) this.#writing = this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#toSend > 0 || this.#wantsClose()) {
        if (this.#toSend > 0) {
          const count = this.#toSend;
          this.#toSend = 0;
          this.#outstanding += count;
          this.#run.totalSent += count;
          if (this.#run.latency) {
            const now = performance.now();
            const times = this.#sendTimes;
            for (let i = 0; i < count; i++) {
              times[this.#sendTail] = now;
              this.#sendTail = (this.#sendTail + 1) % times.length;
            }
          }
          await writeAll(
            this.#conn,
            this.#frames.subarray(0, count * this.#frameSize),
          );
        } else {
          this.#closeSent = true;
          await writeAll(this.#conn, this.#closeFrame);
        }
      }
    } catch (error) {
      this.#writeError = error;
    } finally {
      this.#writing = null;
    }
  }

  #wantsClose(): boolean {
    return !this.#closeSent && this.#budget === 0 && this.#outstanding === 0 &&
      this.#toSend === 0;
  }

  #maybeClose(): void {
    if (this.#wantsClose() && !this.#writing) this.#writing = this.#flush();
  }

  #parse(chunk: Uint8Array): void {
    const length = chunk.length;
    let pos = 0;
    let echoed = 0;
    while (pos < length) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, length - pos);
        this.#skip -= take;
        if (this.#opcode < OPCODE_CLOSE) this.#messageBytes += take;
        pos += take;
        if (this.#skip === 0 && this.#frameEnd()) echoed++;
        continue;
      }
      if (this.#headLength === 0 && length - pos >= 2) {
        const size = _headerSize(chunk[pos + 1]);
        if (length - pos >= size) {
          if (this.#startFrame(chunk, pos)) echoed++;
          pos += size;
          continue;
        }
      }
      // The header spans chunks: gather it in #head.
      const need = this.#headLength < 2 ? 2 : _headerSize(this.#head[1]);
      const take = Math.min(need - this.#headLength, length - pos);
      this.#head.set(chunk.subarray(pos, pos + take), this.#headLength);
      this.#headLength += take;
      pos += take;
      if (
        this.#headLength >= 2 &&
        this.#headLength === _headerSize(this.#head[1])
      ) {
        this.#headLength = 0;
        if (this.#startFrame(this.#head, 0)) echoed++;
      }
    }
    if (echoed > 0) this.#echoed(echoed);
  }

  /** Reads a complete header; returns whether it ended a message. */
  #startFrame(bytes: Uint8Array, at: number): boolean {
    const b0 = bytes[at];
    const b1 = bytes[at + 1];
    if (b1 & 0x80) throw new Error("The server sent a masked frame");
    let length = b1 & 127;
    if (length === 126) {
      length = (bytes[at + 2] << 8) | bytes[at + 3];
    } else if (length === 127) {
      length = (bytes[at + 2] * 2 ** 56) + (bytes[at + 3] * 2 ** 48) +
        (bytes[at + 4] * 2 ** 40) + (bytes[at + 5] * 2 ** 32) +
        (bytes[at + 6] * 2 ** 24) + (bytes[at + 7] << 16) +
        (bytes[at + 8] << 8) + bytes[at + 9];
    }
    const opcode = b0 & 15;
    if (opcode === 0) {
      this.#opcode = this.#dataOpcode;
    } else {
      this.#opcode = opcode;
      if (opcode < OPCODE_CLOSE) {
        // Control frames may come between a message's fragments (§5.4).
        this.#dataOpcode = opcode;
        this.#messageBytes = 0;
      }
    }
    this.#fin = (b0 & 0x80) !== 0;
    this.#skip = length;
    return length === 0 ? this.#frameEnd() : false;
  }

  /** A frame's payload is complete; returns whether it ended a message. */
  #frameEnd(): boolean {
    if (this.#opcode === OPCODE_CLOSE) {
      this.#closeReceived = true;
      return false;
    }
    if (this.#opcode > OPCODE_CLOSE || !this.#fin) return false;
    const run = this.#run;
    const bytes = this.#messageBytes;
    run.totalEchoed++;
    run.totalBytes += bytes;
    if (run.counting) {
      run.messages++;
      run.bytes += bytes;
    }
    if (run.latency) {
      const sent = this.#sendTimes[this.#sendHead];
      this.#sendHead = (this.#sendHead + 1) % this.#sendTimes.length;
      if (run.counting) run.latencies.push(performance.now() - sent);
    }
    return true;
  }

  #echoed(count: number): void {
    this.#outstanding -= count;
    if (this.#outstanding < 0) {
      throw new Error("The server echoed more messages than were sent");
    }
    this.#queue(Math.min(count, this.#budget));
    this.#maybeClose();
  }
}

/** The header size that a server frame's second byte implies. */
function _headerSize(b1: number): number {
  const length = b1 & 127;
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0);
}

/**
 * Runs the closed loop against an echo server at `port` and returns what
 * it counted. All connections end with a closing handshake.
 *
 * @param options What to send, how much and for how long.
 * @returns The counts of the measured window and of the whole run.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const hostname = options.hostname ?? "127.0.0.1";
  const key = crypto.getRandomValues(new Uint8Array(4));
  const frame = encodeMaskedFrame(
    options.text ? OPCODE_TEXT : OPCODE_BINARY,
    options.payload,
    key,
  );
  const frames = new Uint8Array(frame.length * options.inFlight);
  for (let i = 0; i < options.inFlight; i++) {
    frames.set(frame, i * frame.length);
  }
  const closeFrame = encodeMaskedFrame(OPCODE_CLOSE, CLOSE_FRAME_PAYLOAD, key);
  const counted = options.messages !== undefined;
  const run: _Run = {
    counting: counted,
    latency: options.latency ?? false,
    messages: 0,
    bytes: 0,
    latencies: [],
    totalSent: 0,
    totalEchoed: 0,
    totalBytes: 0,
  };
  const opened = await Promise.allSettled(
    Array.from(
      { length: options.connections },
      () => openSocket(hostname, options.port),
    ),
  );
  const failed = opened.find((result) => result.status === "rejected");
  if (failed) {
    for (const result of opened) {
      if (result.status === "fulfilled") result.value.conn.close();
    }
    throw (failed as PromiseRejectedResult).reason;
  }
  const connections = opened.map((result) =>
    new _LoadConnection(
      (result as PromiseFulfilledResult<OpenedSocket>).value,
      run,
      frames,
      frame.length,
      closeFrame,
      options.messages ?? Infinity,
    )
  );
  let start = performance.now();
  const finished = Promise.allSettled(connections.map((c) => c.run()));
  let end: number;
  if (counted) {
    options.onCountStart?.();
    await finished;
    end = performance.now();
    options.onCountEnd?.();
  } else {
    await _sleep(options.warmup ?? 0);
    options.onCountStart?.();
    run.counting = true;
    start = performance.now();
    await _sleep(options.duration ?? 1000);
    run.counting = false;
    end = performance.now();
    options.onCountEnd?.();
    for (const connection of connections) connection.stop();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(
      () => resolve("timeout"),
      options.closeTimeout ?? 10_000,
    );
  });
  let unclean = 0;
  try {
    if (await Promise.race([finished, timeout]) === "timeout") {
      for (const connection of connections) {
        if (connection.abort()) unclean++;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const results = await finished;
  const error = results.find((result) => result.status === "rejected");
  if (error && unclean === 0) throw (error as PromiseRejectedResult).reason;
  return {
    messages: run.messages,
    bytes: run.bytes,
    seconds: (end - start) / 1000,
    latencies: run.latencies,
    totalSent: run.totalSent,
    totalEchoed: run.totalEchoed,
    totalBytes: run.totalBytes,
    unclean,
  };
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Open WebSocket connections that send nothing, for measuring what an idle
 * connection costs the server.
 */
export class IdleConnections {
  #conns: Deno.TcpConn[];

  private constructor(conns: Deno.TcpConn[]) {
    this.#conns = conns;
  }

  /** How many are open. */
  get size(): number {
    return this.#conns.length;
  }

  /**
   * Opens `count` connections, at most `concurrency` handshakes at a time.
   *
   * @param hostname The server's address.
   * @param port The server's port.
   * @param count How many connections to open.
   * @param concurrency How many handshakes may be in progress at once.
   * @param path The request target of every handshake, `/` by default.
   * @returns The open connections.
   */
  static async open(
    hostname: string,
    port: number,
    count: number,
    concurrency = 64,
    path = "/",
  ): Promise<IdleConnections> {
    const conns: Deno.TcpConn[] = [];
    let next = 0;
    let failure: unknown = null;
    const worker = async () => {
      while (next < count && failure === null) {
        next++;
        try {
          const { conn } = await openSocket(hostname, port, path);
          conns.push(conn);
        } catch (error) {
          failure ??= error;
        }
      }
    };
    await Promise.all(
      Array.from({ length: Math.min(concurrency, count) }, worker),
    );
    const idle = new IdleConnections(conns);
    if (failure !== null) {
      idle.close();
      throw failure;
    }
    return idle;
  }

  /** Closes every connection at once (no closing handshake). */
  close(): void {
    for (const conn of this.#conns.splice(0)) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }
}
