/**
 * The floor: the least a WebSocket echo server in JavaScript on `Deno.Conn`
 * does, to show what `Deno.Conn` itself costs in (a)–(f). One async loop per
 * connection reads the upgrade head into a 1 KiB buffer, answers `101` with
 * the accept value, then reads into a 128-byte buffer (grown for larger
 * frames), unmasks each frame in place and writes every echo of one read at
 * once; a close frame is echoed and ends the connection. No limits, no
 * validation, no streams, no timers: not a server anyone should run, only a
 * measure (`deno task bench --servers ours,deno,floor`).
 *
 * @module
 */
import { writeAll } from "../../src/engine/_transport.ts";
import { concat } from "../../src/protocol/_bytes.ts";
import { frameHead, readFrameHead, serveFloor, upgrade } from "./_floor.ts";

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn);
  if (upgraded !== undefined) return echo(conn, upgraded.leftover);
}

async function echo(conn: Deno.Conn, leftover: Uint8Array): Promise<void> {
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

await serveFloor(handshake);
