import assert from "node:assert/strict";
import {
  serve,
  type ServeOptions,
  type WebSocketCloseResult,
  type WebSocketConnection,
  WebSocketError,
  type WebSocketHandler,
} from "../mod.ts";
import { RawClient, roundTrip, text, upgradeRequest } from "./_raw_client.ts";
import { badFrames, closePayload, frame } from "./_wire.ts";
import {
  assertBytesEqual,
  capturingConsoleError,
  concat,
  deadline,
  echo,
  isCloseError,
  mulberry32,
  never,
  serveLocal,
  settled,
  sleep,
  start,
  WAIT_LIMIT,
  waitFor,
} from "./_util.ts";
import { makeCertificates } from "./_tls.ts";

/** A server whose sockets a test can watch. */
function watched(options: ServeOptions = {}, handler: WebSocketHandler = echo) {
  const sockets: WebSocketConnection[] = [];
  const first = Promise.withResolvers<WebSocketConnection>();
  const server = start(options, (socket) => {
    sockets.push(socket);
    first.resolve(socket);
    return handler(socket);
  });
  return { server, sockets, first: first.promise };
}

/** What the first socket's `closed` settles with, each wait with a deadline. */
async function firstClosed(
  first: Promise<WebSocketConnection>,
): Promise<WebSocketCloseResult> {
  const socket = await deadline(first, "the server's socket");
  return await deadline(socket.closed, "the server's socket to close");
}

/** Sends `bytes` and expects a close frame with `code`, then the TCP close. */
async function expectClose(
  port: number,
  bytes: Uint8Array,
  code: number,
  chop = 0,
): Promise<void> {
  await using client = await RawClient.open(port);
  if (chop > 0) await client.writeChopped(bytes, chop);
  else await client.write(bytes);
  const result = await client.readUntilClose();
  assert.equal(result.code, code);
  assert.equal(result.eof, true, "the server closes TCP after its close frame");
}

// §5.1, §5.2: framing rules over a real TCP connection.

Deno.test("§5.1 server fails an unmasked client frame with 1002", async () => {
  await using server = start();
  await expectClose(server.addr.port, frame(1, "hi", { mask: false }), 1002);
});

Deno.test("§5.2 server fails nonzero RSV bits with no extension with 1002", async () => {
  await using server = start();
  for (const rsv of [1, 2, 4]) {
    await expectClose(server.addr.port, frame(1, "hi", { rsv }), 1002);
  }
});

Deno.test("§5.2 server fails reserved opcodes with 1002", async () => {
  await using server = start();
  for (const opcode of [3, 7, 11, 15]) {
    await expectClose(server.addr.port, frame(opcode, "x"), 1002);
  }
});

Deno.test("§5.2 server fails a 64-bit length with the top bit set with 1002", async () => {
  await using server = start();
  const bytes = new Uint8Array([
    0x82,
    0xff,
    0x80,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    1,
    2,
    3,
    4,
  ]);
  await expectClose(server.addr.port, bytes, 1002);
});

Deno.test("§5.2 frames chopped into 1-byte writes are decoded", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  const big = new Uint8Array(300).map((_, i) => i & 255);
  await client.writeChopped(concat([frame(1, "chopped"), frame(2, big)]), 1);
  assert.equal(text((await client.readFrame())!.payload), "chopped");
  assertBytesEqual((await client.readFrame())?.payload, big, "the echo");
});

Deno.test("§5.2 16-bit and 64-bit lengths round trip, and empty messages are valid", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  for (const size of [0, 125, 126, 65535, 65536, 100_000]) {
    const payload = new Uint8Array(size).map((_, i) => (i * 7) & 255);
    await client.write(frame(2, payload));
    const echoed = await client.readFrame();
    assert.equal(echoed?.opcode, 2);
    assert.equal(echoed?.masked, false, "server frames are never masked");
    assertBytesEqual(echoed?.payload, payload, `the ${size}-byte echo`);
  }
  await client.write(frame(1, ""));
  const empty = await client.readFrame();
  assert.equal(empty?.opcode, 1);
  assert.equal(empty?.payload.length, 0);
});

// §5.4: fragmentation.

Deno.test("§5.4 fragmented messages are reassembled, with empty fragments", async () => {
  const { server, first } = watched({}, () => {});
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  const socket = await deadline(first, "the server's socket");
  const reader = socket.readable.getReader();
  await client.writeChopped(
    concat([
      frame(1, "Hel", { fin: false }),
      frame(0, "", { fin: false }),
      frame(0, "lo", { fin: true }),
      frame(2, new Uint8Array([1]), { fin: false }),
      frame(0, new Uint8Array([2, 3])),
    ]),
    3,
  );
  assert.equal(
    (await deadline(reader.read(), "a message from readable")).value,
    "Hello",
  );
  assert.deepEqual(
    (await deadline(reader.read(), "a message from readable")).value,
    new Uint8Array([1, 2, 3]),
  );
  reader.releaseLock();
});

Deno.test("§5.4 a ping between fragments is answered before the message completes", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  await client.write(
    concat([frame(1, "a", { fin: false }), frame(9, "ping!")]),
  );
  const pong = await client.readFrame();
  assert.equal(pong?.opcode, 10);
  assert.equal(text(pong!.payload), "ping!");
  await client.write(frame(0, "b"));
  assert.equal(text((await client.readFrame())!.payload), "ab");
});

Deno.test("§5.4 a continuation with no message in progress fails with 1002", async () => {
  await using server = start();
  await expectClose(server.addr.port, frame(0, "x"), 1002);
});

Deno.test("§5.4 a new data frame inside a fragmented message fails with 1002", async () => {
  await using server = start();
  await expectClose(
    server.addr.port,
    concat([frame(1, "a", { fin: false }), frame(1, "b")]),
    1002,
  );
});

// §5.5: control frames.

Deno.test("§5.5 a fragmented control frame fails with 1002", async () => {
  await using server = start();
  await expectClose(server.addr.port, frame(9, "x", { fin: false }), 1002);
});

Deno.test("§5.5 a control frame longer than 125 bytes fails with 1002", async () => {
  await using server = start();
  await expectClose(server.addr.port, frame(9, new Uint8Array(126)), 1002);
});

Deno.test("§5.5.2 every ping gets a pong with its payload, in order", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  await client.writeChopped(
    concat([frame(9, "one"), frame(9, ""), frame(9, "three")]),
    2,
  );
  for (const expected of ["one", "", "three"]) {
    const pong = await client.readFrame();
    assert.equal(pong?.opcode, 10);
    assert.equal(text(pong!.payload), expected);
  }
});

Deno.test("§5.5.2 a ping is answered while a large message is being received", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  const big = frame(2, new Uint8Array(1 << 20), { fin: false });
  await client.write(big.subarray(0, 1000));
  // The big frame is half sent: the ping must wait for it on the wire, so
  // fragment the message instead and put the ping between fragments.
  await client.write(big.subarray(1000));
  await client.write(frame(9, "mid"));
  const pong = await client.readFrame();
  assert.equal(pong?.opcode, 10);
  assert.equal(text(pong!.payload), "mid");
  await client.write(frame(0, new Uint8Array(10)));
  const message = await client.readFrame();
  assert.equal(message?.payload.length, (1 << 20) + 10);
});

Deno.test("§5.5.3 an unsolicited pong is ignored", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  await client.write(concat([frame(10, "unasked"), frame(1, "still here")]));
  const next = await client.readFrame();
  assert.equal(next?.opcode, 1);
  assert.equal(text(next!.payload), "still here");
});

// §5.5.1, §7: the closing handshake.

Deno.test("§5.5.1 a peer's close is echoed with its code, then TCP closes", async () => {
  const { server, first } = watched();
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(8, closePayload(4001, "done here")));
  const result = await client.readUntilClose();
  assert.equal(result.code, 4001);
  assert.equal(result.eof, true);
  assert.deepEqual(
    await firstClosed(first),
    {
      closeCode: 4001,
      reason: "done here",
      wasClean: true,
    },
  );
});

Deno.test("§5.5.1 an empty close is answered with 1000 and reported as 1005", async () => {
  const { server, first } = watched();
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(8));
  const result = await client.readUntilClose();
  assert.equal(result.code, 1000);
  assert.deepEqual(
    await firstClosed(first),
    { closeCode: 1005, reason: "", wasClean: true },
  );
});

Deno.test("§5.5.1 frames after the peer's close are ignored", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  await client.write(
    concat([frame(8, closePayload(1000)), frame(1, "late"), frame(9, "p")]),
  );
  const result = await client.readUntilClose();
  assert.equal(result.frames.length, 0);
  assert.equal(result.code, 1000);
});

Deno.test("§7.4 a close frame with a 1-byte payload fails with 1002", async () => {
  await using server = start();
  await expectClose(server.addr.port, frame(8, new Uint8Array([3])), 1002);
});

Deno.test("§7.4.1 a close code that may not be sent fails with 1002", async () => {
  await using server = start();
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    await expectClose(server.addr.port, frame(8, closePayload(code)), 1002);
  }
});

Deno.test("§7.4.1 a close frame with an invalid UTF-8 reason fails with 1007", async () => {
  await using server = start();
  const payload = concat([
    closePayload(1000),
    new Uint8Array([0xce, 0xba, 0xe1, 0xbd]),
  ]);
  await expectClose(server.addr.port, frame(8, payload), 1007);
});

Deno.test("§7.1.2 close() sends the code and reason and resolves with the peer's answer", async () => {
  const { server, first } = watched({}, (socket) => {
    socket.close({ closeCode: 4000, reason: "bye" });
  });
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8);
  assert.deepEqual(close?.payload, closePayload(4000, "bye"));
  await client.write(frame(8, closePayload(4000, "ok")));
  assert.equal(await client.readEof(), true);
  client.close();
  assert.deepEqual(
    await firstClosed(first),
    {
      closeCode: 4000,
      reason: "ok",
      wasClean: true,
    },
  );
});

Deno.test("§7.1.2 close() gives up after closeTimeout when the peer never answers", async () => {
  const { server, first } = watched({ closeTimeout: 100 }, (socket) => {
    socket.close({ closeCode: 1000 });
  });
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  assert.equal((await client.readFrame())?.opcode, 8);
  const error = await firstClosed(first).then(() => null, (e) => e);
  assert.ok(error instanceof WebSocketError);
  assert.equal(error.closeCode, 1006);
  assert.equal(await client.readEof(), true);
});

Deno.test("§5.5 close() refuses a reason over 123 bytes of UTF-8 with a RangeError, and sends one of 123", async () => {
  const thrown = Promise.withResolvers<unknown>();
  await using server = start({}, (socket) => {
    try {
      // 62 two-byte characters: 124 bytes.
      socket.close({ closeCode: 4000, reason: "é".repeat(62) });
      thrown.resolve(null);
    } catch (error) {
      thrown.resolve(error);
    }
    socket.close({ closeCode: 4000, reason: "é".repeat(61) + "x" });
  });
  await using client = await RawClient.open(server.addr.port);
  const close = await client.readFrame();
  assert.ok(await thrown.promise instanceof RangeError);
  assert.equal(close!.payload.length, 125);
  const reason = new TextDecoder("utf-8", { fatal: true }).decode(
    close!.payload.subarray(2),
  );
  assert.equal(reason, "é".repeat(61) + "x");
});

Deno.test("§7.4.2 close() takes only 1000 and 3000–4999: any other code throws a RangeError and never goes out", async () => {
  const refused = [0, 999, 5000, 65535];
  for (let code = 1001; code <= 1015; code++) refused.push(code);
  for (let code = 2000; code <= 2999; code++) refused.push(code);
  for (const accepted of [1000, 3000, 4999]) {
    const notRefused = Promise.withResolvers<number[]>();
    await using server = start({}, (socket) => {
      const wrong: number[] = [];
      for (const closeCode of refused) {
        try {
          socket.close({ closeCode });
          wrong.push(closeCode);
        } catch (error) {
          if (!(error instanceof RangeError)) wrong.push(closeCode);
        }
      }
      notRefused.resolve(wrong);
      socket.close({ closeCode: accepted, reason: "ok" });
    });
    await using client = await RawClient.open(server.addr.port);
    assert.deepEqual(
      await deadline(notRefused.promise, "the handler"),
      [],
      "codes close() did not refuse with a RangeError",
    );
    // The first frame out is the close with the accepted code.
    const close = await client.readFrame();
    assert.equal(close?.opcode, 8);
    assert.equal((close!.payload[0] << 8) | close!.payload[1], accepted);
    assert.equal(text(close!.payload.subarray(2)), "ok");
  }
});

Deno.test("§7.1.1 the server half-closes TCP after the closing handshake and reads until the client's FIN, so the client may still send without a reset", async () => {
  const { server, first } = watched({ closeTimeout: WAIT_LIMIT }, (socket) => {
    socket.close({ closeCode: 4000 });
  });
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  const socket = await deadline(first, "the server's socket");
  let settled = false;
  socket.closed.finally(() => settled = true).catch(() => {});
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8);
  await client.write(frame(8, closePayload(4000)));
  assert.equal(await client.readEof(), true, "the server's FIN");
  // Bytes still in flight from a client that has not seen the FIN yet: the
  // server reads and discards them. A closed socket would answer them with
  // a reset, failing these writes.
  try {
    for (let i = 0; i < 32; i++) {
      await client.write(new Uint8Array(16 * 1024).fill(i));
      await sleep(2);
    }
  } catch (error) {
    assert.fail(`the server reset the connection: ${error}`);
  }
  assert.equal(settled, false, "the server waits for the client's FIN");
  await client.conn.closeWrite();
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4000,
    reason: "",
    wasClean: true,
  });
});

// §8.1: UTF-8.

Deno.test("§8.1 invalid UTF-8 in a text message fails with 1007", async () => {
  await using server = start();
  await expectClose(
    server.addr.port,
    frame(1, new Uint8Array([0x48, 0xff, 0x48])),
    1007,
  );
});

Deno.test("§8.1 invalid UTF-8 fails with 1007 before the rest of the frame arrives", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  const payload = new Uint8Array(1000).fill(0x41);
  payload[10] = 0xc0; // Never valid in UTF-8.
  const bytes = frame(1, payload);
  await client.write(bytes.subarray(0, 30));
  const result = await client.readUntilClose();
  assert.equal(result.code, 1007);
});

Deno.test("§8.1 a code point split across fragments is valid", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  const euro = new TextEncoder().encode("€");
  await client.write(
    concat([
      frame(1, euro.subarray(0, 1), { fin: false }),
      frame(0, euro.subarray(1)),
    ]),
  );
  assert.equal(text((await client.readFrame())!.payload), "€");
});

Deno.test("§8.1 a code point cut off at the end of a message fails with 1007", async () => {
  await using server = start();
  const euro = new TextEncoder().encode("€");
  await expectClose(server.addr.port, frame(1, euro.subarray(0, 2)), 1007);
});

// §10.4: limits.

Deno.test("§10.4 a frame over maxMessageSize fails with 1009 from its header", async () => {
  await using server = start({ maxMessageSize: 1000 });
  // Only the header is sent: the server must not wait for the payload.
  const header = frame(2, new Uint8Array(1001)).subarray(0, 8);
  await expectClose(server.addr.port, header, 1009);
});

Deno.test("§10.4 fragments summing over maxMessageSize fail with 1009", async () => {
  await using server = start({ maxMessageSize: 1000 });
  await expectClose(
    server.addr.port,
    concat([
      frame(2, new Uint8Array(600), { fin: false }),
      frame(0, new Uint8Array(600)).subarray(0, 8),
    ]),
    1009,
  );
});

// The object a handler gets.

Deno.test("the socket a handler gets has only its documented members and cannot be made with new", async () => {
  const { server, first } = watched({}, () => {});
  await using _server = server;
  await using _client = await RawClient.open(server.addr.port);
  const socket = await deadline(first, "the server's socket");
  assert.deepEqual(Reflect.ownKeys(socket), []);
  const members = Reflect.ownKeys(Object.getPrototypeOf(socket)).sort();
  assert.deepEqual(members, [
    "bufferedAmount",
    "close",
    "closed",
    "constructor",
    "droppedMessages",
    "extensions",
    "isSubscribed",
    "protocol",
    "publish",
    "readable",
    "remoteAddr",
    "request",
    "send",
    "subscribe",
    "subscriptions",
    "unsubscribe",
    "writable",
  ]);
  // A user holding a socket cannot make another one around a fake engine.
  const Made = socket.constructor as new (...args: unknown[]) => unknown;
  assert.throws(() => new Made({}, {}), {
    name: "TypeError",
    message: "Illegal constructor",
  });
  assert.throws(() => new Made(), TypeError);
});

// §7.1.7 and the socket's streams.

Deno.test("a peer that drops TCP errors readable and rejects closed with 1006", async () => {
  const { server, first } = watched({}, () => {});
  await using _server = server;
  const client = await RawClient.open(server.addr.port);
  const socket = await deadline(first, "the server's socket");
  client.close();
  const readError = await socket.readable.getReader().read().then(
    () => null,
    (e) => e,
  );
  assert.ok(readError instanceof WebSocketError);
  assert.equal(readError.closeCode, 1006);
  const closedError = await deadline(socket.closed, "the socket to close").then(
    () => null,
    (e) => e,
  );
  assert.equal(closedError?.closeCode, 1006);
});

Deno.test("a protocol error errors readable with a WebSocketError carrying the code", async () => {
  const { server, first } = watched({}, () => {});
  await using _server = server;
  await using client = await RawClient.open(server.addr.port);
  const socket = await deadline(first, "the server's socket");
  await client.write(frame(1, "x", { mask: false }));
  const error = await socket.readable.getReader().read().then(
    () => null,
    (e) => e,
  );
  assert.ok(error instanceof WebSocketError);
  assert.equal(error.closeCode, 1002);
  assert.equal((await client.readUntilClose()).code, 1002);
});

Deno.test("a handler that throws closes its socket with 1011 and is reported to onError", async () => {
  const errors: unknown[] = [];
  await using server = start({ onError: (error) => errors.push(error) }, () => {
    throw new Error("secret detail");
  });
  await using client = await RawClient.open(server.addr.port);
  const result = await client.readUntilClose();
  assert.equal(result.code, 1011);
  assert.ok(!result.reason.includes("secret"), "no details leak to the peer");
  assert.equal((errors[0] as Error).message, "secret detail");
});

Deno.test("a handler whose promise rejects closes its socket with 1011", async () => {
  const errors: unknown[] = [];
  await using server = start(
    { onError: (error) => errors.push(error) },
    async () => {
      await Promise.resolve();
      throw new TypeError("late failure");
    },
  );
  await using client = await RawClient.open(server.addr.port);
  assert.equal((await client.readUntilClose()).code, 1011);
  assert.equal(errors.length, 1);
});

Deno.test("writing something other than a string or bytes is a TypeError", async () => {
  const outcome = Promise.withResolvers<unknown>();
  await using server = start({}, async (socket) => {
    const writer = socket.writable.getWriter();
    // deno-lint-ignore no-explicit-any
    outcome.resolve(await writer.write(42 as any).then(() => null, (e) => e));
    socket.close();
  });
  await using _client = await RawClient.open(server.addr.port);
  assert.ok(
    await deadline(outcome.promise, "the handler's outcome") instanceof
      TypeError,
  );
});

Deno.test("one misbehaving connection does not disturb another", async () => {
  await using server = start();
  await using good = await RawClient.open(server.addr.port);
  await using bad = await RawClient.open(server.addr.port);
  await good.write(frame(1, "before"));
  assert.equal(text((await good.readFrame())!.payload), "before");
  await bad.write(new Uint8Array(64).fill(0xff));
  assert.equal((await bad.readUntilClose()).code, 1002);
  await good.write(frame(1, "after"));
  assert.equal(text((await good.readFrame())!.payload), "after");
});

Deno.test("shutdown() sends 1001 to open sockets and finished resolves", async () => {
  const server = start();
  await using a = await RawClient.open(server.addr.port);
  await using b = await RawClient.open(server.addr.port);
  assert.equal(server.connections, 2);
  const done = server.shutdown();
  for (const client of [a, b]) {
    const close = await client.readFrame();
    assert.equal(close?.opcode, 8);
    assert.equal((close!.payload[0] << 8) | close!.payload[1], 1001);
    await client.write(frame(8, closePayload(1001)));
    assert.equal(await client.readEof(), true);
    client.close();
  }
  await deadline(done, "the shutdown");
  await deadline(server.finished, "the server to finish");
  assert.equal(server.connections, 0);
});

Deno.test("shutdown() does not report an echo that cannot send a message arriving during the closing handshake", async () => {
  const errors: unknown[] = [];
  const server = start({ onError: (error) => errors.push(error) });
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(1, "before"));
  assert.equal(text((await client.readFrame())!.payload), "before");
  const done = server.shutdown();
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8);
  assert.equal((close!.payload[0] << 8) | close!.payload[1], 1001);
  // A message sent before the client saw the close: delivered, not echoed.
  await client.write(frame(1, "late"));
  await client.write(frame(8, closePayload(1001)));
  assert.equal(await client.readEof(), true);
  client.close();
  await deadline(done, "the shutdown");
  assert.deepEqual(errors, []);
});

Deno.test("an aborted signal shuts the server down", async () => {
  const controller = new AbortController();
  const server = start({ signal: controller.signal });
  controller.abort();
  await deadline(server.finished, "the server to finish");
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
  );
});

Deno.test("§5.4 a large fragmented binary message arriving in odd-sized writes is echoed exactly", async () => {
  await using server = start();
  await using client = await RawClient.open(server.addr.port);
  const random = mulberry32(7);
  const payload = new Uint8Array(700_001).map(() => (random() * 256) | 0);
  const bytes = concat([
    frame(2, payload.subarray(0, 123_457), { fin: false, key: [1, 2, 3, 4] }),
    frame(9, "between", { key: [9, 8, 7, 6] }),
    frame(0, payload.subarray(123_457, 600_000), {
      fin: false,
      key: [5, 6, 7, 8],
    }),
    frame(0, payload.subarray(600_000), { key: [0xff, 0, 0xaa, 0x55] }),
  ]);
  // Odd write sizes put frame boundaries and mask offsets everywhere.
  for (let at = 0; at < bytes.length;) {
    const size = 1 + ((random() * 70_000) | 0);
    await client.write(bytes.subarray(at, at + size));
    at += size;
  }
  const pong = await client.readFrame();
  assert.equal(pong?.opcode, 10);
  const echoed = await client.readFrame();
  assert.equal(echoed?.opcode, 2);
  assert.equal(echoed?.payload.length, payload.length);
  const differs = echoed!.payload.findIndex((byte, i) => byte !== payload[i]);
  assert.equal(differs, -1, `the echo differs at byte ${differs}`);
});

// --- §5.2: the messages before a protocol error -----------------------------------------

for (const [name, bad] of badFrames(true)) {
  Deno.test(`§5.2 a server socket gets a valid message before readable errors with 1002 when ${name} follows it in the same TCP write`, async () => {
    const opened = Promise.withResolvers<{
      socket: WebSocketConnection;
      reader: ReadableStreamDefaultReader<string | Uint8Array>;
    }>();
    await using local = serveLocal({}, (socket) => {
      opened.resolve({ socket, reader: socket.readable.getReader() });
    });
    await using client = await RawClient.open(local.port);
    const { socket, reader } = await deadline(opened.promise, "handler called");
    await client.write(concat([frame(1, "hello"), bad]));
    const { code } = await deadline(client.readUntilClose(), "close frame");
    assert.equal(code, 1002);
    assert.equal((await settled(socket)).closeCode, 1002);
    assert.deepEqual(await deadline(reader.read(), "read"), {
      value: "hello",
      done: false,
    });
    await assert.rejects(
      deadline(reader.read(), "read"),
      isCloseError(1002),
    );
  });
}

// --- Faults and slow hooks ------------------------------------------------------------------

Deno.test("§7.4.1 a handler that throws or rejects closes its socket with 1011 even when onError throws too; the server keeps serving", async () => {
  await capturingConsoleError(async (logged) => {
    await using local = serveLocal({
      onError() {
        throw new Error("onError fails too");
      },
    }, (socket) => {
      const fail = socket.request.headers.get("x-fail");
      if (fail === "throw") throw new Error("the handler throws");
      if (fail === "reject") {
        return Promise.reject(new Error("the handler rejects"));
      }
      return echo(socket);
    });
    for (const fail of ["throw", "reject"]) {
      await using client = await RawClient.open(local.port, {
        "X-Fail": fail,
      });
      const { code, reason } = await deadline(
        client.readUntilClose(),
        `close after "${fail}"`,
      );
      assert.equal(code, 1011, `after "${fail}"`);
      assert.equal(reason, "Internal error");
    }
    await waitFor(() => local.server.connections === 0, "0 connections");
    await using good = await RawClient.open(local.port);
    assert.equal(await roundTrip(good, "still served"), "still served");
    // Both faults, and onError's own, went to console.error.
    assert.equal(
      logged.filter((args) => args[0] === "onError threw").length,
      2,
    );
  });
});

Deno.test("§7.4.1 a throwing onOpen closes its socket with 1011 and a throwing onClose is reported; the server keeps serving", async () => {
  const errors: string[] = [];
  await using local = serveLocal({
    onOpen(socket) {
      if (socket.request.headers.get("x-fail") === "open") {
        throw new Error("onOpen fails");
      }
    },
    onClose() {
      throw new Error("onClose fails");
    },
    onError: (error) => errors.push((error as Error).message),
  });
  {
    await using client = await RawClient.open(local.port, { "X-Fail": "open" });
    const { code } = await deadline(client.readUntilClose(), "close");
    assert.equal(code, 1011);
  }
  {
    await using client = await RawClient.open(local.port);
    assert.equal(await roundTrip(client, "still served"), "still served");
    await client.write(frame(8, closePayload(1000)));
    assert.equal(
      (await deadline(client.readUntilClose(), "close")).code,
      1000,
    );
  }
  await waitFor(() => local.server.connections === 0, "0 connections");
  await waitFor(
    () => errors.filter((e) => e === "onClose fails").length === 2,
    "both onClose faults reported",
  );
  assert.deepEqual(errors.filter((e) => e !== "onClose fails"), [
    "onOpen fails",
  ]);
});

Deno.test("a throwing onListen is reported to onError and the server serves", async () => {
  const errors: string[] = [];
  await using local = serveLocal({
    onListen() {
      throw new Error("onListen fails");
    },
    onError: (error) => errors.push((error as Error).message),
  });
  assert.deepEqual(errors, ["onListen fails"]);
  await using client = await RawClient.open(local.port);
  assert.equal(await roundTrip(client, "served"), "served");
});

Deno.test("the default onListen logs the URL to open: ws:// or wss:// for WebSockets only, http:// or https:// when fetch serves pages", async () => {
  const { cert, key } = await makeCertificates();
  const cases: [ServeOptions, string][] = [
    [{}, "ws"],
    [{ fetch: () => new Response("page") }, "http"],
    [{ cert, key }, "wss"],
    [{ cert, key, fetch: () => new Response("page") }, "https"],
  ];
  for (const [options, scheme] of cases) {
    const logged: unknown[][] = [];
    const original = console.log;
    console.log = (...args: unknown[]) => logged.push(args);
    let server;
    try {
      server = serve({ port: 0, hostname: "127.0.0.1", ...options }, echo);
    } finally {
      console.log = original;
    }
    await server.shutdown();
    assert.deepEqual(logged, [
      [`Listening on ${scheme}://127.0.0.1:${server.addr.port}/`],
    ]);
  }
});

Deno.test("§7.4.1 a handler that throws inside `for await (… of socket.readable)` closes the socket with 1011", async () => {
  const errors: unknown[] = [];
  await using local = serveLocal(
    { onError: (error) => errors.push(error) },
    async (socket) => {
      for await (const _message of socket.readable) {
        throw new Error("the handler fails on a message");
      }
    },
  );
  await using client = await RawClient.open(local.port);
  await client.write(frame(1, "hello"));
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1011);
  assert.equal(reason, "Internal error");
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as Error).message, "the handler fails on a message");
});

Deno.test("onOpen and onClose report each socket with its close code", async () => {
  const events: string[] = [];
  await using server = start({
    onOpen: () => events.push("open"),
    onClose: (_socket, info) =>
      events.push(`close ${info.closeCode} ${info.reason} ${info.wasClean}`),
  });
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(8, closePayload(4321, "gone")));
  await client.readUntilClose();
  await deadline(server.shutdown(), "the shutdown");
  assert.deepEqual(events, ["open", "close 4321 gone true"]);
});

Deno.test("shutdown() does not wait for a handler that never settles", async () => {
  const server = start({}, () => new Promise<void>(() => {}));
  await using client = await RawClient.open(server.addr.port);
  const done = server.shutdown();
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8);
  await client.write(frame(8, close!.payload));
  assert.equal(await client.readEof(), true);
  client.close();
  await deadline(done, "the shutdown");
});

const PLAIN_GET = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

for (const hook of ["onUpgrade", "fetch"] as const) {
  const request = (port: number) =>
    hook === "onUpgrade" ? upgradeRequest(port) : PLAIN_GET;

  Deno.test(`§4.2.1 shutdown() resolves promptly while the ${hook} hook is pending`, async () => {
    const called = Promise.withResolvers<void>();
    await using local = serveLocal({
      handshakeTimeout: 60_000,
      // A request in flight gets this long to answer once shutting down.
      closeTimeout: 500,
      [hook]: () => {
        called.resolve();
        return never();
      },
    });
    await using client = await RawClient.connect(local.port);
    await client.write(request(local.port));
    await deadline(called.promise, `${hook} called`);
    await deadline(local.server.shutdown(), "shutdown", 3_000);
    assert.equal(await deadline(client.readEof(), "EOF"), true);
  });
}

// --- send(), close() and TLS ---------------------------------------------------------------

Deno.test("send() returns the bytes queued, 0 after close, and 0 (not a throw) for what is not a message", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  await using local = serveLocal({}, (socket) => opened.resolve(socket));
  await using client = await RawClient.open(local.port);
  const socket = await deadline(opened.promise, "handler called");
  assert.equal(socket.send("hello"), 2 + 5);
  assert.equal(socket.send(new Uint8Array(200)), 2 + 2 + 200);
  assert.equal(socket.send(new Uint8Array(70_000)), 2 + 8 + 70_000);
  for (const bad of [123, null, undefined, {}, new ArrayBuffer(3)]) {
    assert.equal(socket.send(bad as unknown as string), 0, `send(${bad})`);
  }
  assert.equal(socket.send(new Uint16Array(2) as unknown as Uint8Array), 0);
  socket.close({ closeCode: 1000, reason: "done" });
  assert.equal(socket.send("too late"), 0);
  const { frames, code } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.deepEqual(
    frames.map((f) => [f.opcode, f.payload.length]),
    [[1, 5], [2, 200], [2, 70_000]],
  );
  assert.equal(code, 1000);
});

Deno.test("§7.1.2 close() after writes that were not awaited sends them before the close frame", async () => {
  const writes: Promise<PromiseSettledResult<void>[]>[] = [];
  await using local = serveLocal({}, async (socket) => {
    const writer = socket.writable.getWriter();
    // "started": writable had started before the writes; "fresh": not yet.
    if (socket.request.headers.get("x-writable") === "started") {
      await writer.ready;
    }
    const pending = [writer.write("one"), writer.write("two")];
    socket.close({ closeCode: 1000, reason: "bye" });
    writes.push(Promise.allSettled(pending));
  });
  for (const state of ["fresh", "started"]) {
    await using client = await RawClient.open(local.port, {
      "X-Writable": state,
    });
    const { frames, code, reason } = await deadline(
      client.readUntilClose(),
      "close frame",
    );
    assert.deepEqual(frames.map((f) => text(f.payload)), ["one", "two"], state);
    assert.equal(code, 1000);
    assert.equal(reason, "bye");
  }
  for (const results of await Promise.all(writes)) {
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled"]);
  }
});

Deno.test("§3 wss: serve() with cert and key round trips over TLS trusting a private CA", async () => {
  const { ca, cert, key } = await makeCertificates();
  const seen = Promise.withResolvers<string>();
  await using server = start({ cert, key }, (socket) => {
    seen.resolve(socket.request.url);
    return socket.readable.pipeTo(socket.writable);
  });
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: server.addr.port,
    caCerts: [ca],
  });
  await using client = await RawClient.open(server.addr.port, {}, conn);
  assert.equal(await roundTrip(client, "over TLS"), "over TLS");
  assert.match(
    await deadline(seen.promise, "what the server saw"),
    /^https:\/\/127\.0\.0\.1:\d+\/chat\?x=1$/,
  );
  await client.write(frame(8, closePayload(1000)));
  assert.equal((await client.readUntilClose()).code, 1000);
});
