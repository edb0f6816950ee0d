/**
 * The floor of a server built as this module's brief asks: the floor with
 * the echo's streams (floor_streams.ts), whose accept value is the module's
 * own (`computeAccept` in src/engine/_accept_value.ts: WebCrypto's SHA-1,
 * `crypto.subtle.digest`, awaited) rather than `node:crypto`'s synchronous
 * one. It approximates the most handshakes per second that a server handing
 * sockets out as web streams and hashing as this module does can reach on
 * `Deno.Conn`
 * (`deno task bench --scenarios e --servers ours,floor,floorstreams,floorwebcrypto`).
 *
 * @module
 */
import { computeAccept } from "../../src/engine/_accept_value.ts";
import { echo, lockedStreams, serveFloor, upgrade } from "./_floor.ts";

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn, computeAccept);
  if (upgraded === undefined) return;
  lockedStreams();
  return echo(conn, upgraded.leftover);
}

await serveFloor(handshake);
