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
import { echo, serveFloor, upgrade } from "./_floor.ts";

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn);
  if (upgraded !== undefined) return echo(conn, upgraded.leftover);
}

await serveFloor(handshake);
