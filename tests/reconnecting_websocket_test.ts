// Tests of ReconnectingWebSocket against real servers on 127.0.0.1: restarts,
// backoff, when it stops, the bounded queue and the application's callbacks.
import assert from "node:assert/strict";
import {
  ReconnectingWebSocket,
  type ReconnectingWebSocketOptions,
  WebSocketError,
} from "../mod.ts";
import {
  backoffDelay,
  retryAfterDelay,
} from "../src/client/reconnecting_websocket.ts";
import { computeAccept } from "../src/engine/_accept_value.ts";
import {
  deadline,
  echo,
  freePort,
  isCloseError,
  mulberry32,
  sleep,
  start,
  waitFor,
} from "./_util.ts";
import { closePayload, frame } from "./_wire.ts";

/**
 * The sanitizers, on whatever the command line says (Deno 2.9 turns them off
 * by default): a timer, connection or listener left behind fails the test.
 */
const SANITIZED = { sanitizeOps: true, sanitizeResources: true };

/**
 * Fixes `Math.random` at `random` and records the delay of every timer that
 * a ReconnectingWebSocket sets for its next attempt (its `#retryLater` in
 * the stack; its other timers and the test's are left out), calling
 * `onDelay` with each, until disposed: the waits are then exact, and seen
 * without a hook in the library.
 */
function watchRetries(
  random: number,
  onDelay: (ms: number) => void = () => {},
): { delays: number[] } & Disposable {
  const realRandom = Math.random;
  const realSetTimeout = globalThis.setTimeout;
  const delays: number[] = [];
  Math.random = () => random;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    if (new Error().stack?.includes("ReconnectingWebSocket.#retryLater")) {
      delays.push(args[1]!);
      onDelay(args[1]!);
    }
    return realSetTimeout(...args);
  }) as typeof setTimeout;
  return {
    delays,
    [Symbol.dispose]() {
      Math.random = realRandom;
      globalThis.setTimeout = realSetTimeout;
    },
  };
}

/** The next message from `reader`, within the wait limit. */
async function next(
  reader: ReadableStreamDefaultReader<string | Uint8Array>,
): Promise<string | Uint8Array | undefined> {
  return (await deadline(reader.read(), "a message")).value;
}

/** Closes `socket` for good and waits for its end, whatever it was. */
async function dispose(socket: ReconnectingWebSocket): Promise<void> {
  socket.close();
  await deadline(socket.closed.catch(() => {}), "the socket to close");
}

/**
 * A chat-like server: it greets "subscribe" with `welcome from <name>` and
 * acknowledges every other message with `ack <message>`, recording all.
 */
function hub(name: string, port = 0) {
  const received: string[] = [];
  const server = start({ port }, async (socket) => {
    const writer = socket.writable.getWriter();
    try {
      for await (const message of socket.readable) {
        received.push(message as string);
        await writer.write(
          message === "subscribe" ? `welcome from ${name}` : `ack ${message}`,
        );
      }
    } catch {
      // The server shut down under the handler.
    }
  });
  return { server, received, port: server.addr.port };
}

/**
 * A server that answers the nth upgrade with `statuses[n]` (a status, or a
 * status with headers), or accepts it (echo) once they run out; it counts
 * the upgrades and when they came.
 */
function refusing(
  statuses: (number | { status: number; headers: HeadersInit })[],
) {
  const times: number[] = [];
  const server = start({
    onUpgrade() {
      const answer = statuses[times.length];
      times.push(Date.now());
      if (typeof answer === "number") {
        return new Response(null, { status: answer });
      }
      if (answer !== undefined) return new Response(null, answer);
    },
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/`,
    times,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/**
 * A raw TCP server that completes each opening handshake, then hands the
 * nth connection (from 1) to `then`, and closes TCP once that is done. It
 * counts the connections.
 */
function rawServer(then: (conn: Deno.Conn, n: number) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  let connections = 0;
  const handle = async (conn: Deno.Conn, n: number) => {
    try {
      const buffer = new Uint8Array(4096);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const read = await conn.read(buffer);
        if (read === null) return;
        head += new TextDecoder().decode(buffer.subarray(0, read));
      }
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)![1];
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
            "Connection: Upgrade\r\n" +
            `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n\r\n`,
        ),
      );
      await then(conn, n);
    } catch {
      // The client went away.
    } finally {
      conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        tasks.push(handle(conn, ++connections));
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    url: `ws://127.0.0.1:${listener.addr.port}/`,
    get connections() {
      return connections;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

/** Keeps a connection until the client closes TCP, ignoring what it sends. */
async function keep(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(4096);
  while (await conn.read(buffer) !== null) {
    // Its close frame included.
  }
}

/**
 * A raw TCP server that drops the first `drops` connections right after
 * the opening handshake, without a close frame (the client sees 1006);
 * later ones it keeps until the client closes TCP.
 */
function dropping(drops: number) {
  return rawServer(async (conn, n) => {
    if (n > drops) await keep(conn);
  });
}

/**
 * A raw TCP server that does with the nth connection (from 1) what
 * `plan(n)` says: send a close frame with `code` once `after` ms have
 * passed (the close code a server that fails at once sends: 1011 for a
 * fault, 1013 when overloaded), read the client's answer and close TCP;
 * or keep the connection (null) until the client closes TCP.
 */
function closing(
  plan: (n: number) => { code: number; after?: number } | null,
) {
  return rawServer(async (conn, n) => {
    const step = plan(n);
    if (step === null) return await keep(conn);
    if (step.after) await sleep(step.after);
    await conn.write(frame(8, closePayload(step.code), { mask: false }));
    // The client's answer; then the server closes TCP first (§7.1.1).
    await conn.read(new Uint8Array(4096));
  });
}

/** A TCP server that reads the client's request and never answers it. */
function silent() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        tasks.push((async () => {
          const buffer = new Uint8Array(4096);
          try {
            while (await conn.read(buffer) !== null) {
              // Discard the request until the client gives up.
            }
          } catch {
            // Reset by the client.
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

/** A URL where nothing listens: every connection attempt is refused. */
function nowhere(): string {
  return `ws://127.0.0.1:${freePort()}/`;
}

// ---------------------------------------------------------------------------
// Reconnecting across a server restart.

Deno.test(
  "ReconnectingWebSocket reconnects when the server restarts on the same port, resubscribes in onOpen, and sends what was queued while it was down, in order",
  SANITIZED,
  async () => {
    const first = hub("first");
    const opens: { reconnected: boolean; attempt: number }[] = [];
    const socket: ReconnectingWebSocket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${first.port}/`,
      {
        retry: { initialDelay: 20, maxDelay: 100 },
        onOpen({ reconnected, attempt }) {
          opens.push({ reconnected, attempt });
          socket.send("subscribe");
        },
      },
    );
    let second: ReturnType<typeof hub> | undefined;
    try {
      const reader = socket.readable.getReader();
      const writer = socket.writable.getWriter();
      assert.equal(await next(reader), "welcome from first");
      assert.equal(socket.state, "open");
      await deadline(writer.write("before"), "a write while open");
      assert.equal(await next(reader), "ack before");

      // Shutting down sends 1001 (going away): not a reason to stop.
      await deadline(first.server.shutdown(), "the first server to stop");
      await waitFor(
        () => socket.state === "reconnecting",
        "the client to notice",
      );
      // Written while the server is down: queued, and resolved at once.
      await deadline(writer.write("queued 1"), "a queued write");
      await deadline(writer.write("queued 2"), "a queued write");
      assert.equal(socket.send("queued 3 ✓"), 12);

      second = hub("second", first.port);
      // The queued messages first, in order, then what onOpen sent.
      assert.equal(await next(reader), "ack queued 1");
      assert.equal(await next(reader), "ack queued 2");
      assert.equal(await next(reader), "ack queued 3 ✓");
      assert.equal(await next(reader), "welcome from second");
      assert.equal(socket.state, "open");
      assert.deepEqual(first.received, ["subscribe", "before"]);
      assert.deepEqual(second.received, [
        "queued 1",
        "queued 2",
        "queued 3 ✓",
        "subscribe",
      ]);
      assert.equal(opens.length, 2);
      assert.deepEqual(opens[0], { reconnected: false, attempt: 1 });
      assert.equal(opens[1].reconnected, true);
      assert.ok(opens[1].attempt >= 1);

      socket.close({ closeCode: 1000, reason: "Done" });
      assert.equal(socket.state, "closed");
      // The server's answer: the same code, no reason (ours echoes none).
      assert.deepEqual(await deadline(socket.closed, "the close"), {
        closeCode: 1000,
        reason: "",
        wasClean: true,
      });
      // The one readable ends with the socket.
      assert.deepEqual(await deadline(reader.read(), "the end"), {
        done: true,
        value: undefined,
      });
      assert.equal(second.received.length, 4);
    } finally {
      await dispose(socket);
      await first.server.shutdown();
      await second?.server.shutdown();
    }
  },
);

Deno.test(
  "ReconnectingWebSocket reconnects after a connection dropped without a close frame (1006)",
  SANITIZED,
  async () => {
    await using server = dropping(1);
    const opens: boolean[] = [];
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 10 },
      closeTimeout: 100,
      onOpen: ({ reconnected }) => void opens.push(reconnected),
    });
    try {
      await waitFor(() => opens.length === 2, "the reconnection");
      assert.deepEqual(opens, [false, true]);
      assert.equal(server.connections, 2);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket reads each connection only as fast as readable is read",
  SANITIZED,
  async () => {
    const COUNT = 128;
    const SIZE = 256 * 1024;
    let written = 0;
    await using server = start({}, async (socket) => {
      const writer = socket.writable.getWriter();
      try {
        for (let i = 0; i < COUNT; i++) {
          await writer.write(new Uint8Array(SIZE).fill(i));
          written++;
        }
      } catch {
        // The client went away.
      }
    });
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
    );
    try {
      await deadline(socket.opened, "the open");
      // Nobody reads: the server's writes stall once TCP's buffers are full,
      // far short of 32 MiB, instead of all landing in the client's memory.
      let last = -1;
      while (written !== last && written < COUNT) {
        last = written;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      assert.ok(written < COUNT, `the server wrote all ${written} messages`);
      // Reading takes every message, in order.
      const reader = socket.readable.getReader();
      for (let i = 0; i < COUNT; i++) {
        const message = await next(reader);
        assert.ok(message instanceof Uint8Array && message.length === SIZE);
        assert.equal(message[0], i & 0xff);
      }
    } finally {
      await dispose(socket);
    }
  },
);

// ---------------------------------------------------------------------------
// Backoff.

Deno.test(
  "ReconnectingWebSocket waits grow by the multiplier up to maxDelay, then it gives up after maxAttempts with the last error",
  SANITIZED,
  async () => {
    await using server = refusing([503, 503, 503, 503, 503, 503, 503]);
    // A fixed "random" of 0.5: each wait is half its ceiling.
    using retries = watchRetries(0.5);
    const delays = retries.delays;
    const socket = new ReconnectingWebSocket(server.url, {
      retry: {
        initialDelay: 20,
        multiplier: 2,
        maxDelay: 80,
        maxAttempts: 6,
      },
    });
    const failed = (error: unknown) => {
      isCloseError(1006)(error);
      assert.match((error as Error).message, /HTTP 503/);
      return true;
    };
    try {
      const reader = socket.readable.getReader();
      await assert.rejects(deadline(socket.closed, "giving up"), failed);
      await assert.rejects(socket.opened, failed);
      await assert.rejects(
        deadline(reader.read(), "the readable's end"),
        failed,
      );
      assert.equal(socket.state, "closed");
    } finally {
      await dispose(socket);
    }
    // Ceilings 20, 40, 80, 80, 80 (capped): five waits between six attempts.
    assert.deepEqual(delays, [10, 20, 40, 40, 40]);
    assert.equal(server.times.length, 6);
    // Each attempt came at least its wait after the one before (timers do
    // not fire early; later is allowed: the machine is shared).
    for (let i = 1; i < server.times.length; i++) {
      const gap = server.times[i] - server.times[i - 1];
      assert.ok(gap >= delays[i - 1] - 1, `gap ${i} is ${gap} ms`);
    }
  },
);

for (const code of [1011, 1013]) {
  Deno.test(
    `ReconnectingWebSocket against a server that accepts and closes at once with ${code}: the waits grow and maxAttempts gives up`,
    SANITIZED,
    async () => {
      await using server = closing(() => ({ code }));
      using retries = watchRetries(0.5);
      const delays = retries.delays;
      const opens: number[] = [];
      const socket = new ReconnectingWebSocket(server.url, {
        retry: { initialDelay: 20, maxDelay: 80, maxAttempts: 6 },
        onOpen: ({ attempt }) => void opens.push(attempt),
      });
      try {
        // Each open closes at once: not a reason to start the waits again.
        await waitFor(() => delays.length >= 5, "five waits");
        assert.deepEqual(delays.slice(0, 5), [10, 20, 40, 40, 40]);
        await assert.rejects(
          deadline(socket.closed, "giving up"),
          isCloseError(code),
        );
        assert.equal(server.connections, 6);
        assert.deepEqual(opens, [1, 2, 3, 4, 5, 6]);
        assert.equal(delays.length, 5);
      } finally {
        await dispose(socket);
      }
    },
  );
}

Deno.test(
  "ReconnectingWebSocket starts the waits again only after a connection stayed open minUptime",
  SANITIZED,
  async () => {
    // Two connections close at once with 1001, the third after 300 ms
    // (past minUptime), the fourth at once again; the fifth stays.
    const plan = [1001, 1001, 1001, 1001].map((code, i) => ({
      code,
      after: i === 2 ? 300 : 0,
    }));
    await using server = closing((n) => plan[n - 1] ?? null);
    using retries = watchRetries(0.5);
    const delays = retries.delays;
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 20, minUptime: 150 },
    });
    try {
      await waitFor(() => server.connections === 5, "the fifth connection");
      await waitFor(() => socket.state === "open", "the fifth open");
      assert.deepEqual(delays, [10, 20, 10, 20]);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket after a stable connection counts a close with 1011, 1012 or 1013 as a failed attempt for maxAttempts",
  SANITIZED,
  async () => {
    // Open 200 ms (past minUptime), then 1012; then at once 1013.
    await using server = closing((n) =>
      n === 1 ? { code: 1012, after: 200 } : { code: 1013 }
    );
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 10, minUptime: 50, maxAttempts: 2 },
    });
    try {
      await assert.rejects(
        deadline(socket.closed, "giving up"),
        isCloseError(1013),
      );
      assert.equal(server.connections, 2);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket waits at least a 503's Retry-After (seconds) before the next attempt",
  SANITIZED,
  async () => {
    await using server = refusing([
      { status: 503, headers: { "retry-after": "1" } },
    ]);
    using retries = watchRetries(0.5);
    const delays = retries.delays;
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 20 },
    });
    try {
      await deadline(socket.opened, "the open");
      // The server's second, and the usual jittered wait on top.
      assert.deepEqual(delays, [1010]);
      assert.equal(server.times.length, 2);
      const gap = server.times[1] - server.times[0];
      assert.ok(gap >= 1000, `the second attempt came after ${gap} ms`);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket reads Retry-After as seconds or an HTTP date, and ignores what is neither",
  SANITIZED,
  () => {
    const now = Date.parse("Sun, 06 Nov 1994 08:49:37 GMT");
    const after = (value: string) =>
      retryAfterDelay(new Headers({ "retry-after": value }), now);
    assert.equal(after("120"), 120_000);
    assert.equal(after(" 0 "), 0);
    assert.equal(after("Sun, 06 Nov 1994 08:49:47 GMT"), 10_000);
    assert.equal(after("Sun, 06 Nov 1994 08:49:27 GMT"), 0);
    assert.equal(after("99999999999"), 2 ** 31 - 1);
    assert.equal(after("-5"), null);
    assert.equal(after("soon"), null);
    assert.equal(retryAfterDelay(new Headers(), now), null);
  },
);

Deno.test(
  "ReconnectingWebSocket backoff is full jitter: each wait lies below min(maxDelay, initialDelay * multiplier ** n)",
  SANITIZED,
  () => {
    const retry = {
      initialDelay: 250,
      maxDelay: 30_000,
      multiplier: 2,
      maxAttempts: Infinity,
    };
    const random = mulberry32(42);
    for (let n = 0; n < 40; n++) {
      const ceiling = Math.min(30_000, 250 * 2 ** n);
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(retry, n, random);
        assert.ok(delay >= 0 && delay < ceiling, `wait ${n}: ${delay} ms`);
      }
    }
    // The largest draw reaches the ceiling, which stops growing at maxDelay.
    const top = () => 0.999_999;
    assert.deepEqual(
      [0, 1, 2, 6, 7, 8, 100].map((n) => backoffDelay(retry, n, top)),
      [249, 499, 999, 15_999, 29_999, 29_999, 29_999],
    );
  },
);

// ---------------------------------------------------------------------------
// When it does not reconnect.

Deno.test(
  "ReconnectingWebSocket does not reconnect after the server closes with 1000",
  SANITIZED,
  async () => {
    let connections = 0;
    await using _server = start({}, async (socket) => {
      connections++;
      await socket.writable.getWriter().write("hello");
      socket.close({ closeCode: 1000, reason: "Bye" });
    });
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${_server.addr.port}/`,
      { retry: { initialDelay: 1 } },
    );
    try {
      const reader = socket.readable.getReader();
      assert.equal(await next(reader), "hello");
      assert.deepEqual(await deadline(socket.closed, "the close"), {
        closeCode: 1000,
        reason: "Bye",
        wasClean: true,
      });
      assert.equal(socket.state, "closed");
      assert.equal((await deadline(reader.read(), "the end")).done, true);
      assert.equal(connections, 1);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket does not reconnect after a code in stopCodes, and does after another one",
  SANITIZED,
  async () => {
    let connections = 0;
    await using server = start({}, (socket) => {
      connections++;
      if (connections === 1) socket.close({ closeCode: 4002, reason: "Again" });
      else socket.close({ closeCode: 4001, reason: "Session expired" });
    });
    const opens: boolean[] = [];
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
      {
        retry: { initialDelay: 10 },
        stopCodes: [4001],
        onOpen: ({ reconnected }) => void opens.push(reconnected),
      },
    );
    try {
      assert.deepEqual(await deadline(socket.closed, "the close"), {
        closeCode: 4001,
        reason: "Session expired",
        wasClean: true,
      });
      assert.deepEqual(opens, [false, true]);
      assert.equal(connections, 2);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket stopCodes apply to a failed connection too (1006)",
  SANITIZED,
  async () => {
    await using server = dropping(1);
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 1 },
      stopCodes: [1006],
    });
    try {
      await assert.rejects(
        deadline(socket.closed, "the end"),
        isCloseError(1006),
      );
      assert.equal(server.connections, 1);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket does not retry a handshake refused with 403",
  SANITIZED,
  async () => {
    await using server = refusing([403, 403]);
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 1 },
    });
    const refused = (error: unknown) => {
      isCloseError(1006)(error);
      assert.match((error as Error).message, /HTTP 403 Forbidden/);
      return true;
    };
    try {
      await assert.rejects(deadline(socket.closed, "the end"), refused);
      await assert.rejects(socket.opened, refused);
      assert.equal(socket.state, "closed");
      assert.equal(server.times.length, 1);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket retries a handshake refused with 503 until the server accepts",
  SANITIZED,
  async () => {
    await using server = refusing([503, 503]);
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 10 },
    });
    try {
      const info = await deadline(socket.opened, "the open");
      assert.deepEqual(info, {
        reconnected: false,
        attempt: 3,
        protocol: "",
        extensions: "",
      });
      assert.equal(server.times.length, 3);
      assert.equal(socket.send("ping"), 4);
      assert.equal(await next(socket.readable.getReader()), "ping");
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket retries HTTP 408, 429 and 5xx, not other 4xx or a redirect",
  SANITIZED,
  async (t) => {
    for (
      const [status, retried] of [
        [408, true],
        [429, true],
        [500, true],
        [502, true],
        [401, false],
        [404, false],
        [426, false],
        [301, false],
      ] as const
    ) {
      await t.step(`${status}`, async () => {
        await using server = refusing([status, status]);
        const socket = new ReconnectingWebSocket(server.url, {
          retry: { initialDelay: 1, maxAttempts: 2 },
        });
        try {
          await assert.rejects(
            deadline(socket.closed, "the end"),
            isCloseError(1006),
          );
          assert.equal(server.times.length, retried ? 2 : 1);
        } finally {
          await dispose(socket);
        }
      });
    }
  },
);

Deno.test(
  "ReconnectingWebSocket ends at once on an invalid connect() option, with its TypeError",
  SANITIZED,
  async () => {
    const socket = new ReconnectingWebSocket(nowhere(), {
      protocols: ["not a token"],
      retry: { initialDelay: 1 },
    });
    await assert.rejects(deadline(socket.closed, "the end"), TypeError);
    await assert.rejects(socket.opened, TypeError);
    assert.equal(socket.state, "closed");
  },
);

// ---------------------------------------------------------------------------
// The queue.

Deno.test(
  "ReconnectingWebSocket refuses messages past maxQueued while disconnected: write() rejects with a RangeError, send() returns 0",
  SANITIZED,
  async () => {
    const socket = new ReconnectingWebSocket(nowhere(), {
      maxQueued: 3,
      retry: { initialDelay: 60_000 },
    });
    try {
      const writer = socket.writable.getWriter();
      await deadline(writer.write("one"), "a queued write");
      assert.equal(socket.send(new Uint8Array([2, 2])), 2);
      await deadline(writer.write("three"), "a queued write");
      assert.equal(socket.send("four"), 0);
      await assert.rejects(
        deadline(writer.write("four"), "a refused write"),
        (error: unknown) => {
          assert.ok(error instanceof RangeError);
          assert.match(
            error.message,
            /queue .* is full \(3 messages, 10 bytes\)/,
          );
          return true;
        },
      );
      // As for any WritableStream whose sink failed, writable stays errored;
      // send() does not.
      await assert.rejects(writer.closed, RangeError);
      assert.equal(socket.send("five"), 0);
      assert.notEqual(socket.state, "closed");
    } finally {
      await dispose(socket);
    }
    assert.equal(socket.send("after"), 0);
  },
);

Deno.test(
  "ReconnectingWebSocket refuses messages past maxQueuedBytes, counting text in UTF-8 bytes",
  SANITIZED,
  async () => {
    const socket = new ReconnectingWebSocket(nowhere(), {
      maxQueuedBytes: 10,
      retry: { initialDelay: 60_000 },
    });
    try {
      assert.equal(socket.send("é€😀"), 9); // 2 + 3 + 4 bytes
      assert.equal(socket.send(new Uint8Array(2)), 0);
      assert.equal(socket.send("a"), 1);
      assert.equal(socket.send("b"), 0);
    } finally {
      await dispose(socket);
    }
  },
);

// ---------------------------------------------------------------------------
// Closing.

Deno.test(
  "ReconnectingWebSocket close() during a pending retry clears its timer and ends the socket",
  SANITIZED,
  async () => {
    await using server = refusing([503, 503]);
    let scheduled!: () => void;
    const waiting = new Promise<void>((resolve) => scheduled = resolve);
    using _retries = watchRetries(0.99, () => scheduled());
    const socket = new ReconnectingWebSocket(server.url, {
      retry: { initialDelay: 60_000 },
    });
    await deadline(waiting, "the retry to be scheduled");
    assert.equal(socket.state, "connecting");
    socket.close({ closeCode: 4000, reason: "Never mind" });
    assert.equal(socket.state, "closed");
    // No connection was open: closed resolves with what close() was given.
    assert.deepEqual(await deadline(socket.closed, "the end"), {
      closeCode: 4000,
      reason: "Never mind",
      wasClean: true,
    });
    await assert.rejects(socket.opened, WebSocketError);
    assert.equal(server.times.length, 1);
    // The test sanitizers fail this test if the 59 s timer were left.
  },
);

Deno.test(
  "ReconnectingWebSocket close() during the opening handshake abandons it",
  SANITIZED,
  async () => {
    await using server = silent();
    const socket = new ReconnectingWebSocket(server.url);
    socket.close();
    assert.deepEqual(await deadline(socket.closed, "the end"), {
      closeCode: 1005,
      reason: "",
      wasClean: true,
    });
    await assert.rejects(socket.opened, WebSocketError);
  },
);

Deno.test(
  "ReconnectingWebSocket aborting its signal closes it for good",
  SANITIZED,
  async () => {
    let connections = 0;
    await using server = start({}, (socket) => {
      connections++;
      return socket.readable.pipeTo(socket.writable);
    });
    const controller = new AbortController();
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
      { retry: { initialDelay: 1 }, signal: controller.signal },
    );
    try {
      await deadline(socket.opened, "the open");
      controller.abort();
      assert.equal(socket.state, "closed");
      await deadline(socket.closed, "the close");
      assert.equal(connections, 1);
    } finally {
      await dispose(socket);
    }

    // Already aborted: it never connects, and opened rejects with the reason.
    const reason = new Error("Not now");
    const never = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
      { signal: AbortSignal.abort(reason) },
    );
    try {
      await assert.rejects(never.opened, (error) => error === reason);
      await deadline(never.closed, "the end");
      assert.equal(connections, 1);
    } finally {
      await dispose(never);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket closing writable sends what send() queued, then closes for good",
  SANITIZED,
  async () => {
    const received: string[] = [];
    await using server = start({}, async (socket) => {
      for await (const message of socket.readable) {
        received.push(message as string);
      }
    });
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
    );
    try {
      const writer = socket.writable.getWriter();
      await writer.write("a");
      for (let i = 0; i < 100; i++) socket.send(`b${i}`);
      await deadline(writer.close(), "the writable to close");
      assert.equal(socket.state, "closed");
      await waitFor(() => received.length === 101, "every message");
      assert.deepEqual(received, [
        "a",
        ...Array.from({ length: 100 }, (_, i) => `b${i}`),
      ]);
    } finally {
      await dispose(socket);
    }
  },
);

Deno.test(
  "ReconnectingWebSocket canceling readable closes for good with a WebSocketError's code",
  SANITIZED,
  async () => {
    let seen: Promise<number> | undefined;
    await using server = start({}, (socket) => {
      seen = socket.closed.then((result) => result.closeCode);
      return socket.readable.pipeTo(socket.writable);
    });
    const socket = new ReconnectingWebSocket(
      `ws://127.0.0.1:${server.addr.port}/`,
    );
    try {
      await deadline(socket.opened, "the open");
      await socket.readable.cancel(
        new WebSocketError("", { closeCode: 4003 }),
      );
      assert.equal(socket.state, "closed");
      assert.equal(
        (await deadline(socket.closed, "the close")).closeCode,
        4003,
      );
      assert.equal(await deadline(seen!, "the server's end"), 4003);
    } finally {
      await dispose(socket);
    }
  },
);

// ---------------------------------------------------------------------------
// The application's callbacks and options.

Deno.test(
  "ReconnectingWebSocket reports a throwing or rejecting onOpen to onError and keeps working",
  SANITIZED,
  async (t) => {
    await using server = start({}, echo);
    const url = `ws://127.0.0.1:${server.addr.port}/`;
    for (
      const [kind, onOpen] of [
        ["throwing", () => {
          throw new Error("Boom");
        }],
        ["rejecting", () => Promise.reject(new Error("Boom"))],
      ] as const
    ) {
      await t.step(kind, async () => {
        const errors: unknown[] = [];
        const socket = new ReconnectingWebSocket(url, {
          onOpen,
          onError: (error) => errors.push(error),
        });
        try {
          await deadline(socket.opened, "the open");
          await waitFor(() => errors.length === 1, "the report");
          assert.equal((errors[0] as Error).message, "Boom");
          assert.equal(socket.state, "open");
          assert.equal(socket.send("still here"), 10);
          assert.equal(await next(socket.readable.getReader()), "still here");
        } finally {
          await dispose(socket);
        }
      });
    }
  },
);

Deno.test(
  "ReconnectingWebSocket rejects an invalid URL or option at once",
  SANITIZED,
  () => {
    const valid = "ws://127.0.0.1:1/";
    assert.throws(() => new ReconnectingWebSocket("nope"), TypeError);
    assert.throws(() => new ReconnectingWebSocket("ftp://x/"), TypeError);
    assert.throws(() => new ReconnectingWebSocket("ws://x/#a"), TypeError);
    const invalid: ReconnectingWebSocketOptions[] = [
      { retry: { multiplier: 0.5 } },
      { retry: { maxAttempts: 0 } },
      { retry: { maxAttempts: 1.5 } },
      { retry: { initialDelay: -1 } },
      { retry: { maxDelay: NaN } },
      { maxQueued: -1 },
      { maxQueuedBytes: NaN },
    ];
    for (const options of invalid) {
      assert.throws(
        () => new ReconnectingWebSocket(valid, options),
        RangeError,
        JSON.stringify(options),
      );
    }
    assert.throws(
      () => new ReconnectingWebSocket(valid, { stopCodes: ["x" as never] }),
      TypeError,
    );
  },
);
