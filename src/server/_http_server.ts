// The server's HTTP/1.1, the I/O half of src/http/_http1.ts: reading every
// request head on serve()'s port (upgrades and plain requests go through the
// same parser), serving plain requests with `fetch` (bodies, streamed
// responses, keep-alive), and the one way the server refuses a request.

import {
  closeQuietly,
  isDisconnect,
  type Transport,
  writeAll,
} from "../engine/_transport.ts";
import { concat } from "../protocol/_bytes.ts";
import {
  type Fields,
  HttpError,
  latin1Into,
  type RequestHead,
} from "../http/_http.ts";
import {
  BodyDecoder,
  CONTINUE_RESPONSE,
  decideRequestFraming,
  DEFAULT_HTTP1_LIMITS,
  hasNoContent,
  type Http1Limits,
  type RequestFraming,
  requestUrl,
  ResponseBodyEncoder,
  serializeErrorResponse,
  serializeResponseHead,
  type TakenRequestHead,
  takeRequestHead,
} from "../http/_http1.ts";
import { isUpgradeRequest } from "../protocol/_server_handshake.ts";

/** How long a kept-alive connection may sit idle by default, in ms: Node's figure. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = 5_000;
/**
 * How long a client may take to send a request body by default, in ms, from
 * the end of its head: Node's `requestTimeout` (300 s), which a 16 MiB body
 * meets at 56 KB/s.
 */
export const DEFAULT_BODY_TIMEOUT = 300_000;
/**
 * The most connections that are not WebSockets (yet) by default: reading a
 * head, in the upgrade's hooks, serving a plain request, kept alive between
 * requests or lingering after a refusal. What a flood of slow or idle HTTP
 * clients can hold; open WebSockets are counted apart (`maxConnections`).
 */
export const DEFAULT_MAX_HTTP_CONNECTIONS = 1_000;
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
/**
 * The first read of a head: most fit (a browser's upgrade is 0.5–1 KiB);
 * a bigger one grows the buffer.
 */
const FIRST_READ = 2048;
/**
 * First-read buffers whose head was read (or whose `101` was written), for
 * the next heads: a burst of handshakes then allocates (and the collector
 * frees) no buffer each. Bounded, so that a burst leaves at most this many
 * behind (256 KiB): 64 missed half the time with 128 handshakes in
 * progress (bench (e)), and a fresh 2 KiB `ArrayBuffer` cost ~2 µs.
 */
const spareHeadBuffers: Uint8Array[] = [];
const MAX_SPARE_HEAD_BUFFERS = 128;

/** A first-read buffer: a spare one, or a new one when none is left. */
function takeHeadBuffer(): Uint8Array {
  return spareHeadBuffers.pop() ?? new Uint8Array(FIRST_READ);
}

/** Keeps a first-read buffer nothing uses any more, up to the bound. */
function giveBackHeadBuffer(buffer: Uint8Array): void {
  if (spareHeadBuffers.length < MAX_SPARE_HEAD_BUFFERS) {
    spareHeadBuffers.push(buffer);
  }
}
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
  /** Made when first asked for: most handshakes never race it. */
  #stopped: Promise<never> | undefined;
  #reject: ((error: Error) => void) | undefined;
  #done = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Rejects once the connection is stopped (a timeout or a shutdown). */
  get stopped(): Promise<never> {
    if (this.#stopped === undefined) {
      this.#stopped = this.#done
        ? Promise.reject(stoppedError())
        : new Promise<never>((_, reject) => this.#reject = reject);
      this.#stopped.catch(ignore);
    }
    return this.#stopped;
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

  /** Whether the connection has been stopped. */
  get ended(): boolean {
    return this.#done;
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
    this.#reject?.(stoppedError());
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

/** What a stopped connection's waits fail with. */
function stoppedError(): Error {
  return new Deno.errors.Interrupted("The connection was stopped");
}

/** A request head read off a connection, and the bytes read after it. */
export interface ReadRequestHead extends TakenRequestHead {
  /** What followed the head: a body, the next request, or frames. */
  leftover: Uint8Array;
}

/**
 * Reads the next request head: `initial` holds bytes already read (the
 * next request on a kept-alive connection), then the connection is read
 * until {@linkcode takeRequestHead} finds a whole head, which decides every
 * refusal (400, 414, 431, 505: thrown as `HttpError`), the same for
 * upgrades and plain requests. Returns `undefined` when the peer closed
 * before a request began (empty lines before a request line are no
 * request, RFC 9112 §2.2); a head cut short by the peer is a 400. Read
 * errors are thrown; the caller bounds the time it may take.
 */
export async function readRequestHead(
  conn: Pick<Transport, "read">,
  limits: Http1Limits,
  initial: Uint8Array = EMPTY,
): Promise<ReadRequestHead | undefined> {
  let scanned = 0;
  if (initial.length > 0) {
    const taken = takeRequestHead(initial, limits);
    if (taken !== undefined) {
      const { head, text, size } = taken;
      return { head, text, size, leftover: initial.subarray(size) };
    }
    scanned = initial.length;
  }
  // takeRequestHead refuses a head once maxHeadSize bytes hold no end, so
  // the buffer never needs to be larger.
  const max = Math.max(limits.maxHeadSize, 1);
  const size = Math.min(Math.max(FIRST_READ, scanned * 2), max);
  const first = size === FIRST_READ ? takeHeadBuffer() : new Uint8Array(size);
  let buffer = first;
  buffer.set(initial);
  let length = scanned;
  try {
    while (true) {
      if (length === buffer.length) {
        const bigger = new Uint8Array(Math.min(length * 2, max));
        bigger.set(buffer);
        buffer = bigger;
      }
      const n = await conn.read(buffer.subarray(length));
      if (n === null) {
        if (onlyEmptyLines(buffer.subarray(0, length))) return undefined;
        throw new HttpError(400, "Incomplete request head");
      }
      length += n;
      const taken = takeRequestHead(
        buffer.subarray(0, length),
        limits,
        scanned,
      );
      if (taken !== undefined) {
        const { head, text, size } = taken;
        return {
          head,
          text,
          size,
          // Usually nothing: a WebSocket client waits for the 101. A copy,
          // as the head and its text are: the buffer is used again.
          leftover: size === length ? EMPTY : buffer.slice(size, length),
        };
      }
      scanned = length;
    }
  } finally {
    // Nothing read into it is kept, and its read is over (done or failed).
    if (first.length === FIRST_READ) giveBackHeadBuffer(first);
  }
}

/**
 * Writes a head given as latin1 text (a `101`) from a spare head buffer,
 * given back once written: a handshake then allocates no bytes for its
 * answer (a fresh `ArrayBuffer` costs more than the copy). One longer than
 * a buffer gets bytes of its own.
 */
export async function writeHead(
  conn: Pick<Transport, "write">,
  head: string,
): Promise<void> {
  const spare = head.length <= FIRST_READ;
  const buffer = spare ? takeHeadBuffer() : new Uint8Array(head.length);
  latin1Into(head, buffer);
  try {
    await writeAll(conn, buffer.subarray(0, head.length));
  } finally {
    // Its writes are over (done or failed): nothing reads it any more.
    if (spare) giveBackHeadBuffer(buffer);
  }
}

/** Whether `bytes` are empty lines (CRLF) at most, a CR of one at the end. */
function onlyEmptyLines(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== (i % 2 === 0 ? 13 : 10)) return false;
  }
  return true;
}

/** An upgrade request's head, found by {@linkcode HttpHandler.next}. */
export interface UpgradeHead {
  head: RequestHead<Fields>;
  /** The head's text, to make the `Request` again when it is asked for. */
  text: string;
  /** The request's URL. */
  url: string;
  /** Bytes read after the head: the client's first frames. */
  leftover: Uint8Array;
}

/** What the server knows of a connection besides its request. */
export interface ConnectionInfo {
  /** The peer's address. */
  remoteAddr: Deno.NetAddr;
}

/** `serve()`'s settings for HTTP, checked, with the defaults applied. */
export interface HttpSettings {
  /** Answers plain requests; without it they get 426 and the connection closes. */
  fetch:
    | ((request: Request, info: ConnectionInfo) => Response | Promise<Response>)
    | undefined;
  maxHeadSize: number;
  maxBodySize: number;
  /** The time for a request head, from its first byte (`handshakeTimeout`). */
  headTimeout: number;
  keepAliveTimeout: number;
  idleTimeout: number;
  closeTimeout: number;
  bodyTimeout: number;
}

/** How a response ended: whole, and the connection reusable or not; or cut. */
type Outcome = "keep" | "close" | "cut";

/**
 * The HTTP/1.1 of `serve()`'s connections: it reads each request head with
 * the one strict parser, hands upgrades back to the server, and serves
 * plain requests with `fetch`: request bodies streamed from the connection,
 * responses streamed to it, keep-alive and pipelining (answered in order,
 * one at a time). Whatever the parser or the framing refuses is answered
 * with its status and the connection closed ({@linkcode refuse}).
 *
 * While a request's answer is prepared and sent, a connection whose request
 * was read to its end is watched: a client that leaves (FIN or reset) stops
 * it, which cancels the response body, aborts `request.signal` and frees the
 * connection, as a timeout or a shutdown does.
 */
export class HttpHandler {
  /**
   * The scheme and authority of a request URL whose request has no Host
   * (HTTP/1.0): the server sets it once listening.
   */
  base = "http://localhost";
  #fetch: (
    request: Request,
    info: ConnectionInfo,
  ) => Response | Promise<Response>;
  /** No `fetch`: every request gets 426 and the connection closes. */
  #closeAfterEach: boolean;
  #limits: Http1Limits;
  #settings: HttpSettings;
  #report: (error: unknown) => void;
  #stopping: () => boolean;

  /** `settings` are `serve()`'s, checked (by `resolveServeOptions`). */
  constructor(
    settings: HttpSettings,
    report: (error: unknown) => void,
    stopping: () => boolean,
  ) {
    const fetch = settings.fetch;
    this.#fetch = fetch ?? upgradeRequired;
    this.#closeAfterEach = fetch === undefined;
    this.#settings = settings;
    this.#limits = {
      ...DEFAULT_HTTP1_LIMITS,
      maxHeadSize: settings.maxHeadSize,
      maxBodySize: settings.maxBodySize,
    };
    this.#report = report;
    this.#stopping = stopping;
  }

  /**
   * Reads the connection's requests, serving the plain ones, until one is
   * an upgrade: returns its head (the deadline then runs for the upgrade's
   * hooks), or `undefined` once the connection is done (the caller closes
   * it). A malformed head is refused here, whatever the request is.
   */
  async next(
    deadline: Deadline,
    info: ConnectionInfo,
  ): Promise<UpgradeHead | undefined> {
    let initial: Uint8Array | undefined;
    while (true) {
      let read: ReadRequestHead | undefined;
      try {
        read = await readRequestHead(deadline.conn, this.#limits, initial);
      } catch (error) {
        if (error instanceof HttpError) await this.refuse(deadline, error);
        // Else timed out (the deadline closed the connection) or reset.
        return;
      }
      if (read === undefined) return;
      const { head, text, leftover } = read;
      let url: string;
      try {
        url = requestUrl(head, this.base);
      } catch (error) {
        await this.refuse(deadline, error as HttpError, head.method);
        return;
      }
      if (isUpgradeRequest(head)) return { head, text, url, leftover };
      initial = await this.#exchange(deadline, head, leftover, url, info);
      if (initial === undefined) return;
    }
  }

  /**
   * Answers a request that cannot be served with `error`'s status and
   * plain-text message (none for HEAD), then closes the connection after
   * lingering: the one way the server refuses a request.
   */
  async refuse(
    deadline: Deadline,
    error: HttpError,
    method = "GET",
  ): Promise<void> {
    try {
      await deadline.write(
        serializeErrorResponse(error, { method, date: httpDate() }),
        this.#settings.idleTimeout,
      );
    } catch {
      return;
    }
    await this.#linger(deadline);
  }

  /**
   * Sends a whole response (an `onUpgrade` hook's refusal) as a plain
   * request's is sent, watched as one, then closes the connection. A 1xx
   * is not an answer: it is reported and 500 sent instead.
   */
  async answer(
    deadline: Deadline,
    method: string,
    response: Response,
  ): Promise<void> {
    deadline.phase = "busy";
    deadline.disarm();
    const watch = new PeerWatch(deadline);
    // An upgrade request has no body: it is whole.
    watch.start();
    const body = new RequestBody(
      deadline,
      ANSWER_FRAMING,
      EMPTY,
      this.#limits,
      this.#settings,
      watch,
    );
    const outcome = await this.#respond(
      deadline,
      body,
      ANSWER_FRAMING,
      method,
      this.#checked(response, "onUpgrade"),
    );
    if (outcome !== "cut") await this.#linger(deadline, body, watch);
  }

  /**
   * Serves one plain request whose head was read; `leftover` are the bytes
   * read after it. Returns the first bytes of the next request when the
   * connection is kept (the deadline then armed for its head), or
   * `undefined` when the connection is done and the caller closes it.
   */
  async #exchange(
    deadline: Deadline,
    head: RequestHead<Fields>,
    leftover: Uint8Array,
    url: string,
    info: ConnectionInfo,
  ): Promise<Uint8Array | undefined> {
    deadline.phase = "busy";
    // The application's time is its own: only waits on the peer are bounded.
    deadline.disarm();
    deadline.noDelay();
    // The request line's own token frames the response: `head` is not HEAD
    // (RFC 9110 §9.1, methods are case-sensitive), though Fetch's Request
    // normalizes its name.
    const method = head.method;
    let framing: RequestFraming;
    try {
      framing = decideRequestFraming(head, this.#limits);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      await this.refuse(deadline, error, method);
      return;
    }
    const watch = new PeerWatch(deadline);
    const body = new RequestBody(
      deadline,
      framing,
      leftover,
      this.#limits,
      this.#settings,
      watch,
    );
    const client = new AbortController();
    let request: Request;
    try {
      const upper = method.toUpperCase();
      // Fetch's Request refuses a body on GET and HEAD: one sent anyway is
      // read and dropped after the response, as a body the app did not read.
      const withBody = body.hasContent && upper !== "GET" && upper !== "HEAD";
      request = new Request(url, {
        method,
        headers: head.headers,
        body: withBody ? body.stream() : null,
        signal: client.signal,
      });
    } catch {
      // Fetch forbids CONNECT, TRACE and TRACK: "An origin server that
      // receives a request method that is unrecognized or not implemented
      // SHOULD respond with the 501" (RFC 9110 §9.1).
      await this.refuse(
        deadline,
        new HttpError(501, "Method not implemented"),
        method,
      );
      return;
    }
    // A request without a body is whole: watch for the client leaving.
    if (body.done && body.rest.length === 0) watch.start();
    let outcome: Outcome = "cut";
    try {
      outcome = await this.#serve(
        deadline,
        request,
        method,
        info,
        body,
        framing,
      );
    } finally {
      // The answer did not reach the client whole (it left, a timeout, a
      // shutdown, a failed body): whatever works for the request may stop.
      if (outcome === "cut") client.abort();
    }
    if (outcome !== "keep" || this.#stopping()) {
      // With nothing left unread, a plain close cannot reset the answer.
      if (
        body.failure === undefined &&
        (!body.done || body.rest.length > 0 || watch.received)
      ) {
        await this.#linger(deadline, body, watch);
      }
      return;
    }
    if (!body.done && !await body.drain(DRAIN_LIMIT)) {
      await this.#linger(deadline, body, watch);
      return;
    }
    return await this.#next(deadline, body.rest, watch);
  }

  /**
   * Runs `fetch` for a request and writes its answer: the app has
   * `idleTimeout` to return its `Response` (503 after it), whose body may
   * then stream as long as it takes.
   */
  async #serve(
    deadline: Deadline,
    request: Request,
    method: string,
    info: ConnectionInfo,
    body: RequestBody,
    framing: RequestFraming,
  ): Promise<Outcome> {
    const idleTimeout = this.#settings.idleTimeout;
    // A handler that never settles must not hold the connection, nor a
    // shutdown, for good. While it waits for the request body, the body's
    // own limits apply instead.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = idleTimeout <= 0
      ? NEVER
      : new Promise<undefined>((resolve) => {
        const check = () => {
          if (deadline.waitingOnPeer) timer = setTimeout(check, idleTimeout);
          else resolve(undefined);
        };
        timer = setTimeout(check, idleTimeout);
      });
    const answer = (async () => await this.#fetch(request, info))();
    let response: Response | undefined;
    try {
      response = await Promise.race([answer, late, deadline.stopped]);
      if (response === undefined) {
        // What it answers too late is dropped; what it throws, reported.
        answer.then((late) => cancelQuietly(late?.body), this.#report);
        await this.refuse(
          deadline,
          new HttpError(503, "The application did not answer in time"),
          method,
        );
        return "cut";
      }
      response = this.#checked(response, "fetch");
    } catch (error) {
      // Stopped (the client left, a shutdown) while the handler had not
      // answered.
      if (error instanceof Deno.errors.Interrupted) {
        answer.then((late) => cancelQuietly(late?.body), this.#report);
        return "cut";
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
      return "cut";
    }
    return await this.#respond(
      deadline,
      body,
      framing,
      method,
      response ?? internalError(),
    );
  }

  /**
   * What a handler returned, if it is a response that can be sent: a
   * non-`Response`, `Response.error()` or a 1xx (an interim response is no
   * answer, and 101 would claim a protocol switch) is reported and becomes
   * a 500.
   */
  #checked(response: unknown, hook: string): Response {
    let fault: string | undefined;
    if (!(response instanceof Response)) {
      fault = `The ${hook} handler must return a Response`;
    } else if (response.type === "error") {
      fault = `The ${hook} handler returned Response.error()`;
    } else if (response.status < 200) {
      cancelQuietly(response.body);
      fault =
        `The ${hook} handler returned a ${response.status} response: an interim (1xx) status cannot end a request, so 500 was sent`;
    } else {
      return response;
    }
    this.#report(new TypeError(fault));
    return internalError();
  }

  /**
   * Writes `response` (its head, then its body as it comes), and tells
   * whether it went out whole and the connection may carry another request.
   * A connection stopped meanwhile (the client left, a timeout, a shutdown)
   * cancels the body.
   */
  async #respond(
    deadline: Deadline,
    body: RequestBody,
    framing: RequestFraming,
    method: string,
    response: Response,
  ): Promise<Outcome> {
    const idleTimeout = this.#settings.idleTimeout;
    const status = response.status;
    const noContent = hasNoContent(method, status);
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
        return "cut";
      }
      this.#report(error);
      return this.#respond(deadline, body, framing, method, internalError());
    }
    const keepAlive = framing.keepAlive && !this.#closeAfterEach &&
      this.#settings.keepAliveTimeout > 0 && !this.#stopping() &&
      body.reusable(DRAIN_LIMIT);
    const serialized = serializeResponseHead(response, {
      method,
      version: framing.version,
      keepAlive,
      bodyLength: measured && ready.ended ? ready.size : undefined,
      date: httpDate(),
    });
    const whole: Outcome = serialized.keepAlive ? "keep" : "close";
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
      await deadline.write(first, idleTimeout);
      if (ready.ended || noContent) return whole;
      let next = ready.next;
      while (true) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          // A body that waits (a long poll, server-sent events between
          // events) ends when the connection is stopped.
          result = await Promise.race([
            next ?? reader!.read(),
            deadline.stopped,
          ]);
        } catch (error) {
          // The body failed midway, or the connection was stopped: closing
          // the connection cuts the message short, so the client cannot
          // take it for whole.
          cancelQuietly(reader, error);
          if (body.failure === undefined && !isDisconnect(error)) {
            this.#report(error);
          }
          return "cut";
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
          return "cut";
        }
        if (bytes.length > 0) await deadline.write(bytes, idleTimeout);
        if (result.done) return whole;
      }
    } catch (error) {
      // The client went away, or stopped reading for idleTimeout.
      cancelQuietly(reader, error);
      return "cut";
    }
  }

  /**
   * Waits for the next request on a kept-alive connection: the watch's
   * read, if one was made, is its first.
   */
  async #next(
    deadline: Deadline,
    rest: Uint8Array,
    watch: PeerWatch,
  ): Promise<Uint8Array | undefined> {
    if (rest.length === 0) {
      // Idle: a shutdown closes it at once.
      deadline.phase = "idle";
      deadline.arm(this.#settings.keepAliveTimeout);
      const bytes = await (watch.take() ?? readSome(deadline.conn));
      if (bytes === null || this.#stopping()) return;
      rest = bytes;
    }
    // A request has begun: its head has handshakeTimeout, as the first one.
    deadline.phase = "head";
    deadline.arm(this.#settings.headTimeout);
    return rest;
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
      await this.refuse(deadline, failure, method);
    }
  }

  /**
   * Half-closes and reads until the peer's FIN, for at most `closeTimeout`,
   * so that request bytes left unread do not turn the close into a reset
   * that destroys the answer in flight.
   */
  async #linger(
    deadline: Deadline,
    body?: RequestBody,
    watch?: PeerWatch,
  ): Promise<void> {
    // The app may still be reading the body: the connection is its to close.
    if (body?.reading) return;
    deadline.phase = "idle";
    deadline.arm(this.#settings.closeTimeout);
    try {
      await deadline.conn.closeWrite();
      // A read already waiting is the linger's first.
      const pending = watch?.take();
      if (pending !== undefined && await pending === null) return;
      const sink = new Uint8Array(IDLE_READ_SIZE);
      while (await deadline.conn.read(sink) !== null) {
        // Discard.
      }
    } catch {
      // Closed by the deadline or reset by the peer.
    }
  }
}

/** The framing of the answer to an upgrade refused by its hook: no body, then a close. */
const ANSWER_FRAMING: RequestFraming = Object.freeze({
  version: "HTTP/1.1",
  body: Object.freeze({ type: "length", length: 0 }),
  expectContinue: false,
  keepAlive: false,
});

/** One read of up to `IDLE_READ_SIZE` bytes: null at the end or on an error. */
function readSome(conn: Pick<Transport, "read">): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(IDLE_READ_SIZE);
  return conn.read(buffer).then(
    (n) => n === null ? null : buffer.subarray(0, n),
    () => null,
  );
}

/**
 * The one read of a connection while its request's answer is prepared and
 * sent, made once the request is read to its end: it finds the client gone
 * (FIN or reset) and stops the connection, so that whatever waits on it
 * ends; or it finds the start of the next request (pipelining), kept for
 * whoever reads next (`take`). A read cannot be taken back, so there is at
 * most one, and it is always handed on.
 */
class PeerWatch {
  /** Whether the read brought bytes (the next request has begun). */
  received = false;
  #deadline: Deadline;
  #read: Promise<Uint8Array | null> | undefined;
  #started = false;

  constructor(deadline: Deadline) {
    this.#deadline = deadline;
  }

  /** Starts the read, once. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const read = this.#read = readSome(this.#deadline.conn);
    read.then((bytes) => {
      if (bytes === null) this.#deadline.stop();
      else this.received = true;
    });
  }

  /** The read, handed to the next reader; undefined when there is none. */
  take(): Promise<Uint8Array | null> | undefined {
    const read = this.#read;
    this.#read = undefined;
    return read;
  }
}

/**
 * A request body as it arrives: the bytes read after the head, then reads
 * from the connection as the application (or the drain after the response)
 * asks, decoded by a `BodyDecoder`. Reads are taken one at a time, in order,
 * each bounded by the stall limit (`idleTimeout`) and all of them by
 * `bodyTimeout`. Once the body is whole, the watch starts.
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
  /** When the whole body must have come (`Date.now()` time). */
  #until: number;
  #decoder: BodyDecoder | undefined;
  #length: number | undefined;
  #pending: Uint8Array;
  /** A `100 Continue` is owed before the first read (RFC 9110 §10.1.1). */
  #continue: boolean;
  #watch: PeerWatch;
  #last: Promise<unknown> = Promise.resolve();

  constructor(
    deadline: Deadline,
    framing: RequestFraming,
    leftover: Uint8Array,
    limits: Http1Limits,
    settings: HttpSettings,
    watch: PeerWatch,
  ) {
    this.#deadline = deadline;
    this.#stall = settings.idleTimeout;
    this.#until = settings.bodyTimeout > 0
      ? Date.now() + settings.bodyTimeout
      : Infinity;
    this.#watch = watch;
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
        let data: Uint8Array | null;
        try {
          data = await this.read();
        } catch (error) {
          controller.error(error);
          return;
        }
        if (data === null) controller.close();
        else controller.enqueue(data);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * The next piece of the body, or `null` at its end; rejects once it
   * failed. One piece per read of the connection, whatever the chunking.
   */
  read(): Promise<Uint8Array | null> {
    const result = this.#last.then(() => this.#pull());
    this.#last = result.then(ignore, ignore);
    return result;
  }

  /** Reads and drops the rest of the body; false past `limit` bytes or on failure. */
  async drain(limit: number): Promise<boolean> {
    let drained = 0;
    try {
      for (let data; (data = await this.read()) !== null;) {
        drained += data.length;
        if (drained > limit) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  async #pull(): Promise<Uint8Array | null> {
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
        const { data, consumed, done } = decoder.push(input);
        if (done) {
          // A copy: the data handed out may be a view of the same bytes.
          if (consumed < input.length) this.rest = input.slice(consumed);
          else this.#watch.start();
        }
        // A piece much smaller than the buffer it lies in is copied, so
        // that what the app keeps stays proportional to the body.
        if (data.length > 0) {
          return data.length * 2 < data.buffer.byteLength ? data.slice() : data;
        }
      }
      return null;
    } catch (error) {
      this.failure =
        this.#deadline.expired || error instanceof Deno.errors.TimedOut
          ? new Deno.errors.TimedOut(
            Date.now() >= this.#until
              ? "The request body took longer than bodyTimeout"
              : "The request body stalled",
          )
          : error;
      throw this.failure;
    }
  }

  /** One read of the connection, after the `100 Continue` it may owe. */
  async #read(decoder: BodyDecoder): Promise<Uint8Array | null> {
    // Each wait on the client has the stall limit, and none goes past the
    // body's deadline (0: neither applies).
    const left = this.#until - Date.now();
    if (left <= 0) throw new Deno.errors.TimedOut("The body's time is up");
    const within = Math.min(this.#stall > 0 ? this.#stall : Infinity, left);
    const limit = within === Infinity ? 0 : within;
    this.reading = true;
    try {
      if (this.#continue) {
        this.#continue = false;
        // "A server MAY omit sending a 100 (Continue) response if it has
        // already received some or all of the content" or has answered
        // (RFC 9110 §10.1.1).
        if (!this.headWritten) {
          await this.#deadline.write(CONTINUE_RESPONSE, limit);
        }
      }
      const size = this.#length === undefined
        ? 16 * 1024
        : Math.min(BODY_READ_SIZE, this.#length - decoder.received);
      const buffer = new Uint8Array(size);
      const n = await this.#deadline.read(buffer, limit);
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
