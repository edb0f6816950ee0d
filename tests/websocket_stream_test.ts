import assert from "node:assert/strict";
import {
  serve,
  type WebSocketCloseResult,
  WebSocketError,
  WebSocketStream,
} from "../mod.ts";

const LOCAL = { port: 0, hostname: "127.0.0.1", onListen() {} };

function echoServer() {
  return serve(LOCAL, (socket) => socket.readable.pipeTo(socket.writable));
}

/** A close code and reason, as the server saw them. */
type CloseSeen = Omit<WebSocketCloseResult, "wasClean">;

/** Our server, reporting how each connection ended as the server saw it. */
function recordingServer() {
  const results: Promise<CloseSeen | WebSocketError>[] = [];
  const server = serve(LOCAL, (socket) => {
    results.push(
      socket.readable.pipeTo(socket.writable).then(
        () => socket.closed,
        () => socket.closed,
      ).then(({ closeCode, reason }) => ({ closeCode, reason }))
        .catch((error) => error),
    );
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/`,
    /** How the `i`th connection ended, as the server saw it. */
    result: (i: number) => results[i],
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A TCP server that reads the client's request and never answers it. */
function silentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        tasks.push((async () => {
          const buffer = new Uint8Array(4096);
          try {
            // Read until the client gives up and closes the connection.
            while (await conn.read(buffer) !== null) {
              // Discard the request.
            }
          } finally {
            conn.close();
          }
        })());
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    url: `ws://127.0.0.1:${listener.addr.port}/`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("WebSocketStream opened resolves with readable, writable, protocol and extensions", async () => {
  await using server = serve(
    { ...LOCAL, protocols: ["chat.v1"] },
    (socket) => socket.readable.pipeTo(socket.writable),
  );
  const url = `ws://127.0.0.1:${server.addr.port}/path?q=1`;
  const wss = new WebSocketStream(url, { protocols: ["chat.v1", "chat.v2"] });
  assert.equal(wss.url, url);
  const info = await wss.opened;
  assert.ok(info.readable instanceof ReadableStream);
  assert.ok(info.writable instanceof WritableStream);
  assert.equal(info.protocol, "chat.v1");
  assert.equal(info.extensions, "");
  wss.close();
  await wss.closed;
});

Deno.test("WebSocketStream writes strings as text and any BufferSource as binary, and reads Uint8Array", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  const { readable, writable } = await wss.opened;
  const writer = writable.getWriter();
  const reader = readable.getReader();
  const bytes = new Uint8Array([1, 2, 3, 4, 5, 6]);
  const sent: [string | BufferSource, string | Uint8Array][] = [
    ["text", "text"],
    ["", ""],
    [bytes, bytes],
    [bytes.buffer, bytes],
    [new DataView(bytes.buffer, 1, 2), new Uint8Array([2, 3])],
    [
      new Uint16Array([0x0102]),
      new Uint8Array(new Uint16Array([0x0102]).buffer),
    ],
    [new ArrayBuffer(0), new Uint8Array(0)],
  ];
  for (const [message, echo] of sent) {
    await writer.write(message);
    assert.deepEqual(await reader.read(), { value: echo, done: false });
  }
  await assert.rejects(
    writer.write(42 as unknown as string),
    (error) =>
      error instanceof TypeError &&
      error.message === "A message must be a string or a BufferSource",
  );
  wss.close();
  await wss.closed;
});

Deno.test("WebSocketStream maps http: to ws: and rejects bad URLs and subprotocols with a TypeError", () => {
  const wss = new WebSocketStream("http://127.0.0.1:1/a b", {
    signal: AbortSignal.abort(),
  });
  assert.equal(wss.url, "ws://127.0.0.1:1/a%20b");
  assert.throws(() => new WebSocketStream("nope"), TypeError);
  assert.throws(() => new WebSocketStream("file:///x"), TypeError);
  assert.throws(() => new WebSocketStream("ws://127.0.0.1/#hash"), TypeError);
  assert.throws(
    () => new WebSocketStream("ws://127.0.0.1/", { protocols: ["a", "a"] }),
    TypeError,
  );
  assert.throws(
    () => new WebSocketStream("ws://127.0.0.1/", { protocols: ["a,b"] }),
    TypeError,
  );
});

Deno.test("WebSocketStream close() sends its code and reason and closed resolves with the server's", async () => {
  await using server = recordingServer();
  const wss = new WebSocketStream(server.url);
  await wss.opened;
  wss.close({ closeCode: 3456, reason: "pizza" });
  assert.deepEqual(await wss.closed, {
    closeCode: 3456,
    reason: "",
    wasClean: true,
  });
  assert.deepEqual(await server.result(0), {
    closeCode: 3456,
    reason: "pizza",
  });
});

Deno.test("WebSocketStream close() with a reason and no code sends 1000", async () => {
  await using server = recordingServer();
  const wss = new WebSocketStream(server.url);
  await wss.opened;
  wss.close({ reason: "non-empty" });
  await wss.closed;
  assert.deepEqual(await server.result(0), {
    closeCode: 1000,
    reason: "non-empty",
  });
});

Deno.test("WebSocketStream close() without a code sends an empty close frame", async () => {
  await using server = recordingServer();
  const wss = new WebSocketStream(server.url);
  await wss.opened;
  wss.close();
  await wss.closed;
  assert.deepEqual(await server.result(0), { closeCode: 1005, reason: "" });
});

Deno.test("WebSocketStream close() refuses invalid codes, overlong reasons and non-objects", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  await wss.opened;
  for (const closeCode of [999, 1001, 1005, 2999, 5000]) {
    assert.throws(() => wss.close({ closeCode }), RangeError);
  }
  assert.throws(() => wss.close({ reason: ".".repeat(124) }), RangeError);
  assert.throws(() => wss.close({ reason: "é".repeat(62) }), RangeError);
  assert.throws(
    () => wss.close(true as unknown as { closeCode: number }),
    TypeError,
  );
  wss.close({ reason: "é".repeat(61) });
  assert.deepEqual(await wss.closed, {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("WebSocketStream close() during the handshake rejects opened and closed with a WebSocketError", async () => {
  await using server = silentServer();
  const wss = new WebSocketStream(server.url);
  wss.close();
  await assert.rejects(wss.opened, WebSocketError);
  await assert.rejects(
    wss.closed,
    (error) => error instanceof WebSocketError && error.closeCode === 1006,
  );
});

Deno.test("WebSocketStream aborting the signal during the handshake rejects opened and closed with its reason", async () => {
  await using server = silentServer();
  const controller = new AbortController();
  const wss = new WebSocketStream(server.url, { signal: controller.signal });
  controller.abort();
  const reason = controller.signal.reason;
  assert.ok(reason instanceof DOMException && reason.name === "AbortError");
  await assert.rejects(wss.opened, (error) => error === reason);
  await assert.rejects(wss.closed, (error) => error === reason);
});

Deno.test("WebSocketStream with an already aborted signal rejects without connecting", async () => {
  const reason = new Error("Aborted first");
  const wss = new WebSocketStream("ws://127.0.0.1:1/", {
    signal: AbortSignal.abort(reason),
  });
  await assert.rejects(wss.opened, (error) => error === reason);
  await assert.rejects(wss.closed, (error) => error === reason);
});

Deno.test("WebSocketStream aborting the signal after the handshake does nothing", async () => {
  await using server = echoServer();
  const controller = new AbortController();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`, {
    signal: controller.signal,
  });
  const { readable, writable } = await wss.opened;
  controller.abort();
  const writer = writable.getWriter();
  await writer.write("still connected");
  const reader = readable.getReader();
  assert.deepEqual(await reader.read(), {
    value: "still connected",
    done: false,
  });
  wss.close({ closeCode: 1000 });
  assert.deepEqual(await wss.closed, {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("WebSocketStream a failed connection rejects both promises, and nobody has to await them", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `ws://127.0.0.1:${listener.addr.port}/`;
  listener.close();
  // Not awaited until the end: its rejections must not be unhandled.
  const unobserved = new WebSocketStream(url);
  const wss = new WebSocketStream(url);
  await assert.rejects(
    wss.closed,
    (error) =>
      error instanceof WebSocketError && error.closeCode === 1006 &&
      error.message.startsWith(`Cannot connect to ${url}: `),
  );
  await assert.rejects(wss.opened, WebSocketError);
  await Promise.allSettled([unobserved.opened, unobserved.closed]);
});

Deno.test("WebSocketStream closing the writable resolves once the closing handshake is done", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  const { writable } = await wss.opened;
  let settled = false;
  wss.closed.then(() => settled = true);
  await writable.getWriter().close();
  await Promise.resolve();
  assert.equal(settled, true);
  assert.deepEqual(await wss.closed, {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("WebSocketStream canceling readable or aborting writable closes with a WebSocketError's code and reason", async (t) => {
  const cases: [unknown, CloseSeen][] = [
    [undefined, { closeCode: 1005, reason: "" }],
    [{ closeCode: 3333, reason: "obsolete" }, { closeCode: 1005, reason: "" }],
    [new WebSocketError("", { closeCode: 3333 }), {
      closeCode: 3333,
      reason: "",
    }],
    [new WebSocketError("", { closeCode: 3456, reason: "set" }), {
      closeCode: 3456,
      reason: "set",
    }],
    [new WebSocketError("", { reason: "specified" }), {
      closeCode: 1000,
      reason: "specified",
    }],
  ];
  for (const stream of ["readable", "writable"] as const) {
    await t.step(stream, async () => {
      await using server = recordingServer();
      for (const [i, [reason, expected]] of cases.entries()) {
        const wss = new WebSocketStream(server.url);
        const info = await wss.opened;
        if (stream === "readable") await info.readable.cancel(reason);
        else await info.writable.abort(reason);
        await wss.closed;
        assert.deepEqual(await server.result(i), expected, String(reason));
      }
    });
  }
});
