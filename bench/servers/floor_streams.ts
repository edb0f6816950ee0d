/**
 * The floor with the echo's streams: the floor (floor.ts), plus, for each
 * connection, the two web streams that `socket.readable.pipeTo(socket.writable)`
 * asks of Deno in any server that hands a socket out as streams
 * (`lockedStreams` in _floor.ts), made once the `101` is out. Nothing goes
 * through them; the echo is the floor's. It measures what the streams alone
 * cost in (e): the part of our handshake that no code of ours can remove
 * (`deno task bench --scenarios e --servers ours,floor,floorstreams`).
 *
 * @module
 */
import { echo, lockedStreams, serveFloor, upgrade } from "./_floor.ts";

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn);
  if (upgraded === undefined) return;
  lockedStreams();
  return echo(conn, upgraded.leftover);
}

await serveFloor(handshake);
