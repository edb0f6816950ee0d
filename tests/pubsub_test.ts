/**
 * The bus between nodes: the envelope codec, the numbering that finds
 * losses, and BroadcastChannelPubSub between Web Workers of this process
 * (real workers, each running serve()) and in one thread.
 */
import assert from "node:assert/strict";
import { BroadcastChannelPubSub, type PubSubEvent } from "../mod.ts";
import { BusNode, MAX_GAP, MAX_TRACKED } from "../src/pubsub/_bus.ts";
import {
  decodeEnvelope,
  encodeEnvelope,
  type Envelope,
  ENVELOPE_VERSION,
} from "../src/pubsub/_envelope.ts";
import {
  DEADLINE,
  fromPublisher,
  untilConnected,
  WorkerNode,
} from "./_pubsub_helpers.ts";
import { TestClient } from "./_ws_client.ts";
import { capturingConsoleError, sleep, waitFor } from "./_util.ts";

const sample: Envelope = {
  origin: "node-1",
  epoch: 7,
  sequence: 42,
  topic: "room/ü",
  message: "héllo 👋",
};

// ---- the envelope ----------------------------------------------------------

Deno.test("envelope: text and binary messages round-trip with their topic, origin, epoch and sequence", () => {
  for (
    const message of [
      "héllo 👋",
      "",
      new Uint8Array([0, 1, 254, 255]),
      new Uint8Array(0),
    ]
  ) {
    for (const topic of ["room/ü", ""]) {
      const envelope = { ...sample, topic, message };
      assert.deepEqual(decodeEnvelope(encodeEnvelope(envelope)), envelope);
    }
  }
  const long = "x".repeat(255);
  const max = { ...sample, origin: long, epoch: 0xffff_ffff, sequence: 1 };
  assert.deepEqual(decodeEnvelope(encodeEnvelope(max)), max);
});

Deno.test("envelope: the layout is version, kind, origin, epoch, sequence, topic, payload", () => {
  const bytes = encodeEnvelope({
    origin: "ab",
    epoch: 1,
    sequence: 2,
    topic: "t",
    message: new Uint8Array([9]),
  });
  assert.deepEqual(
    [...bytes],
    [
      ENVELOPE_VERSION,
      2, // binary
      2,
      0x61,
      0x62,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      2,
      0,
      0,
      0,
      1,
      0x74,
      9,
    ],
  );
  assert.equal(encodeEnvelope({ ...sample, message: "" })[1], 1); // text
});

Deno.test("envelope: a binary message decodes as a view of the bytes, not a copy", () => {
  const bytes = encodeEnvelope({ ...sample, message: new Uint8Array([5, 6]) });
  const { message } = decodeEnvelope(bytes)!;
  assert.ok(message instanceof Uint8Array);
  assert.equal(message.buffer, bytes.buffer);
});

Deno.test("envelope: every cut inside the header or the topic fails with a TypeError", () => {
  const bytes = encodeEnvelope({ ...sample, message: new Uint8Array(0) });
  for (let length = 0; length < bytes.length; length++) {
    assert.throws(
      () => decodeEnvelope(bytes.subarray(0, length)),
      TypeError,
      `cut at ${length}`,
    );
  }
});

Deno.test("envelope: another version, an unknown kind, no origin, sequence 0 and invalid UTF-8 fail with a TypeError", () => {
  const good = encodeEnvelope(sample);
  const originAt = 3;
  const sequenceAt = originAt + 6 + 4;
  const topicAt = sequenceAt + 8;
  const cases: [string, (bytes: Uint8Array) => void, RegExp][] = [
    ["version", (b) => b[0] = 2, /version 2/],
    ["kind 0", (b) => b[1] = 0, /kind 0/],
    ["kind 3", (b) => b[1] = 3, /kind 3/],
    ["no origin", (b) => b[2] = 0, /no origin/],
    ["sequence 0", (b) => b.fill(0, sequenceAt, sequenceAt + 4), /sequence 0/],
    ["topic too long", (b) => b[topicAt - 1] = 200, /inside its topic/],
    ["origin not UTF-8", (b) => b[originAt] = 0xff, /origin is not valid/],
    ["topic not UTF-8", (b) => b[topicAt] = 0xc3, /topic is not valid/],
    ["text not UTF-8", (b) => b[b.length - 1] = 0xff, /text payload is not/],
  ];
  for (const [name, spoil, message] of cases) {
    const bytes = good.slice();
    spoil(bytes);
    assert.throws(
      () => decodeEnvelope(bytes),
      { name: "TypeError", message },
      name,
    );
  }
});

Deno.test("envelope: an origin of 0 or over 255 bytes, and a sequence outside 1 to 2^32 - 1, are refused with a RangeError", () => {
  for (
    const bad of [
      { origin: "" },
      { origin: "é".repeat(128) },
      { sequence: 0 },
      { sequence: 2 ** 32 },
      { epoch: -1 },
      { sequence: 1.5 },
    ]
  ) {
    assert.throws(() => encodeEnvelope({ ...sample, ...bad }), RangeError);
  }
});

Deno.test("envelope: with a topic filter, a refused topic is left undecoded", () => {
  const bytes = encodeEnvelope({ ...sample, topic: "other" });
  bytes[bytes.length - 1] = 0xff; // a payload that would not decode
  assert.equal(decodeEnvelope(bytes, (topic) => topic === "room"), undefined);
});

// ---- numbering and losses ----------------------------------------------------

function envelopeFrom(
  origin: string,
  topic: string,
  epoch: number,
  sequence: number,
): Envelope {
  return { origin, topic, epoch, sequence, message: "" };
}

/** Runs `fn` with `console.error` and `console.info` logging into a list. */
async function capturingConsole(
  fn: () => unknown,
): Promise<[string, unknown[]][]> {
  const logged: [string, unknown[]][] = [];
  const { error, info } = console;
  console.error = (...args: unknown[]) => logged.push(["error", args]);
  console.info = (...args: unknown[]) => logged.push(["info", args]);
  try {
    await fn();
  } finally {
    console.error = error;
    console.info = info;
  }
  return logged;
}

Deno.test("bus events without onEvent or onError are logged one line each, with the cause's message and no stack; a recovery with console.info", async () => {
  const cause = new Error("Socket closed\nunexpectedly");
  const logged = await capturingConsole(() => {
    const node = new BusNode({}, "RedisPubSub");
    node.tell(
      "disconnected",
      "Lost the connection to Redis (publisher): retrying; publications fail meanwhile",
      { cause },
    );
    node.tell("reconnected", "Connected to Redis (publisher) again");
    node.report(new TypeError("A hub threw"));
  });
  assert.deepEqual(logged, [
    ["error", [
      "RedisPubSub: Lost the connection to Redis (publisher): retrying; publications fail meanwhile (Socket closed unexpectedly)",
    ]],
    ["info", ["RedisPubSub: Connected to Redis (publisher) again"]],
    ["error", ["RedisPubSub: A hub threw"]],
  ]);
});

Deno.test("bus events: onEvent gets each with its kind, whether it is a recovery and its cause; onError gets the Error it always got, and no reconnection", async () => {
  const events: PubSubEvent[] = [];
  const errors: unknown[] = [];
  const cause = new Error("ECONNREFUSED");
  const thrown = new TypeError("A hub threw");
  const logged = await capturingConsole(() => {
    const node = new BusNode({
      onEvent: (event) => events.push(event),
      onError: (error) => errors.push(error),
    }, "RedisPubSub");
    node.tell("disconnected", "Cannot connect to Redis (subscriber)", {
      cause,
    });
    node.tell("reconnected", "Connected to Redis (subscriber) again");
    node.tell("publish-recovered", "Publishing to Redis works again");
    node.report(thrown);
  });
  assert.deepEqual(logged, [], "nothing logged");
  assert.deepEqual(events, [
    {
      kind: "disconnected",
      recovery: false,
      message: "Cannot connect to Redis (subscriber)",
      cause,
    },
    {
      kind: "reconnected",
      recovery: true,
      message: "Connected to Redis (subscriber) again",
    },
    {
      kind: "publish-recovered",
      recovery: true,
      message: "Publishing to Redis works again",
    },
    { kind: "error", recovery: false, message: "A hub threw", cause: thrown },
  ]);
  assert.equal(errors.length, 3);
  assert.ok(errors[0] instanceof Error);
  assert.equal(errors[0].message, "Cannot connect to Redis (subscriber)");
  assert.equal(errors[0].cause, cause);
  assert.ok(errors[1] instanceof Error);
  assert.equal(errors[1].message, "Publishing to Redis works again");
  assert.equal(errors[2], thrown, "an error of its own is passed as is");
});

Deno.test("BroadcastChannelPubSub: a malformed message on the channel is an onEvent of kind malformed", async () => {
  const name = `events-${crypto.randomUUID()}`;
  const events: PubSubEvent[] = [];
  const pubsub = new BroadcastChannelPubSub({
    name,
    onEvent: (event) => events.push(event),
  });
  const channel = new BroadcastChannel(name);
  try {
    pubsub.open(() => {});
    pubsub.subscribe("news");
    channel.postMessage("not bytes");
    await waitFor(() => events.length === 1, "the event");
    assert.deepEqual(events, [{
      kind: "malformed",
      recovery: false,
      message: "A message on the BroadcastChannel is not bytes but a string",
    }]);
    assert.equal(pubsub.stats.malformed, 1);
  } finally {
    channel.close();
    await pubsub.close();
  }
});

Deno.test("bus numbering: each topic counts its publications from 1", () => {
  const node = new BusNode({ onError: () => {} }, "test");
  assert.deepEqual(node.next("a"), { epoch: 0, sequence: 1 });
  assert.deepEqual(node.next("a"), { epoch: 0, sequence: 2 });
  assert.deepEqual(node.next("b"), { epoch: 0, sequence: 1 });
  assert.deepEqual(node.next("a"), { epoch: 0, sequence: 3 });
});

Deno.test("bus numbering: missing sequence numbers count as gaps and are reported; the message after them is taken", () => {
  const errors: Error[] = [];
  const node = new BusNode(
    { onError: (error) => errors.push(error as Error) },
    "test",
  );
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 5))); // the baseline
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 6)));
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 9)));
  assert.equal(node.stats.gaps, 2);
  assert.equal(
    errors[0].message,
    '2 message(s) from node x on topic "t" were lost on the bus',
  );
  // Another origin on the same topic is numbered apart.
  assert.ok(node.accept(envelopeFrom("y", "t", 0, 100)));
  assert.equal(node.stats.gaps, 2);
});

Deno.test("bus numbering: a new epoch starts from 1, so only the numbers before its message are lost", () => {
  const node = new BusNode({ onError: () => {} }, "test");
  node.accept(envelopeFrom("x", "t", 0, 50));
  assert.ok(node.accept(envelopeFrom("x", "t", 1, 1)));
  assert.equal(node.stats.gaps, 0);
  assert.ok(node.accept(envelopeFrom("x", "t", 2, 4)));
  assert.equal(node.stats.gaps, 3);
});

Deno.test("bus numbering: a repeated or older number is taken as a new baseline and counted as a reset, a node's own message is refused silently", () => {
  const errors: unknown[] = [];
  const node = new BusNode({ onError: (error) => errors.push(error) }, "test");
  node.accept(envelopeFrom("x", "t", 0, 3));
  assert.equal(node.accept(envelopeFrom("x", "t", 0, 3)), true);
  assert.equal(node.accept(envelopeFrom("x", "t", 0, 2)), true);
  assert.equal(node.stats.resets, 2);
  // Counting goes on from the new baseline.
  assert.equal(node.accept(envelopeFrom("x", "t", 0, 3)), true);
  assert.equal(node.stats.resets, 2);
  assert.equal(node.stats.gaps, 0);
  assert.equal(node.accept(envelopeFrom(node.id, "t", 0, 1)), false);
  assert.equal(node.stats.resets, 2);
  assert.equal(node.stats.malformed, 0);
  // One report a second at most: the second was counted, not reported.
  assert.equal(errors.length, 1);
  assert.match(
    String(errors[0]),
    /numbering of node x on topic "t" went from 0:3 to 0:3/,
  );
});

Deno.test("bus numbering: a forged number far ahead (2^32 - 1) does not silence its origin: it and the real messages after it are taken, as two resets, not billions of gaps", () => {
  const node = new BusNode({ onError: () => {} }, "test");
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 1)));
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 2 ** 32 - 1)));
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 2)));
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 3)));
  assert.equal(node.stats.resets, 2);
  assert.equal(node.stats.gaps, 0);
  // A forged number in another epoch: the origin's next real message is
  // numbered in its own epoch again, which only counts the 3 before it.
  assert.ok(node.accept(envelopeFrom("x", "t", 7, 2 ** 32 - 1)));
  assert.equal(node.stats.resets, 3);
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 4)));
  assert.equal(node.stats.gaps, 3);
  // The largest jump counted as lost messages, then one more.
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 5 + MAX_GAP)));
  assert.equal(node.stats.gaps, 3 + MAX_GAP);
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 7 + 2 * MAX_GAP)));
  assert.equal(node.stats.gaps, 3 + MAX_GAP);
  assert.equal(node.stats.resets, 4);
});

Deno.test("bus numbering: a topic that is no longer subscribed forgets its positions", () => {
  const node = new BusNode({ onError: () => {} }, "test");
  node.accept(envelopeFrom("x", "t", 0, 1));
  node.forget("t");
  // Resubscribed later: what was published meanwhile was not due here.
  assert.ok(node.accept(envelopeFrom("x", "t", 0, 40)));
  assert.equal(node.stats.gaps, 0);
});

Deno.test("bus numbering: past the tracking limit, a publisher starts a new epoch and a receiver takes new baselines", () => {
  const node = new BusNode({ onError: () => {} }, "test");
  for (let i = 0; i < MAX_TRACKED; i++) node.next(`topic ${i}`);
  assert.deepEqual(node.next("topic 0"), { epoch: 0, sequence: 2 });
  // One topic more: every count starts again, in epoch 1.
  assert.deepEqual(node.next("one more"), { epoch: 1, sequence: 1 });
  assert.deepEqual(node.next("topic 0"), { epoch: 1, sequence: 1 });

  const receiver = new BusNode({ onError: () => {} }, "test");
  for (let i = 0; i < MAX_TRACKED; i++) {
    receiver.accept(envelopeFrom("x", `topic ${i}`, 0, 1));
  }
  receiver.accept(envelopeFrom("x", "one more", 0, 1));
  // "topic 0" was forgotten: its next message is a baseline, not a gap.
  assert.ok(receiver.accept(envelopeFrom("x", "topic 0", 0, 10)));
  assert.equal(receiver.stats.gaps, 0);
});

Deno.test("bus reports: a flood of one kind is reported once a second, and the next report counts what was held back", async () => {
  const errors: Error[] = [];
  const node = new BusNode(
    { onError: (error) => errors.push(error as Error) },
    "test",
  );
  for (let i = 0; i < 5; i++) node.malformed(new TypeError(`bad ${i}`));
  assert.equal(node.stats.malformed, 5);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].message, "bad 0");
  // Just over the one-second interval: the next one is reported, with the
  // four held back since the first.
  await sleep(1050);
  const last = new TypeError("bad 5");
  node.malformed(last);
  assert.equal(node.stats.malformed, 6);
  assert.equal(errors.length, 2);
  assert.equal(
    errors[1].message,
    "bad 5 (and 4 more malformed bus messages since the last report, counted but not reported)",
  );
  assert.equal(errors[1].cause, last);
});

Deno.test("bus reports: an onError that throws is logged with the error, never thrown", async () => {
  await capturingConsoleError((logged) => {
    const node = new BusNode({
      onError: () => {
        throw new Error("broken callback");
      },
    }, "test");
    node.report(new Error("the report"));
    assert.equal(logged.length, 1);
    assert.match(String(logged[0][1]), /broken callback/);
    assert.match(String(logged[0][3]), /the report/);
  });
});

// ---- BroadcastChannelPubSub --------------------------------------------------

/** A channel name of the test's own, so that tests never cross. */
function channelName(test: string): string {
  return `@scope/ws test ${test} ${crypto.randomUUID()}`;
}

Deno.test("BroadcastChannelPubSub across two Web Workers: subscribers in both receive every message published in either, in order per publisher, exactly once", async () => {
  const name = channelName("workers");
  await using a = await WorkerNode.start(name);
  await using b = await WorkerNode.start(name);
  await using subA = await TestClient.open(a.url("/sub?topic=room"));
  await using subB1 = await TestClient.open(b.url("/sub?topic=room"));
  await using subB2 = await TestClient.open(b.url("/sub?topic=room"));
  await using pubA = await TestClient.open(a.url("/pub?topic=room"));
  await using pubB = await TestClient.open(b.url("/pub?topic=room"));
  const subscribers = [subA, subB1, subB2];
  await untilConnected([pubA, pubB], subscribers);

  const n = 300;
  const expected = { A: [] as string[], B: [] as string[] };
  for (let i = 0; i < n; i++) {
    for (const [name, publisher] of [["A", pubA], ["B", pubB]] as const) {
      const text = `${name}:${i}`;
      if (i % 5 === 4) {
        publisher.send(new TextEncoder().encode(text));
        expected[name].push(`#${text}`);
      } else {
        publisher.send(text);
        expected[name].push(text);
      }
    }
  }
  // A fence from each, after everything: a message delivered twice would
  // come before it (a BroadcastChannel keeps each sender's order).
  pubA.send("fence:A");
  pubB.send("fence:B");
  for (const subscriber of subscribers) {
    await subscriber.receive(2 * n + 2, "every message and both fences");
  }
  for (const subscriber of subscribers) {
    assert.deepEqual(fromPublisher(subscriber.received, "A:"), expected.A);
    assert.deepEqual(fromPublisher(subscriber.received, "B:"), expected.B);
    assert.equal(subscriber.received.length, 2 * n + 2);
  }
  for (const node of [a, b]) {
    const { stats, errors } = await node.report();
    assert.deepEqual(errors, []);
    assert.equal(stats.gaps, 0);
    assert.equal(stats.malformed, 0);
    assert.equal(stats.failed, 0);
    assert.ok(stats.delivered >= n + 1, `delivered ${stats.delivered}`);
  }
});

Deno.test("BroadcastChannelPubSub: bad input posted on the channel is ignored and reported, and the worker goes on", async () => {
  const name = channelName("bad input");
  await using a = await WorkerNode.start(name);
  await using subscriber = await TestClient.open(a.url("/sub?topic=room"));
  await using publisher = await TestClient.open(a.url("/pub?topic=room"));
  // The worker's socket is subscribed once its own publication reaches it.
  await untilConnected([publisher], [subscriber]);
  const channel = new BroadcastChannel(name);
  try {
    const valid = encodeEnvelope({
      origin: "intruder",
      epoch: 0,
      sequence: 1,
      topic: "room",
      message: "still here",
    });
    const bad: unknown[] = [
      "hello", // foreign text
      { topic: "room", message: "hi" }, // an object
      null,
      new Uint8Array([1, 2, 3]), // too short
      Uint8Array.of(2, ...valid.subarray(1)), // another version
      valid.buffer, // an ArrayBuffer, not bytes
      [], // an empty batch
      ["hello"], // a batch of something else
    ];
    for (const data of bad) channel.postMessage(data);
    channel.postMessage(valid);
    await subscriber.receive(1, "the good message");
    assert.deepEqual(subscriber.received, ["still here"]);
    const { stats, errors } = await a.report();
    assert.equal(stats.malformed, bad.length);
    assert.match(
      errors[0],
      /^A message on the BroadcastChannel is not bytes but a string/,
    );
    assert.ok(!subscriber.isClosed);
  } finally {
    channel.close();
  }
});

Deno.test("BroadcastChannelPubSub in one thread: another adapter's publications are delivered for subscribed topics only, its own never", async () => {
  const name = channelName("one thread");
  const a = new BroadcastChannelPubSub({ name });
  const b = new BroadcastChannelPubSub({ name });
  try {
    const toA: [string, string | Uint8Array][] = [];
    const toB: [string, string | Uint8Array][] = [];
    a.open((topic, message) => toA.push([topic, message]));
    b.open((topic, message) => toB.push([topic, message]));
    a.subscribe("news");
    b.subscribe("news");
    a.publish("news", "from a");
    a.publish("sport", "nobody subscribed");
    a.publish("news", new Uint8Array([1, 2]));
    b.publish("news", "from b");
    await waitFor(
      () => toB.length === 2 && toA.length === 1,
      "deliveries",
      DEADLINE,
    );
    assert.deepEqual(toB, [["news", "from a"], [
      "news",
      new Uint8Array([1, 2]),
    ]]);
    assert.deepEqual(toA, [["news", "from b"]]);
    assert.deepEqual(a.stats, {
      published: 3,
      failed: 0,
      delivered: 1,
      gaps: 0,
      malformed: 0,
      resets: 0,
      reconnects: 0,
    });
    // b skipped "sport" without counting it as a gap in "news".
    assert.equal(b.stats.gaps, 0);
    // While b has left "news", a's publications to it are not for b; a
    // fence on another topic, after them, tells when b has seen them.
    b.unsubscribe("news");
    b.subscribe("fence");
    a.publish("news", "after b left");
    a.publish("news", "again");
    a.publish("fence", "");
    await waitFor(() => toB.length === 3, "the fence", DEADLINE);
    b.subscribe("news");
    a.publish("news", "b is back");
    await waitFor(
      () => toB.length === 4,
      "the message after b is back",
      DEADLINE,
    );
    assert.deepEqual(toB.slice(2), [["fence", ""], ["news", "b is back"]]);
    // Numbers 3 and 4 of "news" were not due while b had left.
    assert.equal(b.stats.gaps, 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("BroadcastChannelPubSub close() delivers to other workers what was published in the same turn", async () => {
  const name = channelName("close in a worker");
  const delivered: [string, string | Uint8Array][] = [];
  const errors: string[] = [];
  const pubsub = new BroadcastChannelPubSub({
    name,
    onError: (error) => errors.push((error as Error).message),
  });
  pubsub.open((topic, message) => delivered.push([topic, message]));
  pubsub.subscribe("news");
  const watch = new BroadcastChannel(name);
  let fenced = false;
  watch.onmessage = (event) => fenced ||= event.data === "fence";
  const worker = new Worker(
    new URL("./_fixtures/closing_publisher.ts", import.meta.url),
    { type: "module" },
  );
  const answers: string[] = [];
  worker.onmessage = (event) => answers.push(event.data);
  try {
    worker.postMessage({ name, messages: ["one", "two", "three"] });
    // The fence was posted after the close: once it is here, anything the
    // closed adapter sent is here too.
    await waitFor(
      () => fenced && answers.includes("done"),
      "the fence",
      DEADLINE,
    );
    assert.deepEqual(delivered, [
      ["news", "one"],
      ["news", "two"],
      ["news", "three"],
    ]);
    // The bare fence is not an envelope: the adapter ignores it.
    assert.deepEqual(errors, [
      "A message on the BroadcastChannel is not bytes but a string",
    ]);
  } finally {
    worker.postMessage("stop");
    await waitFor(
      () => answers.includes("stopped"),
      "the worker to stop",
      DEADLINE,
    )
      .finally(() => worker.terminate());
    watch.close();
    await pubsub.close();
  }
});

Deno.test("BroadcastChannelPubSub: opened twice, or used after close, it throws on open and counts publications as failed", async () => {
  const errors: Error[] = [];
  const pubsub = new BroadcastChannelPubSub({
    name: channelName("misuse"),
    onError: (error) => errors.push(error as Error),
  });
  pubsub.open(() => {});
  assert.throws(() => pubsub.open(() => {}), TypeError);
  await pubsub.close();
  pubsub.publish("news", "too late");
  assert.equal(pubsub.stats.failed, 1);
  assert.match(errors[0].message, /could not be posted/);
  assert.throws(() => pubsub.open(() => {}), TypeError);
});
