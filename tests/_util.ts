/** Helpers shared by the tests. */
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import {
  serve,
  type ServeOptions,
  type WebSocketConnection,
  WebSocketError,
  type WebSocketServer,
} from "../mod.ts";
import type { WebSocketHandler } from "../mod.ts";
import type { RawClient } from "./_raw_client.ts";

/** The echo handler: every message goes back as it came. */
export const echo: WebSocketHandler = (socket) =>
  socket.readable.pipeTo(socket.writable);

/** Starts a quiet server on 127.0.0.1 and a free port. */
export function start(
  options: ServeOptions = {},
  handler: WebSocketHandler = echo,
): WebSocketServer {
  return serve(
    { port: 0, hostname: "127.0.0.1", onListen() {}, ...options },
    handler,
  );
}

/**
 * How long a test waits for any one thing (a frame, an answer, a close, a
 * child process) before it fails, in ms: far above what anything takes on a
 * loaded machine, far below "hangs".
 */
export const WAIT_LIMIT = 10_000;

/** What `deadline` rejects with: a wait in a test took too long. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/**
 * Resolves as `promise` does, or rejects with a `DeadlineError` ("Timed out
 * after `ms` ms waiting for `what`") once `ms` have passed, first calling
 * `onTimeout` (to close what the wait was on, so that nothing is left
 * pending). The timer is cleared either way.
 */
export async function deadline<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT_LIMIT,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout?.();
          reject(
            new DeadlineError(`Timed out after ${ms} ms waiting for ${what}`),
          );
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise that never settles: a hook that never answers. */
export function never(): Promise<never> {
  return new Promise<never>(() => {});
}

/**
 * What a socket's `closed` settled with: its code and reason, and whether
 * it rejected (with a `WebSocketError`, else this fails); with a deadline.
 */
export function settled(
  socket: WebSocketConnection,
): Promise<{ closeCode: number; reason: string; error: boolean }> {
  return deadline(
    socket.closed.then(
      ({ closeCode, reason }) => ({ closeCode, reason, error: false }),
      (error: unknown) => {
        assert.ok(error instanceof WebSocketError, `${error}`);
        return {
          closeCode: error.closeCode,
          reason: error.reason,
          error: true,
        };
      },
    ),
    "settled `closed`",
  );
}

/** Resolves after `ms` ms. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let gc: (() => void) | undefined;

/**
 * Collects what nothing holds: a full garbage collection, after the current
 * job (a `WeakRef` made in it keeps its target until the job ends).
 */
export async function collectGarbage(): Promise<void> {
  if (gc === undefined) {
    v8.setFlagsFromString("--expose-gc");
    gc = vm.runInNewContext("gc") as () => void;
  }
  await sleep(0);
  gc();
}

/** A free TCP port on 127.0.0.1 (free when asked; fine for a test). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Polls `check` every `every` ms until it holds; rejects with a
 * `DeadlineError` naming `what` once `ms` have passed.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms: number = WAIT_LIMIT,
  every = 10,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) {
      throw new DeadlineError(`Timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(every);
  }
}

/**
 * A quiet server (see `start`) whose disposal waits for its shutdown with a
 * deadline, so that a server that cannot shut down fails the test.
 */
export function serveLocal(
  options: ServeOptions = {},
  handler: WebSocketHandler = echo,
): { server: WebSocketServer; port: number } & AsyncDisposable {
  const server = start(options, handler);
  return {
    server,
    port: server.addr.port,
    [Symbol.asyncDispose]: () => deadline(server.shutdown(), "server shutdown"),
  };
}

/**
 * Runs `fn` with `console.error` collecting the arguments of each call in
 * `logged`, and puts `console.error` back afterwards.
 */
export async function capturingConsoleError(
  fn: (logged: unknown[][]) => unknown,
): Promise<void> {
  const original = console.error;
  const logged: unknown[][] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    await fn(logged);
  } finally {
    console.error = original;
  }
}

/**
 * Stops a child process that a test started: waits up to `grace` ms for it
 * to exit by itself (after its stdin was closed, say), then kills it and
 * waits for that. Returns its status either way, so that a test can check
 * the exit code; never leaves the process running.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  grace = WAIT_LIMIT,
): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    child.status,
    new Promise<null>((resolve) => timer = setTimeout(resolve, grace, null)),
  ]).finally(() => clearTimeout(timer));
  if (exited) return exited;
  try {
    child.kill("SIGKILL");
  } catch {
    // It exited meanwhile.
  }
  return await child.status;
}

/**
 * Runs a command to its end and returns its output, as
 * `new Deno.Command(command, options).output()` does, but kills it (SIGTERM)
 * if it runs longer than `limit` ms.
 */
export async function runCommand(
  command: string,
  options: Omit<Deno.CommandOptions, "signal">,
  limit = 3 * WAIT_LIMIT,
): Promise<Deno.CommandOutput> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), limit);
  try {
    return await new Deno.Command(command, {
      ...options,
      signal: controller.signal,
    }).output();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Moves `Date.now()` `ms` ahead until disposed, as if that much time had
 * passed for code that measures time by comparing its readings (timers
 * still fire on the real clock). For timeouts too long to wait for.
 */
export function shiftClock(ms: number): Disposable {
  const now = Date.now;
  Date.now = () => now() + ms;
  return {
    [Symbol.dispose]() {
      Date.now = now;
    },
  };
}

/**
 * Runs `make` with `setInterval` delays cut to at most `max` ms, so that an
 * interval timer it starts (a heartbeat's, say) ticks often; timers started
 * later are untouched.
 */
export function withFastIntervals<T>(max: number, make: () => T): T {
  const setInterval = globalThis.setInterval;
  globalThis.setInterval =
    ((fn: () => void, ms?: number) =>
      setInterval(fn, Math.min(ms ?? 0, max))) as typeof setInterval;
  try {
    return make();
  } finally {
    globalThis.setInterval = setInterval;
  }
}

/** Joins byte arrays into one. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A tiny seeded PRNG (mulberry32), so random tests replay exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An xorshift32 generator: each call returns the next state (an int32). */
function _xorshift32(seed: number): () => number {
  let state = seed;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state;
  };
}

/** Printable pseudo-random text (xorshift32): compressible, not trivially. */
export function pseudoText(length: number, seed = 1): string {
  const next = _xorshift32(0x9e3779b9 ^ seed);
  const codes = new Uint8Array(length);
  for (let i = 0; i < length; i++) codes[i] = 97 + ((next() >>> 0) % 26);
  return new TextDecoder().decode(codes);
}

/** Pseudo-random bytes in short runs (xorshift32): compressible binary. */
export function pseudoBytes(length: number, seed = 7): Uint8Array {
  const next = _xorshift32(0x12345678 ^ seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length;) {
    const state = next();
    const run = 1 + ((state >>> 8) & 15);
    bytes.fill(state & 0xff, i, i + run);
    i += run;
  }
  return bytes;
}

/**
 * Pseudo-random bytes (xorshift32), one per step: hardly compressible. The
 * same `seed` gives the same bytes, so a failure replays exactly.
 */
export function pseudoRandomBytes(length: number, seed = 0): Uint8Array {
  const next = _xorshift32(0x9e3779b9 ^ seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
  return bytes;
}

/**
 * The payload of a message in the fragment tests (see
 * `_fixtures/fragment_sender.ts`): for `"text"`, UTF-8 with 1- to 4-byte
 * characters, so that fragments cut them; otherwise pseudo-random bytes.
 * `length` is a multiple of 16.
 */
export function fragmentPayload(kind: string, length: number): Uint8Array {
  if (kind !== "text") return pseudoRandomBytes(length);
  const unit = new TextEncoder().encode("abcd\u00e9\u20ac\u{1F600}xyz");
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += unit.length) bytes.set(unit, at);
  return bytes;
}

/**
 * Writes `bytes` over and over until a write stalls for `stallMs` (the peer
 * stopped reading and TCP pushed back) or `limit` bytes are written; returns
 * how many bytes were written.
 */
export async function floodUntilStalled(
  client: RawClient,
  bytes: Uint8Array,
  stallMs: number,
  limit: number,
): Promise<number> {
  let total = 0;
  while (total < limit) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<"stalled">((resolve) => {
      timer = setTimeout(() => resolve("stalled"), stallMs);
    });
    const write = client.write(bytes).then(() => "written" as const);
    const outcome = await Promise.race([write, stalled]);
    clearTimeout(timer);
    if (outcome === "stalled") {
      write.catch(() => {});
      return total;
    }
    total += bytes.length;
  }
  return total;
}

/**
 * The check for `assert.throws`/`assert.rejects` that the error is a
 * `WebSocketError` with `closeCode`.
 */
export function isCloseError(closeCode: number): (error: unknown) => true {
  return (error: unknown) => {
    assert.ok(
      error instanceof WebSocketError,
      `not a WebSocketError: ${error}`,
    );
    assert.equal(error.closeCode, closeCode);
    return true;
  };
}

/** Asserts that `fn` throws a `WebSocketError` with `closeCode`. */
export function assertCloseError(fn: () => unknown, closeCode: number): void {
  assert.throws(fn, isCloseError(closeCode));
}

/**
 * Asserts that two byte arrays are equal, reporting the lengths and the
 * first difference: `assert.deepEqual`'s diff of two large arrays takes
 * minutes, which would turn a failure into a hang.
 */
export function assertBytesEqual(
  actual: unknown,
  expected: Uint8Array,
  what = "bytes",
): void {
  assert.ok(actual instanceof Uint8Array, `${what} is a Uint8Array`);
  const length = Math.min(actual.length, expected.length);
  let at = -1;
  for (let i = 0; i < length; i++) {
    if (actual[i] !== expected[i]) {
      at = i;
      break;
    }
  }
  if (at === -1 && actual.length !== expected.length) at = length;
  if (at !== -1) {
    assert.fail(
      `${what}: first difference at byte ${at} (length ${actual.length}, ` +
        `expected ${expected.length})`,
    );
  }
}

/**
 * Asserts that a message that came back is the one sent: same kind, same
 * length, same bytes (reporting the first difference rather than printing
 * 1 MiB). `what` names it in the failure, e.g. "the text echo".
 */
export function assertSameMessage(
  actual: string | Uint8Array | undefined,
  expected: string | Uint8Array,
  what: string,
): void {
  if (typeof expected === "string") {
    assert.equal(typeof actual, "string", `${what} is text`);
    assert.equal(
      (actual as string).length,
      expected.length,
      `${what}'s length`,
    );
    assert.ok(actual === expected, `${what}'s text`);
    return;
  }
  assert.ok(actual instanceof Uint8Array, `${what} is binary`);
  assertBytesEqual(actual, expected, what);
}

/** `assertSameMessage` for each of a list of messages, and their number. */
export function assertSameMessages(
  actual: readonly (string | Uint8Array | undefined)[],
  expected: readonly (string | Uint8Array)[],
  what = "message",
): void {
  assert.equal(actual.length, expected.length, `the number of ${what}s`);
  expected.forEach((message, i) =>
    assertSameMessage(actual[i], message, `${what} ${i}`)
  );
}
