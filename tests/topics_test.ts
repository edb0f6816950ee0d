/**
 * Topics over real TCP: subscriptions and their counts, publishing (framed
 * once, compressed once where RFC 7692 allows it), the order of `send()`,
 * `writable` and publications on one socket, and the backpressure policy
 * for a subscriber that does not read.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  type ServeOptions,
  TopicHub,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import type { SharedMessage } from "../src/pubsub/_shared_message.ts";
import { subscriptionsOf } from "../src/pubsub/topic_hub.ts";
import { Inbox, nodeWsClient, STEP_LIMIT, within } from "./_peer_helpers.ts";
import { RawClient } from "./_raw_client.ts";
import {
  assertBytesEqual,
  assertSameMessage,
  mulberry32,
  pseudoBytes,
  pseudoText,
  start,
  waitFor,
} from "./_util.ts";
import { closeAll, openClients, TestClient } from "./_ws_client.ts";

/**
 * A server whose handler hands the test each socket in turn (and `setup`
 * runs in the handler first, synchronously); disposing it shuts the server
 * down.
 */
function startTopics(
  options: ServeOptions = {},
  setup?: (socket: WebSocketConnection) => void,
) {
  const accepted = new Inbox<WebSocketConnection>();
  const server = start(options, (socket) => {
    setup?.(socket);
    accepted.push(socket);
  });
  return {
    server,
    url: `ws://127.0.0.1:${server.addr.port}/`,
    /** The server's socket of the next connection. */
    accepted: () => within(accepted.next(), "the server's socket"),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Waits (within the step limit) until `topic` has `count` subscribers. */
function untilSubscribed(
  server: WebSocketServer,
  topic: string,
  count: number,
  what = `${count} subscribers`,
): Promise<void> {
  return waitFor(
    () => server.subscriberCount(topic) === count,
    what,
    STEP_LIMIT,
  );
}

type NodeClient = ReturnType<typeof nodeWsClient>;

/**
 * Opens `count` npm:ws clients on `url` one after the other, the `i`th with
 * `options(i)`, each within the time limit; disposing the list disposes them
 * all. If one fails to open, those opened before it are disposed at once.
 */
async function openNodeClients(
  url: string,
  count: number,
  options: (i: number) => Parameters<typeof nodeWsClient>[1],
): Promise<NodeClient[] & AsyncDisposable> {
  const clients = Object.assign([] as NodeClient[], {
    async [Symbol.asyncDispose]() {
      for (const client of clients) await client[Symbol.asyncDispose]();
    },
  });
  try {
    for (let i = 0; i < count; i++) {
      const client = nodeWsClient(url, options(i));
      clients.push(client);
      await within(client.opened, `client ${i}`);
    }
  } catch (error) {
    await clients[Symbol.asyncDispose]();
    throw error;
  }
  return clients;
}

/** Collects unhandled rejections while it is in scope. */
function watchRejections() {
  const reasons: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    reasons.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", listener);
  return {
    reasons,
    [Symbol.dispose]: () =>
      globalThis.removeEventListener("unhandledrejection", listener),
  };
}

// --- Subscriptions and counts ------------------------------------------------

Deno.test("topics: subscribe, unsubscribe and close keep subscriberCount, topics() and subscriptions exact", async () => {
  await using hub = startTopics();
  const { server } = hub;
  await using a = await TestClient.open(hub.url);
  const sa = await hub.accepted();
  await using b = await TestClient.open(hub.url);
  const sb = await hub.accepted();
  await using raw = await RawClient.open(server.addr.port);
  const sraw = await hub.accepted();

  assert.deepEqual(server.topics(), []);
  sa.subscribe("news");
  sa.subscribe("news"); // twice is once
  sa.subscribe("sport");
  sb.subscribe("news");
  sraw.subscribe("news");
  sraw.subscribe("weather");
  assert.equal(server.subscriberCount("news"), 3);
  assert.equal(server.subscriberCount("sport"), 1);
  assert.equal(server.subscriberCount("weather"), 1);
  assert.equal(server.subscriberCount("nothing"), 0);
  assert.deepEqual(server.topics(), ["news", "sport", "weather"]);
  assert.deepEqual(sa.subscriptions, ["news", "sport"]);
  assert.ok(sa.isSubscribed("news"));
  assert.ok(!sb.isSubscribed("sport"));

  sa.unsubscribe("news");
  sa.unsubscribe("news"); // not subscribed any more: nothing happens
  sb.unsubscribe("never-subscribed");
  assert.equal(server.subscriberCount("news"), 2);
  assert.deepEqual(sa.subscriptions, ["sport"]);
  assert.ok(!sa.isSubscribed("news"));

  // A clean close (the client's closing handshake) leaves every topic.
  a.ws.close(1000);
  await within(sa.closed, "the first socket's close");
  assert.equal(server.subscriberCount("sport"), 0);
  assert.deepEqual(sa.subscriptions, []);
  assert.deepEqual(server.topics(), ["news", "weather"]);

  // So does an abnormal end (TCP closed without a close frame: 1006).
  raw.close();
  await within(sraw.closed.catch(() => {}), "the raw socket's end");
  assert.equal(server.subscriberCount("news"), 1);
  assert.equal(server.subscriberCount("weather"), 0);
  assert.deepEqual(server.topics(), ["news"]);
  assert.deepEqual(sraw.subscriptions, []);

  // A closed socket cannot subscribe again.
  sa.subscribe("news");
  assert.equal(server.subscriberCount("news"), 1);
  assert.ok(!sa.isSubscribed("news"));

  b.ws.close(1000);
  await within(sb.closed, "the second socket's close");
  assert.deepEqual(server.topics(), []);
});

Deno.test("topics: a topic is an exact string (no prefix, wildcard or case matching)", async () => {
  await using hub = startTopics({}, (socket) => socket.subscribe("room/a"));
  const { server } = hub;
  await using client = await TestClient.open(hub.url);
  const socket = await hub.accepted();
  for (
    const other of [
      "room",
      "room/",
      "room/*",
      "room/#",
      "ROOM/a",
      "room/a ",
      "room/ab",
      "*",
    ]
  ) {
    assert.equal(server.publish(other, `to ${other}`), 0, other);
  }
  assert.equal(server.publish("room/a", "to room/a"), 1);
  socket.send("end");
  assert.equal(await client.next(), "to room/a");
  assert.equal(await client.next(), "end");
});

Deno.test("topics: server.publish returns how many sockets it queued for, and socket.publish excludes the sender", async () => {
  await using hub = startTopics({}, (socket) => socket.subscribe("chat"));
  const { server } = hub;
  const clients = await openClients(hub.url, 4);
  try {
    const sockets = [];
    for (let i = 0; i < 4; i++) sockets.push(await hub.accepted());
    assert.equal(server.publish("chat", "from the server"), 4);
    assert.equal(server.publish("empty", "to nobody"), 0);
    assert.equal(sockets[0].publish("chat", "from socket 0"), 3);
    assert.equal(sockets[0].publish("elsewhere", "to nobody"), 0);
    // A marker after the publication: socket 0 sees the marker next, so the
    // publication was not queued for it.
    for (const socket of sockets) socket.send("marker");
    assert.equal(await clients[0].next(), "from the server");
    assert.equal(await clients[0].next(), "marker");
    for (const client of clients.slice(1)) {
      assert.equal(await client.next(), "from the server");
      assert.equal(await client.next(), "from socket 0");
      assert.equal(await client.next(), "marker");
    }
    // A socket that is not subscribed may publish too.
    sockets[3].unsubscribe("chat");
    assert.equal(sockets[3].publish("chat", "from outside"), 3);
  } finally {
    await closeAll(clients);
  }
});

// --- A closed socket -----------------------------------------------------------

Deno.test("topics: send() on a closing or closed socket returns 0, and nothing throws or rejects unhandled", async () => {
  using rejections = watchRejections();
  await using hub = startTopics({}, (socket) => socket.subscribe("t"));
  const { server } = hub;
  await using open = await TestClient.open(hub.url);
  await hub.accepted();
  await using _closing = await TestClient.open(hub.url);
  const closingSocket = await hub.accepted();
  await using closed = await TestClient.open(hub.url);
  const closedSocket = await hub.accepted();

  // Closing: our close frame is sent, the peer's answer not yet seen.
  closingSocket.close({ closeCode: 1000, reason: "Bye" });
  assert.equal(closingSocket.send("after close()"), 0);
  assert.equal(closingSocket.send(new Uint8Array(10)), 0);

  // Closed: the peer closed and the closing handshake is over.
  closed.ws.close(1000);
  await within(closedSocket.closed, "the close");
  assert.equal(closedSocket.send("after the close"), 0);
  assert.equal(closedSocket.send(new Uint8Array(10)), 0);
  assert.equal(closedSocket.bufferedAmount, 0);
  // Not a message: 0 as well, never a throw.
  assert.equal(closedSocket.send(42 as unknown as string), 0);
  closedSocket.subscribe("t");
  closedSocket.unsubscribe("t");
  assert.equal(closedSocket.isSubscribed("t"), false);
  // A closed socket publishes nothing; a closing one has left its topics.
  assert.equal(closedSocket.publish("t", "from a closed socket"), 0);
  assert.equal(closingSocket.publish("t", "from a closing socket"), 0);
  assert.equal(server.subscriberCount("t"), 1);
  assert.equal(server.publish("t", "to the open one"), 1);
  assert.equal(await open.next(), "to the open one");
  await within(closingSocket.closed, "the other close");
  assert.equal(closingSocket.send("after the close"), 0);
  assert.equal(server.subscriberCount("t"), 1);
  closingSocket.close();
  // Writing to a closed socket's writable rejects, and only that promise.
  const writer = closedSocket.writable.getWriter();
  await assert.rejects(writer.write("late"), TypeError);
  // Let any stray rejection surface before checking.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(rejections.reasons, []);
});

// --- Order on one socket ---------------------------------------------------------

/** One call the order test makes, and what the peer must receive for it. */
interface Step {
  kind: "write" | "send" | "publish";
  message: string | Uint8Array;
}

/**
 * A seeded mix of `writable` writes, `send()`s and publications, with
 * sizes from a few bytes to 96 KiB (so that writes wait in `writable`'s
 * queue behind a full outbound queue and, with compression, some are
 * compressed and some not).
 */
function orderSteps(count: number, seed: number): Step[] {
  const random = mulberry32(seed);
  const kinds = ["write", "send", "publish"] as const;
  const steps: Step[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[Math.floor(random() * 3)];
    const size = random() < 0.2 ? 2048 + Math.floor(random() * 96 * 1024) : 8;
    const label = `${i}:${kind}:`;
    const message = random() < 0.15
      ? new TextEncoder().encode(label + pseudoText(size, i))
      : label + pseudoText(size, i);
    steps.push({ kind, message });
  }
  return steps;
}

/** Runs the steps on a socket, each call right after the other. */
async function runSteps(
  socket: WebSocketConnection,
  server: WebSocketServer,
  steps: readonly Step[],
): Promise<void> {
  const writer = socket.writable.getWriter();
  const writes: Promise<void>[] = [];
  for (const [i, step] of steps.entries()) {
    if (step.kind === "write") {
      writes.push(writer.write(step.message));
    } else if (step.kind === "send") {
      assert.ok(socket.send(step.message) > 0, `send ${i} was queued`);
    } else {
      assert.equal(server.publish("order", step.message), 1, `publish ${i}`);
    }
    // Now and then let the writable's queue drain a little, so that calls
    // meet it both empty and full.
    if (i % 40 === 39) await writes.at(-1);
  }
  await Promise.all(writes);
  writer.releaseLock();
}

for (
  const [name, deflate] of [
    ["without compression", undefined],
    ["with permessage-deflate (context takeover)", { threshold: 1024 }],
    [
      "with permessage-deflate (no server context takeover)",
      { threshold: 1024, serverNoContextTakeover: true },
    ],
  ] as const
) {
  Deno.test(`topics: send(), writable and publications reach the peer in call order, ${name}`, async () => {
    await using hub = startTopics(
      {
        perMessageDeflate: deflate ?? false,
        // Nothing is dropped or closed here: order is the point.
        maxBackpressure: 64 * 1024 * 1024,
      },
      (socket) => socket.subscribe("order"),
    );
    const { server } = hub;
    await using client = nodeWsClient(hub.url, {
      perMessageDeflate: deflate !== undefined,
    });
    await within(client.opened, "the npm:ws client");
    const socket = await hub.accepted();
    assert.equal(socket.extensions !== "", deflate !== undefined);

    // First calls before writable has even started: its writes wait in its
    // queue, and the send and publications after them must wait too.
    const writer = socket.writable.getWriter();
    const first = writer.write("w1");
    const second = writer.write("w2");
    assert.ok(socket.send("s1") > 0);
    assert.equal(server.publish("order", "p1"), 1);
    const third = writer.write("w3");
    assert.ok(socket.send("s2") > 0);
    await Promise.all([first, second, third]);
    writer.releaseLock();
    for (const expected of ["w1", "w2", "s1", "p1", "w3", "s2"]) {
      assert.equal(await within(client.inbox.next(), expected), expected);
    }

    // Then a long seeded mix.
    const steps = orderSteps(400, 12);
    await runSteps(socket, server, steps);
    for (const [i, step] of steps.entries()) {
      assertSameMessage(
        await within(client.inbox.next(), `message ${i}`),
        step.message,
        `message ${i} (${step.kind})`,
      );
    }
  });
}

Deno.test("topics: a send() behind writes that writable.abort() discards still goes out, and the close follows", async () => {
  await using hub = startTopics();
  await using client = await TestClient.open(hub.url);
  const socket = await hub.accepted();
  const writer = socket.writable.getWriter();
  // Not started yet: both writes wait in writable's queue.
  const writes = [writer.write("discarded 1"), writer.write("discarded 2")];
  assert.ok(socket.send("sent") > 0);
  await writer.abort(new Error("Stop"));
  await Promise.allSettled(writes);
  assert.equal(await client.next(), "sent");
  const close = await within(client.closed, "the close");
  assert.equal(close.code, 1005);
  await within(socket.closed, "the server's close");
  assert.equal(socket.bufferedAmount, 0);
});

Deno.test("topics: bufferedAmount counts what send(), writable (its queue too) and publications queued", async () => {
  await using hub = startTopics({}, (socket) => socket.subscribe("t"));
  const { server } = hub;
  await using client = await TestClient.open(hub.url);
  const socket = await hub.accepted();
  assert.equal(socket.bufferedAmount, 0);
  const writer = socket.writable.getWriter();
  // Not started: these wait in writable's queue.
  const writes = [
    writer.write("a".repeat(10_000)),
    writer.write(new Uint8Array(20_000)),
  ];
  assert.ok(socket.bufferedAmount >= 30_000);
  assert.ok(socket.send(new Uint8Array(5_000)) >= 5_000);
  assert.ok(socket.bufferedAmount >= 35_000);
  assert.equal(server.publish("t", "p".repeat(7_000)), 1);
  assert.ok(socket.bufferedAmount >= 42_000, `${socket.bufferedAmount}`);
  await Promise.all(writes);
  writer.releaseLock();
  await client.until(() => client.received.length === 4, "4 messages");
  await waitFor(
    () => socket.bufferedAmount === 0,
    "an empty queue",
    STEP_LIMIT,
  );
});

// --- Encode once ---------------------------------------------------------------

/**
 * A hub with a probe subscribed to `topic` before any socket: it is offered
 * each publication first, and watches what the sockets then take from the
 * shared message (its frame, its compressed frames). `count(run)` says how
 * many distinct frames and compressed frames the publications in `run`
 * handed out: one each per publication when every socket takes the same
 * bytes. The probe queues nothing (it is not counted as reached), but it
 * counts as a subscriber.
 */
function encodeProbe(topic: string) {
  const hub = new TopicHub();
  const frames = new Set<Uint8Array>();
  const compressed = new Set<Uint8Array>();
  let counting = false;
  const watch = (shared: SharedMessage) => {
    const proto = Object.getPrototypeOf(shared);
    const frame = Object.getOwnPropertyDescriptor(proto, "frame")!.get!;
    Object.defineProperty(shared, "frame", {
      get() {
        const made = frame.call(shared) as Uint8Array;
        frames.add(made);
        return made;
      },
    });
    const compressedFrame = shared.compressedFrame;
    shared.compressedFrame = (windowBits, level) => {
      const made = compressedFrame.call(shared, windowBits, level);
      compressed.add(made);
      return made;
    };
  };
  subscriptionsOf(hub).subscribe({
    offer(shared) {
      if (counting) watch(shared);
      return false;
    },
  }, topic);
  return {
    hub,
    async count(run: () => Promise<void>) {
      frames.clear();
      compressed.clear();
      counting = true;
      try {
        await run();
      } finally {
        counting = false;
      }
      return { frames: frames.size, compressions: compressed.size };
    },
  };
}

/** Reads one data frame from a raw client, within the time limit. */
async function rawFrame(client: RawClient, what: string) {
  const frame = await within(client.readFrame(), what);
  assert.ok(frame !== null, `${what}: the connection ended`);
  return frame;
}

/** Inflates one permessage-deflate payload (RFC 7692 §7.2.2). */
function inflate(payload: Uint8Array): string {
  const tail = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
  const joined = new Uint8Array(payload.length + 4);
  joined.set(payload);
  joined.set(tail, payload.length);
  // The message ends with a sync flush, not the end of a stream.
  return new TextDecoder().decode(
    zlib.inflateRawSync(joined, { finishFlush: zlib.constants.Z_SYNC_FLUSH }),
  );
}

/** A raw client on `server` that offers permessage-deflate. */
function deflateRawClient(server: WebSocketServer): Promise<RawClient> {
  return RawClient.open(server.addr.port, {
    "Sec-WebSocket-Extensions": "permessage-deflate",
  });
}

/**
 * Asserts that each npm:ws client receives `expected` next, in order (each
 * message within the time limit).
 */
async function assertEachReceives(
  clients: readonly NodeClient[],
  expected: readonly (string | Uint8Array)[],
): Promise<void> {
  for (const [i, client] of clients.entries()) {
    for (const [j, message] of expected.entries()) {
      const what = `client ${i} message ${j}`;
      assertSameMessage(await within(client.inbox.next(), what), message, what);
    }
  }
}

Deno.test("topics: one publication to 10 sockets is framed once, and every socket gets the same bytes", async () => {
  const probe = encodeProbe("t");
  await using hub = startTopics(
    { hub: probe.hub },
    (socket) => socket.subscribe("t"),
  );
  const { server } = hub;
  await using raw = await RawClient.open(server.addr.port);
  const clients = await openClients(hub.url, 9);
  try {
    await untilSubscribed(server, "t", 11, "10 sockets and the probe");
    const messages = [
      "short",
      pseudoText(70_000, 3),
      new Uint8Array([1, 2, 3]),
    ];
    const counts = await probe.count(async () => {
      for (const message of messages) {
        assert.equal(server.publish("t", message), 10);
      }
      for (const client of clients) {
        await client.until(() => client.received.length === 3, "3 messages");
      }
    });
    assert.deepEqual(counts, { frames: 3, compressions: 0 });
    for (const client of clients) {
      messages.forEach((message, i) =>
        assertSameMessage(client.received[i], message, `publication ${i}`)
      );
    }
    for (const [i, message] of messages.entries()) {
      const frame = await rawFrame(raw, `publication ${i}`);
      assert.equal(frame.rsv, 0);
      assert.equal(frame.opcode, typeof message === "string" ? 1 : 2);
      assertSameMessage(
        typeof message === "string"
          ? new TextDecoder().decode(frame.payload)
          : frame.payload,
        message,
        `publication ${i}`,
      );
    }
  } finally {
    await closeAll(clients);
  }
});

Deno.test("topics: with permessage-deflate and serverNoContextTakeover, a publication to 10 clients is compressed once and every client inflates it", async () => {
  const probe = encodeProbe("t");
  await using hub = startTopics({
    hub: probe.hub,
    perMessageDeflate: { serverNoContextTakeover: true, threshold: 1024 },
  }, (socket) => socket.subscribe("t"));
  const { server } = hub;
  await using raw = await deflateRawClient(server);
  await using clients = await openNodeClients(
    hub.url,
    9,
    () => ({ perMessageDeflate: true }),
  );
  await untilSubscribed(server, "t", 11, "10 sockets and the probe");
  const big = [
    pseudoText(8_000, 1),
    pseudoText(8_000, 1),
    pseudoText(50_000, 2),
  ];
  const counts = await probe.count(async () => {
    for (const message of big) assert.equal(server.publish("t", message), 10);
    await assertEachReceives(clients, big);
  });
  // One compression per publication for all 10, and no plain frame.
  assert.deepEqual(counts, { frames: 0, compressions: 3 });
  // The raw client sees them compressed (RSV1), each from an empty window.
  for (const [j, message] of big.entries()) {
    const frame = await rawFrame(raw, `publication ${j}`);
    assert.equal(frame.rsv, 4, "RSV1 is set");
    assert.ok(frame.payload.length < message.length, "compressed");
    assertSameMessage(inflate(frame.payload), message, `publication ${j}`);
  }
  // Below the threshold: the shared plain frame, made once.
  const small = await probe.count(async () => {
    assert.equal(server.publish("t", "small"), 10);
    for (const client of clients) {
      assert.equal(await within(client.inbox.next(), "small"), "small");
    }
  });
  assert.deepEqual(small, { frames: 1, compressions: 0 });
  const frame = await rawFrame(raw, "the small publication");
  assert.equal(frame.rsv, 0);
});

Deno.test("topics: with permessage-deflate and context takeover, publications go out as the shared plain frame between the socket's own compressed messages, and clients read all correctly", async () => {
  const probe = encodeProbe("t");
  await using hub = startTopics(
    { hub: probe.hub, perMessageDeflate: { threshold: 1024 } },
    (socket) => socket.subscribe("t"),
  );
  const { server } = hub;
  await using raw = await deflateRawClient(server);
  const sockets = [await hub.accepted()];
  await using clients = await openNodeClients(
    hub.url,
    9,
    () => ({ perMessageDeflate: true }),
  );
  for (let i = 0; i < 9; i++) sockets.push(await hub.accepted());
  // Similar texts, so that each compressed message refers back to the
  // ones before it in the socket's window.
  const own1 = pseudoText(6_000, 5);
  const shared1 = pseudoText(6_000, 5) + "!";
  const own2 = pseudoText(6_000, 5) + "?";
  const shared2 = pseudoText(6_000, 6);
  const own3 = own1 + own2;
  const expected = [own1, shared1, own2, shared2, own3];
  const counts = await probe.count(async () => {
    for (const socket of sockets) socket.send(own1);
    assert.equal(server.publish("t", shared1), 10);
    for (const socket of sockets) socket.send(own2);
    assert.equal(server.publish("t", shared2), 10);
    for (const socket of sockets) socket.send(own3);
    await assertEachReceives(clients, expected);
  });
  // One plain frame per publication for all 10; no shared compression.
  assert.deepEqual(counts, { frames: 2, compressions: 0 });
  // On the wire: own messages compressed (RSV1), publications plain.
  const rsv = [];
  for (const [j, message] of expected.entries()) {
    const frame = await rawFrame(raw, `message ${j}`);
    rsv.push(frame.rsv);
    if (frame.rsv === 0) {
      assert.equal(new TextDecoder().decode(frame.payload), message);
    }
  }
  assert.deepEqual(rsv, [4, 0, 4, 0, 4]);
});

Deno.test("topics: with permessage-deflate, sockets without server context takeover share one compression and the others one plain frame", async () => {
  const probe = encodeProbe("t");
  await using hub = startTopics(
    { hub: probe.hub, perMessageDeflate: { threshold: 1024 } },
    (socket) => socket.subscribe("t"),
  );
  const { server } = hub;
  // Half of the clients ask the server not to keep its context.
  await using clients = await openNodeClients(hub.url, 10, (i) => ({
    perMessageDeflate: { serverNoContextTakeover: i % 2 === 0 },
  }));
  await untilSubscribed(server, "t", 11, "10 sockets and the probe");
  const message = pseudoText(20_000, 9);
  const counts = await probe.count(async () => {
    assert.equal(server.publish("t", message), 10);
    await assertEachReceives(clients, [message]);
  });
  assert.deepEqual(counts, { frames: 1, compressions: 1 });
});

// --- A subscriber that does not read -------------------------------------------

const FEED_MESSAGE_SIZE = 64 * 1024;
/** Far more than kernel buffers and the limit take: a bound, not a target. */
const FEED_LIMIT = 64 * 1024 * 1024;
const READERS = 20;

/** The `seq`th feed message: its number, then padding. */
function feedMessage(seq: number): string {
  const label = `${seq}:`;
  return label + "x".repeat(FEED_MESSAGE_SIZE - label.length);
}

/** The number a feed message starts with. */
function feedSeq(message: string | Uint8Array): number {
  assert.equal(typeof message, "string");
  return Number((message as string).slice(0, (message as string).indexOf(":")));
}

/**
 * A server with one subscriber that never reads (a raw client) and 20
 * that do (Deno's WebSocket); publishes in batches, waiting for the readers
 * after each, until `done` says so. Returns what it saw.
 */
async function feedSlowSubscriber(
  options: ServeOptions,
  done: (slow: WebSocketConnection, reached: number) => boolean,
  rest: (context: {
    slow: WebSocketConnection;
    raw: RawClient;
    readers: TestClient[];
    readerSockets: WebSocketConnection[];
    published: number;
    maxBuffered: number;
  }) => Promise<void>,
): Promise<void> {
  let slow: WebSocketConnection | undefined;
  const readerSockets: WebSocketConnection[] = [];
  await using server = start(
    { ...options, closeTimeout: 30_000 },
    (socket) => {
      socket.subscribe("feed");
      if (socket.request.headers.get("x-role") === "slow") slow = socket;
      else readerSockets.push(socket);
    },
  );
  await using raw = await RawClient.open(server.addr.port, {
    "X-Role": "slow",
  });
  const readers = await openClients(
    `ws://127.0.0.1:${server.addr.port}/`,
    READERS,
  );
  try {
    await untilSubscribed(server, "feed", READERS + 1, "every subscriber");
    let published = 0;
    let maxBuffered = 0;
    let finished = false;
    while (!finished) {
      assert.ok(published * FEED_MESSAGE_SIZE < FEED_LIMIT, "the policy acted");
      for (let i = 0; i < 4 && !finished; i++) {
        const reached = server.publish("feed", feedMessage(published++));
        assert.ok(
          reached >= READERS,
          `publication ${published - 1} reached ${reached}`,
        );
        maxBuffered = Math.max(maxBuffered, slow!.bufferedAmount);
        for (const socket of readerSockets) {
          maxBuffered = Math.max(maxBuffered, socket.bufferedAmount);
        }
        finished = done(slow!, reached);
      }
      // The readers keep up before the next batch: their queues stay short.
      await Promise.all(
        readers.map((reader) =>
          reader.until(
            () => reader.received.length === published,
            `a reader's ${published} messages`,
          )
        ),
      );
    }
    // Every reader got every publication, in order.
    for (const [r, reader] of readers.entries()) {
      reader.received.forEach((message, i) =>
        assert.equal(feedSeq(message), i, `reader ${r} message ${i}`)
      );
    }
    for (const socket of readerSockets) {
      assert.equal(socket.droppedMessages, 0);
    }
    await rest({
      slow: slow!,
      raw,
      readers,
      readerSockets,
      published,
      maxBuffered,
    });
  } finally {
    await closeAll(readers);
  }
}

Deno.test("topics: a subscriber that never reads is closed with 1013 Send queue over 1 MiB (default limit) while 20 readers get every publication in order", async () => {
  const LIMIT = 1024 * 1024;
  await feedSlowSubscriber(
    {},
    (_slow, reached) => reached === READERS,
    async ({ slow, raw, published, maxBuffered }) => {
      // The module's own count of what it holds never passed the limit.
      assert.ok(maxBuffered <= LIMIT, `${maxBuffered} bytes buffered`);
      assert.ok(slow.bufferedAmount <= LIMIT + 127);
      assert.equal(slow.send("after the limit"), 0);
      assert.equal(slow.droppedMessages, 0);
      // Read now: the publications it took, in order, then the close.
      const { frames, code, reason } = await within(
        raw.readUntilClose(),
        "the slow client's frames",
      );
      assert.equal(code, 1013);
      assert.equal(reason, "Send queue over 1 MiB");
      frames.forEach((frame, i) =>
        assert.equal(feedSeq(new TextDecoder().decode(frame.payload)), i)
      );
      assert.equal(frames.length, published - 1, "all but the last");
      const closed = await within(slow.closed, "the slow socket's close");
      assert.equal(closed.closeCode, 1013);
    },
  );
});

Deno.test('topics: under backpressure "drop", a subscriber that never reads loses publications (counted in droppedMessages) while 20 readers get every one in order', async () => {
  // Above one batch of publications (4 × 64 KiB), which every socket
  // queues at once before any of it is written.
  const LIMIT = 512 * 1024;
  await feedSlowSubscriber(
    { maxBackpressure: LIMIT, backpressure: "drop" },
    (slow) => slow.droppedMessages >= 8,
    async ({ slow, raw, published, maxBuffered }) => {
      assert.ok(maxBuffered <= LIMIT, `${maxBuffered} bytes buffered`);
      const dropped = slow.droppedMessages;
      // send() follows the same policy.
      assert.equal(slow.send(feedMessage(-1)), 0);
      assert.equal(slow.droppedMessages, dropped + 1);
      // Read now: what was not dropped arrives, in order, and the socket
      // is still open.
      const seqs: number[] = [];
      while (seqs.length < published - dropped) {
        const frame = await rawFrame(raw, `message ${seqs.length}`);
        assert.equal(frame.opcode, 1);
        seqs.push(feedSeq(new TextDecoder().decode(frame.payload)));
      }
      for (let i = 1; i < seqs.length; i++) {
        assert.ok(seqs[i] > seqs[i - 1], `in order at ${i}`);
      }
      assert.ok(seqs.at(-1)! < published);
      slow.send("still open");
      const last = await rawFrame(raw, "the last message");
      assert.equal(new TextDecoder().decode(last.payload), "still open");
    },
  );
});

// --- A burst queued in one task ------------------------------------------------

const BURST_LIMIT = 256 * 1024;
const BURST_MESSAGE_SIZE = 16 * 1024;

/** The `seq`th burst message: its number, then padding. */
function burstMessage(seq: number): string {
  const label = `${seq}:`;
  return label + "y".repeat(BURST_MESSAGE_SIZE - label.length);
}

/** Checks that `received` holds burst messages 0, 1, 2, ... in order. */
function assertBurstInOrder(received: readonly unknown[], who: string): void {
  received.forEach((message, i) =>
    assert.equal(feedSeq(message as string), i, `${who}: message ${i}`)
  );
}

Deno.test("topics: a burst published in one task, 4 times maxBackpressure, reaches fast readers whole and leaves them open", async () => {
  await using hub = startTopics(
    { maxBackpressure: BURST_LIMIT },
    (socket) => socket.subscribe("burst"),
  );
  const { server } = hub;
  const readers = await openClients(hub.url, 3);
  try {
    await untilSubscribed(server, "burst", 3);
    // 64 × 16 KiB in one synchronous loop: nothing is written before it
    // ends, whatever the readers do.
    const count = 4 * BURST_LIMIT / BURST_MESSAGE_SIZE;
    for (let i = 0; i < count; i++) {
      assert.equal(server.publish("burst", burstMessage(i)), 3, `message ${i}`);
    }
    for (const [r, reader] of readers.entries()) {
      await reader.until(
        () => reader.received.length === count,
        `reader ${r}'s ${count} messages`,
      );
      assertBurstInOrder(reader.received, `reader ${r}`);
    }
    // Still open, still subscribed.
    assert.equal(server.publish("burst", "after"), 3);
    for (const reader of readers) {
      await reader.until(() => reader.received.at(-1) === "after", "after");
      assert.equal(reader.ws.readyState, WebSocket.OPEN);
    }
  } finally {
    await closeAll(readers);
  }
});

Deno.test("topics: send() of a burst in one task, 4 times maxBackpressure, reaches a fast reader whole and leaves it open", async () => {
  await using hub = startTopics({ maxBackpressure: BURST_LIMIT });
  await using reader = await TestClient.open(hub.url);
  const socket = await hub.accepted();
  const count = 4 * BURST_LIMIT / BURST_MESSAGE_SIZE;
  for (let i = 0; i < count; i++) {
    assert.ok(socket.send(burstMessage(i)) > 0, `message ${i} was queued`);
  }
  assert.ok(socket.bufferedAmount > BURST_LIMIT, "the burst is over the limit");
  await reader.until(() => reader.received.length === count, "the burst");
  assertBurstInOrder(reader.received, "the reader");
  assert.ok(socket.send("after") > 0);
  await reader.until(() => reader.received.at(-1) === "after", "after");
  assert.equal(reader.ws.readyState, WebSocket.OPEN);
});

Deno.test("topics: a subscriber that never reads is still closed with 1013 Send queue over 256 KiB, holding at most the limit and one burst, while a fast reader takes every burst", async () => {
  let slow: WebSocketConnection | undefined;
  await using hub = startTopics(
    { maxBackpressure: BURST_LIMIT, closeTimeout: 30_000 },
    (socket) => {
      socket.subscribe("burst");
      if (socket.request.headers.get("x-role") === "slow") slow = socket;
    },
  );
  const { server } = hub;
  await using raw = await RawClient.open(server.addr.port, {
    "X-Role": "slow",
  });
  await using reader = await TestClient.open(hub.url);
  await untilSubscribed(server, "burst", 2);
  // Each task publishes twice the limit; between tasks the reader reads.
  const perBurst = 2 * BURST_LIMIT / BURST_MESSAGE_SIZE;
  const burstBytes = perBurst * (BURST_MESSAGE_SIZE + 4);
  let published = 0;
  let reachedSlow = 0;
  let maxBuffered = 0;
  while (slow!.isSubscribed("burst")) {
    assert.ok(published * BURST_MESSAGE_SIZE < FEED_LIMIT, "the policy acted");
    for (let i = 0; i < perBurst; i++) {
      const reached = server.publish("burst", burstMessage(published++));
      assert.ok(reached >= 1, `publication ${published - 1} reached no one`);
      if (reached === 2) reachedSlow = published;
      maxBuffered = Math.max(maxBuffered, slow!.bufferedAmount);
    }
    await reader.until(
      () => reader.received.length === published,
      `the reader's ${published} messages`,
    );
  }
  assertBurstInOrder(reader.received, "the reader");
  assert.equal(reader.ws.readyState, WebSocket.OPEN);
  // Memory stays bounded: the limit, and what one task queued before the
  // transport said that the peer does not read.
  assert.ok(
    maxBuffered <= BURST_LIMIT + burstBytes,
    `${maxBuffered} bytes buffered`,
  );
  // Read now: what it was sent, in order, then the close that says why.
  const { frames, code, reason } = await within(
    raw.readUntilClose(),
    "the slow client's frames",
  );
  assert.equal(code, 1013);
  assert.equal(reason, "Send queue over 256 KiB");
  assert.equal(frames.length, reachedSlow);
  frames.forEach((frame, i) =>
    assert.equal(feedSeq(new TextDecoder().decode(frame.payload)), i)
  );
});

// --- Promises the README makes -----------------------------------------------

Deno.test("topics: a message bigger than maxBackpressure, sent or published to an idle socket, is delivered whole and the socket stays open", async () => {
  await using hub = startTopics({ maxBackpressure: 64 * 1024 });
  const { server } = hub;
  await using client = await TestClient.open(hub.url);
  const socket = await hub.accepted();
  socket.subscribe("t");
  const sent = pseudoBytes(256 * 1024, 3);
  assert.equal(socket.send(sent), 256 * 1024 + 10, "queued with its header");
  assertSameMessage(await client.next("the sent message"), sent, "sent");
  const published = pseudoText(256 * 1024, 4);
  assert.equal(server.publish("t", published), 1);
  assertSameMessage(
    await client.next("the published message"),
    published,
    "published",
  );
  assert.ok(socket.send("still open") > 0);
  assert.equal(await client.next("the last message"), "still open");
  assert.equal(socket.droppedMessages, 0);
  assert.equal(client.ws.readyState, WebSocket.OPEN);
});

Deno.test("topics: a socket leaves its topics when its close starts, before a peer that never answers has closed", async () => {
  await using hub = startTopics({ closeTimeout: 30_000 });
  const { server } = hub;
  await using raw = await RawClient.open(server.addr.port);
  const socket = await hub.accepted();
  socket.subscribe("a");
  socket.subscribe("b");
  socket.close({ closeCode: 4000 });
  // The peer has not even read the close frame.
  assert.equal(server.subscriberCount("a"), 0);
  assert.equal(server.subscriberCount("b"), 0);
  assert.deepEqual(server.topics(), []);
  assert.deepEqual(socket.subscriptions, []);
  assert.equal(server.publish("a", "after the close"), 0);

  // Also when the close waits behind writes in writable's queue.
  await using raw2 = await RawClient.open(server.addr.port);
  const behind = await hub.accepted();
  behind.subscribe("a");
  const writer = behind.writable.getWriter();
  // Over the 64 KiB mark, to a peer that does not read: the next write
  // waits in writable's queue, and so does the close.
  writer.write(new Uint8Array(4 * 1024 * 1024)).catch(() => {});
  writer.write("queued").catch(() => {});
  writer.releaseLock();
  behind.close({ closeCode: 4000 });
  assert.equal(server.subscriberCount("a"), 0);
  assert.deepEqual(behind.subscriptions, []);
  raw.close();
  raw2.close();
});

Deno.test("topics: two servers sharing a hub, with compression levels 1 and 9, share no compressed frame: each client gets its own level's", async () => {
  const hub = new TopicHub();
  try {
    const subscribe = (socket: WebSocketConnection) => socket.subscribe("t");
    const deflate = { serverNoContextTakeover: true, threshold: 0 };
    await using fast = start(
      { hub, perMessageDeflate: { ...deflate, level: 1 } },
      subscribe,
    );
    await using small = start(
      { hub, perMessageDeflate: { ...deflate, level: 9 } },
      subscribe,
    );
    await using rawFast = await deflateRawClient(fast);
    await using rawSmall = await deflateRawClient(small);
    await waitFor(() => hub.subscriberCount("t") === 2, "both subscribers");
    const message = pseudoText(20_000, 11);
    /** The message compressed from an empty window (RFC 7692 §7.2.1). */
    const compressed = (level: number) => {
      const deflated = zlib.deflateRawSync(new TextEncoder().encode(message), {
        windowBits: 15,
        level,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      return new Uint8Array(deflated.subarray(0, deflated.length - 4));
    };
    assert.notDeepEqual(compressed(1), compressed(9), "the levels differ");
    assert.equal(hub.publish("t", message), 2);
    for (const [raw, level] of [[rawFast, 1], [rawSmall, 9]] as const) {
      const frame = await rawFrame(raw, `the level ${level} frame`);
      assert.equal(frame.rsv, 4, "RSV1 is set");
      assertBytesEqual(frame.payload, compressed(level), `level ${level}`);
    }
  } finally {
    await hub.close();
  }
});
