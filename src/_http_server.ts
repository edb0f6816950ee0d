// Plain HTTP/1.1 on serve()'s port, the I/O half of src/core/_http1.ts: one request
// and its response on a connection, then the connection kept for the next one.

import type { ServeInfo, ServeOptions } from "./server.ts";
import {
  closeQuietly,
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_HANDSHAKE_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_HEAD_SIZE,
  isDisconnect,
  writeAll,
} from "./_transport.ts";
import { concat } from "./core/_bytes.ts";
import { HttpError, type RequestHead } from "./core/_http.ts";
import {
  BodyDecoder,
  CONTINUE_RESPONSE,
  decideRequestFraming,
  DEFAULT_HTTP1_LIMITS,
  type Http1Limits,
  type RequestFraming,
  ResponseBodyEncoder,
  serializeErrorResponse,
  serializeResponseHead,
  takeRequestHead,
} from "./core/_http1.ts";

/** How long a kept-alive connection may sit idle by default, in ms: Node's figure. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = 5_000;
/**
 * The most request body bytes read and dropped after a response so that the
 * connection can carry the next request, as Go's net/http; past it, or when
 * the length says it will be, the connection is closed instead.
 */
const DRAIN_LIMIT = 256 * 1024;
/**
 * How many response body bytes are gathered before the head is written
 * when they are ready at once; a body that ends within them goes out with a
 * Content-Length, in the same write as the head.
 */
const READY_LIMIT = 64 * 1024;
/** The read buffer of a connection waiting for its next request. */
const IDLE_READ_SIZE = 4096;
/** The largest read buffer for a request body. */
const BODY_READ_SIZE = 64 * 1024;
const EMPTY = new Uint8Array(0);
/** A wait that never ends (a limit that is off). */
const NEVER: Promise<never> = new Promise(() => {});

/** What a connection is doing: it decides what a shutdown does to it. */
type Phase = "head" | "busy" | "idle";

/**
 * One connection's clock, from its accept to its end or its upgrade: a
 * deadline re-armed for each wait (a request head, a stalled body, an idle
 * keep-alive), and the stop that closes the connection when it passes or
 * the server shuts down. It holds no timer: the server checks every
 * connection's deadline on one timer (`check`), so that accepting a
 * connection costs no timer of its own.
 */
export class Deadline {
  readonly conn: Deno.Conn;
  /** Rejects once the connection is stopped (a timeout or a shutdown). */
  readonly stopped: Promise<never>;
  /**
   * `"head"`: reading a request head or running the upgrade's hooks;
   * `"busy"`: an HTTP request in flight; `"idle"`: waiting for the next.
   */
  phase: Phase = "head";
  /** Whether the deadline (not a shutdown) stopped the connection. */
  expired = false;
  #until = Infinity;
  #grace: ReturnType<typeof setTimeout> | undefined;
  #holds = 0;
  #noDelay = false;
  #reject!: (error: Error) => void;
  #done = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.stopped = new Promise<never>((_, reject) => this.#reject = reject);
    this.stopped.catch(ignore);
  }

  /** Stops the connection `ms` from now, unless armed again or disarmed first. */
  arm(ms: number): void {
    this.#until = Date.now() + ms;
  }

  /** Stops the connection if its deadline has passed; the server's timer asks. */
  check(now: number): void {
    if (now >= this.#until && !this.#done) {
      this.expired = true;
      this.stop();
    }
  }

  /** Whether a read or write waits on the peer now. */
  get waitingOnPeer(): boolean {
    return this.#holds > 0;
  }

  /** No deadline until the next `arm`. */
  disarm(): void {
    this.#until = Infinity;
  }

  /**
   * Reads into `buffer`; when `within` ms (0: no limit) pass with nothing
   * from the peer, the connection is stopped and the read fails.
   */
  async read(buffer: Uint8Array, within: number): Promise<number | null> {
    this.#hold(within);
    try {
      return await this.conn.read(buffer);
    } finally {
      this.#release();
    }
  }

  /** Writes all of `bytes`; a peer that takes none of them for `within` ms (0: no limit) is stopped. */
  async write(bytes: Uint8Array, within: number): Promise<void> {
    this.#hold(within);
    try {
      await writeAll(this.conn, bytes);
    } finally {
      this.#release();
    }
  }

  /**
   * Turns Nagle's algorithm off, once: a streamed response's small writes
   * must not wait for the client's delayed ACK (up to 40 ms each).
   */
  noDelay(): void {
    if (this.#noDelay) return;
    this.#noDelay = true;
    try {
      if ("setNoDelay" in this.conn) {
        (this.conn as Deno.TcpConn).setNoDelay(true);
      }
    } catch {
      // Closed meanwhile: the next read or write says so.
    }
  }

  /** Closes the connection, so that whatever waits on it fails. */
  stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.dispose();
    closeQuietly(this.conn);
    this.#reject(new Deno.errors.Interrupted("The connection was stopped"));
  }

  /**
   * The server is shutting down: a connection in the middle of an HTTP
   * request gets `grace` ms to finish its response; any other (reading a
   * head, idle between requests) is stopped now.
   */
  shutdown(grace: number): void {
    if (this.phase !== "busy") this.stop();
    else if (this.#grace === undefined && !this.#done) {
      this.#grace = setTimeout(() => this.stop(), grace);
    }
  }

  /** Clears the shutdown's timer (the connection lives on, or is closed). */
  dispose(): void {
    clearTimeout(this.#grace);
  }

  // Waits on the peer inside one request (a body read, a response write)
  // may overlap, so they are counted: the last to end disarms.
  #hold(within: number): void {
    this.#holds++;
    if (within > 0) this.arm(within);
  }

  #release(): void {
    if (--this.#holds === 0) this.disarm();
  }
}

/**
 * Serves the plain HTTP/1.1 requests of `serve()`'s connections with the
 * `fetch` option (or the deprecated `onRequest`): request bodies streamed
 * from the connection, responses streamed to it, keep-alive and pipelining
 * (answered in order, one at a time). Framing follows the strict core in
 * `core/_http1.ts`; whatever it refuses is answered with its status and the
 * connection closed.
 */
export class HttpHandler {
  #fetch: (request: Request, info: ServeInfo) => Response | Promise<Response>;
  /** No `fetch`: every request gets 426 and the connection closes. */
  #closeAfterEach: boolean;
  #limits: Http1Limits;
  #keepAliveTimeout: number;
  #headTimeout: number;
  #idleTimeout: number;
  #closeTimeout: number;
  #report: (error: unknown) => void;
  #stopping: () => boolean;

  /**
   * Takes its settings from `serve()`'s options; throws a `TypeError` when
   * both `fetch` and `onRequest` are given, a `RangeError` for a negative
   * `maxBodySize` or `keepAliveTimeout`.
   */
  constructor(
    options: ServeOptions,
    report: (error: unknown) => void,
    stopping: () => boolean,
  ) {
    if (options.fetch !== undefined && options.onRequest !== undefined) {
      throw new TypeError(
        "The fetch and onRequest options cannot both be given: onRequest is the old name of fetch",
      );
    }
    const fetch = options.fetch ?? options.onRequest;
    if (fetch !== undefined && typeof fetch !== "function") {
      throw new TypeError("The fetch option must be a function");
    }
    this.#fetch = fetch ?? upgradeRequired;
    this.#closeAfterEach = fetch === undefined;
    const maxBodySize = options.maxBodySize ??
      DEFAULT_HTTP1_LIMITS.maxBodySize;
    if (!(maxBodySize >= 0)) {
      throw new RangeError(
        `The maxBodySize option must be 0 or more, got ${maxBodySize}`,
      );
    }
    this.#keepAliveTimeout = options.keepAliveTimeout ??
      DEFAULT_KEEP_ALIVE_TIMEOUT;
    if (!(this.#keepAliveTimeout >= 0)) {
      throw new RangeError(
        `The keepAliveTimeout option must be 0 or more, got ${this.#keepAliveTimeout}`,
      );
    }
    this.#limits = {
      ...DEFAULT_HTTP1_LIMITS,
      maxHeadSize: options.maxHeadSize ?? DEFAULT_MAX_HEAD_SIZE,
      maxBodySize,
    };
    this.#headTimeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
    this.#idleTimeout = options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT;
    this.#closeTimeout = options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT;
    this.#report = report;
    this.#stopping = stopping;
  }

  /**
   * Serves one request whose head (`rawHead`, up to its CRLF CRLF) was read
   * and is not an upgrade; `leftover` are the bytes read after it. Returns
   * the first bytes of the next request when the connection is kept (the
   * deadline then armed for its head), or `undefined` when the connection is
   * done and the caller closes it.
   */
  async exchange(
    deadline: Deadline,
    rawHead: Uint8Array,
    leftover: Uint8Array,
    url: string,
    info: ServeInfo,
  ): Promise<Uint8Array | undefined> {
    deadline.phase = "busy";
    // The application's time is its own: only waits on the peer are bounded.
    deadline.disarm();
    deadline.noDelay();
    let head: RequestHead<Headers> | undefined;
    let framing: RequestFraming;
    try {
      // The strict parser decides framing: request smuggling lives in the
      // differences between two parsers of one message (RFC 9112 §11.2).
      head = takeRequestHead(rawHead, this.#limits)?.head;
      if (head === undefined) {
        throw new HttpError(400, "Incomplete request head");
      }
      framing = decideRequestFraming(head, this.#limits);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      await this.#refuse(deadline, error, head?.method);
      return;
    }
    const body = new RequestBody(
      deadline,
      framing,
      leftover,
      this.#limits,
      this.#idleTimeout,
    );
    let request: Request;
    try {
      const upper = head.method.toUpperCase();
      // Fetch's Request refuses a body on GET and HEAD: one sent anyway is
      // read and dropped after the response, as a body the app did not read.
      const withBody = body.hasContent && upper !== "GET" && upper !== "HEAD";
      request = new Request(url, {
        method: head.method,
        headers: head.headers,
        body: withBody ? body.stream() : null,
      });
    } catch {
      // Fetch forbids CONNECT, TRACE and TRACK: "An origin server that
      // receives a request method that is unrecognized or not implemented
      // SHOULD respond with the 501" (RFC 9110 §9.1).
      await this.#refuse(
        deadline,
        new HttpError(501, "Method not implemented"),
        head.method,
      );
      return;
    }
    const method = request.method;
    let response: Response | undefined;
    // The application has `idleTimeout` to start its answer (its body may
    // then stream as long as it likes); a handler that never settles must
    // not hold the connection, nor a shutdown, for good.
    // While it waits for the request body, the body's own stall limit
    // applies instead.
    let timer: ReturnType<typeof setTimeout> | undefined;
    // idleTimeout 0: no limit.
    const late = this.#idleTimeout <= 0
      ? NEVER
      : new Promise<undefined>((resolve) => {
        const check = () => {
          if (deadline.waitingOnPeer) {
            timer = setTimeout(check, this.#idleTimeout);
          } else resolve(undefined);
        };
        timer = setTimeout(check, this.#idleTimeout);
      });
    const answer = (async () => await this.#fetch(request, info))();
    try {
      response = await Promise.race([answer, late, deadline.stopped]);
      if (response === undefined) {
        // What it answers too late is dropped; what it throws, reported.
        answer.then((late) => cancelQuietly(late?.body), this.#report);
        await this.#refuse(
          deadline,
          new HttpError(503, "The application did not answer in time"),
          method,
        );
        return;
      }
      if (!(response instanceof Response)) {
        throw new TypeError("The fetch handler must return a Response");
      }
      if (response.type === "error") {
        throw new TypeError("The fetch handler returned Response.error()");
      }
    } catch (error) {
      // Stopped by a shutdown while the handler had not answered.
      if (error instanceof Deno.errors.Interrupted) {
        answer.then((late) => cancelQuietly(late?.body), this.#report);
        return;
      }
      // A handler that fails because the request body failed is the
      // client's doing, answered below with the body's own status.
      if (body.failure === undefined) this.#report(error);
      response = undefined;
    } finally {
      clearTimeout(timer);
    }
    if (body.failure !== undefined) {
      cancelQuietly(response?.body);
      await this.#refuseBody(deadline, body, method);
      return;
    }
    const reusable = await this.#respond(
      deadline,
      body,
      framing,
      method,
      response ?? internalError(),
    );
    if (!reusable || this.#stopping()) {
      // With nothing left unread, a plain close cannot reset the answer.
      if (body.failure === undefined && (!body.done || body.rest.length > 0)) {
        await this.#linger(deadline, body);
      }
      return;
    }
    if (!body.done && !await body.drain(DRAIN_LIMIT)) {
      await this.#linger(deadline, body);
      return;
    }
    return await this.#next(deadline, body.rest);
  }

  /**
   * Writes `response` (its head, then its body as it comes); returns whether
   * the connection may carry another request.
   */
  async #respond(
    deadline: Deadline,
    body: RequestBody,
    framing: RequestFraming,
    method: string,
    response: Response,
  ): Promise<boolean> {
    const status = response.status;
    const noContent = method === "HEAD" || status === 204 || status === 304;
    // HEAD too, so that its Content-Length is the one a GET would get; not
    // 204 and 304, whose own body says nothing of that (RFC 9110 §8.6).
    const measured = method === "HEAD" || !noContent;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let ready: Ready = NOTHING;
    try {
      if (response.body !== null) {
        reader = response.body.getReader();
        if (measured) ready = await readReady(reader);
        if (noContent) cancelQuietly(reader);
      }
    } catch (error) {
      // Nothing is sent yet: a 500 still can be (or the body's own status
      // when the response streamed the failed request body).
      cancelQuietly(reader);
      if (body.failure !== undefined) {
        await this.#refuseBody(deadline, body, method);
        return false;
      }
      this.#report(error);
      return this.#respond(deadline, body, framing, method, internalError());
    }
    const keepAlive = framing.keepAlive && !this.#closeAfterEach &&
      this.#keepAliveTimeout > 0 && !this.#stopping() &&
      body.reusable(DRAIN_LIMIT);
    const serialized = serializeResponseHead(response, {
      method,
      version: framing.version,
      keepAlive,
      bodyLength: measured && ready.ended ? ready.size : undefined,
      date: httpDate(),
    });
    const encoder = new ResponseBodyEncoder(serialized.framing);
    let first: Uint8Array;
    try {
      first = joinBody(serialized.bytes, encoder, ready);
    } catch (error) {
      // The app's Content-Length is smaller than the bytes ready.
      cancelQuietly(reader);
      this.#report(error);
      return this.#respond(deadline, body, framing, method, internalError());
    }
    // Past here a 100 Continue would follow a final response.
    body.headWritten = true;
    try {
      await deadline.write(first, this.#idleTimeout);
      if (ready.ended || noContent) return serialized.keepAlive;
      let next = ready.next;
      while (true) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await (next ?? reader!.read());
        } catch (error) {
          // The body failed midway: closing the connection cuts the
          // message short, so the client cannot take it for whole.
          if (body.failure === undefined && !isDisconnect(error)) {
            this.#report(error);
          }
          return false;
        }
        next = undefined;
        let bytes: Uint8Array;
        try {
          bytes = result.done
            ? encoder.end()
            : encoder.encode(checkChunk(result.value));
        } catch (error) {
          cancelQuietly(reader);
          this.#report(error);
          return false;
        }
        if (bytes.length > 0) await deadline.write(bytes, this.#idleTimeout);
        if (result.done) return serialized.keepAlive;
      }
    } catch (error) {
      // The client went away, or stopped reading for idleTimeout.
      cancelQuietly(reader, error);
      return false;
    }
  }

  /** Waits for the next request on a kept-alive connection. */
  async #next(
    deadline: Deadline,
    rest: Uint8Array,
  ): Promise<Uint8Array | undefined> {
    if (rest.length === 0) {
      // Idle: a shutdown closes it at once.
      deadline.phase = "idle";
      deadline.arm(this.#keepAliveTimeout);
      const buffer = new Uint8Array(IDLE_READ_SIZE);
      let n: number | null;
      try {
        n = await deadline.conn.read(buffer);
      } catch {
        return;
      }
      if (n === null || this.#stopping()) return;
      rest = buffer.subarray(0, n);
    }
    // A request has begun: its head has handshakeTimeout, as the first one.
    deadline.phase = "head";
    deadline.arm(this.#headTimeout);
    return rest;
  }

  /** Answers a request that cannot be served with `error`'s status, then closes. */
  async #refuse(
    deadline: Deadline,
    error: HttpError,
    method = "GET",
  ): Promise<void> {
    try {
      await deadline.write(
        serializeErrorResponse(error, { method, date: httpDate() }),
        this.#idleTimeout,
      );
    } catch {
      return;
    }
    await this.#linger(deadline);
  }

  /**
   * The request body failed: a malformed or oversized body is answered with
   * its status (400, 413, 431) when no response has begun; a stalled or
   * reset one only closes.
   */
  async #refuseBody(
    deadline: Deadline,
    body: RequestBody,
    method: string,
  ): Promise<void> {
    const failure = body.failure;
    if (failure instanceof HttpError && !body.headWritten) {
      body.headWritten = true;
      await this.#refuse(deadline, failure, method);
    }
  }

  /**
   * Half-closes and reads until the peer's FIN, for at most `closeTimeout`,
   * so that request bytes left unread do not turn the close into a reset
   * that destroys the answer in flight.
   */
  async #linger(deadline: Deadline, body?: RequestBody): Promise<void> {
    // The app may still be reading the body: the connection is its to close.
    if (body?.reading) return;
    deadline.phase = "idle";
    deadline.arm(this.#closeTimeout);
    try {
      await deadline.conn.closeWrite();
      const sink = new Uint8Array(IDLE_READ_SIZE);
      while (await deadline.conn.read(sink) !== null) {
        // Discard.
      }
    } catch {
      // Closed by the deadline or reset by the peer.
    }
  }
}

/**
 * A request body as it arrives: the bytes read after the head, then reads
 * from the connection as the application (or the drain after the response)
 * asks, decoded by a `BodyDecoder`. Reads are taken one at a time, in order.
 */
class RequestBody {
  /** Why the body failed (malformed, too large, stalled, cut off), once it did. */
  failure: unknown;
  /** Set once the response head is out: a `100 Continue` may no longer be sent. */
  headWritten = false;
  /** The bytes after the body: the start of the next request. */
  rest: Uint8Array;
  /** Whether a read of the connection is in progress. */
  reading = false;
  #deadline: Deadline;
  #stall: number;
  #decoder: BodyDecoder | undefined;
  #length: number | undefined;
  #pending: Uint8Array;
  /** A `100 Continue` is owed before the first read (RFC 9110 §10.1.1). */
  #continue: boolean;
  #last: Promise<unknown> = Promise.resolve();

  constructor(
    deadline: Deadline,
    framing: RequestFraming,
    leftover: Uint8Array,
    limits: Http1Limits,
    stall: number,
  ) {
    this.#deadline = deadline;
    this.#stall = stall;
    const body = framing.body;
    if (body.type === "length" && body.length === 0) {
      this.rest = leftover;
      this.#pending = EMPTY;
      this.#continue = false;
    } else {
      this.#decoder = new BodyDecoder(body, limits);
      this.#length = body.type === "length" ? body.length : undefined;
      this.rest = EMPTY;
      this.#pending = leftover;
      this.#continue = framing.expectContinue;
    }
  }

  /** Whether the request has a body at all. */
  get hasContent(): boolean {
    return this.#decoder !== undefined;
  }

  /** Whether the body has been read to its end. */
  get done(): boolean {
    return this.#decoder === undefined || this.#decoder.done;
  }

  /**
   * Whether the connection can carry another request once the response is
   * out, as far as this body goes: read to its end, or readable to its end
   * within `limit` more bytes. A client still waiting for `100 Continue`
   * may or may not send the body after the final response, so its
   * connection is not reused.
   */
  reusable(limit: number): boolean {
    if (this.done) return true;
    if (this.failure !== undefined || this.#continue) return false;
    return this.#length === undefined ||
      this.#length - this.#decoder!.received <= limit;
  }

  /** The body as the `Request`'s stream: nothing is read until it is. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let chunks: Uint8Array[] | null;
        try {
          chunks = await this.read();
        } catch (error) {
          controller.error(error);
          return;
        }
        if (chunks === null) controller.close();
        else for (const chunk of chunks) controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
  }

  /** The next pieces of the body, or `null` at its end; rejects once it failed. */
  read(): Promise<Uint8Array[] | null> {
    const result = this.#last.then(() => this.#pull());
    this.#last = result.then(ignore, ignore);
    return result;
  }

  /** Reads and drops the rest of the body; false past `limit` bytes or on failure. */
  async drain(limit: number): Promise<boolean> {
    let drained = 0;
    try {
      for (let chunks; (chunks = await this.read()) !== null;) {
        for (const chunk of chunks) drained += chunk.length;
        if (drained > limit) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async #pull(): Promise<Uint8Array[] | null> {
    if (this.failure !== undefined) throw this.failure;
    const decoder = this.#decoder;
    if (decoder === undefined) return null;
    try {
      while (!decoder.done) {
        let input = this.#pending;
        if (input.length > 0) {
          this.#pending = EMPTY;
        } else {
          const read = await this.#read(decoder);
          if (read === null) {
            // The peer ended mid-body: a 400 for the failure.
            decoder.finish();
            return null;
          }
          input = read;
        }
        const { chunks, consumed, done } = decoder.push(input);
        // A copy: the chunks handed out are views of the same bytes.
        if (done && consumed < input.length) this.rest = input.slice(consumed);
        if (chunks.length > 0) return chunks;
      }
      return null;
    } catch (error) {
      this.failure = this.#deadline.expired
        ? new Deno.errors.TimedOut("The request body stalled")
        : error;
      throw this.failure;
    }
  }

  /** One read of the connection, after the `100 Continue` it may owe. */
  async #read(decoder: BodyDecoder): Promise<Uint8Array | null> {
    this.reading = true;
    try {
      if (this.#continue) {
        this.#continue = false;
        // "A server MAY omit sending a 100 (Continue) response if it has
        // already received some or all of the content" or has answered
        // (RFC 9110 §10.1.1).
        if (!this.headWritten) {
          await this.#deadline.write(CONTINUE_RESPONSE, this.#stall);
        }
      }
      const size = this.#length === undefined
        ? 16 * 1024
        : Math.min(BODY_READ_SIZE, this.#length - decoder.received);
      const buffer = new Uint8Array(size);
      const n = await this.#deadline.read(buffer, this.#stall);
      return n === null ? null : buffer.subarray(0, n);
    } finally {
      this.reading = false;
    }
  }
}

/** What a response body had ready at once. */
interface Ready {
  chunks: Uint8Array[];
  size: number;
  /** Whether the body ended within them. */
  ended: boolean;
  /** The read still pending, when one is. */
  next?: Promise<ReadableStreamReadResult<Uint8Array>>;
}

const NOTHING: Ready = Object.freeze({ chunks: [], size: 0, ended: true });
const NOT_READY = Symbol("not ready");

/**
 * Settles after a few microtask turns. A body already in memory (a string,
 * bytes, JSON, a Blob) answers a read within them; one that takes longer is
 * not waited for, and its head goes out at once. Only the framing depends on
 * it (Content-Length or chunked), never what is sent.
 */
function shortly(): Promise<typeof NOT_READY> {
  return Promise.resolve().then().then().then().then().then(() => NOT_READY);
}

/**
 * Reads the chunks a response body has ready now, up to about
 * `READY_LIMIT` bytes, looking once more past them for its end.
 */
async function readReady(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<Ready> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (let more = true;;) {
    const next = reader.read();
    const result = await Promise.race([next, shortly()]);
    if (result === NOT_READY) return { chunks, size, ended: false, next };
    if (result.done) return { chunks, size, ended: true };
    const chunk = checkChunk(result.value);
    chunks.push(chunk);
    size += chunk.length;
    if (!more) return { chunks, size, ended: false };
    if (size > READY_LIMIT) more = false;
  }
}

/** A response head and the body bytes ready with it, framed, as one write. */
function joinBody(
  head: Uint8Array,
  encoder: ResponseBodyEncoder,
  ready: Ready,
): Uint8Array {
  if (ready.chunks.length === 0 && !ready.ended) return head;
  const parts = [head];
  let size = head.length;
  for (const chunk of ready.chunks) {
    const bytes = encoder.encode(chunk);
    parts.push(bytes);
    size += bytes.length;
  }
  if (ready.ended) {
    const end = encoder.end();
    parts.push(end);
    size += end.length;
  }
  return parts.length === 1 ? head : concat(parts, size);
}

function checkChunk(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new TypeError("A response body chunk must be a Uint8Array");
}

/** Cancels a body, ignoring that it may have failed or be locked. */
function cancelQuietly(
  body: ReadableStream | ReadableStreamDefaultReader | null | undefined,
  reason?: unknown,
): void {
  try {
    body?.cancel(reason).catch(ignore);
  } catch {
    // Locked: its reader is cancelled instead.
  }
}

function internalError(): Response {
  return new Response("Internal Server Error", {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** What a server without `fetch` answers to plain HTTP requests. */
function upgradeRequired(): Response {
  return new Response("Upgrade Required: this is a WebSocket endpoint", {
    status: 426,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      upgrade: "websocket",
      "sec-websocket-version": "13",
    },
  });
}

let dateSecond = -1;
let dateValue = "";

/** The Date header's value (RFC 9110 §6.6.1), made once a second. */
function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return dateValue;
}

function ignore(): void {}
