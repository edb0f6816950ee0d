// A socket's readable piped into a socket's writable runs directly, with no
// stream promise per message: these check that it keeps pipeTo's meaning
// (order, backpressure, ends, errors, locks) between two sockets.

import assert from "node:assert/strict";
import { serve, type WebSocketConnection } from "../mod.ts";
import { closePayload, frame, RawClient, text } from "./_raw_client.ts";
import { deadline } from "./_util.ts";

/** A server whose first socket is piped into its second; both are returned. */
async function bridge(options: StreamPipeOptions | undefined) {
  const sockets: WebSocketConnection[] = [];
  // In an object: resolving with the promise itself would wait for it.
  const piped = Promise.withResolvers<{ pipe: Promise<void> }>();
  const server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      sockets.push(socket);
      if (sockets.length === 2) {
        piped.resolve({
          pipe: sockets[0].readable.pipeTo(sockets[1].writable, options),
        });
      }
    },
  );
  const from = await RawClient.open(server.addr.port);
  const to = await RawClient.open(server.addr.port);
  const { pipe } = await deadline(piped.promise, "the pipe");
  pipe.catch(() => {});
  return { server, from, to, sockets, pipe };
}

Deno.test("pipeTo between two sockets carries every message in order and locks both streams", async () => {
  const { server, from, to, sockets, pipe } = await bridge(undefined);
  await using _server = server;
  await using _from = from;
  await using _to = to;
  assert.equal(sockets[0].readable.locked, true);
  assert.equal(sockets[1].writable.locked, true);
  for (let i = 0; i < 300; i++) await from.write(frame(1, `message ${i}`));
  for (let i = 0; i < 300; i++) {
    const got = await deadline(to.readFrame(), "a piped message");
    assert.equal(text(got!.payload), `message ${i}`);
  }
  // The source's clean close closes the target's writable: a close frame
  // with no code, and the pipe resolves.
  await from.write(frame(8, closePayload(1000)));
  const close = await deadline(to.readFrame(), "the target's close");
  assert.equal(close?.opcode, 8);
  assert.equal(close?.payload.length, 0);
  await deadline(pipe, "the pipe to resolve");
  assert.equal(sockets[0].readable.locked, false);
  assert.equal(sockets[1].writable.locked, false);
});

Deno.test("pipeTo between two sockets holds the source while the target's peer does not read", async () => {
  const { server, from, to, sockets, pipe } = await bridge(undefined);
  await using _server = server;
  await using _from = from;
  await using _to = to;
  // The target's peer reads nothing: the target's queue stays bounded and
  // the source stops taking messages (its inbox, then TCP, push back).
  const chunk = frame(2, new Uint8Array(32 * 1024));
  let written = 0;
  while (written < 64 * 1024 * 1024) {
    const outcome = await Promise.race([
      from.write(chunk).then(() => "written"),
      new Promise((resolve) => setTimeout(resolve, 300, "stalled")),
    ]);
    if (outcome === "stalled") break;
    written += chunk.length;
  }
  assert.ok(written < 64 * 1024 * 1024, "the source stops reading");
  assert.ok(
    sockets[1].bufferedAmount <= 64 * 1024 + chunk.length,
    `target buffered ${sockets[1].bufferedAmount}`,
  );
  from.close();
  to.close();
  await deadline(pipe.then(() => {}, () => {}), "the pipe to end");
});

Deno.test("pipeTo between two sockets: a target that closes cancels the source, and the pipe rejects with a TypeError", async () => {
  const { server, from, to, sockets, pipe } = await bridge(undefined);
  await using _server = server;
  await using _from = from;
  await using _to = to;
  await to.write(frame(8, closePayload(4000)));
  await deadline(sockets[1].closed, "the target to close");
  await from.write(frame(1, "after the target closed"));
  await assert.rejects(deadline(pipe, "the pipe to reject"), TypeError);
  // The source is closed (no code: a TypeError carries none).
  const close = await deadline(from.readFrame(), "the source's close");
  assert.equal(close?.opcode, 8);
  assert.equal(close?.payload.length, 0);
});

Deno.test("pipeTo between two sockets: a source that fails aborts the target with its code", async () => {
  const { server, from, to, pipe } = await bridge(undefined);
  await using _server = server;
  await using _from = from;
  await using _to = to;
  // Reserved bits: the source fails with 1002; the target's writable is
  // aborted with that error, which carries no code an app may send.
  await from.write(frame(1, "bad", { rsv: 2 }));
  await assert.rejects(deadline(pipe, "the pipe to reject"), (error) => {
    assert.equal((error as { closeCode?: number }).closeCode, 1002);
    return true;
  });
  const close = await deadline(to.readFrame(), "the target's close");
  assert.equal(close?.opcode, 8);
});

Deno.test("pipeTo with preventClose keeps the target open after the source ends (the streams' own pipe)", async () => {
  const { server, from, to, sockets, pipe } = await bridge({
    preventClose: true,
  });
  await using _server = server;
  await using _from = from;
  await using _to = to;
  await from.write(frame(1, "one"));
  assert.equal(text((await deadline(to.readFrame(), "one"))!.payload), "one");
  await from.write(frame(8, closePayload(1000)));
  await deadline(pipe, "the pipe to resolve");
  // Not closed: it still sends.
  assert.ok(sockets[1].send("still open") > 0);
  assert.equal(
    text((await deadline(to.readFrame(), "the send"))!.payload),
    "still open",
  );
});
