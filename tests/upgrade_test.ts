// upgradeWebSocket(): this module's socket inside Deno.serve handlers and a
// real Hono app, on Deno's own WebSocket.

import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import { Hono } from "npm:hono@4";
import {
  connect,
  TopicHub,
  UpgradeError,
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
  type WebSocketConnection,
  WebSocketError,
} from "../mod.ts";
import { Inbox } from "./_peer_helpers.ts";
import { RawClient, upgradeRequest } from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import {
  assertSameMessage,
  deadline,
  isCloseError,
  serveLocal,
} from "./_util.ts";

const LOCAL = { port: 0, hostname: "127.0.0.1", onListen() {} };

/**
 * `Deno.serve` on 127.0.0.1 and a free port; disposing it waits for the
 * server's shutdown with a deadline, so that a server that cannot shut down
 * fails the test rather than hanging it.
 */
function serveDeno(handler: Deno.ServeHandler<Deno.NetAddr>) {
  const server = Deno.serve(LOCAL, handler);
  return {
    port: server.addr.port,
    [Symbol.asyncDispose]: () => deadline(server.shutdown(), "server shutdown"),
  };
}

/** The next socket `accepted` gets, in the order a server made them. */
function nextSocket(
  accepted: Inbox<WebSocketConnection>,
): Promise<WebSocketConnection> {
  return deadline(accepted.next(), "the server's socket");
}

/**
 * A `serveDeno` server that upgrades every request with `options` (and the
 * handler's `remoteAddr`) and hands the socket to `handler`; `next()` waits
 * for the next socket it made.
 */
function upgradeServer(
  options: UpgradeWebSocketOptions,
  handler: (socket: WebSocketConnection) => unknown,
) {
  const accepted = new Inbox<WebSocketConnection>();
  const served = serveDeno((request, info) => {
    const { socket, response } = upgradeWebSocket(request, {
      remoteAddr: info.remoteAddr,
      ...options,
    });
    accepted.push(socket);
    handler(socket);
    return response;
  });
  return {
    port: served.port,
    url: `ws://127.0.0.1:${served.port}/ws`,
    next: () => nextSocket(accepted),
    [Symbol.asyncDispose]: served[Symbol.asyncDispose],
  };
}

function echo(socket: WebSocketConnection): void {
  socket.readable.pipeTo(socket.writable).catch(() => {});
}

function read(
  reader: ReadableStreamDefaultReader<string | Uint8Array>,
  what: string,
): Promise<string | Uint8Array | undefined> {
  return deadline(reader.read(), what).then((result) => result.value);
}

/** Reads a client's messages to the end; returns how many bytes came. */
async function drain(socket: WebSocketConnection): Promise<number> {
  let bytes = 0;
  for await (const message of socket.readable) {
    bytes += typeof message === "string" ? message.length : message.length;
  }
  return bytes;
}

// --- On Deno.serve ------------------------------------------------------------

Deno.test("upgradeWebSocket on Deno.serve echoes text, binary and empty messages with connect()", async () => {
  await using served = upgradeServer({}, echo);
  const { url, next } = served;
  const client = await connect(`${url}?room=7`);
  const socket = await next();
  assert.equal(new URL(socket.request.url).pathname, "/ws");
  assert.equal(new URL(socket.request.url).search, "?room=7");
  assert.equal(socket.remoteAddr.hostname, "127.0.0.1");
  assert.ok(socket.remoteAddr.port > 0);
  assert.equal(socket.protocol, "");
  assert.equal(socket.extensions, "");

  const big = new Uint8Array(300 * 1024).map((_, i) => i * 7);
  const sent = ["hello ✓ 😀", new Uint8Array([0, 1, 255]), "", big];
  for (const message of sent) client.send(message);
  const reader = client.readable.getReader();
  for (const [i, message] of sent.entries()) {
    assertSameMessage(
      await read(reader, `echo ${i}`),
      message,
      `echo ${i}`,
    );
  }
  reader.releaseLock();

  client.close({ closeCode: 1000, reason: "done" });
  assert.deepEqual(await deadline(client.closed, "the client's close"), {
    closeCode: 1000,
    reason: "done",
    wasClean: true,
  });
  assert.deepEqual(await deadline(socket.closed, "the server's close"), {
    closeCode: 1000,
    reason: "done",
    wasClean: true,
  });
});

Deno.test("upgradeWebSocket with Deno's WebSocket client: a send() before the upgrade completes arrives first", async () => {
  await using served = upgradeServer({}, (socket) => {
    assert.equal(socket.send("welcome"), 2 + 7);
    echo(socket);
  });
  const { url, next } = served;
  const client = new WebSocket(url);
  client.binaryType = "arraybuffer";
  const received: (string | ArrayBuffer)[] = [];
  const three = Promise.withResolvers<void>();
  client.onmessage = (event) => {
    received.push(event.data);
    if (received.length === 3) three.resolve();
  };
  const closed = new Promise<CloseEvent>((resolve) => {
    client.onclose = resolve;
  });
  client.onopen = () => {
    client.send("text");
    client.send(new Uint8Array([9, 8, 7]));
  };
  const socket = await next();
  await deadline(three.promise, "three messages");
  assert.equal(received[0], "welcome");
  assert.equal(received[1], "text");
  assert.deepEqual(
    new Uint8Array(received[2] as ArrayBuffer),
    new Uint8Array([9, 8, 7]),
  );

  client.close(4001, "bye");
  const event = await deadline(closed, "the client's close event");
  assert.equal(event.code, 4001);
  assert.deepEqual(await deadline(socket.closed, "the server's close"), {
    closeCode: 4001,
    reason: "bye",
    wasClean: true,
  });
});

Deno.test("upgradeWebSocket socket.close() sends its code and reason; closed resolves with the client's answer", async () => {
  await using served = upgradeServer({}, async (socket) => {
    for await (const _ of socket.readable) {
      socket.close({ closeCode: 4002, reason: "server says bye" });
    }
  });
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  client.send("anything");
  assert.deepEqual(await deadline(client.closed, "the client's close"), {
    closeCode: 4002,
    reason: "server says bye",
    wasClean: true,
  });
  const result = await deadline(socket.closed, "the server's close");
  assert.equal(result.closeCode, 4002);
  assert.equal(result.wasClean, true);
});

Deno.test("upgradeWebSocket a close() before the upgrade completes goes out after the messages sent before it", async () => {
  await using served = upgradeServer({}, (socket) => {
    socket.send("first");
    socket.close({ closeCode: 4003, reason: "early" });
    assert.equal(socket.send("late"), 0);
  });
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const messages: (string | Uint8Array)[] = [];
  await deadline(
    (async () => {
      for await (const message of client.readable) messages.push(message);
    })(),
    "the client's readable to end",
  );
  assert.deepEqual(messages, ["first"]);
  assert.deepEqual(await deadline(client.closed, "the client's close"), {
    closeCode: 4003,
    reason: "early",
    wasClean: true,
  });
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 4003);
});

Deno.test("upgradeWebSocket a connection that ends without a closing handshake rejects closed and errors readable with 1006", async () => {
  await using served = upgradeServer({}, () => {});
  const { port, next } = served;
  const client = await RawClient.open(port);
  const socket = await next();
  client.close();
  await deadline(
    assert.rejects(socket.closed, isCloseError(1006)),
    "closed to reject",
  );
  await deadline(
    assert.rejects(socket.readable.getReader().read(), isCloseError(1006)),
    "readable to error",
  );
});

Deno.test("upgradeWebSocket chooses the first offered subprotocol it speaks, also from an offer written without spaces", async () => {
  await using served = upgradeServer(
    { protocols: ["chat.v1", "chat.v2"] },
    () => {},
  );
  const { port, url, next } = served;
  const client = await connect(url, { protocols: ["chat.v2", "chat.v1"] });
  assert.equal(client.protocol, "chat.v2");
  assert.equal((await next()).protocol, "chat.v2");
  client.close();
  await deadline(client.closed, "the close");

  // Deno's own `protocol` option would throw for this offer.
  await using raw = await RawClient.connect(port);
  await raw.write(
    upgradeRequest(
      port,
      { "Sec-WebSocket-Protocol": "x,chat.v1" },
      "GET /ws HTTP/1.1",
    ),
  );
  const answer = await deadline(raw.readHead(), "the 101");
  assert.equal(answer.status, 101);
  assert.equal(answer.headers.get("sec-websocket-protocol"), "chat.v1");
  const socket = await next();
  assert.equal(socket.protocol, "chat.v1");
  raw.close();
  await deadline(socket.closed.catch(() => {}), "the server's end");

  const none = await connect(url, { protocols: ["other"] });
  assert.equal(none.protocol, "");
  none.close();
  await deadline(none.closed, "the close");
});

// --- Requests that cannot be upgraded ----------------------------------------

Deno.test("upgradeWebSocket throws an UpgradeError (a TypeError) carrying 426 for a request without Upgrade: websocket", async () => {
  const errors: unknown[] = [];
  await using served = serveDeno((request) => {
    try {
      return upgradeWebSocket(request).response;
    } catch (error) {
      errors.push(error);
      if (error instanceof UpgradeError) return error.getResponse();
      throw error;
    }
  });
  const response = await fetch(`http://127.0.0.1:${served.port}/ws`);
  assert.equal(response.status, 426);
  assert.equal(response.headers.get("upgrade"), "websocket");
  assert.equal(response.headers.get("sec-websocket-version"), "13");
  assert.match(await response.text(), /Upgrade Required/);
  assert.ok(errors[0] instanceof UpgradeError);
  assert.ok(errors[0] instanceof TypeError);
  assert.equal(errors[0].status, 426);
});

Deno.test("upgradeWebSocket answers malformed upgrades as serve() does: 426 for another version, 400 for a bad key, 405 for POST", async () => {
  await using served = serveDeno((request) => {
    try {
      return upgradeWebSocket(request).response;
    } catch (error) {
      if (error instanceof UpgradeError) return error.getResponse();
      throw error;
    }
  });
  const { port } = served;
  const cases: [string, Record<string, string>, number, string, string][] = [
    [
      "GET /ws HTTP/1.1",
      { "Sec-WebSocket-Version": "8" },
      426,
      "sec-websocket-version",
      "13",
    ],
    ["GET /ws HTTP/1.1", { "Sec-WebSocket-Key": "short" }, 400, "", ""],
    // Without a body: Deno's HTTP layer itself answers 400 to an upgrade
    // with Content-Length.
    ["POST /ws HTTP/1.1", {}, 405, "allow", "GET"],
  ];
  for (const [line, headers, status, header, value] of cases) {
    await using raw = await RawClient.connect(port);
    await raw.write(upgradeRequest(port, headers, line));
    const answer = await deadline(raw.readHead(), `the answer to ${line}`);
    assert.equal(answer.status, status, `${line} ${JSON.stringify(headers)}`);
    if (header) assert.equal(answer.headers.get(header), value);
  }
});

Deno.test("upgradeWebSocket with origins: another origin and look-alikes get 403, the allowed origin and no Origin open", async () => {
  await using served = serveDeno((request) => {
    try {
      const { socket, response } = upgradeWebSocket(request, {
        origins: ["https://good.example"],
      });
      echo(socket);
      return response;
    } catch (error) {
      if (error instanceof UpgradeError) return error.getResponse();
      throw error;
    }
  });
  const { port } = served;
  const statuses: Record<string, number> = {};
  for (
    const origin of [
      "https://evil.example",
      "https://good.example.evil.com",
      "https://good.example:8443",
      "https://good.example",
      "",
    ]
  ) {
    await using raw = await RawClient.connect(port);
    await raw.write(upgradeRequest(port, origin ? { Origin: origin } : {}));
    statuses[origin] = (await deadline(raw.readHead(), origin)).status;
  }
  assert.deepEqual(statuses, {
    "https://evil.example": 403,
    "https://good.example.evil.com": 403,
    "https://good.example:8443": 403,
    "https://good.example": 101,
    "": 101,
  });
});

Deno.test("upgradeWebSocket checks its options before the request", () => {
  // Its limits: tests/options_test.ts, beside serve()'s and connect()'s.
  const request = new Request("http://127.0.0.1/");
  assert.throws(() => upgradeWebSocket(request), UpgradeError);
  // A string would be substring-matched by mistake; a path never matches.
  for (const origins of ["https://good.example", ["https://good.example/"]]) {
    // Before the request (a plain one here) is looked at.
    assert.throws(
      () => upgradeWebSocket(request, { origins: origins as string[] }),
      { name: "TypeError", message: /^The origins option/ },
    );
  }
});

// --- In a Hono app ---------------------------------------------------------------

Deno.test("upgradeWebSocket in a Hono app: a WebSocket route beside a POST route, and 426 for a plain GET", async () => {
  const accepted = new Inbox<WebSocketConnection>();
  // Deno.serve(app.fetch) hands Hono the handler's info as `c.env`.
  const app = new Hono<{ Bindings: Deno.ServeHandlerInfo<Deno.NetAddr> }>();
  app.get("/ws", (c) => {
    const { socket, response } = upgradeWebSocket(c.req.raw, {
      remoteAddr: c.env.remoteAddr,
    });
    accepted.push(socket);
    echo(socket);
    return response;
  });
  app.post("/echo", async (c) => c.json({ got: await c.req.text() }));
  await using served = serveDeno(app.fetch);
  const base = `127.0.0.1:${served.port}`;
  const posted = await fetch(`http://${base}/echo`, {
    method: "POST",
    body: "ping",
  });
  assert.equal(posted.status, 200);
  assert.deepEqual(await posted.json(), { got: "ping" });

  // Hono's default error handler answers with the error's getResponse().
  const plain = await fetch(`http://${base}/ws`);
  assert.equal(plain.status, 426);
  await plain.body?.cancel();

  const client = await connect(`ws://${base}/ws`);
  const socket = await nextSocket(accepted);
  assert.equal(socket.remoteAddr.hostname, "127.0.0.1");
  const reader = client.readable.getReader();
  client.send("through hono");
  client.send(new Uint8Array([4, 2]));
  assert.equal(await read(reader, "the text echo"), "through hono");
  assert.deepEqual(
    await read(reader, "the binary echo"),
    new Uint8Array([4, 2]),
  );
  reader.releaseLock();
  client.close({ closeCode: 1000 });
  assert.equal((await deadline(client.closed, "the close")).closeCode, 1000);
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 1000);
});

// --- Topics ---------------------------------------------------------------------

Deno.test("upgradeWebSocket sockets with one TopicHub: a publication reaches subscribers only, socket.publish skips its sender", async () => {
  const hub = new TopicHub();
  await using served = upgradeServer({ hub }, (socket) => {
    const topic = new URL(socket.request.url).searchParams.get("topic");
    if (topic) socket.subscribe(topic);
    socket.subscribe("all");
  });
  const { url, next } = served;
  const a = await connect(`${url}?topic=news`);
  const serverA = await next();
  const b = await connect(url);
  const serverB = await next();
  assert.deepEqual(serverA.subscriptions, ["news", "all"]);
  assert.equal(hub.subscriberCount("news"), 1);

  assert.equal(hub.publish("news", "headline"), 1);
  assert.equal(hub.publish("all", "for everyone"), 2);
  assert.equal(serverA.publish("all", "from A"), 1);
  assert.equal(hub.publish("all", "end"), 2);

  const readerA = a.readable.getReader();
  const readerB = b.readable.getReader();
  assert.equal(await read(readerA, "A's first"), "headline");
  assert.equal(await read(readerA, "A's second"), "for everyone");
  assert.equal(await read(readerA, "A's third"), "end");
  assert.equal(await read(readerB, "B's first"), "for everyone");
  assert.equal(await read(readerB, "B's second"), "from A");
  assert.equal(await read(readerB, "B's third"), "end");
  readerA.releaseLock();
  readerB.releaseLock();

  a.close();
  b.close();
  await deadline(Promise.all([serverA.closed, serverB.closed]), "the closes");
  await deadline(Promise.all([a.closed, b.closed]), "the clients' closes");
  assert.deepEqual(hub.topics(), [], "closed sockets leave their topics");
});

Deno.test("upgradeWebSocket without a hub: subscribe, unsubscribe and publish throw a TypeError that says to pass { hub }, as a client's socket does", async () => {
  await using served = upgradeServer({}, echo);
  const client = await connect(served.url);
  const socket = await served.next();
  for (const target of [socket, client]) {
    for (
      const call of [
        () => target.subscribe("news"),
        () => target.unsubscribe("news"),
        () => target.publish("news", "hello"),
      ]
    ) {
      assert.throws(call, {
        name: "TypeError",
        message:
          "This socket has no topic hub: pass { hub } to upgradeWebSocket() (a client's socket has none)",
      });
    }
  }
  client.close();
  await deadline(client.closed, "the client's close");
});

Deno.test("upgradeWebSocket and serve() sharing a TopicHub: a publication reaches sockets of both kinds", async () => {
  const hub = new TopicHub();
  await using served = serveLocal(
    { hub },
    (socket) => socket.subscribe("room"),
  );
  await using upgrading = upgradeServer({ hub }, (socket) => {
    socket.subscribe("room");
  });
  const { url, next } = upgrading;
  const viaServe = await connect(`ws://127.0.0.1:${served.port}/`);
  const viaDeno = await connect(url);
  const upgraded = await next();
  assert.equal(hub.subscriberCount("room"), 2);

  assert.equal(hub.publish("room", "hello both"), 2);
  assert.equal(upgraded.publish("room", new Uint8Array([1, 2])), 1);

  const serveReader = viaServe.readable.getReader();
  const denoReader = viaDeno.readable.getReader();
  assert.equal(await read(serveReader, "serve's socket"), "hello both");
  assert.deepEqual(
    await read(serveReader, "the socket publication"),
    new Uint8Array([1, 2]),
  );
  assert.equal(await read(denoReader, "the upgraded socket"), "hello both");
  serveReader.releaseLock();
  denoReader.releaseLock();

  viaServe.close();
  viaDeno.close();
  await deadline(
    Promise.all([viaServe.closed, viaDeno.closed, upgraded.closed]),
    "the closes",
  );
});

// --- Bounds ---------------------------------------------------------------------

Deno.test("upgradeWebSocket a flood the handler never reads closes with 1011 once maxQueued bytes wait unread", async () => {
  const maxQueued = 256 * 1024;
  await using served = upgradeServer({ maxQueued }, () => {});
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const writer = client.writable.getWriter();
  const chunk = new Uint8Array(1024);
  let sent = 0;
  // 8 MiB at most: the server closes long before.
  for (; sent < 8192; sent++) {
    try {
      await deadline(writer.write(chunk), "a write");
    } catch {
      break;
    }
  }
  writer.releaseLock();
  assert.ok(sent < 8192, "the flood was stopped");
  const error = await deadline(
    socket.closed.then(() => undefined, (error) => error),
    "the server's close",
  );
  assert.ok(error instanceof WebSocketError);
  assert.equal(error.closeCode, 1011);
  assert.equal(error.reason, "Messages not read");
  // What was held unread is still read, before readable errors with 1011:
  // what every socket holds (its messages until 64 of them or 64 KiB, each
  // counting 64 bytes more than its size; readable's own 2 are not made
  // until it is read), then the messages counted against maxQueued, whose
  // sum never passes it: as many as fit, not one more.
  const held: (string | Uint8Array)[] = [];
  await assert.rejects(
    deadline(
      (async () => {
        for await (const message of socket.readable) held.push(message);
      })(),
      "the held messages",
    ),
    isCloseError(1011),
  );
  const cost = chunk.length + 64;
  const room = Math.min(64, Math.ceil(64 * 1024 / cost));
  assert.equal(
    held.length,
    room + Math.floor(maxQueued / cost),
    "the messages held: those every socket holds, and maxQueued's worth",
  );
  // Deno drops the connection at the next message after its close, so
  // the flooding client sees 1011 or a reset: only that it ends.
  await deadline(client.closed.catch(() => {}), "the client's end");
});

Deno.test("upgradeWebSocket a handler that reads keeps up with a flood and is not closed", async () => {
  let received = 0;
  await using served = upgradeServer({}, async (socket) => {
    for await (const message of socket.readable) {
      received += (message as Uint8Array).length;
    }
  });
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const writer = client.writable.getWriter();
  const chunk = new Uint8Array(1024);
  for (let i = 0; i < 4096; i++) {
    await deadline(writer.write(chunk), "a write");
  }
  writer.releaseLock();
  client.close({ closeCode: 1000 });
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 1000);
  assert.equal(received, 4096 * 1024);
  await deadline(client.closed, "the client's close");
});

Deno.test("upgradeWebSocket send() past maxBackpressure to a client that never reads closes with 1013", async () => {
  const done = Promise.withResolvers<number>();
  await using served = upgradeServer(
    { maxBackpressure: 512 * 1024, closeTimeout: 30_000 },
    async (socket) => {
      const chunk = new Uint8Array(64 * 1024);
      let sent = 0;
      // At most 256 MiB: kernel buffers take a few MiB, then Deno's grows.
      while (sent < 256 * 1024 * 1024) {
        if (socket.send(chunk) === 0) break;
        sent += chunk.length;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      done.resolve(sent);
    },
  );
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const sent = await deadline(done.promise, "send() to refuse", 60_000);
  assert.ok(sent < 256 * 1024 * 1024, "send() refused a message");
  assert.equal(socket.send("more"), 0, "the socket is closing");
  // Now the client reads: every message sent, then the close.
  assert.equal(await deadline(drain(client), "the client's reads"), sent);
  assert.deepEqual(await deadline(client.closed, "the client's close"), {
    closeCode: 1013,
    reason: "Send queue over 512 KiB",
    wasClean: true,
  });
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 1013);
});

Deno.test("upgradeWebSocket a message bigger than maxBackpressure, sent to an idle socket, is delivered whole and the socket stays open", async () => {
  await using served = upgradeServer({ maxBackpressure: 64 * 1024 }, () => {});
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const big = new Uint8Array(256 * 1024).fill(7);
  assert.ok(socket.send(big) > 0, "queued");
  const reader = client.readable.getReader();
  assertSameMessage(await read(reader, "the big message"), big, "delivered");
  assert.ok(socket.send("still open") > 0);
  assert.equal(await read(reader, "the next message"), "still open");
  assert.equal(socket.droppedMessages, 0);
  reader.releaseLock();
  client.close({ closeCode: 1000 });
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 1000);
  await deadline(client.closed, "the client's close");
});

Deno.test('upgradeWebSocket backpressure: "drop" drops and counts what send() queues past maxBackpressure', async () => {
  await using served = upgradeServer(
    { maxBackpressure: 256 * 1024, backpressure: "drop" },
    (socket) => {
      const chunk = new Uint8Array(64 * 1024);
      // All before the upgrade completes: 4 fit in 256 KiB.
      for (let i = 0; i < 32; i++) socket.send(chunk);
      socket.close({ closeCode: 1000 });
    },
  );
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  assert.equal(socket.droppedMessages, 28);
  assert.equal(
    await deadline(drain(client), "the client's reads"),
    4 * 65536,
  );
  assert.equal((await deadline(client.closed, "the close")).closeCode, 1000);
  await deadline(socket.closed, "the server's close");
});

Deno.test("upgradeWebSocket a message over maxMessageSize (UTF-8 bytes for text) closes with 1009", async () => {
  await using served = upgradeServer({ maxMessageSize: 1024 }, echo);
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  const reader = client.readable.getReader();
  // 512 two-byte characters: 1,024 bytes, at the limit.
  client.send("é".repeat(512));
  assert.equal(await read(reader, "the echo"), "é".repeat(512));
  // 513 characters, 1,026 bytes: over, though shorter than 1,024 units.
  client.send("é".repeat(513));
  assert.equal(await read(reader, "the end"), undefined);
  assert.deepEqual(await deadline(client.closed, "the client's close"), {
    closeCode: 1009,
    reason: "Message too big",
    wasClean: true,
  });
  await deadline(
    assert.rejects(socket.closed, isCloseError(1009)),
    "closed to reject",
  );

  const binary = await connect(url);
  const binarySocket = await next();
  binary.send(new Uint8Array(1025));
  assert.equal((await deadline(binary.closed, "the close")).closeCode, 1009);
  await deadline(
    assert.rejects(binarySocket.closed, isCloseError(1009)),
    "closed to reject",
  );
});

Deno.test("upgradeWebSocket writable: write() resolves once Deno's buffer is under 64 KiB", async () => {
  const chunk = new Uint8Array(1024 * 1024);
  // Recorded in the handler, whose promise nothing awaits, and checked below:
  // how many write()s resolved, and the most Deno's buffer held right after.
  let writes = 0;
  let maxBuffered = 0;
  await using served = upgradeServer({}, async (socket) => {
    const writer = socket.writable.getWriter();
    for (let i = 0; i < 16; i++) {
      await writer.write(chunk);
      writes++;
      maxBuffered = Math.max(maxBuffered, socket.bufferedAmount);
    }
    writer.releaseLock();
    socket.close({ closeCode: 1000 });
  });
  const { url, next } = served;
  const client = await connect(url);
  const socket = await next();
  assert.equal(await deadline(drain(client), "the reads"), 16 * chunk.length);
  assert.equal((await deadline(socket.closed, "the close")).closeCode, 1000);
  await deadline(client.closed, "the client's close");
  assert.equal(writes, 16, "every write() resolved");
  assert.ok(
    maxBuffered <= 64 * 1024,
    `${maxBuffered} bytes still queued after a write()`,
  );
});

Deno.test("upgradeWebSocket idleTimeout: a peer that answers no ping is closed with 1001", async () => {
  await using served = upgradeServer({ idleTimeout: 1000 }, () => {});
  const { port, next } = served;
  await using raw = await RawClient.open(port);
  const socket = await next();
  await deadline(
    assert.rejects(socket.closed, isCloseError(1001)),
    "the idle close",
  );
  const ping = await deadline(raw.readFrame(), "the ping");
  assert.equal(ping?.opcode, 9);
  const close = await deadline(raw.readFrame(), "the close frame");
  assert.equal(close?.opcode, 8);
  assert.equal((close!.payload[0] << 8) | close!.payload[1], 1001);
  await raw.write(frame(8, close!.payload.subarray(0, 2))).catch(() => {});
});

Deno.test("upgradeWebSocket sockets report an unknown remoteAddr as an empty hostname without the option", async () => {
  const accepted = new Inbox<WebSocketConnection>();
  await using served = serveDeno((request) => {
    const { socket, response } = upgradeWebSocket(request);
    accepted.push(socket);
    return response;
  });
  const client = await connect(`ws://127.0.0.1:${served.port}/`);
  const socket = await nextSocket(accepted);
  assert.deepEqual(socket.remoteAddr, {
    transport: "tcp",
    hostname: "",
    port: 0,
  });
  client.close();
  await deadline(Promise.all([client.closed, socket.closed]), "the closes");
});
