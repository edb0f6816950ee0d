/**
 * The live wire protocol v1 without sockets (src/live/_protocol.ts): every
 * client command parsed, every malformed shape answered with a clear
 * `bad-request` message (and the command's id when it had a valid one),
 * and every server event's exact JSON text.
 */

import assert from "node:assert/strict";
import {
  connectedEvent,
  errorEvent,
  gapEvent,
  okEvent,
  parseCommand,
  type ParseResult,
  presenceEvent,
  publicationEvent,
  subscribedEvent,
  unsubscribedEvent,
} from "../src/live/_protocol.ts";

const ok = (command: unknown): ParseResult =>
  ({ ok: true, command }) as ParseResult;

// --- Commands -----------------------------------------------------------------

Deno.test("live protocol: connect parses with its version, whatever the version (the handler checks it)", () => {
  assert.deepEqual(
    parseCommand('{"t":"connect","v":1}'),
    ok({ t: "connect", v: 1 }),
  );
  assert.deepEqual(
    parseCommand('{"t":"connect","v":2}'),
    ok({ t: "connect", v: 2 }),
  );
});

Deno.test("live protocol: sub parses plain, from a position, and for the last N", () => {
  assert.deepEqual(
    parseCommand('{"t":"sub","id":1,"topic":"room/lobby"}'),
    ok({ t: "sub", id: 1, topic: "room/lobby" }),
  );
  assert.deepEqual(
    parseCommand(
      '{"t":"sub","id":2,"topic":"room/lobby","since":{"offset":5,"epoch":"k3x"}}',
    ),
    ok({
      t: "sub",
      id: 2,
      topic: "room/lobby",
      since: { offset: 5, epoch: "k3x" },
    }),
  );
  assert.deepEqual(
    parseCommand('{"t":"sub","id":3,"topic":"ticker/EURUSD","last":1}'),
    ok({ t: "sub", id: 3, topic: "ticker/EURUSD", last: 1 }),
  );
  // Offset 0 is "nothing seen yet", a valid position.
  assert.deepEqual(
    parseCommand(
      '{"t":"sub","id":4,"topic":"a","since":{"offset":0,"epoch":""}}',
    ),
    ok({ t: "sub", id: 4, topic: "a", since: { offset: 0, epoch: "" } }),
  );
});

Deno.test("live protocol: unsub and presence parse with their id and topic", () => {
  assert.deepEqual(
    parseCommand('{"t":"unsub","id":4,"topic":"room/lobby"}'),
    ok({ t: "unsub", id: 4, topic: "room/lobby" }),
  );
  assert.deepEqual(
    parseCommand('{"t":"presence","id":7,"topic":"room/lobby"}'),
    ok({ t: "presence", id: 7, topic: "room/lobby" }),
  );
});

Deno.test("live protocol: pub parses text, base64 bytes, and without an id (no answer wanted)", () => {
  assert.deepEqual(
    parseCommand('{"t":"pub","id":5,"topic":"room/lobby","data":"hi"}'),
    ok({ t: "pub", id: 5, topic: "room/lobby", data: "hi" }),
  );
  assert.deepEqual(
    parseCommand(
      '{"t":"pub","id":6,"topic":"files","data":"AAEC","binary":true}',
    ),
    ok({ t: "pub", id: 6, topic: "files", data: new Uint8Array([0, 1, 2]) }),
  );
  assert.deepEqual(
    parseCommand('{"t":"pub","topic":"room","data":"x","binary":false}'),
    ok({ t: "pub", topic: "room", data: "x" }),
  );
  // Empty data is a message too, in both kinds.
  assert.deepEqual(
    parseCommand('{"t":"pub","id":8,"topic":"files","data":"","binary":true}'),
    ok({ t: "pub", id: 8, topic: "files", data: new Uint8Array() }),
  );
});

Deno.test("live protocol: unknown fields are ignored, so that a later version may add some", () => {
  assert.deepEqual(
    parseCommand('{"t":"unsub","id":1,"topic":"a","future":[1,2]}'),
    ok({ t: "unsub", id: 1, topic: "a" }),
  );
});

Deno.test("live protocol: a topic of exactly the limit is accepted, one more is refused", () => {
  const at = "t".repeat(256);
  assert.equal(
    parseCommand(JSON.stringify({ t: "sub", id: 1, topic: at })).ok,
    true,
  );
  assert.deepEqual(
    parseCommand(JSON.stringify({ t: "sub", id: 1, topic: at + "t" })),
    { ok: false, id: 1, message: "The topic is longer than 256 characters" },
  );
  assert.deepEqual(
    parseCommand('{"t":"presence","id":2,"topic":"abcd"}', {
      maxTopicLength: 3,
    }),
    { ok: false, id: 2, message: "The topic is longer than 3 characters" },
  );
});

// --- Malformed commands -------------------------------------------------------

const BAD_SINCE =
  '"since" must be {"offset": an integer >= 0, "epoch": a string of at most 128 characters}';

/** A frame and the `bad-request` it must get: its message, and its id if any. */
const MALFORMED: [
  what: string,
  frame: string | Uint8Array,
  id: number | undefined,
  message: string,
][] = [
  [
    "a binary frame",
    new Uint8Array([123, 125]),
    undefined,
    "Commands are JSON text frames, not binary frames",
  ],
  ["not JSON", "hello", undefined, "A command must be JSON"],
  ["truncated JSON", '{"t":"sub",', undefined, "A command must be JSON"],
  ["an empty frame", "", undefined, "A command must be JSON"],
  [
    "a JSON array",
    '[{"t":"connect","v":1}]',
    undefined,
    "A command must be a JSON object",
  ],
  ["a JSON string", '"connect"', undefined, "A command must be a JSON object"],
  ["JSON null", "null", undefined, "A command must be a JSON object"],
  ["no t", '{"id":1,"topic":"a"}', 1, 'A command needs a string "t"'],
  ["a numeric t", '{"t":1,"id":1}', 1, 'A command needs a string "t"'],
  [
    "an unknown t",
    '{"t":"subscribe","id":3,"topic":"a"}',
    3,
    'Unknown command "subscribe"',
  ],
  [
    "an inherited name as t",
    '{"t":"toString","id":3}',
    3,
    'Unknown command "toString"',
  ],
  [
    "connect without v",
    '{"t":"connect"}',
    undefined,
    'The connect command needs a version "v"',
  ],
  [
    "connect with a string v",
    '{"t":"connect","v":"1"}',
    undefined,
    'The connect command needs a version "v"',
  ],
  [
    "connect with v 0",
    '{"t":"connect","v":0}',
    undefined,
    'The connect command needs a version "v"',
  ],
  [
    "sub without id",
    '{"t":"sub","topic":"a"}',
    undefined,
    'The sub command needs an "id"',
  ],
  [
    "unsub without id",
    '{"t":"unsub","topic":"a"}',
    undefined,
    'The unsub command needs an "id"',
  ],
  [
    "presence without id",
    '{"t":"presence","topic":"a"}',
    undefined,
    'The presence command needs an "id"',
  ],
  [
    "a string id",
    '{"t":"sub","id":"1","topic":"a"}',
    undefined,
    '"id" must be a positive integer',
  ],
  [
    "id 0",
    '{"t":"pub","id":0,"topic":"a","data":"x"}',
    undefined,
    '"id" must be a positive integer',
  ],
  [
    "a fractional id",
    '{"t":"unsub","id":1.5,"topic":"a"}',
    undefined,
    '"id" must be a positive integer',
  ],
  [
    "an id above 2^53",
    '{"t":"unsub","id":9007199254740993,"topic":"a"}',
    undefined,
    '"id" must be a positive integer',
  ],
  ["no topic", '{"t":"sub","id":1}', 1, "The topic must be a string"],
  [
    "a numeric topic",
    '{"t":"pub","id":2,"topic":42,"data":"x"}',
    2,
    "The topic must be a string",
  ],
  [
    "an empty topic",
    '{"t":"presence","id":3,"topic":""}',
    3,
    "The topic must not be empty",
  ],
  [
    "an oversized topic",
    JSON.stringify({ t: "unsub", id: 4, topic: "x".repeat(1000) }),
    4,
    "The topic is longer than 256 characters",
  ],
  [
    "since not an object",
    '{"t":"sub","id":1,"topic":"a","since":5}',
    1,
    BAD_SINCE,
  ],
  [
    "since null",
    '{"t":"sub","id":1,"topic":"a","since":null}',
    1,
    BAD_SINCE,
  ],
  [
    "since without epoch",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":5}}',
    1,
    BAD_SINCE,
  ],
  [
    "since with a numeric epoch",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":5,"epoch":7}}',
    1,
    BAD_SINCE,
  ],
  [
    "since with a negative offset",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":-1,"epoch":"e"}}',
    1,
    BAD_SINCE,
  ],
  [
    "since with a string offset",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":"5","epoch":"e"}}',
    1,
    BAD_SINCE,
  ],
  [
    "since with a fractional offset",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":2.5,"epoch":"e"}}',
    1,
    BAD_SINCE,
  ],
  [
    "since with an oversized epoch",
    JSON.stringify({
      t: "sub",
      id: 1,
      topic: "a",
      since: { offset: 1, epoch: "e".repeat(129) },
    }),
    1,
    BAD_SINCE,
  ],
  [
    "last 0",
    '{"t":"sub","id":1,"topic":"a","last":0}',
    1,
    '"last" must be a positive integer',
  ],
  [
    "a string last",
    '{"t":"sub","id":1,"topic":"a","last":"1"}',
    1,
    '"last" must be a positive integer',
  ],
  [
    "a negative last",
    '{"t":"sub","id":1,"topic":"a","last":-3}',
    1,
    '"last" must be a positive integer',
  ],
  [
    "since and last together",
    '{"t":"sub","id":1,"topic":"a","since":{"offset":1,"epoch":"e"},"last":1}',
    1,
    '"since" and "last" cannot be combined',
  ],
  [
    "pub without data",
    '{"t":"pub","id":5,"topic":"a"}',
    5,
    '"data" must be a string (base64 when binary)',
  ],
  [
    "pub with object data",
    '{"t":"pub","id":5,"topic":"a","data":{"x":1}}',
    5,
    '"data" must be a string (base64 when binary)',
  ],
  [
    "pub with a byte array as data",
    '{"t":"pub","id":5,"topic":"a","data":[0,1],"binary":true}',
    5,
    '"data" must be a string (base64 when binary)',
  ],
  [
    "pub with a string binary",
    '{"t":"pub","id":5,"topic":"a","data":"AAEC","binary":"yes"}',
    5,
    '"binary" must be a boolean',
  ],
  [
    "pub with bad base64",
    '{"t":"pub","id":6,"topic":"a","data":"not base64!","binary":true}',
    6,
    '"data" is not valid base64',
  ],
  [
    "pub with base64url",
    '{"t":"pub","id":6,"topic":"a","data":"-_-_","binary":true}',
    6,
    '"data" is not valid base64',
  ],
  [
    "pub with a lone base64 character",
    '{"t":"pub","id":6,"topic":"a","data":"A","binary":true}',
    6,
    '"data" is not valid base64',
  ],
];

for (const [what, frame, id, message] of MALFORMED) {
  Deno.test(`live protocol: ${what} is a bad request: "${message}"`, () => {
    const expected = id === undefined
      ? { ok: false, message }
      : { ok: false, id, message };
    assert.deepEqual(parseCommand(frame), expected);
  });
}

Deno.test("live protocol: an unknown t is quoted short in the message", () => {
  const result = parseCommand(JSON.stringify({ t: "x".repeat(1000) }));
  assert.deepEqual(result, {
    ok: false,
    message: `Unknown command "${"x".repeat(32)}"`,
  });
});

// --- Events -------------------------------------------------------------------

Deno.test("live protocol: connected carries the version and the client id", () => {
  assert.equal(
    connectedEvent("c-1"),
    '{"t":"connected","v":1,"client":"c-1"}',
  );
});

Deno.test("live protocol: subscribed carries recovered and the position, none on a topic without history", () => {
  assert.equal(
    subscribedEvent(1, "room/lobby", false, { offset: 7, epoch: "k3x" }),
    '{"t":"subscribed","id":1,"topic":"room/lobby","recovered":false,"position":{"offset":7,"epoch":"k3x"}}',
  );
  assert.equal(
    subscribedEvent(2, "plain", false),
    '{"t":"subscribed","id":2,"topic":"plain","recovered":false}',
  );
});

Deno.test("live protocol: pub carries text as is and bytes in base64, with the position on a history topic", () => {
  assert.equal(
    publicationEvent("room/lobby", 'say "hi" ✓', { offset: 6, epoch: "k3x" }),
    '{"t":"pub","topic":"room/lobby","data":"say \\"hi\\" ✓","offset":6,"epoch":"k3x"}',
  );
  assert.equal(
    publicationEvent("plain", "x"),
    '{"t":"pub","topic":"plain","data":"x"}',
  );
  const bytes = new Uint8Array([0, 1, 2, 255]);
  const text = publicationEvent("files", bytes, { offset: 1, epoch: "e" });
  assert.equal(
    text,
    '{"t":"pub","topic":"files","data":"AAEC/w==","binary":true,"offset":1,"epoch":"e"}',
  );
  // What the client sends back in base64 parses to the same bytes.
  const { data } = JSON.parse(text);
  assert.deepEqual(
    parseCommand(JSON.stringify({ t: "pub", topic: "f", data, binary: true })),
    ok({ t: "pub", topic: "f", data: bytes }),
  );
});

Deno.test("live protocol: gap, unsubscribed, error, ok and presence events", () => {
  assert.equal(
    gapEvent("room", { offset: 9, epoch: "k3x" }),
    '{"t":"gap","topic":"room","position":{"offset":9,"epoch":"k3x"}}',
  );
  assert.equal(
    unsubscribedEvent("room", { id: 4 }),
    '{"t":"unsubscribed","id":4,"topic":"room"}',
  );
  assert.equal(
    unsubscribedEvent("room", { reason: "Kicked" }),
    '{"t":"unsubscribed","topic":"room","reason":"Kicked"}',
  );
  assert.equal(
    errorEvent("bad-request", "A command must be JSON"),
    '{"t":"error","code":"bad-request","message":"A command must be JSON"}',
  );
  assert.equal(
    errorEvent("not-subscribed", "Not subscribed to room", 3),
    '{"t":"error","id":3,"code":"not-subscribed","message":"Not subscribed to room"}',
  );
  assert.equal(okEvent(5), '{"t":"ok","id":5}');
  assert.equal(
    presenceEvent(7, "room", {
      count: 3,
      members: [
        { client: "a", info: { name: "Ada" } },
        { client: "b" },
        // Only the member's fields go out, not what else the app kept on it.
        { client: "c", info: null, secret: "x" } as never,
      ],
    }),
    '{"t":"presence","id":7,"topic":"room","count":3,"members":[{"client":"a","info":{"name":"Ada"}},{"client":"b"},{"client":"c","info":null}]}',
  );
});

Deno.test("live protocol: presence with info that is not JSON throws a TypeError", () => {
  assert.throws(
    () =>
      presenceEvent(1, "room", {
        count: 1,
        members: [{ client: "a", info: 1n }],
      }),
    TypeError,
  );
});
