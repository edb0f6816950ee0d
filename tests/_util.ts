/** Helpers shared by the tests. */
import { serve, type ServeOptions, type WebSocketServer } from "../mod.ts";
import type { WebSocketHandler } from "../mod.ts";

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
