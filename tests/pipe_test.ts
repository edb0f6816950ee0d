// A socket's readable piped into a socket's writable runs directly, with no
// stream promise per message: these check that it keeps pipeTo's meaning
// (order, backpressure, ends, errors, locks) between two sockets.

import assert from "node:assert/strict";
import { serve, type WebSocketConnection, WebSocketError } from "../mod.ts";
import { RawClient, text } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import {
  collectGarbage,
  deadline,
  floodUntilStalled,
  serveLocal,
  waitFor,
} from "./_util.ts";

/**
 * How long a test waits for what must happen at once: far below the 5 s
 * of `closeTimeout`, which a close left to time out would take.
 */
const PROMPT = 2_000;

/**
 * A server whose first socket is piped into its second, with a raw client on
 * each: `from` (the source's peer) and `to` (the target's). Disposing it
 * closes both clients, then shuts the server down; when a step fails on the
 * way, what was opened before it is closed the same way. With `collect`,
 * garbage is collected once the pipe runs, and the streams it locked must be
 * gone: the sockets hold them weakly, nothing else holds them.
 */
async function bridge(options?: StreamPipeOptions, collect = false) {
  const opened = await openSockets(2);
  await using stop = opened.stop;
  const { sockets, clients: [from, to] } = opened;
  const { pipe, streams } = pipeWatched(sockets[0], sockets[1], options);
  pipe.catch(() => {});
  if (collect) {
    await collectGarbage();
    assert.deepEqual(
      streams.map((stream) => stream.deref()),
      [undefined, undefined],
      "the locked streams are collected",
    );
  }
  const owned = stop.move();
  return {
    from,
    to,
    sockets,
    pipe,
    [Symbol.asyncDispose]: () => owned.disposeAsync(),
  };
}

/**
 * Pipes `source.readable` into `target.writable`, with weak references to
 * the two streams: made in a function of its own, so that nothing but the
 * sockets and the pipe holds them once it returns.
 */
function pipeWatched(
  source: WebSocketConnection,
  target: WebSocketConnection,
  options?: StreamPipeOptions,
) {
  const { readable } = source;
  const { writable } = target;
  return {
    pipe: readable.pipeTo(writable, options),
    streams: [new WeakRef(readable), new WeakRef(writable)],
  };
}

/**
 * `count` sockets of one server, each with a raw client, in the order the
 * clients connected. Disposing `stop` closes the clients, then the server.
 */
async function openSockets(count: number) {
  const sockets: WebSocketConnection[] = [];
  await using stack = new AsyncDisposableStack();
  const { port } = stack.use(serveLocal({}, (socket) => {
    sockets.push(socket);
  }));
  const clients: RawClient[] = [];
  for (let i = 0; i < count; i++) {
    clients.push(stack.use(await RawClient.open(port)));
    // One at a time, so that sockets[i] is clients[i]'s.
    await waitFor(() => sockets.length > i, "the socket");
  }
  return { sockets, clients, stop: stack.move() };
}

for (const collect of [false, true]) {
  const collected = collect ? ", also once its streams were collected" : "";

  Deno.test(`pipeTo between two sockets carries every message in order and locks both streams${collected}`, async () => {
    await using bridged = await bridge(undefined, collect);
    const { from, to, sockets, pipe } = bridged;
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
    if (collect) await collectGarbage();
    // Both streams are unlocked and closed, as `pipeTo` leaves them.
    assert.equal(sockets[0].readable.locked, false);
    assert.equal(sockets[1].writable.locked, false);
    assert.deepEqual(await sockets[0].readable.getReader().read(), {
      done: true,
      value: undefined,
    });
    await deadline(sockets[1].writable.getWriter().closed, "writable closed");
  });

  Deno.test(`pipeTo between two sockets: a target that closes cancels the source, and the pipe rejects with a TypeError${collected}`, async () => {
    await using bridged = await bridge(undefined, collect);
    const { from, to, sockets, pipe } = bridged;
    await to.write(frame(8, closePayload(4000)));
    // The peer finishes the closing handshake and closes TCP.
    assert.equal((await to.readUntilClose()).code, 4000);
    await deadline(sockets[1].closed, "the target to close", PROMPT);
    await from.write(frame(1, "after the target closed"));
    const error = await deadline(
      pipe.catch((error: unknown) => error),
      "the pipe to reject",
    );
    assert.ok(error instanceof TypeError, `the pipe ended with ${error}`);
    // The source is closed (no code: a TypeError carries none).
    const close = await deadline(from.readFrame(), "the source's close");
    assert.equal(close?.opcode, 8);
    assert.equal(close?.payload.length, 0);
    if (collect) await collectGarbage();
    // The source's readable was canceled (so closed); the target's writable
    // aborted with the error.
    assert.equal((await sockets[0].readable.getReader().read()).done, true);
    await assert.rejects(sockets[1].writable.getWriter().closed, error);
  });

  Deno.test(`pipeTo between two sockets: a source that fails with 1002 rejects the pipe and closes the target with 1000 and the source's reason${collected}`, async () => {
    await using bridged = await bridge(undefined, collect);
    const { from, to, sockets, pipe } = bridged;
    // Reserved bits: the source fails with 1002, and the pipe with its error.
    await from.write(frame(1, "bad", { rsv: 2 }));
    const error = await deadline(
      pipe.catch((error: unknown) => error),
      "the pipe to reject",
    );
    assert.ok(error instanceof WebSocketError, `the pipe ended with ${error}`);
    assert.equal(error.closeCode, 1002);
    assert.ok(error.reason.length > 0, "the failure gives a reason");
    // The target's writable is aborted with that error: 1002 is no code an
    // app may send, so the target closes with 1000 and the error's reason.
    const close = await deadline(to.readFrame(), "the target's close");
    assert.equal(close?.opcode, 8);
    assert.deepEqual(close.payload, closePayload(1000, error.reason));
    const sourceClose = await deadline(from.readFrame(), "the source's close");
    assert.equal(sourceClose?.opcode, 8);
    assert.deepEqual(sourceClose.payload, closePayload(1002, error.reason));
    if (collect) await collectGarbage();
    // Both streams end with the source's error.
    await assert.rejects(sockets[0].readable.getReader().read(), error);
    await assert.rejects(sockets[1].writable.getWriter().closed, error);
  });
}

for (const collect of [false, true]) {
  const collected = collect ? ", also once the streams were collected" : "";

  Deno.test(`two sockets piped into each other: the pipe that ends first leaves the other's locks, and the other still ends its target${collected}`, async () => {
    const { sockets, clients: [from, to], stop } = await openSockets(2);
    await using _stop = stop;
    const [a, b] = sockets;
    const first = a.readable.pipeTo(b.writable);
    const second = b.readable.pipeTo(a.writable);
    // Awaited below; a failed step must not leave them unhandled.
    first.catch(() => {});
    second.catch(() => {});
    // a's peer closes: a's readable ends, so the first pipe closes b.
    await from.write(frame(8, closePayload(1000)));
    await deadline(first, "the first pipe");
    if (collect) await collectGarbage();
    assert.equal(b.readable.locked, true, "the second pipe still reads b");
    assert.equal(a.writable.locked, true, "the second pipe still writes a");
    // b's peer answers b's close: b's readable ends, and the second pipe.
    assert.equal((await deadline(to.readFrame(), "b's close"))?.opcode, 8);
    await to.write(frame(8, closePayload(1000)));
    await deadline(second, "the second pipe");
    if (collect) await collectGarbage();
    assert.equal(b.readable.locked, false);
    assert.equal(a.writable.locked, false);
    await deadline(a.writable.getWriter().closed, "a's writable to close");
  });

  Deno.test(`pipeTo into a writable that an earlier pipe closed cancels the source with a TypeError and leaves the writable closed${collected}`, async () => {
    const { sockets, clients: [first], stop } = await openSockets(3);
    await using _stop = stop;
    const [s0, s1, s2] = sockets;
    const earlier = s0.readable.pipeTo(s2.writable);
    earlier.catch(() => {});
    await first.write(frame(8, closePayload(1000)));
    await deadline(earlier, "the earlier pipe");
    const later = s1.readable.pipeTo(s2.writable);
    await assert.rejects(deadline(later, "the later pipe"), TypeError);
    if (collect) await collectGarbage();
    await deadline(s2.writable.getWriter().closed, "the writable, closed");
  });
}

Deno.test("an echo's direct pipe keeps no streams that nothing else holds, and they come back as the pipe has them", async () => {
  const piped = Promise.withResolvers<{
    socket: WebSocketConnection;
    pipe: Promise<void>;
    streams: WeakRef<object>[];
  }>();
  await using server = serveLocal({}, (socket) => {
    const { readable, writable } = socket;
    const streams = [new WeakRef(readable), new WeakRef(writable)];
    const pipe = readable.pipeTo(writable);
    piped.resolve({ socket, pipe, streams });
    return pipe;
  });
  await using client = await RawClient.open(server.port);
  const { socket, pipe, streams } = await deadline(piped.promise, "the pipe");
  await collectGarbage();
  assert.deepEqual(streams.map((stream) => stream.deref()), [
    undefined,
    undefined,
  ]);
  // Made again when asked for: locked by the pipe, which still echoes.
  assert.equal(socket.readable.locked, true);
  assert.equal(socket.writable.locked, true);
  await client.write(frame(1, "still echoed"));
  const echoed = await deadline(client.readFrame(), "the echo");
  assert.equal(text(echoed!.payload), "still echoed");
  await client.write(frame(8, closePayload(1000)));
  const close = await deadline(client.readFrame(), "the close");
  assert.deepEqual(close?.payload, closePayload(1000));
  await deadline(pipe, "the pipe to resolve");
  assert.equal(socket.readable.locked, false);
  assert.equal((await socket.readable.getReader().read()).done, true);
});

Deno.test("pipeTo between two sockets holds the source while the target's peer does not read", async () => {
  await using bridged = await bridge();
  const { from, to, sockets, pipe } = bridged;
  // The target's peer reads nothing: the target's queue stays bounded and
  // the source stops taking messages (its inbox, then TCP, push back).
  const chunk = frame(2, new Uint8Array(32 * 1024));
  const written = await floodUntilStalled(from, chunk, 300, 64 * 1024 * 1024);
  assert.ok(written < 64 * 1024 * 1024, "the source stops reading");
  assert.ok(
    sockets[1].bufferedAmount <= 64 * 1024 + chunk.length,
    `target buffered ${sockets[1].bufferedAmount}`,
  );
  from.close();
  to.close();
  await deadline(pipe.then(() => {}, () => {}), "the pipe to end");
});

Deno.test("pipeTo with preventClose keeps the target open after the source ends (the streams' own pipe)", async () => {
  await using bridged = await bridge({ preventClose: true });
  const { from, to, sockets, pipe } = bridged;
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

// --- Found in review: what the direct pipe must not lose or reorder -------

Deno.test("pipeTo after reading some messages (readable's queue holding more) loses none of them", async () => {
  const done = Promise.withResolvers<void>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (socket) => {
      const reader = socket.readable.getReader();
      assert.equal((await reader.read()).value, "auth");
      // The rest arrive meanwhile and wait in readable's own queue.
      await new Promise((resolve) => setTimeout(resolve, 100));
      reader.releaseLock();
      await socket.readable.pipeTo(socket.writable).catch(() => {});
      done.resolve();
    },
  );
  await using client = await RawClient.open(server.addr.port);
  for (const message of ["auth", "a", "b", "c", "d"]) {
    await client.write(frame(1, message));
  }
  for (const message of ["a", "b", "c", "d"]) {
    const got = await deadline(client.readFrame(), `the echo of ${message}`);
    assert.equal(text(got!.payload), message);
  }
  await client.write(frame(8, closePayload(1000)));
  await deadline(done.promise, "the pipe to settle");
});

Deno.test("pipeTo of a readable that has already ended settles at once", async () => {
  const settled = Promise.withResolvers<string>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (socket) => {
      await socket.closed.catch(() => {});
      socket.readable.pipeTo(socket.writable).then(
        () => settled.resolve("resolved"),
        () => settled.resolve("rejected"),
      );
    },
  );
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(8, closePayload(1000)));
  // The closing handshake completes: `closed` settles, then the pipe.
  assert.equal((await client.readUntilClose()).code, 1000);
  assert.equal(
    await deadline(settled.promise, "the pipe to settle", PROMPT),
    "resolved",
  );
});

Deno.test("pipeTo into a writable with writes still waiting does not overtake them", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      const writer = socket.writable.getWriter();
      writer.write(new Uint8Array(4 * 1024 * 1024)).catch(() => {});
      writer.write("written before the pipe").catch(() => {});
      writer.releaseLock();
      socket.readable.pipeTo(socket.writable).catch(() => {});
    },
  );
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(1, "piped"));
  assert.equal((await deadline(client.readFrame(), "the binary"))!.opcode, 2);
  assert.equal(
    text((await deadline(client.readFrame(), "the second write"))!.payload),
    "written before the pipe",
  );
  assert.equal(
    text((await deadline(client.readFrame(), "the piped echo"))!.payload),
    "piped",
  );
});

Deno.test("a write refused after writable's close() does not hold the close frame back", async () => {
  const refused = Promise.withResolvers<unknown>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      const writer = socket.writable.getWriter();
      writer.write("a").catch(() => {});
      writer.close().catch(() => {});
      writer.write("late").then(() => refused.resolve(null), refused.resolve);
    },
  );
  await using client = await RawClient.open(server.addr.port);
  assert.equal(text((await deadline(client.readFrame(), "a"))!.payload), "a");
  const close = await deadline(client.readFrame(), "the close frame");
  assert.equal(close?.opcode, 8);
  assert.ok(await refused.promise instanceof TypeError);
});

Deno.test("send() and publish() send what the array held at the call, large or small", async () => {
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      socket.subscribe("t");
      for (const size of [100 * 1024, 1024]) {
        const bytes = new Uint8Array(size).fill(1);
        socket.send(bytes);
        bytes.fill(2);
        socket.send(bytes);
      }
    },
  );
  await using client = await RawClient.open(server.addr.port);
  const firsts: number[] = [];
  for (let i = 0; i < 4; i++) {
    firsts.push((await deadline(client.readFrame(), "a message"))!.payload[0]);
  }
  assert.deepEqual(firsts, [1, 2, 1, 2]);
});

Deno.test("the streams' constructors cannot be reached to forge a socket's readable or writable", async () => {
  const errors = Promise.withResolvers<unknown[]>();
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      const seen: unknown[] = [];
      const Readable = socket.readable.constructor as new (
        source: unknown,
      ) => unknown;
      const Writable = socket.writable.constructor as new (
        socket: unknown,
      ) => unknown;
      for (
        const make of [
          () => new Readable({ socket }),
          () => new Writable(socket),
        ]
      ) {
        try {
          make();
          seen.push(null);
        } catch (error) {
          seen.push(error);
        }
      }
      errors.resolve(seen);
      socket.close();
    },
  );
  await using _client = await RawClient.open(server.addr.port);
  const seen = await deadline(errors.promise, "the attempts");
  for (const error of seen) assert.ok(error instanceof TypeError);
});
