/**
 * The Redis history and presence store against a real redis-server (each
 * test starts its own on a free port of 127.0.0.1 and stops it): offsets
 * that two nodes agree on, the bounds by count and age, reads since a
 * position and of the latest, epochs that change when Redis forgets,
 * binary payloads, presence summed over nodes, and data that is not ours.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import type { HistoryLimits } from "../src/pubsub/_memory_history.ts";
import type { StreamPosition } from "../src/pubsub/history.ts";
import {
  decodePositioned,
  POSITIONED_MARKER,
  type PositionedMessage,
  RedisHistory,
} from "../src/pubsub/_redis_history.ts";
import { ENVELOPE_VERSION } from "../src/pubsub/_envelope.ts";
import { DEADLINE, RedisServer } from "./_pubsub_helpers.ts";
import { waitFor } from "./_util.ts";

const LIMITS: HistoryLimits = { size: 3, ttl: 60_000, metaTtl: 600_000 };
const PREFIX = "ws:";
const encoder = new TextEncoder();

/** A client of the test's Redis, closed with the test. */
async function connect(url: string) {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return Object.assign(client, {
    [Symbol.asyncDispose]: () => client.close(),
  });
}

/** A store over its own connection: one node. */
async function node(url: string) {
  const client = await connect(url);
  return Object.assign(new RedisHistory(client, PREFIX), {
    client,
    [Symbol.asyncDispose]: () => client.close(),
  });
}

/** Publishes `message` on `topic`'s channel, with an envelope naming it. */
function publish(
  store: RedisHistory,
  topic: string,
  message: string | Uint8Array,
  limits: HistoryLimits = LIMITS,
) {
  const envelope = encoder.encode(`envelope of ${String(message)}`);
  return store.publish(topic, PREFIX + topic, message, envelope, limits);
}

/** Subscribes `topic`'s channel; keeps what arrives, split. */
async function listen(url: string, topic: string) {
  const client = await connect(url);
  const received: PositionedMessage[] = [];
  await client.subscribe(PREFIX + topic, (message: Buffer) => {
    received.push(decodePositioned(Uint8Array.from(message)));
  }, true);
  return Object.assign(client, { received });
}

Deno.test("redis history: two nodes publishing 500 each at once get offsets 1 to 1000 once each, and a subscriber receives them in offset order", async () => {
  await using redis = await RedisServer.start();
  await using a = await node(redis.url);
  await using b = await node(redis.url);
  await using subscriber = await listen(redis.url, "race");
  const sent = (store: RedisHistory, name: string) =>
    Array.from(
      { length: 500 },
      (_, i) =>
        publish(store, "race", `${name}${i}`, { ...LIMITS, size: 1000 }),
    );
  const positions = await Promise.all([...sent(a, "a"), ...sent(b, "b")]);
  const offsets = positions.map((position) => position.offset);
  assert.deepEqual(
    offsets.toSorted((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i + 1),
  );
  assert.equal(new Set(positions.map((position) => position.epoch)).size, 1);
  // Each node's own publications got increasing offsets (its pipeline's order).
  for (const mine of [offsets.slice(0, 500), offsets.slice(500)]) {
    assert.deepEqual(mine, mine.toSorted((x, y) => x - y));
  }
  await waitFor(
    () => subscriber.received.length === 1000,
    "the 1000 publications on the channel",
    DEADLINE,
  );
  assert.deepEqual(
    subscriber.received.map((message) => message.position.offset),
    Array.from({ length: 1000 }, (_, i) => i + 1),
  );
  // Each message carries the envelope of the publication that got its offset.
  const byOffset = new Map(
    positions.map((position, i) => [
      position.offset,
      i < 500 ? `a${i}` : `b${i - 500}`,
    ]),
  );
  for (const { position, envelope } of subscriber.received) {
    assert.equal(position.epoch, positions[0].epoch);
    assert.equal(
      new TextDecoder().decode(envelope),
      `envelope of ${byOffset.get(position.offset)}`,
    );
  }
  // And the history holds them in the same order.
  const read = await a.read("race", { limit: 1000 }, {
    ...LIMITS,
    size: 1000,
  });
  assert.deepEqual(
    read.publications.map(({ offset, message }) => [offset, message]),
    [...byOffset].toSorted(([x], [y]) => x - y),
  );
});

Deno.test("redis history: reading since a position gives every publication after it, recovered; since the top, none, recovered", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const first = await publish(store, "a", "1");
  await publish(store, "a", "2");
  const top = await publish(store, "a", new Uint8Array([3]));
  assert.deepEqual(first, { offset: 1, epoch: first.epoch });
  const read = await store.read("a", { since: first }, LIMITS);
  assert.deepEqual(read, {
    position: top,
    publications: [
      { offset: 2, message: "2" },
      { offset: 3, message: new Uint8Array([3]) },
    ],
    recovered: true,
    malformed: 0,
  });
  assert.deepEqual(await store.read("a", { since: top }, LIMITS), {
    position: top,
    publications: [],
    recovered: true,
    malformed: 0,
  });
  // `limit` is not used with `since` (as in MemoryHistory).
  assert.equal(
    (await store.read("a", { since: first, limit: 1 }, LIMITS))
      .publications.length,
    2,
  );
});

Deno.test("redis history: another epoch or a position ahead of the top is not recovered", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const top = await publish(store, "a", "1");
  const positions = [
    { offset: 0, epoch: "other" },
    // The top's offset in another epoch: nothing to give, still not recovered.
    { offset: top.offset, epoch: "other" },
    { offset: 2, epoch: top.epoch },
  ];
  for (const since of positions) {
    assert.deepEqual(await store.read("a", { since }, LIMITS), {
      position: top,
      publications: [],
      recovered: false,
      malformed: 0,
    });
  }
});

Deno.test("redis history: a topic never published to is at offset 0 in an epoch the read makes and the first publication keeps", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const read = await store.read("none", { limit: 5 }, LIMITS);
  assert.equal(read.position.offset, 0);
  assert.deepEqual(read.publications, []);
  assert.equal(read.recovered, false);
  // The position a read makes lives metaTtl.
  const ttl = Number(
    await store.client.sendCommand(["PTTL", "ws:{none}:meta"]),
  );
  assert.ok(ttl > 0 && ttl <= LIMITS.metaTtl, String(ttl));
  // A reader that saw nothing yet recovers the first publication.
  const since = await store.read("none", { since: read.position }, LIMITS);
  assert.equal(since.recovered, true);
  const first = await publish(store, "none", "x");
  assert.deepEqual(first, { offset: 1, epoch: read.position.epoch });
  const after = await store.read("none", { since: read.position }, LIMITS);
  assert.equal(after.recovered, true);
  assert.deepEqual(after.publications, [{ offset: 1, message: "x" }]);
});

Deno.test("redis history: it is bounded by count: the stream keeps size entries, and a position older than what is kept is not recovered", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const positions = [];
  for (const message of ["1", "2", "3", "4", "5"]) {
    positions.push(await publish(store, "a", message));
  }
  assert.equal(await store.client.sendCommand(["XLEN", "ws:{a}:log"]), 3);
  const kept = await store.read("a", { limit: 10 }, LIMITS);
  assert.deepEqual(kept.publications.map((entry) => entry.message), [
    "3",
    "4",
    "5",
  ]);
  // Offset 2 is the one before the oldest kept (3): nothing is missing.
  assert.equal(
    (await store.read("a", { since: positions[1] }, LIMITS)).recovered,
    true,
  );
  const lost = await store.read("a", { since: positions[0] }, LIMITS);
  assert.equal(lost.recovered, false);
  assert.deepEqual(lost.publications, []);
  assert.equal(lost.position.offset, 5);
  // A smaller size for the topic keeps its newest publications.
  const smaller = { ...LIMITS, size: 1 };
  assert.deepEqual(
    (await store.read("a", { limit: 3 }, smaller)).publications,
    [{ offset: 5, message: "5" }],
  );
  assert.equal(
    (await store.read("a", { since: positions[2] }, smaller)).recovered,
    false,
  );
});

Deno.test("redis history: it is bounded by age on the Redis clock: entries older than ttl are skipped, and the log expires", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const client = store.client;
  // Two entries written as the publish script writes them, one of them
  // older than ttl by its time field: no waiting on a loaded machine.
  const [seconds] = await client.sendCommand(["TIME"]) as string[];
  const now = Number(seconds) * 1000;
  await client.sendCommand(["HSET", "ws:{aged}:meta", "e", "E", "o", "2"]);
  for (const [offset, time] of [[1, now - 2 * LIMITS.ttl], [2, now]]) {
    await client.sendCommand([
      "XADD",
      "ws:{aged}:log",
      `${offset}-0`,
      "d",
      `m${offset}`,
      "k",
      "t",
      "t",
      String(time),
    ]);
  }
  const read = await store.read("aged", { limit: 3 }, LIMITS);
  assert.deepEqual(read.publications, [{ offset: 2, message: "m2" }]);
  const first = { offset: 1, epoch: "E" };
  // The first publication's successor is kept: nothing after it is lost.
  assert.equal(
    (await store.read("aged", { since: first }, LIMITS)).recovered,
    true,
  );
  assert.equal(
    (await store.read("aged", { since: { offset: 0, epoch: "E" } }, LIMITS))
      .recovered,
    false,
  );

  // End to end: a short ttl, and the entry goes; the position stays.
  const short = { ...LIMITS, ttl: 300 };
  const since = await store.read("short", {}, short);
  const top = await publish(store, "short", "soon gone", short);
  await waitFor(
    async () =>
      (await store.read("short", { limit: 3 }, short)).publications.length ===
        0,
    "the entry to age out",
    DEADLINE,
  );
  assert.equal(
    (await store.read("short", { since: since.position }, short)).recovered,
    false,
  );
  assert.deepEqual((await store.read("short", {}, short)).position, top);
  await waitFor(
    async () => (await client.exists("ws:{short}:log")) === 0,
    "the log key to expire",
    DEADLINE,
  );
});

Deno.test("redis history: the latest N, oldest first", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  for (const message of ["1", "2", "3"]) await publish(store, "a", message);
  assert.deepEqual(
    (await store.read("a", { limit: 2 }, LIMITS)).publications,
    [{ offset: 2, message: "2" }, { offset: 3, message: "3" }],
  );
  assert.deepEqual(
    (await store.read("a", { limit: 1 }, LIMITS)).publications,
    [{ offset: 3, message: "3" }],
  );
  for (const limit of [0, -1, undefined]) {
    assert.deepEqual(
      (await store.read("a", { limit }, LIMITS)).publications,
      [],
    );
  }
});

Deno.test("redis history: FLUSHALL changes the epoch: a read since the old position is not recovered", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  await publish(store, "a", "1");
  const old = await publish(store, "a", "2");
  await store.client.sendCommand(["FLUSHALL"]);
  const read = await store.read("a", { since: old }, LIMITS);
  assert.equal(read.recovered, false);
  assert.deepEqual(read.publications, []);
  assert.equal(read.position.offset, 0);
  assert.notEqual(read.position.epoch, old.epoch);
  // The next publication goes on in the epoch the read made.
  assert.deepEqual(await publish(store, "a", "3"), {
    offset: 1,
    epoch: read.position.epoch,
  });
  // The same after FLUSHALL with a publication first.
  await store.client.sendCommand(["FLUSHALL"]);
  const fresh = await publish(store, "a", "4");
  assert.equal(fresh.offset, 1);
  assert.notEqual(fresh.epoch, read.position.epoch);
});

Deno.test("redis history: after metaTtl without a publication, the meta key expires and the topic starts a new epoch from offset 1 without the old entries", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  // The log outlives the meta key: its entries must not join the new epoch,
  // whether a publication or a read comes first.
  const limits = { ...LIMITS, metaTtl: 200 };
  const old = new Map<string, StreamPosition>();
  for (const topic of ["published", "read"]) {
    await publish(store, topic, "old 1", limits);
    old.set(topic, await publish(store, topic, "old 2", limits));
  }
  await waitFor(
    async () =>
      (await store.client.exists(["ws:{published}:meta", "ws:{read}:meta"])) ===
        0,
    "the meta keys to expire",
    DEADLINE,
  );
  const longer = { ...limits, metaTtl: 60_000 };
  const read = await store.read("read", {}, longer);
  assert.equal(read.position.offset, 0);
  for (const topic of ["published", "read"]) {
    const fresh = await publish(store, topic, "new", longer);
    assert.equal(fresh.offset, 1);
    assert.notEqual(fresh.epoch, old.get(topic)!.epoch);
    const since = await store.read(topic, { since: old.get(topic) }, longer);
    assert.equal(since.recovered, false);
    assert.deepEqual(
      (await store.read(topic, { limit: 3 }, longer)).publications,
      [{ offset: 1, message: "new" }],
    );
  }
});

Deno.test("redis history: binary payloads round-trip byte for byte, in history and on the channel", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  await using subscriber = await listen(redis.url, "bytes");
  const every = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
  const invalidUtf8 = new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28]);
  const text = "héllo \u{1F600} \0 end";
  const envelope = Uint8Array.from({ length: 300 }, (_, i) => 255 - (i % 256));
  const limits = { ...LIMITS, size: 10 };
  for (const message of [every, invalidUtf8, text, new Uint8Array(0), ""]) {
    await store.publish("bytes", "ws:bytes", message, envelope, limits);
  }
  assert.deepEqual(
    (await store.read("bytes", { limit: 10 }, limits)).publications,
    [
      { offset: 1, message: every },
      { offset: 2, message: invalidUtf8 },
      { offset: 3, message: text },
      { offset: 4, message: new Uint8Array(0) },
      { offset: 5, message: "" },
    ],
  );
  await waitFor(
    () => subscriber.received.length === 5,
    "the 5 messages",
    DEADLINE,
  );
  for (const { envelope: received } of subscriber.received) {
    assert.deepEqual(received, envelope);
  }
});

Deno.test("redis history: offsets past 2^32 travel whole on the channel", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  await using subscriber = await listen(redis.url, "far");
  const big = 2 ** 40 + 5;
  await store.client.sendCommand([
    "HSET",
    "ws:{far}:meta",
    "e",
    "E",
    "o",
    String(big),
  ]);
  assert.deepEqual(await publish(store, "far", "x"), {
    offset: big + 1,
    epoch: "E",
  });
  await waitFor(
    () => subscriber.received.length === 1,
    "the message",
    DEADLINE,
  );
  assert.deepEqual(subscriber.received[0].position, {
    offset: big + 1,
    epoch: "E",
  });
  assert.deepEqual(
    (await store.read("far", { since: { offset: big, epoch: "E" } }, LIMITS))
      .publications,
    [{ offset: big + 1, message: "x" }],
  );
});

Deno.test("redis history: decodePositioned splits the layout and refuses what is not of it with a TypeError", () => {
  const epoch = encoder.encode("ep");
  const head = new Uint8Array([
    POSITIONED_MARKER,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    2,
    epoch.length,
  ]);
  const bytes = new Uint8Array([...head, ...epoch, 1, 2, 3]);
  assert.deepEqual(decodePositioned(bytes), {
    position: { offset: 2 ** 32 + 2, epoch: "ep" },
    envelope: new Uint8Array([1, 2, 3]),
  });
  const bad: [string, number[]][] = [
    ["a plain envelope", [ENVELOPE_VERSION, ...bytes.subarray(1)]],
    ["too short", [0x50, 0, 0, 0, 0, 0, 0, 0, 1]],
    ["offset 0", [0x50, 0, 0, 0, 0, 0, 0, 0, 0, 1, 65]],
    ["offset past 2^53 - 1", [0x50, 0, 0x20, 0, 0, 0, 0, 0, 1, 1, 65]],
    ["an empty epoch", [0x50, 0, 0, 0, 0, 0, 0, 0, 1, 0]],
    ["an overrunning epoch", [0x50, 0, 0, 0, 0, 0, 0, 0, 1, 5, 65]],
    ["an epoch that is not UTF-8", [0x50, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff]],
  ];
  for (const [what, input] of bad) {
    assert.throws(
      () => decodePositioned(new Uint8Array(input)),
      TypeError,
      what,
    );
  }
});

Deno.test("redis history: stream entries that are not ours are skipped and counted, and a read across them is not recovered", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const client = store.client;
  const limits = { ...LIMITS, size: 10 };
  const first = await publish(store, "a", "1", limits);
  await publish(store, "a", "2", limits);
  // An id that is not <offset>-0, between two of ours: no offset is missing.
  await client.sendCommand(["XADD", "ws:{a}:log", "2-1", "foo", "bar"]);
  await publish(store, "a", "3", limits);
  const across = await store.read("a", { since: first }, limits);
  assert.equal(across.recovered, true);
  assert.equal(across.malformed, 1);
  assert.deepEqual(across.publications.map((entry) => entry.offset), [2, 3]);
  // At offsets 4, 5 and 6, entries without our fields, of an unknown kind
  // and with text that is not UTF-8: each a publication missing.
  const foreign = [
    ["d", "x"],
    ["d", "x", "k", "z", "t", "1"],
    ["d", Buffer.from([0xff]), "k", "t", "t", "9999999999999"],
  ];
  for (const [i, fields] of foreign.entries()) {
    await client.sendCommand(["XADD", "ws:{a}:log", `${4 + i}-0`, ...fields]);
  }
  await client.sendCommand(["HSET", "ws:{a}:meta", "o", "6"]);
  await publish(store, "a", "7", limits);
  const latest = await store.read("a", { limit: 10 }, limits);
  assert.deepEqual(latest.publications.map((entry) => entry.message), [
    "1",
    "2",
    "3",
    "7",
  ]);
  assert.equal(latest.malformed, 4);
  const lost = await store.read("a", { since: first }, limits);
  assert.equal(lost.recovered, false);
  assert.deepEqual(lost.publications, []);
  assert.ok(lost.malformed >= 1);
  // The text that is not UTF-8 is the one the reader drops.
  const last = await store.read("a", {
    since: { offset: 5, epoch: first.epoch },
  }, limits);
  assert.deepEqual(
    [last.recovered, last.malformed, last.publications],
    [false, 1, []],
  );
});

Deno.test("redis history: a meta hash that is not ours makes publish and read reject with a clear error", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  await store.client.sendCommand(["HSET", "ws:{a}:meta", "e", "E", "o", "abc"]);
  const error =
    /The history meta hash ws:\{a\}:meta holds no valid epoch and offset/;
  await assert.rejects(publish(store, "a", "x"), error);
  await assert.rejects(store.read("a", {}, LIMITS), error);
  // Another topic is not disturbed.
  assert.equal((await publish(store, "b", "x")).offset, 1);
});

Deno.test("redis history: a publication that Redis refuses leaves the offset as it was", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  await using subscriber = await listen(redis.url, "a");
  const first = await publish(store, "a", "1");
  await store.client.sendCommand(["DEL", "ws:{a}:log"]);
  await store.client.sendCommand(["SET", "ws:{a}:log", "not a stream"]);
  await assert.rejects(publish(store, "a", "2"), /WRONGTYPE/);
  assert.deepEqual((await store.read("a", {}, LIMITS)).position, first);
  await store.client.sendCommand(["DEL", "ws:{a}:log"]);
  assert.equal((await publish(store, "a", "3")).offset, 2);
  await waitFor(
    () => subscriber.received.length === 2,
    "the 2 messages",
    DEADLINE,
  );
  assert.deepEqual(subscriber.received.map((m) => m.position.offset), [1, 2]);
});

Deno.test("redis history: limits and positions Redis cannot take are refused with a RangeError before anything is sent", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  for (
    const limits of [{ ...LIMITS, size: 0 }, { ...LIMITS, ttl: 1.5 }, {
      ...LIMITS,
      metaTtl: NaN,
    }]
  ) {
    await assert.rejects(publish(store, "a", "x", limits), RangeError);
    await assert.rejects(store.read("a", {}, limits), RangeError);
  }
  for (const offset of [-1, 0.5, NaN]) {
    await assert.rejects(
      store.read("a", { since: { offset, epoch: "E" } }, LIMITS),
      RangeError,
    );
  }
  assert.equal(await store.client.sendCommand(["DBSIZE"]), 0);
});

Deno.test("redis history: scripts Redis forgot (SCRIPT FLUSH) are sent again by EVAL, and loadScripts loads them for EVALSHA", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const calls = async (command: string) => {
    const info = String(
      await store.client.sendCommand(["INFO", "commandstats"]),
    );
    return Number(
      info.match(new RegExp(`cmdstat_${command}:calls=(\\d+)`))?.[1] ?? 0,
    );
  };
  await publish(store, "a", "1");
  assert.equal(await calls("eval"), 1);
  await store.client.sendCommand(["SCRIPT", "FLUSH"]);
  assert.equal((await publish(store, "a", "2")).offset, 2);
  assert.equal(await calls("eval"), 2);
  await store.client.sendCommand(["SCRIPT", "FLUSH"]);
  await store.loadScripts();
  assert.equal((await publish(store, "a", "3")).offset, 3);
  await store.read("a", {}, LIMITS);
  await store.presenceGet("a");
  assert.equal(await calls("eval"), 2);
});

Deno.test("redis presence: two nodes' entries sum, and their members join", async () => {
  await using redis = await RedisServer.start();
  await using a = await node(redis.url);
  await using b = await node(redis.url);
  assert.deepEqual(await a.presenceGet("room"), {
    count: 0,
    members: [],
    nodes: 0,
    malformed: 0,
  });
  await a.presenceUpdate("room", "node-a", 2, [
    { client: "c1", info: { name: "Ada" } },
    { client: "c2" },
  ], 15_000);
  await b.presenceUpdate(
    "room",
    "node-b",
    1,
    [{ client: "c3", info: "Bob" }],
    15_000,
  );
  const presence = await a.presenceGet("room");
  assert.equal(presence.count, 3);
  assert.equal(presence.nodes, 2);
  assert.deepEqual(
    presence.members.toSorted((x, y) => x.client.localeCompare(y.client)),
    [
      { client: "c1", info: { name: "Ada" } },
      { client: "c2" },
      { client: "c3", info: "Bob" },
    ],
  );
  // A node's update replaces its entry; removing it leaves the other's.
  await a.presenceUpdate("room", "node-a", 1, [{ client: "c1" }], 15_000);
  assert.equal((await b.presenceGet("room")).count, 2);
  await b.presenceRemove("room", "node-b");
  assert.deepEqual(await a.presenceGet("room"), {
    count: 1,
    members: [{ client: "c1" }],
    nodes: 1,
    malformed: 0,
  });
});

Deno.test("redis presence: a node that stops refreshing drops out after its TTL, and its field is deleted", async () => {
  await using redis = await RedisServer.start();
  await using a = await node(redis.url);
  await using b = await node(redis.url);
  await a.presenceUpdate("room", "node-a", 1, [{ client: "a1" }], 60_000);
  await b.presenceUpdate("room", "node-b", 4, [{ client: "b1" }], 300);
  assert.equal((await a.presenceGet("room")).count, 5);
  // The short TTL never shortens the key, which holds node-a's entry too.
  const ttl = Number(
    await a.client.sendCommand(["PTTL", "ws:{room}:presence"]),
  );
  assert.ok(ttl > 300, String(ttl));
  await waitFor(
    async () => (await a.presenceGet("room")).nodes === 1,
    "node-b to drop out",
    DEADLINE,
  );
  assert.deepEqual(await a.presenceGet("room"), {
    count: 1,
    members: [{ client: "a1" }],
    nodes: 1,
    malformed: 0,
  });
  assert.deepEqual(
    await a.client.sendCommand(["HKEYS", "ws:{room}:presence"]),
    ["node-a"],
  );
  // A node alone that stops refreshing leaves no key behind.
  await b.presenceUpdate("lone", "node-b", 1, [], 200);
  await waitFor(
    async () => (await b.client.exists("ws:{lone}:presence")) === 0,
    "the presence key to expire",
    DEADLINE,
  );
});

Deno.test("redis presence: entries that are not ours are skipped and counted; counts and members that are not JSON are refused", async () => {
  await using redis = await RedisServer.start();
  await using store = await node(redis.url);
  const key = "ws:{room}:presence";
  await store.presenceUpdate("room", "mine", 2, [{ client: "c1" }], 60_000);
  const later = "9999999999999";
  await store.client.sendCommand([
    "HSET",
    key,
    "not-json",
    `${later}:{nope`,
    "no-members",
    `${later}:{"count":1}`,
    "bad-member",
    `${later}:{"count":1,"members":[{"name":"x"}]}`,
    "no-expiry",
    `{"count":1,"members":[]}`,
  ]);
  assert.deepEqual(await store.presenceGet("room"), {
    count: 2,
    members: [{ client: "c1" }],
    nodes: 1,
    malformed: 3,
  });
  // What has no expiry could never be refreshed: it is deleted.
  assert.equal(
    await store.client.sendCommand(["HEXISTS", key, "no-expiry"]),
    0,
  );
  await assert.rejects(
    store.presenceUpdate("room", "n", -1, [], 1000),
    RangeError,
  );
  await assert.rejects(store.presenceUpdate("room", "n", 1, [], 0), RangeError);
  await assert.rejects(
    store.presenceUpdate("room", "n", 1, [{ client: "c", info: 1n }], 1000),
    TypeError,
  );
});
