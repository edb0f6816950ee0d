import assert from "node:assert/strict";
import { Opcode } from "../src/protocol/constants.ts";
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
} from "../src/protocol/frame.ts";
import {
  type Message,
  MessageAssembler,
  type MessageAssemblerOptions,
  type MessageHandler,
} from "../src/protocol/message_assembler.ts";
import { MessageStream } from "../src/streams/message_stream.ts";
import { assertCloseError, concat, isCloseError } from "./_util.ts";

const encoder = new TextEncoder();
const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

type Payload = string | number[] | Uint8Array;

function bytesOf(payload: Payload): Uint8Array {
  if (typeof payload === "string") return encoder.encode(payload);
  return payload instanceof Uint8Array ? payload : new Uint8Array(payload);
}

function frame(fin: boolean, opcode: number, payload: Payload = []): Frame {
  return { fin, opcode, payload: bytesOf(payload) };
}

/** What the assembler reported, in order. */
type Event =
  | { message: Message }
  | { control: number; payload: Uint8Array };

/**
 * A FrameDecoder feeding a MessageAssembler, as a connection wires them.
 * A server decodes masked frames: `encode` masks them when `role` is
 * "server".
 */
function pipeline(
  options: MessageAssemblerOptions = {},
  role: "server" | "client" = "client",
) {
  const events: Event[] = [];
  const handler: MessageHandler = {
    onMessage(message) {
      events.push({ message });
    },
    onControl(opcode, payload) {
      events.push({ control: opcode, payload: payload.slice() });
    },
  };
  const assembler = new MessageAssembler(handler, options);
  const decoder = new FrameDecoder(assembler, { role });
  return {
    events,
    assembler,
    encode: (f: Frame) => encodeFrame(f, role === "server" ? KEY : undefined),
    push(bytes: Uint8Array) {
      decoder.push(bytes.slice());
    },
    pushFrames(...frames: Frame[]) {
      for (const f of frames) this.push(this.encode(f));
    },
  };
}

// UTF-8 sequences that are invalid as soon as their last byte here arrives
// (RFC 3629; the WHATWG decoder fails at the first byte that cannot follow).
const INVALID_UTF8: [string, number[]][] = [
  ["the byte FF", [0xff]],
  ["the byte F5", [0xf5]],
  ["a lone continuation byte", [0x80]],
  ["an overlong 2-byte lead C0", [0xc0]],
  ["an overlong 3-byte sequence", [0xe0, 0x80]],
  ["a UTF-16 surrogate", [0xed, 0xa0]],
  ["a code point above U+10FFFF", [0xf4, 0x90]],
  ["a lead byte followed by ASCII", [0xe2, 0x82, 0x41]],
];

// ---------------------------------------------------------------------------
// §5.4 fragmentation

Deno.test("§5.4 assembler reassembles a fragmented text message", () => {
  const p = pipeline();
  p.pushFrames(
    frame(false, Opcode.Text, "Hel"),
    frame(false, Opcode.Continuation, "l"),
    frame(true, Opcode.Continuation, "o ✓"),
  );
  assert.deepEqual(p.events, [{ message: "Hello ✓" }]);
  assert.equal(p.assembler.inMessage, false);
});

Deno.test("§5.4 assembler reassembles a fragmented binary message", () => {
  const p = pipeline({}, "server");
  p.pushFrames(
    frame(false, Opcode.Binary, [1, 2, 3]),
    frame(false, Opcode.Continuation, [4]),
    frame(true, Opcode.Continuation, [5, 6]),
  );
  assert.deepEqual(p.events, [{ message: new Uint8Array([1, 2, 3, 4, 5, 6]) }]);
});

Deno.test("§5.4 assembler reports whether a fragmented message is in progress", () => {
  const p = pipeline();
  assert.equal(p.assembler.inMessage, false);
  p.pushFrames(frame(false, Opcode.Binary, [1]));
  assert.equal(p.assembler.inMessage, true);
  p.pushFrames(frame(true, Opcode.Ping, "x"));
  assert.equal(p.assembler.inMessage, true);
  p.pushFrames(frame(true, Opcode.Continuation, [2]));
  assert.equal(p.assembler.inMessage, false);
});

Deno.test("§5.4 assembler delivers control frames between fragments at once and in order", () => {
  const p = pipeline({}, "server");
  p.pushFrames(frame(false, Opcode.Text, "Hel"));
  assert.deepEqual(p.events, []);
  p.pushFrames(frame(true, Opcode.Ping, "1"));
  // The ping is out before the message it interrupts is complete.
  assert.deepEqual(p.events, [{ control: Opcode.Ping, payload: bytesOf("1") }]);
  p.pushFrames(
    frame(true, Opcode.Pong, []),
    frame(false, Opcode.Continuation, "l"),
    frame(true, Opcode.Close, [0x03, 0xe8]),
  );
  assert.equal(p.events.length, 3);
  p.pushFrames(frame(true, Opcode.Continuation, "o"));
  assert.deepEqual(p.events, [
    { control: Opcode.Ping, payload: bytesOf("1") },
    { control: Opcode.Pong, payload: new Uint8Array(0) },
    { control: Opcode.Close, payload: new Uint8Array([0x03, 0xe8]) },
    { message: "Hello" },
  ]);
});

Deno.test("§5.4 assembler keeps messages and control frames in arrival order across many messages", () => {
  const p = pipeline();
  p.pushFrames(
    frame(true, Opcode.Text, "a"),
    frame(true, Opcode.Ping, "p"),
    frame(false, Opcode.Binary, [1]),
    frame(true, Opcode.Pong, "q"),
    frame(true, Opcode.Continuation, [2]),
    frame(true, Opcode.Text, "b"),
  );
  assert.deepEqual(p.events, [
    { message: "a" },
    { control: Opcode.Ping, payload: bytesOf("p") },
    { control: Opcode.Pong, payload: bytesOf("q") },
    { message: new Uint8Array([1, 2]) },
    { message: "b" },
  ]);
});

Deno.test("§5.4 assembler rejects a continuation frame with no message in progress with 1002", () => {
  // From the header alone: only the frame's first two bytes are fed.
  assertCloseError(() => pipeline().push(new Uint8Array([0x80, 0x02])), 1002);
  assertCloseError(() => pipeline().push(new Uint8Array([0x00, 0x00])), 1002);
  // Also right after a complete message.
  const p = pipeline();
  p.pushFrames(frame(true, Opcode.Text, "done"));
  assertCloseError(
    () => p.pushFrames(frame(true, Opcode.Continuation, "x")),
    1002,
  );
  assert.deepEqual(p.events, [{ message: "done" }]);
});

Deno.test("§5.4 assembler rejects a new data frame inside a fragmented message with 1002", () => {
  for (const first of [Opcode.Text, Opcode.Binary]) {
    for (const second of [Opcode.Text, Opcode.Binary]) {
      for (const fin of [true, false]) {
        const p = pipeline({}, "server");
        p.pushFrames(frame(false, first, "ab"));
        // Only the header (with its masking key) of the intruding frame.
        const bytes = p.encode(frame(fin, second, "cd"));
        const header = bytes.subarray(0, bytes.length - 2);
        assertCloseError(() => p.push(header), 1002);
        assert.deepEqual(p.events, []);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// §8.1 UTF-8

Deno.test("§8.1 assembler fails a text message holding invalid UTF-8 with 1007", () => {
  for (const [name, bad] of INVALID_UTF8) {
    const p = pipeline();
    const payload = [0x61, ...bad, 0x62];
    assertCloseError(
      () => p.pushFrames(frame(true, Opcode.Text, payload)),
      1007,
    );
    assert.deepEqual(p.events, [], name);
  }
});

Deno.test("§8.1 assembler decodes short text of every length up to 70 bytes, ASCII or with a multi-byte or invalid sequence at every position", () => {
  for (let length = 0; length <= 70; length++) {
    const ascii = Array.from({ length }, (_, i) => 0x20 + ((i * 7) % 95));
    let p = pipeline();
    p.pushFrames(frame(true, Opcode.Text, ascii));
    assert.deepEqual(p.events, [{ message: String.fromCharCode(...ascii) }]);
    for (let at = 0; at < length; at++) {
      // "é" (C3 A9) in place of one character.
      const accented = [
        ...ascii.slice(0, at),
        0xc3,
        0xa9,
        ...ascii.slice(at + 1),
      ];
      p = pipeline();
      p.pushFrames(frame(true, Opcode.Text, accented));
      const expected = String.fromCharCode(...ascii.slice(0, at)) + "é" +
        String.fromCharCode(...ascii.slice(at + 1));
      assert.deepEqual(p.events, [{ message: expected }], `${length} ${at}`);
      const invalid = [...ascii];
      invalid[at] = 0xff;
      p = pipeline();
      assertCloseError(
        () => p.pushFrames(frame(true, Opcode.Text, invalid)),
        1007,
      );
      assert.deepEqual(p.events, []);
    }
  }
});

Deno.test("§8.1 assembler fails invalid UTF-8 with 1007 as soon as the bad byte arrives, mid-payload of one frame", () => {
  for (const role of ["client", "server"] as const) {
    for (const [name, bad] of INVALID_UTF8) {
      const p = pipeline({}, role);
      // One frame: "ab", the bad bytes, then 20 more bytes that never come.
      const payload = [0x61, 0x62, ...bad, ...new Array(20).fill(0x78)];
      const bytes = p.encode(frame(true, Opcode.Text, payload));
      const headerSize = bytes.length - payload.length;
      const end = headerSize + 2 + bad.length;
      // The valid part, including a bad sequence's valid lead, is accepted...
      p.push(bytes.subarray(0, end - 1));
      // ...and the chunk that ends right after the bad byte fails.
      assertCloseError(() => p.push(bytes.subarray(end - 1, end)), 1007);
      assert.deepEqual(p.events, [], `${role}: ${name}`);
    }
  }
});

Deno.test("§8.1 assembler fails invalid UTF-8 with 1007 in a later fragment before that fragment ends", () => {
  for (const [name, bad] of INVALID_UTF8) {
    const p = pipeline({}, "server");
    p.pushFrames(frame(false, Opcode.Text, "ok "));
    const payload = [0x63, ...bad, 0x64, 0x65];
    const bytes = p.encode(frame(true, Opcode.Continuation, payload));
    const end = bytes.length - payload.length + 1 + bad.length;
    assertCloseError(() => p.push(bytes.subarray(0, end)), 1007);
    assert.deepEqual(p.events, [], name);
  }
});

Deno.test("§8.1 assembler accepts a code point split across fragments", () => {
  const euro = [0xe2, 0x82, 0xac];
  const grin = [0xf0, 0x9f, 0x98, 0x80];
  const p = pipeline();
  p.pushFrames(
    frame(false, Opcode.Text, [0x61, euro[0]]),
    frame(false, Opcode.Continuation, [euro[1]]),
    frame(false, Opcode.Continuation, [euro[2], grin[0]]),
    frame(true, Opcode.Ping, []),
    frame(false, Opcode.Continuation, [grin[1], grin[2]]),
    frame(true, Opcode.Continuation, [grin[3], 0x62]),
  );
  assert.deepEqual(p.events, [
    { control: Opcode.Ping, payload: new Uint8Array(0) },
    { message: "a€😀b" },
  ]);
});

Deno.test("§8.1 assembler accepts multi-byte text fed to the decoder one byte at a time", () => {
  const text = "héllo wörld ✓ 😀 ok";
  const utf8 = encoder.encode(text);
  const p = pipeline({}, "server");
  const bytes = concat([
    p.encode(frame(false, Opcode.Text, utf8.subarray(0, 7))),
    p.encode(frame(true, Opcode.Continuation, utf8.subarray(7))),
    p.encode(frame(true, Opcode.Text, utf8)),
  ]);
  for (let i = 0; i < bytes.length; i++) p.push(bytes.subarray(i, i + 1));
  assert.deepEqual(p.events, [{ message: text }, { message: text }]);
});

Deno.test("§8.1 assembler fails a UTF-8 sequence cut off at the end of the message with 1007", () => {
  const truncated = [0x61, 0xe2, 0x82];
  // The whole message in one piece.
  assertCloseError(
    () => pipeline().pushFrames(frame(true, Opcode.Text, truncated)),
    1007,
  );
  // The same frame arriving in two pieces.
  const p = pipeline();
  const bytes = p.encode(frame(true, Opcode.Text, truncated));
  p.push(bytes.subarray(0, 3));
  assertCloseError(() => p.push(bytes.subarray(3)), 1007);
  // Cut at the end of a fragment and never completed: the final fragment
  // is empty, or a control frame comes between.
  const q = pipeline();
  q.pushFrames(
    frame(false, Opcode.Text, [0x61, 0xf0, 0x9f]),
    frame(true, Opcode.Ping, []),
  );
  assertCloseError(
    () => q.pushFrames(frame(true, Opcode.Continuation, [])),
    1007,
  );
  assert.deepEqual(q.events, [{
    control: Opcode.Ping,
    payload: new Uint8Array(0),
  }]);
});

Deno.test("§8.1 assembler keeps a leading U+FEFF as part of the text", () => {
  const p = pipeline();
  p.pushFrames(
    frame(true, Opcode.Text, [0xef, 0xbb, 0xbf, 0x41]),
    frame(false, Opcode.Text, [0xef]),
    frame(true, Opcode.Continuation, [0xbb, 0xbf, 0x42]),
  );
  assert.deepEqual(p.events, [{ message: "\uFEFFA" }, { message: "\uFEFFB" }]);
});

// ---------------------------------------------------------------------------
// §10.4 size limit

Deno.test("§10.4 assembler refuses a message over maxMessageSize summed over fragments with 1009 from the header", () => {
  const p = pipeline({ maxMessageSize: 10 }, "server");
  p.pushFrames(frame(false, Opcode.Binary, [1, 2, 3, 4, 5, 6]));
  // Control frames do not count towards the message.
  p.pushFrames(frame(true, Opcode.Ping, new Uint8Array(100)));
  p.pushFrames(frame(false, Opcode.Continuation, [7, 8, 9]));
  // Only the header of a fragment that would bring the total to 11 bytes.
  const header = p.encode(frame(true, Opcode.Continuation, [10, 11]))
    .subarray(0, 6);
  assertCloseError(() => p.push(header), 1009);
  assert.equal(p.events.length, 1);
});

Deno.test("§10.4 assembler refuses a single frame over maxMessageSize with 1009 from its header", () => {
  const p = pipeline({ maxMessageSize: 300 });
  assertCloseError(
    () => p.push(new Uint8Array([0x81, 0x7e, 0x01, 0x2d])),
    1009,
  );
});

Deno.test("§10.4 assembler accepts a fragmented message of exactly maxMessageSize and counts afresh for the next", () => {
  const p = pipeline({ maxMessageSize: 10 });
  for (let round = 0; round < 2; round++) {
    p.pushFrames(
      frame(false, Opcode.Text, "01234"),
      frame(true, Opcode.Continuation, "56789"),
    );
  }
  p.pushFrames(frame(true, Opcode.Binary, new Uint8Array(10)));
  assert.deepEqual(p.events, [
    { message: "0123456789" },
    { message: "0123456789" },
    { message: new Uint8Array(10) },
  ]);
});

// ---------------------------------------------------------------------------
// Empty messages

Deno.test("§5.6 assembler accepts empty messages and empty fragments", () => {
  const p = pipeline({}, "server");
  p.pushFrames(
    frame(true, Opcode.Text, []),
    frame(true, Opcode.Binary, []),
    frame(false, Opcode.Text, []),
    frame(false, Opcode.Continuation, []),
    frame(true, Opcode.Continuation, []),
    frame(false, Opcode.Text, []),
    frame(true, Opcode.Continuation, "Hello"),
    frame(false, Opcode.Binary, [1]),
    frame(false, Opcode.Continuation, []),
    frame(true, Opcode.Continuation, []),
    frame(false, Opcode.Text, "Hi"),
    frame(true, Opcode.Continuation, []),
    frame(true, Opcode.Ping, []),
  );
  assert.deepEqual(p.events, [
    { message: "" },
    { message: new Uint8Array(0) },
    { message: "" },
    { message: "Hello" },
    { message: new Uint8Array([1]) },
    { message: "Hi" },
    { control: Opcode.Ping, payload: new Uint8Array(0) },
  ]);
});

Deno.test("§5.6 assembler copies a small binary message out of a large input chunk", () => {
  const p = pipeline();
  const big = new Uint8Array(60_000);
  p.push(concat([
    p.encode(frame(true, Opcode.Binary, [1, 2, 3])),
    p.encode(frame(true, Opcode.Binary, big)),
  ]));
  const first = (p.events[0] as { message: Uint8Array }).message;
  assert.deepEqual(first, new Uint8Array([1, 2, 3]));
  // A kept 3-byte message must not hold on to the whole 60 KB read.
  assert.ok(first.buffer.byteLength < 1000, `${first.buffer.byteLength}`);
});

Deno.test("§5.6 assembler reads the end of a large binary message into the buffer it has, without copying it again", () => {
  const messages: Message[] = [];
  const assembler = new MessageAssembler({
    onMessage: (message) => messages.push(message),
    onControl() {},
  });
  const size = 200 * 1024;
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 7) & 255;
  assembler.onFrameStart({
    fin: true,
    rsv: 0,
    opcode: Opcode.Binary,
    length: size,
  });
  let at = 8 * 1024;
  assembler.onFramePayload(payload.slice(0, at));
  // Read straight into the message until the buffer has its final size...
  let target!: Uint8Array;
  for (const take of [120 * 1024, 56 * 1024]) {
    target = assembler.directTarget(size - at)!;
    assert.ok(target !== null && target.length >= take);
    target.set(payload.subarray(at, at + take));
    assembler.onFramePayload(target.subarray(0, take));
    at += take;
  }
  // ...then the last 16 KiB: no room for a direct read, and no new buffer.
  assert.equal(assembler.directTarget(size - at), null);
  assembler.onFramePayload(payload.slice(at));
  assembler.onFrameEnd();
  const message = messages[0] as Uint8Array;
  assert.ok(
    message.length === size && message.every((b, i) => b === payload[i]),
  );
  assert.ok(message.buffer === target.buffer, "copied once more at its end");
});

// ---------------------------------------------------------------------------
// MessageStream

Deno.test("§5.4 MessageStream turns frames into whole text and binary messages", async () => {
  const messages = await Array.fromAsync(
    ReadableStream.from([
      frame(false, Opcode.Text, "Hel"),
      frame(true, Opcode.Ping, "dropped without onControl"),
      frame(true, Opcode.Continuation, "lo"),
      frame(false, Opcode.Binary, [1, 2]),
      frame(true, Opcode.Continuation, [3]),
      frame(true, Opcode.Text, ""),
    ]).pipeThrough(new MessageStream()),
  );
  assert.deepEqual(messages, ["Hello", new Uint8Array([1, 2, 3]), ""]);
});

Deno.test("§5.4 MessageStream hands control frames to onControl at once, between fragments", async () => {
  const log: string[] = [];
  const stream = new MessageStream({
    onControl(f) {
      log.push(`${f.fin} ${f.opcode} ${new TextDecoder().decode(f.payload)}`);
    },
  });
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const first = reader.read();
  await writer.write(frame(false, Opcode.Text, "Hel"));
  await writer.write(frame(true, Opcode.Ping, "1"));
  await writer.write(frame(true, Opcode.Pong, "2"));
  assert.deepEqual(log, ["true 9 1", "true 10 2"]);
  await writer.write(frame(true, Opcode.Continuation, "lo"));
  assert.deepEqual(await first, { done: false, value: "Hello" });
  await writer.close();
  assert.deepEqual(await reader.read(), { done: true, value: undefined });
});

Deno.test("§5.4 MessageStream errors with a WebSocketError carrying 1002 on an unexpected continuation", async () => {
  const messages = ReadableStream.from([frame(true, Opcode.Continuation, "x")])
    .pipeThrough(new MessageStream());
  await assert.rejects(Array.fromAsync(messages), isCloseError(1002));
});

Deno.test("§8.1 MessageStream errors with a WebSocketError carrying 1007 on invalid UTF-8", async () => {
  const messages = ReadableStream.from([
    frame(false, Opcode.Text, [0x61, 0xe2]),
    frame(true, Opcode.Continuation, [0x41]),
  ]).pipeThrough(new MessageStream());
  await assert.rejects(Array.fromAsync(messages), isCloseError(1007));
});

Deno.test("§10.4 MessageStream errors with a WebSocketError carrying 1009 over maxMessageSize", async () => {
  const messages = ReadableStream.from([
    frame(false, Opcode.Binary, new Uint8Array(8)),
    frame(true, Opcode.Continuation, new Uint8Array(8)),
  ]).pipeThrough(new MessageStream({ maxMessageSize: 15 }));
  await assert.rejects(Array.fromAsync(messages), isCloseError(1009));
});

Deno.test("§7.1.5 MessageStream errors with a WebSocketError carrying 1006 when its input ends inside a fragmented message", async () => {
  const messages = ReadableStream.from([frame(false, Opcode.Text, "Hel")])
    .pipeThrough(new MessageStream());
  await assert.rejects(
    Array.fromAsync(messages),
    isCloseError(1006),
  );
});
