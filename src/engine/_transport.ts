// The socket chores that server and client share: writing all of a buffer,
// closing quietly; and the client's reading of a head.

import { findHeadEnd } from "../http/_http.ts";

/** The byte stream under a connection: a `Deno.Conn` or `Deno.TlsConn`. */
export interface Transport {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/**
 * The first read of a head: most fit (a server's 101 is a few hundred
 * bytes); a bigger one grows the buffer.
 */
const FIRST_READ = 2048;
/** Shared by every head with nothing after it: it is never written to. */
const NOTHING = new Uint8Array(0);

/** A head read off a connection, and the bytes that followed it. */
export interface Head {
  head: Uint8Array;
  leftover: Uint8Array;
}

/**
 * Why no head was read: the peer left before sending a byte (`"eof"`),
 * left in the middle (`"truncated"`), or sent more than `maxSize` bytes
 * without ending the head (`"too-large"`).
 */
export type HeadFailure = "eof" | "truncated" | "too-large";

/**
 * Reads a response head (up to CRLF CRLF), as the client does, and the
 * bytes after it, which belong to what follows (the server's first
 * frames). Read errors are thrown; the caller bounds the time it may take.
 * The server reads request heads with `readRequestHead` (`../server/_http_server.ts`).
 */
export async function readHead(
  conn: Pick<Transport, "read">,
  maxSize: number,
): Promise<Head | HeadFailure> {
  let buffer = new Uint8Array(Math.min(FIRST_READ, maxSize + 4));
  let length = 0;
  while (true) {
    if (length === buffer.length) {
      if (length >= maxSize + 4) return "too-large";
      const bigger = new Uint8Array(Math.min(length * 2, maxSize + 4));
      bigger.set(buffer);
      buffer = bigger;
    }
    const n = await conn.read(buffer.subarray(length));
    if (n === null) return length === 0 ? "eof" : "truncated";
    const end = findHeadEnd(buffer.subarray(0, length + n), length - 3);
    length += n;
    if (end !== -1) {
      if (end > maxSize) return "too-large";
      return {
        head: buffer.subarray(0, end),
        leftover: end === length ? NOTHING : buffer.slice(end, length),
      };
    }
    if (length > maxSize) return "too-large";
  }
}

/** Writes all of `bytes`, however many writes it takes. */
export async function writeAll(
  conn: Pick<Transport, "write">,
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    // Most writes take everything at once: no view of the rest for them.
    written += await conn.write(
      written === 0 ? bytes : bytes.subarray(written),
    );
  }
}

/** Closes a connection, ignoring that it may be closed already. */
export function closeQuietly(conn: Pick<Transport, "close">): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Whether an error only says that the peer went away. */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.NotConnected;
}
