/** Helpers shared by the tests. */
import assert from "node:assert/strict";
import {
  serve,
  type ServeOptions,
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

/** Pseudo-random bytes (xorshift32), one per step: hardly compressible. */
export function pseudoRandomBytes(length: number): Uint8Array {
  const next = _xorshift32(0x9e3779b9);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() & 0xff;
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
  assert.equal(actual.length, expected.length, `${what}'s length`);
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  assert.equal(at, -1, `${what} differs at byte ${at}`);
}
