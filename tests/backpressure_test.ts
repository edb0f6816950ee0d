// Backpressure and reading over TCP: a socket stops reading its peer while
// the application does not read, and its peer while the peer does not read
// what it is sent; what it holds stays bounded; a socket paused either way
// still closes (§7.1.2), and one paused past idleTimeout is closed with 1011
// or 1013 (§7.1.7).

import assert from "node:assert/strict";
import {
  connect,
  serve,
  type WebSocketConnection,
  type WebSocketHandler,
} from "../mod.ts";
import { RawClient, text, tinyFrames } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import {
  concat,
  deadline,
  floodUntilStalled,
  serveLocal,
  settled,
  sleep,
  start,
  WAIT_LIMIT,
  waitFor,
} from "./_util.ts";

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

// --- Sockets whose reader or peer is paused (§7.1.2, §7.1.7) ---------------------------------

/** A handler that never reads `readable`: it only sends a greeting. */
function pushOnly(sockets: WebSocketConnection[]): WebSocketHandler {
  return (socket) => {
    sockets.push(socket);
    socket.writable.getWriter().write("welcome").catch(() => {});
  };
}

/**
 * Sends three messages in separate writes (so that the server reads them
 * in separate reads), then a close frame and FIN, and reads the answer.
 */
async function sendThreeThenLeave(
  client: RawClient,
): Promise<{ code: number | null; reason: string }> {
  for (let i = 1; i <= 3; i++) {
    await client.write(frame(1, `message ${i}`));
    await sleep(30);
  }
  await client.write(frame(8, closePayload(1000, "done")));
  await client.conn.closeWrite();
  return await deadline(client.readUntilClose(), "close answer");
}

Deno.test("§7.1.2 a push-only handler's socket answers the peer's close after 3 unread messages; closed settles and connections drops to 0", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal({}, pushOnly(sockets));
  await using client = await RawClient.open(local.port);
  const { code } = await sendThreeThenLeave(client);
  assert.equal(code, 1000);
  await waitFor(() => sockets.length === 1, "handler called");
  assert.deepEqual(await settled(sockets[0]), {
    closeCode: 1000,
    reason: "done",
    error: false,
  });
  await waitFor(() => local.server.connections === 0, "0 connections");
});

Deno.test("§7.1.2 five push-only sockets whose peers left do not hold maxConnections: 5; a sixth connects", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal({ maxConnections: 5 }, pushOnly(sockets));
  const clients = await Promise.all(
    Array.from({ length: 5 }, () => RawClient.open(local.port)),
  );
  try {
    const answers = await Promise.all(clients.map(sendThreeThenLeave));
    assert.deepEqual(answers.map((answer) => answer.code), [
      1000,
      1000,
      1000,
      1000,
      1000,
    ]);
    await waitFor(() => local.server.connections === 0, "0 connections");
    // RawClient.open throws unless the answer is 101 (not 503).
    await using sixth = await RawClient.open(local.port);
    const greeting = await deadline(sixth.readFrame(), "greeting");
    assert.equal(text(greeting!.payload), "welcome");
  } finally {
    for (const client of clients) client.close();
  }
  for (const socket of sockets.slice(0, 5)) {
    assert.equal((await settled(socket)).closeCode, 1000);
  }
});

Deno.test("RFC 7692 a push-only server socket with permessage-deflate answers a connect() client's close after 3 compressed messages", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal(
    { perMessageDeflate: true },
    pushOnly(sockets),
  );
  const client = await connect(`ws://127.0.0.1:${local.port}/`, {
    perMessageDeflate: true,
  });
  assert.match(client.extensions, /^permessage-deflate/);
  const writer = client.writable.getWriter();
  for (let i = 1; i <= 3; i++) {
    // Over the 1 KiB threshold: sent compressed.
    await deadline(writer.write(`message ${i} `.repeat(200)), "write");
    await sleep(30);
  }
  client.close({ closeCode: 1000, reason: "done" });
  assert.deepEqual(await settled(client), {
    closeCode: 1000,
    reason: "",
    error: false,
  });
  await waitFor(() => sockets.length === 1, "handler called");
  assert.deepEqual(await settled(sockets[0]), {
    closeCode: 1000,
    reason: "done",
    error: false,
  });
  await waitFor(() => local.server.connections === 0, "0 connections");
});

for (const perMessageDeflate of [false, true]) {
  Deno.test(
    `§7.1.2 a connect() client that never reads settles closed when the server sends 3 messages then closes${
      perMessageDeflate ? " (permessage-deflate)" : ""
    }`,
    async () => {
      const sockets: WebSocketConnection[] = [];
      await using local = serveLocal({ perMessageDeflate }, async (socket) => {
        sockets.push(socket);
        const writer = socket.writable.getWriter();
        for (let i = 1; i <= 3; i++) {
          await writer.write(`message ${i} `.repeat(200));
          await sleep(30);
        }
        socket.close({ closeCode: 1000, reason: "bye" });
      });
      const client = await connect(`ws://127.0.0.1:${local.port}/`, {
        perMessageDeflate,
      });
      assert.equal(client.extensions !== "", perMessageDeflate);
      assert.deepEqual(await settled(client), {
        closeCode: 1000,
        reason: "bye",
        error: false,
      });
      await waitFor(() => sockets.length === 1, "handler called");
      assert.equal((await settled(sockets[0])).closeCode, 1000);
    },
  );
}

Deno.test("§7.1.7 a socket whose application never reads what a flood brought is closed with 1011 after idleTimeout", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  await using local = serveLocal(
    { idleTimeout: 400, pingInterval: 100 },
    (socket) => opened.resolve(socket),
  );
  await using client = await RawClient.open(local.port);
  const socket = await deadline(opened.promise, "handler called");
  // 200 messages: more than the socket keeps before it stops reading.
  await client.write(
    concat(Array.from({ length: 200 }, (_, i) => frame(1, `flood ${i}`))),
  );
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1011);
  assert.equal(reason, "Messages not read");
  assert.deepEqual(await settled(socket), {
    closeCode: 1011,
    reason: "Messages not read",
    error: true,
  });
});

/**
 * A server with a 400 ms idleTimeout, whose handler `writes` (until the
 * socket closes); `opened` resolves with the first socket.
 */
function idleTimeoutServer(
  writes: (socket: WebSocketConnection) => Promise<void>,
) {
  const opened = Promise.withResolvers<WebSocketConnection>();
  const local = serveLocal(
    // Long enough that a loaded machine's pause is not taken for silence.
    { idleTimeout: 1000, pingInterval: 250, closeTimeout: 300 },
    async (socket) => {
      opened.resolve(socket);
      try {
        await writes(socket);
      } catch {
        // The socket closed.
      }
    },
  );
  return Object.assign(local, {
    opened: deadline(opened.promise, "handler called"),
  });
}

Deno.test("§7.1.7 a socket whose peer does not read what it is sent (a slow consumer) is closed with 1013 after idleTimeout", async () => {
  await using local = idleTimeoutServer(async (socket) => {
    const writer = socket.writable.getWriter();
    const chunk = new Uint8Array(64 * 1024);
    // Until write() waits for good: the peer's TCP window is full.
    while (true) await writer.write(chunk);
  });
  await using client = await RawClient.open(local.port);
  const socket = await local.opened;
  let ended = false;
  const end = settled(socket);
  end.then(() => ended = true, () => ended = true);
  // The peer keeps talking but never reads: once the server's queue is
  // full it stops reading, and only the peer not reading holds it.
  const giveUp = Date.now() + WAIT_LIMIT;
  while (!ended && Date.now() < giveUp) {
    await client.write(frame(1, "still here")).catch(() => {});
    await sleep(50);
  }
  assert.deepEqual(await end, {
    closeCode: 1013,
    reason: "Send queue stalled for 1 s",
    error: true,
  });
});

Deno.test("§7.1.7 an echo that awaits its writes, whose peer floods and never reads, is closed with 1013 after idleTimeout, not 1011", async () => {
  await using local = idleTimeoutServer(async (socket) => {
    const writer = socket.writable.getWriter();
    for await (const message of socket.readable) await writer.write(message);
  });
  await using client = await RawClient.open(local.port);
  const socket = await local.opened;
  // The echoes fill the peer's TCP window, then the server's queue; the
  // handler waits in write(), so its inbox fills too: the peer is the
  // cause, the application only waits for it.
  const burst = concat(
    Array.from({ length: 64 }, () => frame(2, new Uint8Array(16 * 1024))),
  );
  await floodUntilStalled(client, burst, 300, 256 * 1024 * 1024);
  assert.deepEqual(await settled(socket), {
    closeCode: 1013,
    reason: "Send queue stalled for 1 s",
    error: true,
  });
});

// --- A flood at a socket that does not read (§10.4) ---------------------------------

const BLOCKED = Symbol("blocked");

/** Resolves after `turns` microtask turns: no I/O or timer can run meanwhile. */
function microtaskTurns(turns: number): Promise<typeof BLOCKED> {
  let promise: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < turns; i++) promise = promise.then();
  return promise.then(() => BLOCKED);
}

/**
 * Reads every message the socket already holds, without letting the event
 * loop turn (so no more can be read off TCP); returns how many, and the
 * read left waiting for the next message.
 */
async function readHeld(
  reader: ReadableStreamDefaultReader<string | Uint8Array>,
): Promise<{ count: number; next: Promise<unknown> }> {
  let count = 0;
  while (true) {
    const read = reader.read();
    const outcome = await Promise.race([read, microtaskTurns(200)]);
    if (outcome === BLOCKED) return { count, next: read };
    assert.equal(outcome.done, false);
    count++;
  }
}

Deno.test("§10.4 a flood of tiny frames at a socket that does not read keeps at most 64 + 2 messages queued, and reading resumes", async () => {
  const opened = Promise.withResolvers<{
    socket: WebSocketConnection;
    reader: ReadableStreamDefaultReader<string | Uint8Array>;
  }>();
  await using local = serveLocal({}, (socket) => {
    // `readable` exists (its queue holds 2), but nobody reads yet.
    opened.resolve({ socket, reader: socket.readable.getReader() });
  });
  const client = await RawClient.open(local.port);
  const { socket, reader } = await deadline(opened.promise, "handler called");
  try {
    const limit = 256 * 1024 * 1024;
    const sent = await floodUntilStalled(client, tinyFrames(), 500, limit);
    assert.ok(sent < limit, "TCP pushed back");
    let most = 0;
    let total = 0;
    for (let round = 0; round < 6; round++) {
      const { count, next } = await readHeld(reader);
      // INBOX_MAX_MESSAGES (64) + readable's high-water mark (2).
      assert.ok(count <= 66, `round ${round}: ${count} messages were held`);
      most = Math.max(most, count);
      total += count;
      // Reading resumes once the queue drained: a new message comes.
      await deadline(next, "message once reading resumed");
      total++;
      await sleep(100);
    }
    console.log(
      `flood: ${sent} bytes written before TCP stalled; at most ${most} messages held; ${total} read in 6 rounds`,
    );
    assert.ok(most >= 3, `only ${most} messages were held`);
  } finally {
    client.close();
    await reader.cancel();
  }
  await settled(socket);
});

Deno.test("bufferedAmount counts what waits in writable's queue, for a peer that does not read", async () => {
  const size = 100 * 1024;
  const measured = Promise.withResolvers<number>();
  await using local = serveLocal({}, async (socket) => {
    const writer = socket.writable.getWriter();
    await writer.ready;
    // Three writes not awaited: one reaches the connection, two wait in
    // writable's queue.
    for (let i = 0; i < 3; i++) {
      writer.write(new Uint8Array(size)).catch(() => {});
    }
    measured.resolve(socket.bufferedAmount);
  });
  await using _client = await RawClient.open(local.port);
  const buffered = await deadline(measured.promise, "bufferedAmount");
  // Payloads plus at most a 10-byte header each.
  assert.ok(
    buffered >= 3 * size && buffered <= 3 * (size + 10),
    `bufferedAmount ${buffered} for 3 writes of ${size} bytes`,
  );
});
