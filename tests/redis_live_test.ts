/**
 * Topics with history and presence over a real redis-server (started by
 * each test on a free port of 127.0.0.1, stopped after it): two hubs, as
 * two nodes, share the offsets Redis gives; each delivers in their order,
 * its own publications too; a subscription from a position racing another
 * node's publications gets each once; a flushed history is a new epoch; a
 * PUB/SUB message Redis never delivered is read back from the stream; and
 * presence sums the nodes, a killed one dropping out within `presenceTtl`.
 */

import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { type HistoryOptions, TopicHub } from "../mod.ts";
import { RedisPubSub } from "../redis.ts";
import { RedisHistory } from "../src/pubsub/_redis_history.ts";
import { subscriptionsOf } from "../src/pubsub/topic_hub.ts";
import {
  DEADLINE,
  Recorder,
  RedisNode,
  RedisServer,
} from "./_pubsub_helpers.ts";
import { waitFor as poll } from "./_util.ts";

/** Waits with the Redis tests' deadline. */
const waitFor = (check: () => boolean | Promise<boolean>, what: string) =>
  poll(check, what, DEADLINE);
import { closeAll, openClients } from "./_ws_client.ts";

const HISTORY: HistoryOptions = { size: 1000, ttl: 60_000 };
const PREFIX = "live:";

/** A hub over its own `RedisPubSub`, closed with the test. */
async function node(
  url: string,
  options: { presence?: boolean; presenceTtl?: number; errors?: unknown[] } =
    {},
) {
  const pubsub = new RedisPubSub({
    url,
    prefix: PREFIX,
    presenceTtl: options.presenceTtl,
    onError: (error) => options.errors?.push(error),
  });
  await pubsub.ready;
  const hub = new TopicHub({
    pubsub,
    history: HISTORY,
    presence: options.presence,
    onError: (error) => options.errors?.push(error),
  });
  return Object.assign(hub, { [Symbol.asyncDispose]: () => hub.close() });
}

/** Subscribes a recorder and waits until Redis has its subscription. */
async function subscribed(hub: TopicHub, topic: string): Promise<Recorder> {
  const recorder = new Recorder();
  await subscriptionsOf(hub).subscribeFrom(recorder, topic, {}, () => {});
  return recorder;
}

Deno.test("redis history: two nodes publishing at once get offsets 1 to N once each, and both deliver in that order, their own too", async () => {
  await using redis = await RedisServer.start();
  await using a = await node(redis.url);
  await using b = await node(redis.url);
  const [onA, onB] = [await subscribed(a, "t"), await subscribed(b, "t")];
  for (let i = 0; i < 200; i++) {
    a.publish("t", `a${i}`);
    b.publish("t", `b${i}`);
  }
  await waitFor(
    () => onA.offered.length === 400 && onB.offered.length === 400,
    "400 publications on each node",
  );
  const offsets = Array.from({ length: 400 }, (_, i) => i + 1);
  assert.deepEqual(onA.offsets, offsets);
  assert.deepEqual(onB.offsets, offsets);
  assert.deepEqual(onA.messages, onB.messages);
  // Each node's own publications keep their order among the others.
  const own = onA.messages.filter((m) => String(m).startsWith("a"));
  assert.deepEqual(own, Array.from({ length: 200 }, (_, i) => `a${i}`));
});

Deno.test("redis history: a subscription from a position racing another node's publications gets each publication once, in order", async () => {
  await using redis = await RedisServer.start();
  await using publisher = await node(redis.url);
  await using subscriber = await node(redis.url);
  for (let i = 1; i <= 50; i++) publisher.publish("t", String(i));
  await waitFor(
    async () => (await publisher.history("t")).position.offset === 50,
    "50 publications in history",
  );
  const since = { ...(await publisher.history("t")).position, offset: 20 };
  // Publications keep coming while the subscription reads history.
  let next = 51;
  const timer = setInterval(() => publisher.publish("t", String(next++)), 1);
  const recorder = new Recorder();
  let recovered: boolean | undefined;
  try {
    await new Promise((resolve) => setTimeout(resolve, 20));
    await subscriptionsOf(subscriber).subscribeFrom(
      recorder,
      "t",
      { since },
      (recovery) => recovered = recovery.recovered,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    clearInterval(timer);
  }
  const last = next - 1;
  await waitFor(
    () => recorder.offsets.at(-1) === last,
    `publication ${last} on the subscriber`,
  );
  assert.equal(recovered, true);
  assert.deepEqual(
    recorder.offsets,
    Array.from({ length: last - 20 }, (_, i) => i + 21),
  );
  assert.deepEqual(recorder.messages.map(Number), recorder.offsets);
});

Deno.test("redis history: FLUSHALL starts a new epoch: an old position is not recovered and live subscribers are told of the gap", async () => {
  await using redis = await RedisServer.start();
  const errors: unknown[] = [];
  await using hub = await node(redis.url, { errors });
  const live = await subscribed(hub, "t");
  hub.publish("t", "1");
  hub.publish("t", "2");
  await waitFor(() => live.offered.length === 2, "two publications");
  const old = live.offered[1].position!;
  const client = createClient({ url: redis.url });
  await client.connect();
  try {
    await client.flushAll();
  } finally {
    await client.close();
  }
  hub.publish("t", "3");
  await waitFor(() => live.offered.length === 3, "the third publication");
  assert.notEqual(live.offered[2].position!.epoch, old.epoch);
  assert.equal(live.offered[2].position!.offset, 1);
  assert.equal(live.gaps.length, 1);
  assert.ok(errors.some((error) => /started again/.test(String(error))));
  const late = new Recorder();
  let recovered: boolean | undefined;
  await subscriptionsOf(hub).subscribeFrom(late, "t", { since: old }, (r) => {
    recovered = r.recovered;
  });
  assert.equal(recovered, false);
  assert.deepEqual(late.messages, []);
});

Deno.test("redis history: a publication whose PUB/SUB message never came is read back from the stream before the next", async () => {
  await using redis = await RedisServer.start();
  const errors: unknown[] = [];
  await using hub = await node(redis.url, { errors });
  const live = await subscribed(hub, "t");
  hub.publish("t", "1");
  await waitFor(() => live.offered.length === 1, "the first publication");
  // The same script, published to a channel nobody listens to: in the
  // stream, never delivered, as a PUB/SUB message lost on the way.
  const client = createClient({ url: redis.url });
  await client.connect();
  try {
    const store = new RedisHistory(client, PREFIX);
    const limits = { ...HISTORY, metaTtl: 86_400_000 };
    await store.publish("t", "nowhere", "2", new Uint8Array([1]), limits);
  } finally {
    await client.close();
  }
  hub.publish("t", "3");
  await waitFor(() => live.offered.length === 3, "three publications");
  assert.deepEqual(live.messages, ["1", "2", "3"]);
  assert.deepEqual(live.offsets, [1, 2, 3]);
  assert.deepEqual(live.gaps, []);
  assert.deepEqual(errors, []);
});

Deno.test("redis presence: the count and members sum the nodes, and a killed node drops out within presenceTtl", async () => {
  await using redis = await RedisServer.start();
  const presenceTtl = 900;
  await using hub = await node(redis.url, { presence: true, presenceTtl });
  const member = new Recorder({ client: "c1", info: { name: "Ada" } });
  subscriptionsOf(hub).subscribe(member, "room");
  const other = await RedisNode.start(redis.url, PREFIX, {
    presence: true,
    presenceTtl,
  });
  try {
    const clients = await openClients(other.url("/sub?topic=room"), 2);
    await waitFor(
      async () => (await hub.presence("room")).count === 3,
      "3 subscribers over both nodes",
    );
    assert.deepEqual((await hub.presence("room")).members, [member.member]);
    const killed = performance.now();
    await other.kill();
    await waitFor(
      async () => (await hub.presence("room")).count === 1,
      "the killed node's 2 to drop out",
    );
    const after = performance.now() - killed;
    assert.ok(after < presenceTtl + 2000, `dropped out after ${after} ms`);
    await closeAll(clients);
  } finally {
    await other.stop();
  }
});
