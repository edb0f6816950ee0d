import assert from "node:assert/strict";
import {
  serve,
  type WebSocketCloseResult,
  WebSocketError,
  WebSocketStream,
} from "../mod.ts";
import { deadline, WAIT_LIMIT } from "./_util.ts";

const LOCAL = { port: 0, hostname: "127.0.0.1", onListen() {} };

function echoServer() {
  return serve(LOCAL, (socket) => socket.readable.pipeTo(socket.writable));
}

/** Our server, reporting how each connection ended as the server saw it. */
/** A close code and reason, as the server saw them. */
type CloseSeen = Omit<WebSocketCloseResult, "wasClean">;

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
  const tasks: Promise<unknown>[] = [];
  const failures: unknown[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        tasks.push(
          (async () => {
            const buffer = new Uint8Array(4096);
            try {
              // Read until the client gives up and closes the connection,
              // which it must do in time.
              while (
                await deadline(
                  conn.read(buffer),
                  "the client to close the connection",
                  WAIT_LIMIT,
                  () => conn.close(),
                ) !== null
              ) {
                // Discard the request.
              }
            } finally {
              try {
                conn.close();
              } catch {
                // Closed at the deadline.
              }
            }
          })().catch((error) => failures.push(error)),
        );
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
      if (failures.length > 0) throw failures[0];
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
  const info = await deadline(wss.opened, "the WebSocketStream to open");
  assert.ok(info.readable instanceof ReadableStream);
  assert.ok(info.writable instanceof WritableStream);
  assert.equal(info.protocol, "chat.v1");
  assert.equal(info.extensions, "");
  wss.close();
  await deadline(wss.closed, "the WebSocketStream to close");
});

Deno.test("WebSocketStream writes strings as text and any BufferSource as binary, and reads Uint8Array", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  const { readable, writable } = await deadline(
    wss.opened,
    "the WebSocketStream to open",
  );
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
    await deadline(writer.write(message), "the write to be taken");
    assert.deepEqual(await deadline(reader.read(), "a message from readable"), {
      value: echo,
      done: false,
    });
  }
  await assert.rejects(
    writer.write(42 as unknown as string),
    (error) =>
      error instanceof TypeError &&
      error.message === "A message must be a string or a BufferSource",
  );
  wss.close();
  await deadline(wss.closed, "the WebSocketStream to close");
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
  await deadline(wss.opened, "the WebSocketStream to open");
  wss.close({ closeCode: 3456, reason: "pizza" });
  assert.deepEqual(await deadline(wss.closed, "the WebSocketStream to close"), {
    closeCode: 3456,
    reason: "",
    wasClean: true,
  });
  assert.deepEqual(
    await deadline(server.result(0), "the server's end of the connection"),
    {
      closeCode: 3456,
      reason: "pizza",
    },
  );
});

Deno.test("WebSocketStream close() with a reason and no code sends 1000", async () => {
  await using server = recordingServer();
  const wss = new WebSocketStream(server.url);
  await deadline(wss.opened, "the WebSocketStream to open");
  wss.close({ reason: "non-empty" });
  await deadline(wss.closed, "the WebSocketStream to close");
  assert.deepEqual(
    await deadline(server.result(0), "the server's end of the connection"),
    {
      closeCode: 1000,
      reason: "non-empty",
    },
  );
});

Deno.test("WebSocketStream close() without a code sends an empty close frame", async () => {
  await using server = recordingServer();
  const wss = new WebSocketStream(server.url);
  await deadline(wss.opened, "the WebSocketStream to open");
  wss.close();
  await deadline(wss.closed, "the WebSocketStream to close");
  assert.deepEqual(
    await deadline(server.result(0), "the server's end of the connection"),
    {
      closeCode: 1005,
      reason: "",
    },
  );
});

Deno.test("WebSocketStream close() refuses invalid codes, overlong reasons and non-objects", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  await deadline(wss.opened, "the WebSocketStream to open");
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
  assert.deepEqual(await deadline(wss.closed, "the WebSocketStream to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("WebSocketStream close() during the handshake rejects opened and closed with a WebSocketError", async () => {
  await using server = silentServer();
  const wss = new WebSocketStream(server.url);
  wss.close();
  await assert.rejects(
    deadline(wss.opened, "the WebSocketStream to open"),
    WebSocketError,
  );
  await assert.rejects(
    deadline(wss.closed, "the WebSocketStream to close"),
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
  await assert.rejects(
    deadline(wss.opened, "the WebSocketStream to open"),
    (error) => error === reason,
  );
  await assert.rejects(
    deadline(wss.closed, "the WebSocketStream to close"),
    (error) => error === reason,
  );
});

Deno.test("WebSocketStream with an already aborted signal rejects without connecting", async () => {
  const reason = new Error("Aborted first");
  const wss = new WebSocketStream("ws://127.0.0.1:1/", {
    signal: AbortSignal.abort(reason),
  });
  await assert.rejects(
    deadline(wss.opened, "the WebSocketStream to open"),
    (error) => error === reason,
  );
  await assert.rejects(
    deadline(wss.closed, "the WebSocketStream to close"),
    (error) => error === reason,
  );
});

Deno.test("WebSocketStream aborting the signal after the handshake does nothing", async () => {
  await using server = echoServer();
  const controller = new AbortController();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`, {
    signal: controller.signal,
  });
  const { readable, writable } = await deadline(
    wss.opened,
    "the WebSocketStream to open",
  );
  controller.abort();
  const writer = writable.getWriter();
  await deadline(writer.write("still connected"), "the write to be taken");
  const reader = readable.getReader();
  assert.deepEqual(await deadline(reader.read(), "a message from readable"), {
    value: "still connected",
    done: false,
  });
  wss.close({ closeCode: 1000 });
  assert.deepEqual(await deadline(wss.closed, "the WebSocketStream to close"), {
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
    deadline(wss.closed, "the WebSocketStream to close"),
    (error) =>
      error instanceof WebSocketError && error.closeCode === 1006 &&
      error.message.startsWith(`Cannot connect to ${url}: `),
  );
  await assert.rejects(
    deadline(wss.opened, "the WebSocketStream to open"),
    WebSocketError,
  );
  await deadline(
    Promise.allSettled([unobserved.opened, unobserved.closed]),
    "the other WebSocketStream to fail",
  );
});

Deno.test("WebSocketStream closing the writable resolves once the closing handshake is done", async () => {
  await using server = echoServer();
  const wss = new WebSocketStream(`ws://127.0.0.1:${server.addr.port}/`);
  const { writable } = await deadline(
    wss.opened,
    "the WebSocketStream to open",
  );
  let settled = false;
  wss.closed.then(() => settled = true);
  // Whether closed has settled one microtask after close() resolved (looked
  // at there, since the deadline's own promise adds ticks of its own).
  const settledThen = writable.getWriter().close().then(async () => {
    await Promise.resolve();
    return settled;
  });
  assert.equal(await deadline(settledThen, "the writable to close"), true);
  assert.deepEqual(await deadline(wss.closed, "the WebSocketStream to close"), {
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
        const info = await deadline(wss.opened, "the WebSocketStream to open");
        await deadline(
          stream === "readable"
            ? info.readable.cancel(reason)
            : info.writable.abort(reason),
          `the ${stream} to end`,
        );
        await deadline(wss.closed, "the WebSocketStream to close");
        assert.deepEqual(
          await deadline(
            server.result(i),
            "the server's end of the connection",
          ),
          expected,
          String(reason),
        );
      }
    });
  }
});
