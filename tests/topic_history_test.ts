/**
 * Topics that keep history, in the hub and without sockets: positions,
 * subscribing from a position (recovered or not, no gap and no duplicate
 * when publications race the subscription), the latest N, a publication
 * the bus lost read back from history or told as a gap, and presence. The
 * adapter here is an in-process stand-in that numbers publications as a
 * shared store would and can lose or delay them; tests/redis_live_test.ts
 * does the same over a real redis-server.
 */

import assert from "node:assert/strict";
import {
  type HistoryAdapter,
  type HistoryOptions,
  type PubSubAdapter,
  type PubSubDeliver,
  type StreamPosition,
  TopicHub,
} from "../mod.ts";
import {
  type HistoryLimits,
  MemoryHistory,
} from "../src/pubsub/_memory_history.ts";
import {
  type Recovery,
  type Subscriber,
  subscriptionsOf,
} from "../src/pubsub/topic_hub.ts";
import { Recorder } from "./_pubsub_helpers.ts";

const HISTORY: HistoryOptions = { size: 100, ttl: 60_000 };

/**
 * A shared history store in the process, as Redis would be for several
 * nodes: it numbers each publication and hands it to every node that
 * subscribed, in the order of the numbers. A test may hold deliveries back
 * (`paused`), lose the next one (`lose`), or hold its reads until released.
 */
class SharedStore {
  history = new MemoryHistory();
  nodes: { topics: Set<string>; deliver: PubSubDeliver }[] = [];
  paused = false;
  lose = 0;
  held: (() => void)[] = [];
  readsHeld = false;
  #reads: (() => void)[] = [];

  adapter(): PubSubAdapter {
    const node = {
      topics: new Set<string>(),
      deliver: (() => {}) as PubSubDeliver,
    };
    this.nodes.push(node);
    const history: HistoryAdapter = {
      publish: (topic, message, limits, tag) => {
        const position = this.history.append(topic, message, limits);
        this.#fanOut(topic, message, position, node, tag);
        return Promise.resolve(position);
      },
      read: async (topic, query, limits) => {
        if (this.readsHeld) {
          await new Promise<void>((resolve) => this.#reads.push(resolve));
        }
        return this.history.read(topic, query, limits as HistoryLimits);
      },
    };
    return {
      open: (deliver) => void (node.deliver = deliver),
      subscribe: (topic) => {
        node.topics.add(topic);
        return Promise.resolve();
      },
      unsubscribe: (topic) => void node.topics.delete(topic),
      publish: () => {},
      close: () => Promise.resolve(),
      history,
    };
  }

  /** Lets the held reads go on. */
  releaseReads(): void {
    this.readsHeld = false;
    for (const release of this.#reads.splice(0)) release();
  }

  /** Delivers what was held back, in order. */
  resume(): void {
    this.paused = false;
    for (const deliver of this.held.splice(0)) deliver();
  }

  #fanOut(
    topic: string,
    message: string | Uint8Array,
    position: StreamPosition,
    from: { deliver: PubSubDeliver },
    tag: unknown,
  ): void {
    if (this.lose > 0) {
      this.lose--;
      return;
    }
    for (const node of this.nodes) {
      if (!node.topics.has(topic)) continue;
      const deliver = () =>
        node.deliver(topic, message, position, node === from ? tag : undefined);
      if (this.paused) this.held.push(deliver);
      else deliver();
    }
  }
}

/** Subscribes from a position; resolves with what `ready` was told. */
async function subscribeFrom(
  hub: TopicHub,
  subscriber: Subscriber,
  topic: string,
  query: { since?: StreamPosition; limit?: number },
): Promise<Recovery> {
  let told: Recovery | undefined;
  await subscriptionsOf(hub).subscribeFrom(subscriber, topic, query, (r) => {
    // Told before anything is offered.
    assert.equal((subscriber as Recorder).offered.length, 0);
    told = r;
  });
  assert.ok(told, "ready was told");
  return told;
}

/** Lets the hub's promise chains run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

// --- Positions ---------------------------------------------------------------

Deno.test("topic history: each publication to a topic with history gets the next offset, in one epoch", () => {
  const hub = new TopicHub({ history: HISTORY });
  const subscriber = new Recorder();
  subscriptionsOf(hub).subscribe(subscriber, "room");
  hub.publish("room", "a");
  hub.publish("room", "b");
  assert.deepEqual(subscriber.offsets, [1, 2]);
  assert.equal(
    subscriber.offered[0].position!.epoch,
    subscriber.offered[1].position!.epoch,
  );
  assert.equal(subscriber.offered[0].topic, "room");
});

Deno.test("topic history: a topic the rule leaves out has no positions and no history", async () => {
  const hub = new TopicHub({
    history: (topic) => topic.startsWith("room/") ? HISTORY : undefined,
  });
  const subscriber = new Recorder();
  subscriptionsOf(hub).subscribe(subscriber, "news");
  hub.publish("news", "a");
  assert.equal(subscriber.offered[0].position, undefined);
  await assert.rejects(hub.history("news"), TypeError);
  hub.publish("room/1", "x");
  assert.equal((await hub.history("room/1")).position.offset, 1);
});

Deno.test("topic history: bad history options are refused when the hub is made, naming what is wrong", () => {
  assert.throws(
    () => new TopicHub({ history: { size: 0, ttl: 1000 } }),
    /size/,
  );
  assert.throws(() => new TopicHub({ history: { size: 10, ttl: -1 } }), /ttl/);
  assert.throws(
    () => new TopicHub({ history: { size: 10, ttl: 1000, metaTtl: 10 } }),
    /metaTtl/,
  );
});

Deno.test("topic history: an adapter that keeps no history is refused with history on", () => {
  const adapter: PubSubAdapter = {
    open() {},
    subscribe() {},
    unsubscribe() {},
    publish() {},
    close: () => Promise.resolve(),
  };
  assert.throws(
    () => new TopicHub({ pubsub: adapter, history: HISTORY }),
    /History needs an adapter that keeps it/,
  );
});

Deno.test("topic history: hub.history gives the latest N and what came after a position", async () => {
  const hub = new TopicHub({ history: HISTORY });
  for (const message of ["1", "2", "3", "4"]) hub.publish("t", message);
  const latest = await hub.history("t", { limit: 2 });
  assert.deepEqual(latest.publications.map((p) => p.message), ["3", "4"]);
  const since = await hub.history("t", {
    since: { offset: 2, epoch: latest.position.epoch },
  });
  assert.equal(since.recovered, true);
  assert.deepEqual(since.publications.map((p) => p.offset), [3, 4]);
});

// --- Subscribing from a position ------------------------------------------------

Deno.test("topic history: subscribing since a position offers what came after it, then the live publications", async () => {
  const hub = new TopicHub({ history: HISTORY });
  hub.publish("room", "1");
  const { position } = await hub.history("room");
  hub.publish("room", "2");
  hub.publish("room", "3");
  const subscriber = new Recorder();
  const told = await subscribeFrom(hub, subscriber, "room", {
    since: position,
  });
  assert.equal(told.recovered, true);
  assert.equal(told.position!.offset, 3);
  hub.publish("room", "4");
  assert.deepEqual(subscriber.messages, ["2", "3", "4"]);
  assert.deepEqual(subscriber.offsets, [2, 3, 4]);
});

Deno.test("topic history: a position of another epoch is not recovered, and nothing old is offered", async () => {
  const hub = new TopicHub({ history: HISTORY });
  hub.publish("room", "1");
  const subscriber = new Recorder();
  const told = await subscribeFrom(hub, subscriber, "room", {
    since: { offset: 1, epoch: "another" },
  });
  assert.equal(told.recovered, false);
  assert.equal(told.position!.offset, 1);
  hub.publish("room", "2");
  assert.deepEqual(subscriber.messages, ["2"]);
});

Deno.test("topic history: a position older than the history reaches is not recovered", async () => {
  const hub = new TopicHub({ history: { size: 2, ttl: 60_000 } });
  hub.publish("room", "1");
  const first = (await hub.history("room")).position;
  for (const message of ["2", "3", "4"]) hub.publish("room", message);
  const subscriber = new Recorder();
  const told = await subscribeFrom(hub, subscriber, "room", { since: first });
  assert.equal(told.recovered, false);
  assert.deepEqual(subscriber.messages, []);
});

Deno.test("topic history: subscribing for the latest publication offers it first (a ticker's last price)", async () => {
  const hub = new TopicHub({ history: { size: 1, ttl: 60_000 } });
  hub.publish("prices/EURUSD", "1.0910");
  hub.publish("prices/EURUSD", "1.0912");
  const subscriber = new Recorder();
  const told = await subscribeFrom(hub, subscriber, "prices/EURUSD", {
    limit: 1,
  });
  assert.equal(told.recovered, false);
  assert.deepEqual(subscriber.messages, ["1.0912"]);
});

Deno.test("topic history: subscribing to a topic without history tells not recovered and no position", async () => {
  const hub = new TopicHub();
  const subscriber = new Recorder();
  const told = await subscribeFrom(hub, subscriber, "news", {
    since: { offset: 3, epoch: "x" },
  });
  assert.deepEqual(told, { recovered: false, position: undefined });
  hub.publish("news", "a");
  assert.deepEqual(subscriber.messages, ["a"]);
});

Deno.test("topic history: a subscriber's own publication (socket.publish) skips it on a topic with history too", () => {
  const hub = new TopicHub({ history: HISTORY });
  const [a, b] = [new Recorder(), new Recorder()];
  subscriptionsOf(hub).subscribe(a, "t");
  subscriptionsOf(hub).subscribe(b, "t");
  assert.equal(subscriptionsOf(hub).publish("t", "x", a), 1);
  assert.deepEqual(a.messages, []);
  assert.deepEqual(b.messages, ["x"]);
});

Deno.test("topic history: a binary publication is kept as it was, whatever the publisher does with its array", async () => {
  const hub = new TopicHub({ history: HISTORY });
  const bytes = new Uint8Array([1, 2, 3]);
  hub.publish("t", bytes);
  bytes[0] = 9;
  const { publications } = await hub.history("t", { limit: 1 });
  assert.deepEqual(publications[0].message, new Uint8Array([1, 2, 3]));
});

// --- An adapter that keeps history: order, races, losses ------------------------------

/**
 * A hub on a fresh shared store with `history`, one subscriber to "t", and
 * what the hub reports.
 */
function watchedHub(history: HistoryOptions) {
  const store = new SharedStore();
  const reports: unknown[] = [];
  const hub = new TopicHub({
    pubsub: store.adapter(),
    history,
    onError: (error) => reports.push(error),
  });
  const subscriber = new Recorder();
  subscriptionsOf(hub).subscribe(subscriber, "t");
  return { store, hub, subscriber, reports };
}

Deno.test("topic history (shared store): publications come back from the store in its order, the publisher's own too", async () => {
  const store = new SharedStore();
  const [a, b] = [
    new TopicHub({ pubsub: store.adapter(), history: HISTORY }),
    new TopicHub({ pubsub: store.adapter(), history: HISTORY }),
  ];
  const [onA, onB] = [new Recorder(), new Recorder()];
  subscriptionsOf(a).subscribe(onA, "t");
  subscriptionsOf(b).subscribe(onB, "t");
  a.publish("t", "a1");
  b.publish("t", "b1");
  a.publish("t", "a2");
  await settle();
  assert.deepEqual(onA.messages, ["a1", "b1", "a2"]);
  assert.deepEqual(onB.messages, ["a1", "b1", "a2"]);
  assert.deepEqual(onA.offsets, [1, 2, 3]);
});

Deno.test("topic history (shared store): publications racing a subscription from a position arrive once each, in order, none missing", async () => {
  const store = new SharedStore();
  const hub = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const other = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const watcher = new Recorder();
  subscriptionsOf(other).subscribe(watcher, "t");
  other.publish("t", "1");
  other.publish("t", "2");
  const since = watcher.offered[0].position!;
  // The history read waits; meanwhile more is published and delivered live.
  store.readsHeld = true;
  const subscriber = new Recorder();
  const recovering = subscribeFrom(hub, subscriber, "t", { since });
  await settle();
  other.publish("t", "3");
  other.publish("t", "4");
  await settle();
  assert.deepEqual(subscriber.messages, [], "held until the history is read");
  store.releaseReads();
  const told = await recovering;
  assert.equal(told.recovered, true);
  other.publish("t", "5");
  await settle();
  assert.deepEqual(subscriber.messages, ["2", "3", "4", "5"]);
  assert.deepEqual(subscriber.offsets, [2, 3, 4, 5]);
});

Deno.test("topic history (shared store): a publication the history read gave a subscriber before the bus brought it here is not offered to it again", async () => {
  const store = new SharedStore();
  const hub = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const other = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const watcher = new Recorder();
  subscriptionsOf(hub).subscribe(watcher, "t");
  other.publish("t", "1");
  await settle();
  const since = watcher.offered[0].position!;
  // The store is ahead of the bus: 2 and 3 are in history, not here yet.
  store.paused = true;
  other.publish("t", "2");
  other.publish("t", "3");
  const recovering = new Recorder();
  assert.equal(
    (await subscribeFrom(hub, recovering, "t", { since })).recovered,
    true,
  );
  const latest = new Recorder();
  await subscribeFrom(hub, latest, "t", { limit: 1 });
  assert.deepEqual(recovering.offsets, [2, 3]);
  assert.deepEqual(latest.offsets, [3]);
  store.resume();
  other.publish("t", "4");
  await settle();
  assert.deepEqual(watcher.offsets, [1, 2, 3, 4]);
  assert.deepEqual(recovering.offsets, [2, 3, 4]);
  assert.deepEqual(latest.offsets, [3, 4]);
});

Deno.test("topic history (shared store): a publication the bus lost is read back from history before what follows it", async () => {
  const { store, hub, subscriber, reports } = watchedHub(HISTORY);
  hub.publish("t", "1");
  store.lose = 1;
  hub.publish("t", "2");
  hub.publish("t", "3");
  hub.publish("t", "4");
  await settle();
  await settle();
  assert.deepEqual(subscriber.messages, ["1", "2", "3", "4"]);
  assert.deepEqual(subscriber.gaps, []);
  assert.deepEqual(reports, []);
});

Deno.test("topic history (shared store): a loss that history no longer holds is told to the subscribers as a gap and reported", async () => {
  const { store, hub, subscriber, reports } = watchedHub({
    size: 1,
    ttl: 60_000,
  });
  hub.publish("t", "1");
  store.lose = 2;
  hub.publish("t", "2");
  hub.publish("t", "3");
  hub.publish("t", "4");
  await settle();
  await settle();
  assert.deepEqual(subscriber.messages, ["1", "4"]);
  assert.deepEqual(subscriber.gaps.map((p) => p.offset), [4]);
  assert.equal(reports.length, 1);
  assert.match(
    String(reports[0]),
    /Publications 2 to 3 of topic "t" were lost/,
  );
});

Deno.test("topic history (shared store): a new epoch (the store's history lost) is told as a gap", async () => {
  const { store, hub, subscriber, reports } = watchedHub(HISTORY);
  hub.publish("t", "1");
  await settle();
  store.history = new MemoryHistory();
  hub.publish("t", "2");
  await settle();
  assert.deepEqual(subscriber.messages, ["1", "2"]);
  assert.equal(subscriber.gaps.length, 1);
  assert.match(String(reports[0]), /started again/);
});

Deno.test("topic history (shared store): the publisher's socket is left out of its own publication when it comes back", async () => {
  const store = new SharedStore();
  const hub = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const [a, b] = [new Recorder(), new Recorder()];
  subscriptionsOf(hub).subscribe(a, "t");
  subscriptionsOf(hub).subscribe(b, "t");
  subscriptionsOf(hub).publish("t", "from a", a);
  await settle();
  assert.deepEqual(a.messages, []);
  assert.deepEqual(b.messages, ["from a"]);
});

Deno.test("topic history (shared store): a subscriber that leaves while its history is read is offered nothing", async () => {
  const store = new SharedStore();
  const hub = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  hub.publish("t", "1");
  store.readsHeld = true;
  const subscriber = new Recorder();
  let told = false;
  const done = subscriptionsOf(hub).subscribeFrom(
    subscriber,
    "t",
    { limit: 1 },
    () => told = true,
  );
  subscriptionsOf(hub).unsubscribe(subscriber, "t");
  store.releaseReads();
  await done;
  assert.equal(told, false);
  assert.deepEqual(subscriber.messages, []);
});

// --- Presence ------------------------------------------------------------------

Deno.test("topic presence: without an adapter it is this hub's subscribers and their members", async () => {
  const hub = new TopicHub();
  subscriptionsOf(hub).subscribe(
    new Recorder({ client: "c1", info: { name: "Ada" } }),
    "room",
  );
  subscriptionsOf(hub).subscribe(new Recorder(), "room");
  assert.deepEqual(await hub.presence("room"), {
    count: 2,
    members: [{ client: "c1", info: { name: "Ada" } }],
  });
  assert.deepEqual(await hub.presence("empty"), { count: 0, members: [] });
});

Deno.test("topic history: subscribers recovering the same publications are offered one shared message each, the one live subscribers got", async () => {
  const hub = new TopicHub({ history: HISTORY });
  const live = new Recorder();
  subscriptionsOf(hub).subscribe(live, "t");
  hub.publish("t", "1");
  hub.publish("t", "2");
  const since = { offset: 0, epoch: live.offered[0].position!.epoch };
  const [a, b] = [new Recorder(), new Recorder()];
  await subscribeFrom(hub, a, "t", { since });
  await subscribeFrom(hub, b, "t", { since });
  assert.deepEqual(a.messages, ["1", "2"]);
  assert.equal(a.offered[0], live.offered[0]);
  assert.equal(b.offered[1], live.offered[1]);
});

Deno.test("topic history (shared store): subscribers recovering at once share one history read and its shared messages", async () => {
  const store = new SharedStore();
  const hub = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  const other = new TopicHub({ pubsub: store.adapter(), history: HISTORY });
  for (const message of ["1", "2", "3"]) other.publish("t", message);
  const { position } = await other.history("t");
  let reads = 0;
  const read = store.history.read.bind(store.history);
  store.history.read = (...args) => {
    reads++;
    return read(...args);
  };
  const since = { offset: 1, epoch: position.epoch };
  const subscribers = [new Recorder(), new Recorder(), new Recorder()];
  await Promise.all(
    subscribers.map((subscriber) =>
      subscribeFrom(hub, subscriber, "t", { since })
    ),
  );
  assert.equal(reads, 1);
  for (const subscriber of subscribers) {
    assert.deepEqual(subscriber.messages, ["2", "3"]);
    assert.equal(subscriber.offered[0], subscribers[0].offered[0]);
  }
});
