/**
 * What the floors (floor.ts, floor_streams.ts, floor_webcrypto.ts,
 * floor_fanout.ts) share: the accept loop, the least an upgrade takes (the
 * head read into a 1 KiB buffer, the `101` with the accept value), reading a
 * client frame's header, with no checks, and the two web streams an echo's
 * pipe asks for.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { GUID } from "../../src/engine/_accept_value.ts";
import { writeAll } from "../../src/engine/_transport.ts";
import { concat } from "../../src/protocol/_bytes.ts";
import { handleSignals, portFlag } from "./_common.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const KEY = /\r\nsec-websocket-key:[ \t]*([^\r\n]*?)[ \t]*\r\n/i;
const PATH = /^GET ([^ ]*) /;

/** An upgraded connection's request path and the bytes after its head. */
export interface Upgraded {
  path: string;
  leftover: Uint8Array;
}

/**
 * Reads the upgrade head and answers `101`; undefined (the connection
 * closed) when the head is missing, too large or has no key. The accept
 * value is {@linkcode acceptValue}'s, or what `digest` resolves to.
 */
export async function upgrade(
  conn: Deno.Conn,
  digest?: (key: string) => Promise<string>,
): Promise<Upgraded | undefined> {
  const head = new Uint8Array(1024);
  let length = 0;
  for (;;) {
    const read = await conn.read(head.subarray(length));
    if (read === null || length + read === head.length) {
      conn.close();
      return undefined;
    }
    length += read;
    const text = decoder.decode(head.subarray(0, length));
    if (!text.includes("\r\n\r\n")) continue;
    const key = KEY.exec(text)?.[1];
    if (key === undefined) {
      conn.close();
      return undefined;
    }
    // No await without a digest: the bare floor takes no extra turn.
    const accept = digest === undefined ? acceptValue(key) : await digest(key);
    await writeAll(
      conn,
      encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
    );
    return {
      path: PATH.exec(text)?.[1] ?? "/",
      // A copy, so that the head's buffer is not kept.
      leftover: head.slice(text.indexOf("\r\n\r\n") + 4, length),
    };
  }
}

/**
 * The accept value by `node:crypto`'s synchronous SHA-1, the cheapest the
 * platform has: the floor is the least a server on `Deno.Conn` does, not
 * what this module does (WebCrypto's asynchronous digest, which its brief
 * asks for; see bench/README.md, "The handshake's SHA-1").
 */
export function acceptValue(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/**
 * The floor's echo after the upgrade: reads into a 128-byte buffer (grown
 * for larger frames), unmasks each frame in place and writes every echo of
 * one read at once; a close frame is echoed and ends the connection.
 */
export async function echo(
  conn: Deno.Conn,
  leftover: Uint8Array,
): Promise<void> {
  let buffer = new Uint8Array(Math.max(128, leftover.length));
  buffer.set(leftover);
  let length = leftover.length;
  for (;;) {
    // Parse every whole frame held; echoes go out together.
    const out: Uint8Array[] = [];
    let at = 0;
    let closing = false;
    let need = 2;
    while (length - at >= 2) {
      if (!readFrameHead(buffer, at, length)) break;
      const { header, size } = frameHead;
      const second = buffer[at + 1] & 0x7f;
      need = header + 4 + size;
      if (length - at < need) break;
      const payload = buffer.subarray(at + header + 4, at + need);
      for (let i = 0; i < size; i++) {
        payload[i] ^= buffer[at + header + (i & 3)];
      }
      const frame = new Uint8Array(header + size);
      frame[0] = buffer[at];
      frame[1] = second;
      frame.set(buffer.subarray(at + 2, at + header), 2);
      frame.set(payload, header);
      out.push(frame);
      if ((buffer[at] & 0x0f) === 8) closing = true;
      at += need;
      need = 2;
    }
    buffer.copyWithin(0, at, length);
    length -= at;
    if (out.length > 0) {
      await writeAll(conn, concat(out, out.reduce((n, f) => n + f.length, 0)));
    }
    if (closing) return conn.close();
    if (need > buffer.length) {
      const grown = new Uint8Array(Math.max(need, buffer.length * 2));
      grown.set(buffer.subarray(0, length));
      buffer = grown;
    } else if (length === buffer.length) {
      const grown = new Uint8Array(buffer.length * 2);
      grown.set(buffer);
      buffer = grown;
    }
    const read = await conn.read(buffer.subarray(length));
    if (read === null) return conn.close();
    length += read;
  }
}

/** The last header read by {@linkcode readFrameHead}. */
export const frameHead = { header: 0, size: 0 };

/**
 * Reads the header of the masked frame at `at` in `buffer[0..length)` into
 * {@linkcode frameHead}: its length before the mask key, and the payload's.
 * False while the header is incomplete.
 */
export function readFrameHead(
  buffer: Uint8Array,
  at: number,
  length: number,
): boolean {
  const second = buffer[at + 1] & 0x7f;
  let header = 2;
  let size = second;
  if (second === 126) {
    header = 4;
    if (length - at < 4) return false;
    size = (buffer[at + 2] << 8) | buffer[at + 3];
  } else if (second === 127) {
    header = 10;
    if (length - at < 10) return false;
    size = Number(
      new DataView(buffer.buffer, buffer.byteOffset + at + 2, 8)
        .getBigUint64(0),
    );
  }
  frameHead.header = header;
  frameHead.size = size;
  return true;
}

/**
 * Listens on 127.0.0.1 (`--port`), prints the port and hands each
 * connection to `handle`; a connection whose handler fails is closed.
 */
export async function serveFloor(
  handle: (conn: Deno.Conn) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ port: portFlag(), hostname: "127.0.0.1" });
  console.log((listener.addr as Deno.NetAddr).port);
  handleSignals();
  for await (const conn of listener) {
    handle(conn).catch(() => {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    });
  }
}

type Message = string | Uint8Array;

/** Shaped as our socket's source (src/socket/_inbox.ts): methods, no closures. */
class Source implements UnderlyingDefaultSource<Message> {
  controller: ReadableStreamDefaultController<Message> | undefined;
  start(controller: ReadableStreamDefaultController<Message>): void {
    this.controller = controller;
  }
  pull(): void {}
  cancel(): void {}
}

/** Shaped as our socket's sink (src/socket/socket.ts). */
class Sink implements UnderlyingSink<Message> {
  write(): void {}
  close(): void {}
  abort(): void {}
}

let entered = 0;

/**
 * What `socket.readable.pipeTo(socket.writable)` asks of Deno's web streams
 * in any server that hands a socket out as streams: a `ReadableStream` (an
 * underlying source with start, pull and cancel, a high-water mark of 2) and
 * a `WritableStream` (a sink with write, close and abort, a size function),
 * both locked as a pipe locks them (`getReader`, `getWriter`). Nothing keeps
 * them, as our direct pipe keeps them only weakly.
 */
export function lockedStreams(): void {
  const readable = new ReadableStream(new Source(), { highWaterMark: 2 });
  const writable = new WritableStream(new Sink(), {
    size: () => ++entered,
  });
  readable.getReader();
  writable.getWriter();
}
