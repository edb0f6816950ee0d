import assert from "node:assert/strict";
import { serve, type WebSocketConnection } from "../mod.ts";
import { frame, RawClient } from "./_raw_client.ts";
import { deadline, floodUntilStalled } from "./_util.ts";

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
