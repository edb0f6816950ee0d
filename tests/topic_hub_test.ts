/**
 * The topic hub without sockets: fake subscribers (the hub knows nothing
 * else of a socket), a fake adapter, and the shared message every
 * subscriber of a publication gets, framed once (RFC 6455 §5.1: a server's
 * frames are not masked) and compressed once per window and level
 * (RFC 7692 §7.1.1.1: from an empty window).
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import { type PubSubAdapter, TopicHub } from "../mod.ts";
import type { SharedMessage } from "../src/pubsub/_shared_message.ts";
import { type Subscriber, subscriptionsOf } from "../src/pubsub/topic_hub.ts";
import { assertBytesEqual, pseudoBytes, pseudoText } from "./_util.ts";
import { frame } from "./_wire.ts";

/** A subscriber that keeps what it is offered, and takes it or not. */
class FakeSubscriber implements Subscriber {
  offered: SharedMessage[] = [];
  takes: boolean;

  constructor(takes = true) {
    this.takes = takes;
  }

  offer(shared: SharedMessage): boolean {
    this.offered.push(shared);
    return this.takes;
  }
}

/** An adapter that records what the hub tells it. */
function fakeAdapter() {
  const calls: string[] = [];
  let deliver: ((topic: string, message: string | Uint8Array) => void) | null =
    null;
  const adapter: PubSubAdapter = {
    open(handler) {
      deliver = handler;
    },
    subscribe: (topic) => void calls.push(`subscribe ${topic}`),
    unsubscribe: (topic) => void calls.push(`unsubscribe ${topic}`),
    publish: (topic, message) =>
      void calls.push(`publish ${topic} ${String(message)}`),
    close: () => Promise.resolve(),
  };
  return {
    adapter,
    calls,
    /** A message from another node. */
    deliver: (topic: string, message: string | Uint8Array) =>
      deliver!(topic, message),
  };
}

/** A server's frame (unmasked, FIN), as the wire format of _wire.ts has it. */
function serverFrame(opcode: number, payload: Uint8Array, rsv1 = false) {
  return frame(opcode, payload, { mask: false, rsv: rsv1 ? 4 : 0 });
}

// --- Subscriptions --------------------------------------------------------------

Deno.test("topic hub: subscribing twice is once, and the counts, topics and return values follow each subscriber", () => {
  const hub = new TopicHub();
  const subscriptions = subscriptionsOf(hub);
  const [a, b] = [new FakeSubscriber(), new FakeSubscriber()];
  assert.equal(subscriptions.subscribe(a, "news"), true);
  assert.equal(subscriptions.subscribe(a, "news"), false, "twice is once");
  assert.equal(subscriptions.subscribe(b, "news"), true);
  assert.equal(subscriptions.subscribe(b, "sport"), true);
  assert.equal(hub.subscriberCount("news"), 2);
  assert.equal(hub.subscriberCount("sport"), 1);
  assert.equal(hub.subscriberCount("nothing"), 0);
  assert.deepEqual(hub.topics(), ["news", "sport"]);
  assert.equal(subscriptions.unsubscribe(a, "sport"), false, "never was");
  assert.equal(subscriptions.unsubscribe(a, "news"), true);
  assert.equal(subscriptions.unsubscribe(a, "news"), false);
  assert.equal(subscriptions.unsubscribe(b, "sport"), true);
  // A topic without subscribers is gone; its place in the order too.
  assert.deepEqual(hub.topics(), ["news"]);
  subscriptions.subscribe(a, "sport");
  assert.deepEqual(hub.topics(), ["news", "sport"]);
});

Deno.test("topic hub: a topic is an exact string: no prefix, wildcard or case matching", () => {
  const hub = new TopicHub();
  const subscriber = new FakeSubscriber();
  subscriptionsOf(hub).subscribe(subscriber, "room/a");
  for (const topic of ["room/", "room/*", "Room/a", "room/a ", "room/ab"]) {
    assert.equal(hub.publish(topic, "x"), 0, topic);
  }
  assert.equal(hub.publish("room/a", "x"), 1);
  assert.equal(subscriber.offered.length, 1);
});

// --- Publishing -------------------------------------------------------------------

Deno.test("topic hub: a publication is offered once to each subscriber of its topic, all of them the same shared message", () => {
  const hub = new TopicHub();
  const subscribers = Array.from({ length: 10 }, () => new FakeSubscriber());
  for (const subscriber of subscribers) {
    subscriptionsOf(hub).subscribe(subscriber, "t");
  }
  const other = new FakeSubscriber();
  subscriptionsOf(hub).subscribe(other, "elsewhere");
  assert.equal(hub.publish("t", "hello"), 10);
  assert.equal(hub.publish("t", new Uint8Array([1, 2, 3])), 10);
  for (const subscriber of subscribers) {
    assert.equal(subscriber.offered.length, 2);
    assert.equal(subscriber.offered[0], subscribers[0].offered[0]);
    assert.equal(subscriber.offered[1], subscribers[0].offered[1]);
  }
  assert.notEqual(subscribers[0].offered[0], subscribers[0].offered[1]);
  assert.equal(other.offered.length, 0);
});

Deno.test("topic hub: a subscriber that does not take a publication (closing, or its policy dropped it) is not counted as reached", () => {
  const hub = new TopicHub();
  const takes = new FakeSubscriber(true);
  const refuses = new FakeSubscriber(false);
  subscriptionsOf(hub).subscribe(takes, "t");
  subscriptionsOf(hub).subscribe(refuses, "t");
  assert.equal(hub.publish("t", "x"), 1);
  assert.equal(refuses.offered.length, 1, "it was offered");
});

Deno.test("topic hub: a publication from a subscriber (socket.publish) skips that subscriber", () => {
  const hub = new TopicHub();
  const subscriptions = subscriptionsOf(hub);
  const [a, b, c] = [1, 2, 3].map(() => new FakeSubscriber());
  for (const subscriber of [a, b, c]) subscriptions.subscribe(subscriber, "t");
  assert.equal(subscriptions.publish("t", "from b", b), 2);
  assert.deepEqual(
    [a, b, c].map((subscriber) => subscriber.offered.length),
    [1, 0, 1],
  );
});

Deno.test("topic hub: a binary publication is copied once, so that the publisher may reuse its array at once", () => {
  const hub = new TopicHub();
  const [a, b] = [new FakeSubscriber(), new FakeSubscriber()];
  subscriptionsOf(hub).subscribe(a, "t");
  subscriptionsOf(hub).subscribe(b, "t");
  const bytes = new Uint8Array([1, 2, 3]);
  hub.publish("t", bytes);
  bytes.fill(9);
  const shared = a.offered[0];
  assert.notEqual(shared.message, bytes);
  assert.deepEqual([...shared.payload], [1, 2, 3]);
  assert.equal(b.offered[0].payload, shared.payload, "one copy for all");
});

Deno.test("topic hub: a topic that is not a string, or a message that is neither a string nor a Uint8Array, is a TypeError", () => {
  const hub = new TopicHub();
  subscriptionsOf(hub).subscribe(new FakeSubscriber(), "t");
  assert.throws(() => hub.publish(1 as unknown as string, "x"), TypeError);
  for (const message of [new ArrayBuffer(2), [1], 7, null]) {
    assert.throws(
      () => hub.publish("t", message as unknown as string),
      TypeError,
    );
  }
});

// --- The shared message: framed once ----------------------------------------------

Deno.test("topic hub: the shared message is one unmasked frame for every subscriber, made once, at each length boundary", () => {
  for (const length of [0, 125, 126, 65535, 65536]) {
    const hub = new TopicHub();
    const subscribers = [1, 2, 3].map(() => new FakeSubscriber());
    for (const subscriber of subscribers) {
      subscriptionsOf(hub).subscribe(subscriber, "t");
    }
    const text = "é".repeat(length >> 1) + "x".repeat(length & 1);
    const binary = pseudoBytes(length, length);
    hub.publish("t", text);
    hub.publish("t", binary);
    const [sharedText, sharedBinary] = subscribers[0].offered;
    // Every subscriber that asks gets the same bytes, not a copy.
    const frames = subscribers.map((subscriber) => subscriber.offered[0].frame);
    assert.ok(frames.every((frame) => frame === frames[0]), `${length}`);
    assert.equal(sharedText.frame, sharedText.frame);
    assertBytesEqual(
      sharedText.frame,
      serverFrame(1, new TextEncoder().encode(text)),
      `text of ${length} bytes`,
    );
    assertBytesEqual(
      sharedBinary.frame,
      serverFrame(2, binary),
      `binary of ${length} bytes`,
    );
  }
});

Deno.test("topic hub: the shared message is compressed once per window and level, from an empty window, with RSV1", () => {
  const hub = new TopicHub();
  const subscriber = new FakeSubscriber();
  subscriptionsOf(hub).subscribe(subscriber, "t");
  const text = pseudoText(20_000, 5);
  hub.publish("t", text);
  const shared = subscriber.offered[0];
  const compressed = (windowBits: number, level: number) => {
    const deflated = zlib.deflateRawSync(new TextEncoder().encode(text), {
      windowBits,
      level,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    return serverFrame(1, deflated.subarray(0, deflated.length - 4), true);
  };
  for (const [windowBits, level] of [[15, 1], [15, 9], [9, 1], [15, -1]]) {
    const frame = shared.compressedFrame(windowBits, level);
    assert.equal(shared.compressedFrame(windowBits, level), frame, "made once");
    assertBytesEqual(
      frame,
      compressed(windowBits, level),
      `window ${windowBits}, level ${level}`,
    );
  }
  // Each setting has its own frame: levels 1 and 9 differ here.
  assert.notEqual(shared.compressedFrame(15, 1), shared.compressedFrame(15, 9));
  assert.notDeepEqual(
    shared.compressedFrame(15, 1),
    shared.compressedFrame(15, 9),
  );
});

// --- The adapter: other nodes -------------------------------------------------------

Deno.test("topic hub: the adapter hears a topic's first local subscriber and its last, and every local publication", () => {
  const { adapter, calls } = fakeAdapter();
  const hub = new TopicHub({ pubsub: adapter });
  const subscriptions = subscriptionsOf(hub);
  const [a, b] = [new FakeSubscriber(), new FakeSubscriber()];
  subscriptions.subscribe(a, "t");
  subscriptions.subscribe(b, "t");
  hub.publish("t", "one");
  subscriptions.publish("t", "two", a);
  // A topic nobody here subscribes to is still published to the others.
  hub.publish("elsewhere", "three");
  subscriptions.unsubscribe(a, "t");
  subscriptions.unsubscribe(b, "t");
  assert.deepEqual(calls, [
    "subscribe t",
    "publish t one",
    "publish t two",
    "publish elsewhere three",
    "unsubscribe t",
  ]);
});

Deno.test("topic hub: what the adapter delivers from other nodes reaches the local subscribers, and is not published again", () => {
  const { adapter, calls, deliver } = fakeAdapter();
  const hub = new TopicHub({ pubsub: adapter });
  const subscriber = new FakeSubscriber();
  subscriptionsOf(hub).subscribe(subscriber, "t");
  deliver("t", "from another node");
  deliver("unsubscribed", "nobody here");
  assert.deepEqual(
    subscriber.offered.map((shared) => shared.message),
    ["from another node"],
  );
  assert.deepEqual(calls, ["subscribe t"]);
});

Deno.test("topic hub: an adapter that throws is reported to onError, and the hub and its subscribers go on", () => {
  const errors: unknown[] = [];
  const failing = new Error("the bus is down");
  const hub = new TopicHub({
    pubsub: {
      open() {
        throw failing;
      },
      subscribe() {
        throw failing;
      },
      unsubscribe() {
        throw failing;
      },
      publish() {
        throw failing;
      },
      close: () => Promise.resolve(),
    },
    onError: (error) => errors.push(error),
  });
  const subscriber = new FakeSubscriber();
  assert.equal(subscriptionsOf(hub).subscribe(subscriber, "t"), true);
  assert.equal(hub.publish("t", "still delivered here"), 1);
  assert.equal(subscriptionsOf(hub).unsubscribe(subscriber, "t"), true);
  assert.deepEqual(errors, [failing, failing, failing, failing]);
  assert.equal(subscriber.offered.length, 1);
});
