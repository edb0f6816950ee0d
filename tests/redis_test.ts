/**
 * RedisPubSub against a real redis-server (started on a free port of
 * 127.0.0.1 by each test, stopped after it): server processes sharing
 * topics, subscription by interest, a Redis restart, bad input on the
 * channels, and the adapter's own contract in this process.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import { type PubSubEvent, RedisPubSub } from "../redis.ts";
import { encodeEnvelope } from "../src/pubsub/_envelope.ts";
import {
  DEADLINE,
  fromPublisher,
  RedisNode,
  RedisServer,
  untilConnected,
} from "./_pubsub_helpers.ts";
import { CutProxy } from "./_tcp_proxy.ts";
import { TestClient } from "./_ws_client.ts";
import { freePort, waitFor } from "./_util.ts";

/** The i-th message of a publisher: every fifth one binary. */
function message(name: string, i: number): string | Uint8Array {
  const text = `${name}:${i}`;
  return i % 5 === 4 ? new TextEncoder().encode(text) : text;
}

/** How `fromPublisher` shows messages `from` to `to` (excluded). */
function labels(name: string, from: number, to: number): string[] {
  const out = [];
  for (let i = from; i < to; i++) {
    out.push(i % 5 === 4 ? `#${name}:${i}` : `${name}:${i}`);
  }
  return out;
}

/** A test's own Redis client (for PUBSUB and foreign messages). */
async function redisClient(url: string) {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return Object.assign(client, {
    [Symbol.asyncDispose]: () => client.close(),
  });
}

Deno.test("two server processes sharing one Redis: subscribers on both receive every message published on either, in order per publisher, exactly once", async () => {
  await using redis = await RedisServer.start();
  await using a = await RedisNode.start(redis.url, "t1:");
  await using b = await RedisNode.start(redis.url, "t1:");
  await using subA1 = await TestClient.open(a.url("/sub?topic=room"));
  await using subA2 = await TestClient.open(a.url("/sub?topic=room"));
  await using subB1 = await TestClient.open(b.url("/sub?topic=room"));
  await using subB2 = await TestClient.open(b.url("/sub?topic=room"));
  await using pubA = await TestClient.open(a.url("/pub?topic=room"));
  await using pubB = await TestClient.open(b.url("/pub?topic=room"));
  const subscribers = [subA1, subA2, subB1, subB2];
  await untilConnected([pubA, pubB], subscribers);

  const n = 300;
  for (let i = 0; i < n; i++) {
    pubA.send(message("A", i));
    pubB.send(message("B", i));
  }
  for (const subscriber of subscribers) {
    await subscriber.receive(2 * n, `${2 * n} messages`);
  }
  // Redis sends a subscriber connection messages in the order it took
  // them: once a fence published after everything arrives, any echo of an
  // earlier message (a node delivering its own publication twice) would
  // have arrived before it.
  pubA.send("fence:A");
  pubB.send("fence:B");
  for (const subscriber of subscribers) {
    await subscriber.receive(2 * n + 2, "both fences");
  }
  for (const subscriber of subscribers) {
    assert.deepEqual(
      fromPublisher(subscriber.received, "A:"),
      labels("A", 0, n),
    );
    assert.deepEqual(
      fromPublisher(subscriber.received, "B:"),
      labels("B", 0, n),
    );
    assert.equal(subscriber.received.length, 2 * n + 2);
  }
  for (const node of [a, b]) {
    const { stats, errors } = await node.report();
    assert.deepEqual(errors, []);
    assert.equal(stats.failed, 0);
    assert.equal(stats.gaps, 0);
    assert.equal(stats.malformed, 0);
    // The other node's messages and fence at least (probes come on top).
    assert.ok(stats.delivered >= n + 1, `delivered ${stats.delivered}`);
    assert.ok(stats.published >= n + 1, `published ${stats.published}`);
  }
});

Deno.test("a node subscribes a topic's channel on Redis only while it has a local subscriber to it (PUBSUB CHANNELS)", async () => {
  await using redis = await RedisServer.start();
  await using client = await redisClient(redis.url);
  await using a = await RedisNode.start(redis.url, "t2:");
  await using b = await RedisNode.start(redis.url, "t2:");
  const channels = async () => (await client.PUBSUB_CHANNELS("t2:*")).sort();
  assert.deepEqual(await channels(), []);

  const aOnly = await TestClient.open(a.url("/sub?topic=a-only"));
  await using sharedA = await TestClient.open(a.url("/sub?topic=shared"));
  await using _bOnly = await TestClient.open(b.url("/sub?topic=b-only"));
  await using sharedB = await TestClient.open(b.url("/sub?topic=shared"));
  // A second local subscriber does not subscribe the channel again.
  await using _sharedB2 = await TestClient.open(b.url("/sub?topic=shared"));
  // Publishing to a topic subscribed nowhere subscribes nothing.
  await using publisher = await TestClient.open(a.url("/pub?topic=nobody"));
  publisher.send("into the void");
  try {
    const expected = ["t2:a-only", "t2:b-only", "t2:shared"];
    await waitFor(
      async () => (await channels()).join() === expected.join(),
      "the three channels",
      DEADLINE,
    );
    assert.deepEqual(
      await client.PUBSUB_NUMSUB(expected),
      { "t2:a-only": 1, "t2:b-only": 1, "t2:shared": 2 },
    );
  } finally {
    await aOnly.close();
  }
  // The last local subscriber left: node A unsubscribes the channel.
  await waitFor(
    async () => (await channels()).join() === "t2:b-only,t2:shared",
    "a-only to be unsubscribed",
    DEADLINE,
  );
  await sharedB.close();
  // Node B keeps "shared" for its other subscriber.
  assert.deepEqual(await client.PUBSUB_NUMSUB(["t2:shared"]), {
    "t2:shared": 2,
  });
  await sharedA.close();
  await waitFor(
    async () => (await client.PUBSUB_NUMSUB(["t2:shared"]))["t2:shared"] === 1,
    "node A to leave shared",
    DEADLINE,
  );
  assert.deepEqual(await channels(), ["t2:b-only", "t2:shared"]);
});

Deno.test("Redis stopped and restarted on the same port: both nodes reconnect and resubscribe, the sockets stay open, publishing resumes, and the outage's losses are counted and reported", async () => {
  await using redis = await RedisServer.start();
  await using a = await RedisNode.start(redis.url, "t3:");
  await using b = await RedisNode.start(redis.url, "t3:");
  await using subA = await TestClient.open(a.url("/sub?topic=room"));
  await using subB = await TestClient.open(b.url("/sub?topic=room"));
  await using pubA = await TestClient.open(a.url("/pub?topic=room"));
  await using pubB = await TestClient.open(b.url("/pub?topic=room"));
  const clients = [subA, subB, pubA, pubB];
  await untilConnected([pubA, pubB], [subA, subB]);

  for (let i = 0; i < 20; i++) {
    pubA.send(message("A", i));
    pubB.send(message("B", i));
  }
  await subA.receive(40, "the first 40 messages");
  await subB.receive(40, "the first 40 messages");

  await redis.stop();
  for (const node of [a, b]) {
    await waitFor(
      async () =>
        (await node.report()).errors.some((error) =>
          /^Lost the connection to Redis \(publisher\)/.test(error)
        ),
      "the node to report the lost connection",
      DEADLINE,
    );
  }
  // Published during the outage: node A's own subscriber gets them, node
  // B cannot, and node A counts them as failed.
  const lost = 10;
  for (let i = 20; i < 20 + lost; i++) pubA.send(message("A", i));
  await waitFor(
    async () => (await a.report()).stats.failed === lost,
    `node A to count ${lost} failed publications`,
    DEADLINE,
  );
  await subA.receive(40 + lost, "the outage's messages on node A");

  await redis.restart();
  for (const node of [a, b]) {
    await waitFor(
      async () => (await node.report()).stats.reconnects === 1,
      "the node to reconnect",
      DEADLINE,
    );
  }
  await untilConnected([pubA, pubB], [subA, subB]);
  for (let i = 20 + lost; i < 40 + lost; i++) pubA.send(message("A", i));
  for (let i = 20; i < 40; i++) pubB.send(message("B", i));
  await subA.receive(80 + lost, "the messages after the restart");
  await subB.receive(80, "the messages after the restart");

  assert.ok(clients.every((client) => !client.isClosed));
  assert.deepEqual(
    fromPublisher(subA.received, "A:"),
    labels("A", 0, 40 + lost),
  );
  assert.deepEqual(fromPublisher(subA.received, "B:"), labels("B", 0, 40));
  assert.deepEqual(fromPublisher(subB.received, "A:"), [
    ...labels("A", 0, 20),
    ...labels("A", 20 + lost, 40 + lost),
  ]);
  assert.deepEqual(fromPublisher(subB.received, "B:"), labels("B", 0, 40));

  const reportA = await a.report();
  const reportB = await b.report();
  assert.equal(reportA.stats.failed, lost);
  assert.equal(reportA.stats.gaps, 0);
  assert.equal(reportB.stats.failed, 0);
  // Node B found node A's lost publications missing from the numbering.
  assert.equal(reportB.stats.gaps, lost);
  assert.equal(reportA.stats.reconnects, 1);
  assert.equal(reportB.stats.reconnects, 1);
  assert.ok(
    reportA.errors.some((error) =>
      /^Publications to Redis are failing/.test(error)
    ),
    reportA.errors.join("\n"),
  );
  assert.ok(
    reportA.errors.includes(
      `Publishing to Redis works again; ${lost} publication(s) failed meanwhile and reached no other node`,
    ),
    reportA.errors.join("\n"),
  );
  assert.ok(
    reportB.errors.includes(
      `${lost} message(s) from node ${a.id} on topic "room" were lost on the bus`,
    ),
    reportB.errors.join("\n"),
  );
});

Deno.test("bad input published on a node's Redis channel is ignored and reported, and the node goes on", async () => {
  await using redis = await RedisServer.start();
  await using client = await redisClient(redis.url);
  await using a = await RedisNode.start(redis.url, "t4:");
  await using subscriber = await TestClient.open(a.url("/sub?topic=room"));
  await waitFor(
    async () => (await client.PUBSUB_NUMSUB(["t4:room"]))["t4:room"] === 1,
    "node A to subscribe",
    DEADLINE,
  );
  const envelope = (topic: string, message: string | Uint8Array) =>
    Buffer.from(
      encodeEnvelope({
        origin: "intruder",
        epoch: 0,
        sequence: 1,
        topic,
        message,
      }),
    );
  const valid = envelope("room", "ok");
  const badText = envelope("room", new Uint8Array([0xff]));
  badText[1] = 1; // says text: its payload is not UTF-8
  const bad = [
    Buffer.from("hello"), // foreign
    Buffer.from([2, ...valid.subarray(1)]), // another version
    valid.subarray(0, 12), // cut inside its header
    envelope("elsewhere", "misrouted"), // topic and channel disagree
    badText,
  ];
  for (const message of bad) await client.publish("t4:room", message);
  // A good message after the bad ones: the node is still delivering.
  await client.publish(
    "t4:room",
    Buffer.from(
      encodeEnvelope({
        origin: "intruder",
        epoch: 0,
        sequence: 1,
        topic: "room",
        message: "still here",
      }),
    ),
  );
  await subscriber.receive(1, "the good message");
  assert.deepEqual(subscriber.received, ["still here"]);
  const { stats, errors } = await a.report();
  assert.equal(stats.malformed, bad.length);
  assert.equal(stats.delivered, 1);
  // Reports are limited to one a second: at least the first went out.
  assert.match(
    errors[0],
    /^Ignored a message on Redis channel "t4:room": A bus message of 5 bytes is too short/,
  );
  assert.ok(!subscriber.isClosed);
});

Deno.test("RedisPubSub refuses bad options before connecting", () => {
  assert.throws(
    () =>
      new RedisPubSub({
        url: "redis://127.0.0.1:1",
        client: createClient(),
      }),
    TypeError,
  );
  assert.throws(() => new RedisPubSub({ maxPendingBytes: 0 }), RangeError);
  assert.throws(() => new RedisPubSub({ maxMessageSize: -1 }), RangeError);
  assert.throws(
    // @ts-expect-error: a prefix that is not a string
    () => new RedisPubSub({ prefix: 7 }),
    TypeError,
  );
});

Deno.test("RedisPubSub closed before Redis is reached rejects ready and leaves nothing running", async () => {
  const errors: unknown[] = [];
  const pubsub = new RedisPubSub({
    url: `redis://127.0.0.1:${freePort()}`,
    onError: (error) => errors.push(error),
  });
  pubsub.open(() => {});
  pubsub.publish("news", "nobody hears this");
  await pubsub.close();
  await assert.rejects(pubsub.ready, /closed before Redis was reached/);
  assert.equal(pubsub.stats.failed, 1);
});

Deno.test("RedisPubSub: a node's own publications are not delivered back to it; another node's are, once", async () => {
  await using redis = await RedisServer.start();
  const a = new RedisPubSub({ url: redis.url, prefix: "t5:" });
  const b = new RedisPubSub({ url: redis.url, prefix: "t5:" });
  try {
    await Promise.all([a.ready, b.ready]);
    const toA: unknown[] = [];
    const toB: unknown[] = [];
    a.open((topic, message) => toA.push([topic, message]));
    b.open((topic, message) => toB.push([topic, message]));
    a.subscribe("news");
    b.subscribe("news");
    await using client = await redisClient(redis.url);
    await waitFor(
      async () => (await client.PUBSUB_NUMSUB(["t5:news"]))["t5:news"] === 2,
      "both to subscribe",
      DEADLINE,
    );
    a.publish("news", "from a");
    a.publish("news", new Uint8Array([0, 1, 255]));
    b.publish("news", "from b");
    await waitFor(
      () => toA.length === 1 && toB.length === 2,
      "the publications",
      DEADLINE,
    );
    assert.deepEqual(toB, [["news", "from a"], [
      "news",
      new Uint8Array([0, 1, 255]),
    ]]);
    assert.deepEqual(toA, [["news", "from b"]]);
    // Own messages came back from Redis and were dropped, not delivered.
    await waitFor(
      () => a.stats.published === 2,
      "a's acknowledgements",
      DEADLINE,
    );
    assert.equal(a.stats.delivered, 1);
    assert.equal(b.stats.delivered, 2);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

/**
 * Two adapters on one Redis and the test's own client, `b` subscribed to
 * "news" and recording what it delivers; `a` too, for its publications to
 * be numbered as any node's. The client publishes forged or foreign bus
 * messages on the channel.
 */
async function twoNodes(
  url: string,
  prefix: string,
  options: { maxMessageSize?: number } = {},
) {
  const a = new RedisPubSub({ url, prefix, ...options, onError: () => {} });
  const errors: string[] = [];
  const b = new RedisPubSub({
    url,
    prefix,
    ...options,
    onError: (error) => errors.push((error as Error).message),
  });
  const client = await redisClient(url);
  await Promise.all([a.ready, b.ready]);
  const toB: (string | Uint8Array)[] = [];
  a.open(() => {});
  b.open((_, message) => toB.push(message));
  b.subscribe("news");
  await waitFor(
    async () =>
      (await client.PUBSUB_NUMSUB([`${prefix}news`]))[`${prefix}news`] === 1,
    "b to subscribe",
    DEADLINE,
  );
  /** Publishes from `a` and waits until Redis took it (so order holds). */
  const fromA = async (message: string | Uint8Array) => {
    const { published, failed } = a.stats;
    a.publish("news", message);
    await waitFor(
      () => a.stats.published + a.stats.failed > published + failed,
      "Redis to take a's publication",
      DEADLINE,
    );
  };
  const forge = (
    origin: string,
    sequence: number,
    message: string | Uint8Array,
  ) =>
    client.publish(
      `${prefix}news`,
      Buffer.from(
        encodeEnvelope({ origin, epoch: 0, sequence, topic: "news", message }),
      ),
    );
  return {
    a,
    b,
    toB,
    errors,
    fromA,
    forge,
    async [Symbol.asyncDispose]() {
      await Promise.all([a.close(), b.close(), client.close()]);
    },
  };
}

Deno.test("RedisPubSub: a forged message with another node's id and sequence 2^32 - 1 does not silence that node's topic; the numbering starts again, counted as resets", async () => {
  await using redis = await RedisServer.start();
  await using nodes = await twoNodes(redis.url, "t7:");
  const { a, b, toB, errors, fromA, forge } = nodes;
  await fromA("1");
  await forge(a.id, 2 ** 32 - 1, "forged");
  await fromA("2");
  await fromA("3");
  // A fence from a third origin, published after a's messages were taken.
  await forge("fence", 1, "fence");
  await waitFor(() => toB.includes("fence"), "the fence", DEADLINE);
  assert.deepEqual(toB, ["1", "forged", "2", "3", "fence"]);
  const { resets, gaps, malformed, delivered } = b.stats;
  assert.deepEqual({ resets, gaps, malformed, delivered }, {
    resets: 2,
    gaps: 0,
    malformed: 0,
    delivered: 5,
  });
  assert.match(
    errors[0],
    new RegExp(
      `numbering of node ${a.id} on topic "news" went from 0:1 to 0:4294967295`,
    ),
  );
});

Deno.test("RedisPubSub: a bus message over maxMessageSize is dropped and counted, and a publication over it fails and is counted", async () => {
  await using redis = await RedisServer.start();
  await using nodes = await twoNodes(redis.url, "t8:", {
    maxMessageSize: 1000,
  });
  const { a, b, toB, errors, fromA, forge } = nodes;
  await forge("intruder", 1, "x".repeat(1001));
  await forge("intruder", 2, new Uint8Array(1000));
  await fromA("before");
  await fromA("y".repeat(1001));
  await fromA("é".repeat(500)); // 1,000 bytes of UTF-8
  await forge("fence", 1, "fence");
  await waitFor(() => toB.includes("fence"), "the fence", DEADLINE);
  assert.deepEqual(toB, [
    new Uint8Array(1000),
    "before",
    "é".repeat(500),
    "fence",
  ]);
  assert.equal(b.stats.malformed, 1);
  assert.match(
    errors[0],
    /^Ignored a message on Redis channel "t8:news": A bus message's payload of 1001 bytes is over the limit of 1000/,
  );
  assert.equal(a.stats.failed, 1);
  assert.equal(a.stats.published, 2);
  assert.equal(
    // Numbered though it failed: b counts it as lost.
    b.stats.gaps,
    1,
  );
});

Deno.test("RedisPubSub: publications beyond maxPendingBytes fail and are counted, and the others go through", async () => {
  await using redis = await RedisServer.start();
  const errors: Error[] = [];
  const pubsub = new RedisPubSub({
    url: redis.url,
    maxPendingBytes: 200,
    onError: (error) => errors.push(error as Error),
  });
  try {
    await pubsub.ready;
    pubsub.open(() => {});
    // About 60 bytes each; none is acknowledged before the loop ends.
    for (let i = 0; i < 10; i++) pubsub.publish("news", `message ${i}`);
    await waitFor(
      () => pubsub.stats.published + pubsub.stats.failed === 10,
      "every publication to settle",
      DEADLINE,
    );
    const { published, failed } = pubsub.stats;
    assert.ok(published >= 1 && failed >= 1, `${published}, ${failed}`);
    assert.match(errors[0].message, /^Publications to Redis are failing/);
    assert.match(String((errors[0].cause as Error).message), /maxPendingBytes/);
    // The next acknowledged publication ends the series, with its count.
    pubsub.publish("news", "after");
    await waitFor(
      () => errors.length === 2,
      "the end of the failures",
      DEADLINE,
    );
    assert.equal(
      errors[1].message,
      `Publishing to Redis works again; ${failed} publication(s) failed meanwhile and reached no other node`,
    );
  } finally {
    await pubsub.close();
  }
});

Deno.test("RedisPubSub events through a Redis restart: the default reporter logs one line each without a stack, the recoveries with console.info; onEvent gets their kinds, onError the Errors it always got", async () => {
  await using redis = await RedisServer.start();
  const events: PubSubEvent[] = [];
  const errors: Error[] = [];
  const logged: { level: string; args: unknown[] }[] = [];
  const { error, info } = console;
  console.error = (...args: unknown[]) => logged.push({ level: "error", args });
  console.info = (...args: unknown[]) => logged.push({ level: "info", args });
  const told = new RedisPubSub({
    url: redis.url,
    onEvent: (event) => events.push(event),
    onError: (error) => errors.push(error as Error),
  });
  const plain = new RedisPubSub({ url: redis.url });
  const lines = () => logged.map(({ level, args }) => `${level} ${args[0]}`);
  try {
    await Promise.all([told.ready, plain.ready]);
    told.open(() => {});
    plain.open(() => {});
    await redis.stop();
    await waitFor(
      () =>
        events.filter((event) => event.kind === "disconnected").length === 2 &&
        lines().filter((line) => line.includes("Lost the connection"))
            .length ===
          2,
      "both connections of both adapters to tell the loss",
      DEADLINE,
    );
    told.publish("news", "lost");
    plain.publish("news", "lost");
    await redis.restart();
    await waitFor(
      () =>
        events.some((event) => event.kind === "publish-recovered") &&
        lines().some((line) => line.includes("works again")) &&
        events.filter((event) => event.kind === "reconnected").length === 2 &&
        lines().filter((line) => line.includes("again")).length === 3,
      "both adapters to tell the recoveries",
      DEADLINE,
    );
  } finally {
    console.error = error;
    console.info = info;
    await told.close();
    await plain.close();
  }

  // The default reporter: one string per event, on one line.
  for (const { args } of logged) {
    assert.equal(args.length, 1, String(args));
    assert.equal(typeof args[0], "string");
    assert.doesNotMatch(args[0] as string, /\n/);
  }
  // The losses end with node-redis's words for them, in brackets.
  const expected = [
    "error RedisPubSub: Lost the connection to Redis (publisher): retrying; publications fail meanwhile (",
    "error RedisPubSub: Lost the connection to Redis (subscriber): retrying; messages from other nodes are missed meanwhile (",
    "error RedisPubSub: Publications to Redis are failing: other nodes will miss them (counted in stats.failed) (",
    "info RedisPubSub: Connected to Redis (publisher) again",
    "info RedisPubSub: Connected to Redis (subscriber) again: its topics are subscribed again",
    "info RedisPubSub: Publishing to Redis works again; 1 publication(s) failed meanwhile and reached no other node",
  ];
  const got = lines().toSorted();
  assert.equal(got.length, expected.length, got.join("\n"));
  expected.toSorted().forEach((prefix, i) =>
    assert.ok(got[i].startsWith(prefix), `${got[i]}\nis not\n${prefix}…`)
  );

  // onEvent: the same events with their kinds.
  assert.deepEqual(
    events.map(({ kind, recovery }) => `${kind} ${recovery}`).toSorted(),
    [
      "disconnected false",
      "disconnected false",
      "publish-failed false",
      "reconnected true",
      "reconnected true",
      "publish-recovered true",
    ].toSorted(),
  );
  for (const event of events.filter((e) => e.kind === "disconnected")) {
    assert.ok(event.cause instanceof Error, "node-redis's error as the cause");
  }
  // onError: what it got before onEvent existed, the recovery of
  // publishing included, and no reconnection.
  assert.deepEqual(
    errors.map((error) => error.message).toSorted(),
    events
      .filter((event) => event.kind !== "reconnected")
      .map((event) => event.message)
      .toSorted(),
  );
  assert.ok(errors.every((error) => error instanceof Error));
  assert.ok(
    errors.some((error) =>
      error.message ===
        "Publishing to Redis works again; 1 publication(s) failed meanwhile and reached no other node"
    ),
  );
});

Deno.test("RedisPubSub: the SCRIPT LOADs of a ready publisher cut off by a lost connection are part of the loss it told, not an error of their own", async () => {
  await using redis = await RedisServer.start();
  // Between the adapter and Redis: refusing at first, so that the
  // publisher's first ready is told; cut then, as its SCRIPT LOADs go out,
  // so that they fail with the connection.
  await using proxy = new CutProxy(redis.port);
  proxy.cut();
  const events: PubSubEvent[] = [];
  const errors: unknown[] = [];
  const pubsub = new RedisPubSub({
    url: `redis://127.0.0.1:${proxy.port}`,
    onEvent: (event) => {
      events.push(event);
      if (event.message === "Connected to Redis (publisher)") proxy.cut();
    },
    onError: (error) => errors.push(error),
  });
  const told = (kind: string, role: string) =>
    events.filter((event) =>
      event.kind === kind && event.message.includes(`(${role})`)
    ).length;
  try {
    await waitFor(
      () => told("disconnected", "publisher") === 1,
      "the first attempt to fail",
      DEADLINE,
    );
    proxy.restore();
    await waitFor(
      () => told("disconnected", "publisher") === 2,
      "the cut to be told",
      DEADLINE,
    );
    proxy.restore();
    // Each connection's last word is that it is up: closing while one waits
    // for its next try would leave node-redis's retry timer running.
    const up = (role: string) =>
      events.findLast((event) => event.message.includes(`(${role})`))
        ?.kind === "reconnected";
    await waitFor(
      () => up("publisher") && up("subscriber"),
      "both connections to be back",
      DEADLINE,
    );
    assert.ok(
      events.some((event) =>
        event.message === "Connected to Redis (publisher) again"
      ),
    );
    await pubsub.ready;
  } finally {
    await pubsub.close();
  }
  assert.deepEqual(
    events.filter((event) => event.kind === "error").map((e) => e.message),
    [],
  );
  assert.ok(
    errors.every((error) =>
      !/Socket closed unexpectedly|ECONNRESET/.test(String(error))
    ),
    errors.join("\n"),
  );
});

Deno.test("RedisPubSub events before Redis is first reached: cannot connect, then connected (not again), and ready resolves", async () => {
  await using redis = await RedisServer.start();
  await redis.stop();
  const events: PubSubEvent[] = [];
  const pubsub = new RedisPubSub({
    url: redis.url,
    onEvent: (event) => events.push(event),
  });
  try {
    await waitFor(
      () => events.filter((e) => e.kind === "disconnected").length === 2,
      "both connections to tell they cannot connect",
      DEADLINE,
    );
    await redis.restart();
    await pubsub.ready;
    await waitFor(
      () => events.filter((e) => e.kind === "reconnected").length === 2,
      "both connections to tell they connected",
      DEADLINE,
    );
  } finally {
    await pubsub.close();
  }
  assert.deepEqual(
    events.map(({ kind, message }) => `${kind}: ${message}`).toSorted(),
    [
      "disconnected: Cannot connect to Redis (publisher): retrying; publications fail meanwhile",
      "disconnected: Cannot connect to Redis (subscriber): retrying; messages from other nodes are missed meanwhile",
      "reconnected: Connected to Redis (publisher)",
      "reconnected: Connected to Redis (subscriber)",
    ],
  );
});

Deno.test("RedisPubSub with a client: its connections copy the client's settings and leave the client alone", async () => {
  await using redis = await RedisServer.start();
  const template = createClient({ url: redis.url });
  const pubsub = new RedisPubSub({ client: template, prefix: "t6:" });
  try {
    await pubsub.ready;
    pubsub.open(() => {});
    pubsub.subscribe("news");
    await using client = await redisClient(redis.url);
    await waitFor(
      async () => (await client.PUBSUB_CHANNELS("t6:*")).join() === "t6:news",
      "the subscription",
      DEADLINE,
    );
    assert.equal(template.isOpen, false);
  } finally {
    await pubsub.close();
  }
});
