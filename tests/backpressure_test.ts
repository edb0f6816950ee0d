import assert from "node:assert/strict";
import { serve, type WebSocketConnection } from "../mod.ts";
import { RawClient } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import { concat, deadline, floodUntilStalled, start } from "./_util.ts";

Deno.test("§8 a client that floods and never reads keeps the echo server's send queue bounded", async () => {
  const sockets: WebSocketConnection[] = [];
  let maxBuffered = 0;
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (socket) => {
      sockets.push(socket);
      const writer = socket.writable.getWriter();
      try {
        for await (const message of socket.readable) {
          await writer.write(message);
          maxBuffered = Math.max(maxBuffered, socket.bufferedAmount);
        }
      } catch {
        // The flooding client resets the connection at the end.
      }
    },
  );
  const client = await RawClient.open(server.addr.port);
  const message = frame(2, new Uint8Array(16 * 1024));
  const limit = 512 * 1024 * 1024;
  const sent = await floodUntilStalled(client, message, 500, limit);
  assert.ok(
    sent < limit,
    "the server stops reading once its echoes cannot be sent",
  );
  // Queued echoes stay within the 64 KiB mark plus one message.
  assert.ok(
    maxBuffered <= 64 * 1024 + message.length,
    `max buffered ${maxBuffered}`,
  );
  assert.ok(sockets[0].bufferedAmount <= 64 * 1024 + message.length);
  client.close();
  await deadline(sockets[0].closed, "the server's socket to close").catch(
    () => {},
  );
});

Deno.test("§8 the server stops reading TCP while the application does not read", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => opened.resolve(socket),
  );
  await using client = await RawClient.open(server.addr.port);
  const socket = await deadline(opened.promise, "the server's socket");
  const message = frame(2, new Uint8Array(64 * 1024));
  const limit = 256 * 1024 * 1024;
  // Without backpressure loopback would swallow the whole limit in well
  // under the stall time; with it, only kernel buffers and one read fill.
  const sent = await floodUntilStalled(client, message, 500, limit);
  assert.ok(sent < 64 * 1024 * 1024, `sent ${sent} bytes before stalling`);
  // Reading resumes the flow: the queued messages arrive whole.
  const reader = socket.readable.getReader();
  const first = await deadline(reader.read(), "a message from readable");
  assert.equal((first.value as Uint8Array).length, 64 * 1024);
  // A reader that stops reading has to cancel for the peer's end to be seen.
  client.close();
  await deadline(reader.cancel(), "readable to cancel");
  assert.equal(
    (await deadline(socket.closed, "the socket to close").then(
      () => null,
      (e) => e,
    ))
      ?.closeCode,
    1006,
  );
});

Deno.test("§8 a peer that sends pings and never reads the pongs is no longer read, and the queued pongs stay bounded", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  // The handler reads nothing, but pings are no messages: only the pongs
  // piling up in the send queue can stop the reading.
  await using server = start({}, (socket) => opened.resolve(socket));
  const client = await RawClient.open(server.addr.port);
  try {
    const socket = await deadline(opened.promise, "the server's socket");
    const ping = frame(9, new Uint8Array(125));
    const batch = concat(Array.from({ length: 512 }, () => ping));
    const limit = 64 * 1024 * 1024;
    const sent = await floodUntilStalled(client, batch, 500, limit);
    // Kernel buffers hold some megabytes of pings and pongs; a server that
    // kept reading would take the whole limit and queue its pongs.
    assert.ok(sent < limit, "the server stops reading");
    // The queue goes over its 64 KiB mark by at most one read's pongs
    // (reads are at most 256 KiB).
    const queued = socket.bufferedAmount;
    assert.ok(queued <= 64 * 1024 + 256 * 1024, `${queued} bytes queued`);
  } finally {
    client.close();
  }
});

Deno.test("§7.1.2 after close(), messages that arrive before the peer's close are delivered while readable has room, the rest dropped", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  // The handler closes at once and reads nothing (yet).
  await using server = start({}, (socket) => {
    opened.resolve(socket);
    socket.close({ closeCode: 4000 });
  });
  await using client = await RawClient.open(server.addr.port);
  const socket = await deadline(opened.promise, "the server's socket");
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8, "the server's close");
  // A peer that has not seen the close yet sends many messages before its
  // answer.
  const count = 200;
  await client.write(
    concat([
      ...Array.from({ length: count }, (_, i) => frame(1, `message ${i}`)),
      frame(8, closePayload(4000)),
    ]),
  );
  assert.equal(await client.readEof(), true, "the server closes TCP");
  client.close();
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4000,
    reason: "",
    wasClean: true,
  });
  const kept = await deadline(
    Array.fromAsync(socket.readable),
    "the end of readable",
  );
  // The socket keeps a bounded number of messages for `readable` (64 in its
  // inbox, 2 in `readable` itself): the first ones, in order; the rest are
  // not buffered.
  assert.ok(kept.length >= 1, "the first messages are delivered");
  assert.ok(kept.length <= 66, `${kept.length} of ${count} messages kept`);
  kept.forEach((message, i) => assert.equal(message, `message ${i}`));
});
