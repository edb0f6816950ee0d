/**
 * The floor with the echo's streams: the floor (floor.ts), plus, for each
 * connection, what `socket.readable.pipeTo(socket.writable)` asks of Deno's
 * web streams in any server that hands a socket out as streams: a
 * `ReadableStream` (an underlying source with start, pull and cancel, a
 * high-water mark of 2) and a `WritableStream` (a sink with write, close and
 * abort, a size function), both locked as a pipe locks them (`getReader`,
 * `getWriter`), made once the `101` is out. Nothing goes through them and
 * nothing keeps them, as our direct pipe keeps them only weakly; the echo
 * is the floor's. It measures what the streams alone cost in (e): the part
 * of our handshake that no code of ours can remove
 * (`deno task bench --scenarios e --servers ours,floor,floorstreams`).
 *
 * @module
 */
import { echo, serveFloor, upgrade } from "./_floor.ts";

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

/** The two streams, locked as a pipe locks them; nothing keeps them. */
function streams(): void {
  const readable = new ReadableStream(new Source(), { highWaterMark: 2 });
  const writable = new WritableStream(new Sink(), {
    size: () => ++entered,
  });
  readable.getReader();
  writable.getWriter();
}

async function handshake(conn: Deno.Conn): Promise<void> {
  const upgraded = await upgrade(conn);
  if (upgraded === undefined) return;
  streams();
  return echo(conn, upgraded.leftover);
}

await serveFloor(handshake);
