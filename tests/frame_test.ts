import assert from "node:assert/strict";
import { Opcode } from "../src/protocol/constants.ts";
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameDecoderOptions,
  type FrameHandler,
  type FrameHeader,
  headerSize,
  writeFrame,
  writeHeader,
} from "../src/protocol/frame.ts";
import { FrameDecoderStream } from "../src/streams/frame_decoder_stream.ts";
import { FrameEncoderStream } from "../src/streams/frame_encoder_stream.ts";
import { WebSocketError } from "../src/protocol/websocket_error.ts";
import {
  assertBytesEqual,
  assertCloseError,
  concat,
  isCloseError,
  mulberry32,
} from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers

function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  return Uint8Array.from(
    { length: digits.length / 2 },
    (_, i) => parseInt(digits.slice(2 * i, 2 * i + 2), 16),
  );
}

/** A frame header written by `writeHeader`, cut to its size. */
function encodeHeader(
  frame: { fin: boolean; opcode: number },
  length: number,
  mask?: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(headerSize(length, mask !== undefined));
  assert.equal(writeHeader(out, 0, frame, length, mask), out.length);
  return out;
}

function randomBytes(random: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (random() * 256) | 0;
  return out;
}

/** Distinct bytes at every position, so a misplaced byte shows. */
function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + (i >>> 8)) & 255);
}

const encoder = new TextEncoder();
const RFC_KEY = hex("37fa213d");

/** A decoded frame: the header's fields and the whole payload. */
interface Decoded {
  fin: boolean;
  rsv: number;
  opcode: number;
  payload: Uint8Array;
}

function decoded(frame: Frame): Decoded {
  return {
    fin: frame.fin,
    rsv: (frame.rsv1 ? 4 : 0) | (frame.rsv2 ? 2 : 0) | (frame.rsv3 ? 1 : 0),
    opcode: frame.opcode,
    payload: frame.payload,
  };
}

/** Compares frames: flags and lengths with `deepEqual`, payloads apart. */
function assertFramesEqual(
  actual: Decoded[],
  expected: Decoded[],
  message = "frames",
): void {
  const flags = (frames: Decoded[]) =>
    frames.map(({ payload, ...rest }) => ({ ...rest, length: payload.length }));
  assert.deepEqual(flags(actual), flags(expected), message);
  actual.forEach((frame, i) =>
    assertBytesEqual(
      frame.payload,
      expected[i].payload,
      `${message}, frame ${i}`,
    )
  );
}

/** Records frames and checks the `FrameHandler` contract as it goes. */
class Recorder implements FrameHandler {
  frames: Decoded[] = [];
  headers: FrameHeader[] = [];
  #header: FrameHeader | null = null;
  #pieces: Uint8Array[] = [];

  onFrameStart(header: FrameHeader): void {
    assert.equal(this.#header, null, "onFrameStart inside a frame");
    this.#header = header;
    this.#pieces = [];
    this.headers.push(header);
  }

  onFramePayload(bytes: Uint8Array): void {
    const header = this.#header;
    assert.ok(header, "onFramePayload outside a frame");
    assert.ok(bytes.length > 0, "an empty payload piece");
    if (header.opcode >= 8) {
      assert.equal(bytes.length, header.length, "a control frame in pieces");
    }
    // Copied: payload pieces are views of input that the caller may reuse.
    this.#pieces.push(bytes.slice());
  }

  onFrameEnd(): void {
    const header = this.#header;
    assert.ok(header, "onFrameEnd outside a frame");
    const payload = concat(this.#pieces);
    assert.equal(payload.length, header.length, "payload length");
    this.frames.push({
      fin: header.fin,
      rsv: header.rsv,
      opcode: header.opcode,
      payload,
    });
    this.#header = null;
  }
}

/** Decodes whole input; the decoder unmasks in place, so it gets copies. */
function decode(
  chunks: Uint8Array[],
  options: FrameDecoderOptions = {},
): Decoded[] {
  const recorder = new Recorder();
  const decoder = new FrameDecoder(recorder, options);
  for (const chunk of chunks) decoder.push(chunk.slice());
  assert.ok(decoder.idle, "the input ended inside a frame");
  return recorder.frames;
}

/**
 * Feeds `chunks` and expects a `WebSocketError` with `closeCode` by the
 * last one; returns the recorder to check what got through before.
 */
function assertDecodeFails(
  chunks: Uint8Array[],
  options: FrameDecoderOptions,
  closeCode: number,
): Recorder {
  const recorder = new Recorder();
  const decoder = new FrameDecoder(recorder, options);
  const last = chunks.length - 1;
  for (let i = 0; i < last; i++) decoder.push(chunks[i].slice());
  assert.throws(
    () => decoder.push(chunks[last].slice()),
    isCloseError(closeCode),
  );
  return recorder;
}

/** The positions at which to split `bytes` in two: all, or a sample. */
function splitPoints(length: number, every = true): number[] {
  if (every) return Array.from({ length: length + 1 }, (_, i) => i);
  const points = new Set<number>();
  for (let i = 0; i <= 20; i++) points.add(i);
  for (let i = 21; i < length; i += 4099) points.add(i);
  for (let i = length - 4; i <= length; i++) points.add(i);
  return [...points];
}

function assertSplitsDecodeAlike(
  bytes: Uint8Array,
  options: FrameDecoderOptions,
  expected: Decoded[],
  every = true,
): void {
  for (const at of splitPoints(bytes.length, every)) {
    assertFramesEqual(
      decode([bytes.subarray(0, at), bytes.subarray(at)], options),
      expected,
      `split at byte ${at}`,
    );
  }
  const bytewise = Array.from(
    { length: bytes.length },
    (_, i) => bytes.subarray(i, i + 1),
  );
  assertFramesEqual(decode(bytewise, options), expected, "one byte at a time");
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.7 examples

const HELLO = encoder.encode("Hello");
const BINARY_256 = pattern(256);
const BINARY_64K = pattern(65536);

interface Example {
  name: string;
  bytes: Uint8Array;
  role: "server" | "client";
  mask?: Uint8Array;
  frames: Frame[];
}

const EXAMPLES: Example[] = [
  {
    name: "a single-frame unmasked text message",
    bytes: hex("81 05 48 65 6c 6c 6f"),
    role: "client",
    frames: [{ fin: true, opcode: Opcode.Text, payload: HELLO }],
  },
  {
    name: "a single-frame masked text message",
    bytes: hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
    role: "server",
    mask: RFC_KEY,
    frames: [{ fin: true, opcode: Opcode.Text, payload: HELLO }],
  },
  {
    name: "a fragmented unmasked text message",
    bytes: hex("01 03 48 65 6c  80 02 6c 6f"),
    role: "client",
    frames: [
      { fin: false, opcode: Opcode.Text, payload: encoder.encode("Hel") },
      { fin: true, opcode: Opcode.Continuation, payload: encoder.encode("lo") },
    ],
  },
  {
    name: "an unmasked ping",
    bytes: hex("89 05 48 65 6c 6c 6f"),
    role: "client",
    frames: [{ fin: true, opcode: Opcode.Ping, payload: HELLO }],
  },
  {
    name: "a masked pong",
    bytes: hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
    role: "server",
    mask: RFC_KEY,
    frames: [{ fin: true, opcode: Opcode.Pong, payload: HELLO }],
  },
  {
    name: "256 bytes of binary data in a single unmasked frame",
    bytes: concat([hex("82 7e 01 00"), BINARY_256]),
    role: "client",
    frames: [{ fin: true, opcode: Opcode.Binary, payload: BINARY_256 }],
  },
  {
    name: "64 KiB of binary data in a single unmasked frame",
    bytes: concat([hex("82 7f 00 00 00 00 00 01 00 00"), BINARY_64K]),
    role: "client",
    frames: [{ fin: true, opcode: Opcode.Binary, payload: BINARY_64K }],
  },
];

for (const example of EXAMPLES) {
  Deno.test(`§5.7 decoder reads ${example.name} exactly`, () => {
    assertFramesEqual(
      decode([example.bytes], { role: example.role }),
      example.frames.map(decoded),
    );
  });

  Deno.test(`§5.7 encodeFrame writes ${example.name} exactly`, () => {
    const encoded = concat(
      example.frames.map((frame) => encodeFrame(frame, example.mask)),
    );
    assertBytesEqual(encoded, example.bytes);
  });

  Deno.test(`§5.7 decoder reads ${example.name} alike when split at any byte or fed byte by byte`, () => {
    assertSplitsDecodeAlike(
      example.bytes,
      { role: example.role },
      example.frames.map(decoded),
      example.bytes.length < 1000,
    );
  });
}

Deno.test("§5.7 encodeFrame leaves the payload it masks unchanged", () => {
  const payload = encoder.encode("Hello");
  const frame = { fin: true, opcode: Opcode.Text, payload };
  assert.deepEqual(
    encodeFrame(frame, RFC_KEY),
    hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
  );
  assert.deepEqual(payload, HELLO);
});

// ---------------------------------------------------------------------------
// §5.2 payload length encodings

const BOUNDARIES: [number, string][] = [
  [0, "82 00"],
  [1, "82 01"],
  [125, "82 7d"],
  [126, "82 7e 00 7e"],
  [127, "82 7e 00 7f"],
  [65535, "82 7e ff ff"],
  [65536, "82 7f 00 00 00 00 00 01 00 00"],
];

Deno.test("§5.2 encoder writes the exact header for lengths 0, 1, 125, 126, 127, 65535 and 65536, masked or not", () => {
  for (const [length, header] of BOUNDARIES) {
    const payload = pattern(length);
    const frame = { fin: true, opcode: Opcode.Binary, payload };
    const plain = hex(header);
    assert.deepEqual(encodeHeader(frame, length), plain, `${length}`);
    const encoded = encodeFrame(frame);
    assertBytesEqual(encoded, concat([plain, payload]), `${length}`);

    const masked = concat([plain, RFC_KEY]);
    masked[1] |= 0x80;
    assert.deepEqual(encodeHeader(frame, length, RFC_KEY), masked);
    const maskedFrame = encodeFrame(frame, RFC_KEY);
    assert.deepEqual(maskedFrame.subarray(0, masked.length), masked);
    assert.equal(maskedFrame.length, masked.length + length);
  }
});

Deno.test("§5.2 a frame written into a shared buffer at an offset matches encodeFrame and leaves the bytes around it alone", () => {
  for (const [length] of BOUNDARIES) {
    for (const mask of [undefined, RFC_KEY]) {
      const frame = {
        fin: true,
        opcode: Opcode.Binary,
        payload: pattern(length),
      };
      const expected = encodeFrame(frame, mask);
      const target = new Uint8Array(expected.length + 10).fill(0xee);
      assert.equal(
        writeFrame(target, 7, frame, frame.payload, mask),
        expected.length,
      );
      assertBytesEqual(
        target.subarray(7, 7 + expected.length),
        expected,
        `${length}`,
      );
      assert.deepEqual([...target.subarray(0, 7)], Array(7).fill(0xee));
      assert.deepEqual([...target.subarray(7 + expected.length)], [
        0xee,
        0xee,
        0xee,
      ]);
    }
  }
});

Deno.test("§5.2 decoder round-trips lengths 0, 1, 125, 126, 127, 65535 and 65536, masked or not", () => {
  for (const [length] of BOUNDARIES) {
    const frame = {
      fin: true,
      opcode: Opcode.Binary,
      payload: pattern(length),
    };
    const expected = [decoded(frame)];
    assertFramesEqual(
      decode([encodeFrame(frame)], { role: "client" }),
      expected,
    );
    assertFramesEqual(
      decode([encodeFrame(frame, RFC_KEY)], { role: "server" }),
      expected,
    );
  }
});

Deno.test("§5.2 decoder reads lengths 0, 125, 126, 127, 65535 and 65536 alike when the header is split at any byte", () => {
  for (const [length] of BOUNDARIES) {
    const frame = {
      fin: true,
      opcode: Opcode.Binary,
      payload: pattern(length),
    };
    const bytes = encodeFrame(frame, RFC_KEY);
    const expected = [decoded(frame)];
    for (let at = 0; at <= 16 && at <= bytes.length; at++) {
      assertFramesEqual(
        decode([bytes.subarray(0, at), bytes.subarray(at)], { role: "server" }),
        expected,
        `length ${length}, split at ${at}`,
      );
    }
  }
});

Deno.test("§5.2 encoder and decoder handle 64-bit lengths above 4 GiB in the header", () => {
  const cases: [number, string][] = [
    [2 ** 32, "82 7f 00 00 00 01 00 00 00 00"],
    [2 ** 32 + 5, "82 7f 00 00 00 01 00 00 00 05"],
    [0x1234_5678_9abc, "82 7f 00 00 12 34 56 78 9a bc"],
    [Number.MAX_SAFE_INTEGER, "82 7f 00 1f ff ff ff ff ff ff"],
  ];
  for (const [length, header] of cases) {
    const bytes = hex(header);
    assert.deepEqual(encodeHeader({ fin: true, opcode: 2 }, length), bytes);
    // Only the header is fed: the decoder announces the frame at once.
    const recorder = new Recorder();
    new FrameDecoder(recorder, { role: "client" }).push(bytes);
    assert.equal(recorder.headers.length, 1);
    assert.deepEqual(recorder.headers[0], {
      fin: true,
      rsv: 0,
      opcode: 2,
      length,
    });
  }
});

Deno.test("§5.2 decoder without maxPayloadLength fails a 64-bit length of 2^53 or more, which a number cannot hold exactly, with 1009", () => {
  for (
    const header of [
      "82 7f 00 20 00 00 00 00 00 00",
      "82 7f 7f ff ff ff ff ff ff ff",
    ]
  ) {
    const recorder = new Recorder();
    assertCloseError(
      () => new FrameDecoder(recorder, { role: "client" }).push(hex(header)),
      1009,
    );
    assert.equal(recorder.headers.length, 0);
  }
});

Deno.test("§5.2 encodeFrame writes FIN, RSV1, RSV2, RSV3 and the opcode bits", () => {
  const payload = new Uint8Array(0);
  const cases: [Frame, number][] = [
    [{ fin: true, opcode: 1, payload }, 0x81],
    [{ fin: false, opcode: 0, payload }, 0x00],
    [{ fin: true, opcode: 2, payload, rsv1: true }, 0xc2],
    [{ fin: true, opcode: 2, payload, rsv2: true }, 0xa2],
    [{ fin: true, opcode: 2, payload, rsv3: true }, 0x92],
    [{ fin: false, opcode: 0, payload, rsv1: true, rsv3: true }, 0x50],
    [{ fin: true, opcode: 9, payload, rsv2: true }, 0xa9],
  ];
  for (const [frame, b0] of cases) {
    assert.deepEqual(encodeFrame(frame), new Uint8Array([b0, 0]));
  }
});

Deno.test("§5.5 encodeFrame refuses a control payload over 125 bytes with a RangeError, and a fragmented control frame with a TypeError", () => {
  for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
    assert.equal(
      encodeFrame({ fin: true, opcode, payload: pattern(125) }).length,
      127,
    );
    assert.throws(
      () => encodeFrame({ fin: true, opcode, payload: pattern(126) }),
      RangeError,
    );
    assert.throws(
      () => encodeFrame({ fin: false, opcode, payload: pattern(1) }),
      TypeError,
    );
  }
});

Deno.test("§5.2 encodeFrame refuses reserved opcodes 3–7 and 11–15 and values that are not opcodes with a RangeError", () => {
  const payload = new Uint8Array(0);
  for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15, 16, -1, 1.5]) {
    assert.throws(
      () => encodeFrame({ fin: true, opcode, payload }),
      RangeError,
      `${opcode}`,
    );
  }
  assert.throws(
    () => encodeFrame({ fin: true, opcode: 1, payload }, new Uint8Array(3)),
    RangeError,
  );
});

Deno.test("§5.5 FrameEncoderStream errors with a RangeError on a control payload over 125 bytes", async () => {
  const bytes = ReadableStream.from([
    { fin: true, opcode: Opcode.Ping, payload: pattern(126) },
  ]).pipeThrough(new FrameEncoderStream());
  await assert.rejects(Array.fromAsync(bytes), RangeError);
});

// ---------------------------------------------------------------------------
// Chunking

/** Several frames of every kind and length class, for the split tests. */
const STREAM_FRAMES: Frame[] = [
  { fin: true, opcode: Opcode.Text, payload: HELLO },
  { fin: false, opcode: Opcode.Binary, payload: pattern(3) },
  { fin: true, opcode: Opcode.Ping, payload: new Uint8Array(0) },
  { fin: false, opcode: Opcode.Continuation, payload: new Uint8Array(0) },
  { fin: true, opcode: Opcode.Pong, payload: pattern(125) },
  { fin: true, opcode: Opcode.Continuation, payload: pattern(126) },
  { fin: true, opcode: Opcode.Binary, payload: pattern(300) },
  { fin: true, opcode: Opcode.Close, payload: hex("03 e8") },
  { fin: true, opcode: Opcode.Text, payload: encoder.encode("é😀") },
];

Deno.test("§5.2 decoder reads a stream of unmasked frames alike when split in two at every byte or fed byte by byte", () => {
  const bytes = concat(STREAM_FRAMES.map((frame) => encodeFrame(frame)));
  assertSplitsDecodeAlike(
    bytes,
    { role: "client" },
    STREAM_FRAMES.map(decoded),
  );
});

Deno.test("§5.2 decoder reads a stream of masked frames alike when split in two at every byte or fed byte by byte", () => {
  const random = mulberry32(1);
  const bytes = concat(
    STREAM_FRAMES.map((frame) => encodeFrame(frame, randomBytes(random, 4))),
  );
  assertSplitsDecodeAlike(
    bytes,
    { role: "server" },
    STREAM_FRAMES.map(decoded),
  );
});

Deno.test("§5.2 decoder passes unmasked data payloads on as views of the input, unmasking masked ones in place", () => {
  const views: Uint8Array[] = [];
  const decoder = new FrameDecoder({
    onFrameStart() {},
    onFramePayload(bytes) {
      views.push(bytes);
    },
    onFrameEnd() {},
  }, { role: "server" });
  const chunk = encodeFrame(
    { fin: true, opcode: Opcode.Binary, payload: pattern(1000) },
    RFC_KEY,
  );
  decoder.push(chunk);
  assert.equal(views.length, 1);
  assert.equal(views[0].buffer, chunk.buffer);
  assertBytesEqual(chunk.subarray(8), pattern(1000));
});

Deno.test("§5.2 decoder and encoder round-trip seeded random frames of random lengths, opcodes, FIN, RSV1 and masks in random chunks", () => {
  const random = mulberry32(0x5eed);
  for (const role of ["server", "client"] as const) {
    const frames: Frame[] = [];
    for (let i = 0; i < 800; i++) {
      const control = random() < 0.25;
      const r = random();
      const length = control
        ? (random() * 126) | 0
        : r < 0.55
        ? (random() * 126) | 0
        : r < 0.85
        ? 126 + ((random() * 900) | 0)
        : r < 0.95
        ? 1024 + ((random() * (65536 - 1024)) | 0)
        : 65536 + ((random() * 70000) | 0);
      frames.push({
        fin: control || random() < 0.5,
        opcode: control ? 8 + ((random() * 3) | 0) : (random() * 3) | 0,
        payload: randomBytes(random, length),
        rsv1: random() < 0.3,
      });
    }
    const bytes = concat(
      frames.map((frame) =>
        encodeFrame(
          frame,
          role === "server" ? randomBytes(random, 4) : undefined,
        )
      ),
    );
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length;) {
      const r = random();
      const size = 1 +
        ((random() * (r < 0.3 ? 16 : r < 0.8 ? 4096 : 100_000)) | 0);
      chunks.push(bytes.subarray(at, at + size));
      at += size;
    }
    assertFramesEqual(
      decode(chunks, { role, allowRsv1: true }),
      frames.map(decoded),
      role,
    );
  }
});

// ---------------------------------------------------------------------------
// §5.1, §5.2, §5.5 header rules: each refused with its exact close code

Deno.test("§5.1 decoder (server) rejects an unmasked client frame with 1002 from its first two bytes", () => {
  assertDecodeFails([hex("81 05")], { role: "server" }, 1002);
  assertDecodeFails([hex("81 05 48 65 6c 6c 6f")], {}, 1002);
  assertDecodeFails([hex("89 00")], { role: "server" }, 1002);
});

Deno.test("§5.1 decoder (client) rejects a masked server frame with 1002", () => {
  assertDecodeFails([hex("81 85")], { role: "client" }, 1002);
  assertDecodeFails(
    [hex("81 85 37 fa 21 3d 7f 9f 4d 51 58")],
    { role: "client" },
    1002,
  );
});

Deno.test("§5.2 decoder rejects RSV1, RSV2 or RSV3 without a negotiated extension with 1002", () => {
  for (const b0 of [0xc1, 0xa1, 0x91, 0xf1, 0xc9, 0xc0]) {
    assertDecodeFails([new Uint8Array([b0, 0x00])], { role: "client" }, 1002);
    assertDecodeFails(
      [new Uint8Array([b0, 0x80, 1, 2, 3, 4])],
      { role: "server" },
      1002,
    );
  }
});

Deno.test("§5.2 decoder accepts RSV1 with allowRsv1 but still rejects RSV2 and RSV3 with 1002", () => {
  assert.deepEqual(
    decode([hex("c1 05 48 65 6c 6c 6f")], { role: "client", allowRsv1: true }),
    [{ fin: true, rsv: 4, opcode: 1, payload: HELLO }],
  );
  for (const b0 of [0xa1, 0x91, 0xe1, 0xd1]) {
    assertDecodeFails(
      [new Uint8Array([b0, 0x00])],
      { role: "client", allowRsv1: true },
      1002,
    );
  }
});

Deno.test("§5.2 decoder rejects reserved opcodes 3–7 and 11–15 with 1002", () => {
  for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
    for (const fin of [0x80, 0]) {
      assertDecodeFails(
        [new Uint8Array([fin | opcode, 0x00])],
        { role: "client" },
        1002,
      );
      assertDecodeFails(
        [new Uint8Array([fin | opcode, 0x80])],
        { role: "server" },
        1002,
      );
    }
  }
});

Deno.test("§5.5 decoder rejects a fragmented control frame with 1002", () => {
  for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
    assertDecodeFails(
      [new Uint8Array([opcode, 0x00])],
      { role: "client" },
      1002,
    );
    assertDecodeFails(
      [new Uint8Array([opcode, 0x82, 1, 2, 3, 4, 5, 6])],
      { role: "server" },
      1002,
    );
  }
});

Deno.test("§5.5 decoder rejects a control frame payload of 126 bytes or more with 1002 from its first two bytes", () => {
  for (const b0 of [0x88, 0x89, 0x8a]) {
    assertDecodeFails([new Uint8Array([b0, 0x7e])], { role: "client" }, 1002);
    assertDecodeFails([new Uint8Array([b0, 0x7f])], { role: "client" }, 1002);
    assertDecodeFails([new Uint8Array([b0, 0xfe])], { role: "server" }, 1002);
  }
  // 125 bytes is the largest control payload and passes.
  const ping = { fin: true, opcode: Opcode.Ping, payload: pattern(125) };
  assert.deepEqual(decode([encodeFrame(ping)], { role: "client" }), [
    decoded(ping),
  ]);
});

Deno.test("§5.2 decoder rejects a 64-bit length with the most significant bit set with 1002", () => {
  assertDecodeFails(
    [hex("82 7f 80 00 00 00 00 00 00 00")],
    { role: "client" },
    1002,
  );
  assertDecodeFails(
    [hex("82 7f ff ff ff ff ff ff ff ff")],
    { role: "client" },
    1002,
  );
  assertDecodeFails(
    [hex("82 ff 80 00 00 00 00 00 00 05 01 02 03 04")],
    { role: "server" },
    1002,
  );
});

Deno.test("§10.4 decoder refuses a frame over maxPayloadLength with 1009 from its header alone", () => {
  const cases: [string, number, "server" | "client"][] = [
    ["82 05", 4, "client"],
    ["82 7e 01 00", 255, "client"],
    ["82 7f 00 00 00 00 00 01 00 00", 65535, "client"],
    ["82 7f 7f ff ff ff ff ff ff ff", 1 << 20, "client"],
    ["82 fe 01 00 01 02 03 04", 255, "server"],
    ["01 7e 01 00", 255, "client"],
  ];
  for (const [header, maxPayloadLength, role] of cases) {
    // Only the header's bytes are fed, in one chunk and byte by byte.
    const bytes = hex(header);
    const options = { role, maxPayloadLength };
    const recorder = assertDecodeFails([bytes], options, 1009);
    assert.equal(recorder.headers.length, 0, header);
    const bytewise = Array.from(bytes, (b) => new Uint8Array([b]));
    assertDecodeFails(bytewise, options, 1009);
  }
});

Deno.test("§10.4 decoder accepts a frame of exactly maxPayloadLength", () => {
  const frame = { fin: true, opcode: Opcode.Binary, payload: pattern(256) };
  assert.deepEqual(
    decode([encodeFrame(frame)], { role: "client", maxPayloadLength: 256 }),
    [decoded(frame)],
  );
});

Deno.test("§7.1.7 decoder stays failed: after an error every push throws the same error", () => {
  const decoder = new FrameDecoder(new Recorder(), { role: "server" });
  let first: unknown;
  try {
    decoder.push(hex("81 05"));
  } catch (error) {
    first = error;
  }
  assert.ok(first instanceof WebSocketError);
  // Even a valid masked frame is refused now.
  assert.throws(
    () => decoder.push(hex("81 85 37 fa 21 3d 7f 9f 4d 51 58")),
    (error) => error === first,
  );
});

Deno.test("§7.1.7 decoder passes on a WebSocketError thrown by its handler and stays failed", () => {
  const failure = new WebSocketError("Invalid UTF-8", { closeCode: 1007 });
  const decoder = new FrameDecoder({
    onFrameStart() {},
    onFramePayload() {
      throw failure;
    },
    onFrameEnd() {},
  }, { role: "client" });
  assert.throws(() => decoder.push(hex("81 05 48 65")), (e) => e === failure);
  assert.throws(() => decoder.push(hex("6c 6c 6f")), (e) => e === failure);
});

// ---------------------------------------------------------------------------
// Fuzzing

/** What {@linkcode fuzzFrameDecoder} needs, passed in so it can run in a worker. */
interface FuzzLibrary {
  FrameDecoder: typeof FrameDecoder;
  WebSocketError: typeof WebSocketError;
  encodeFrame: typeof encodeFrame;
}

interface FuzzResult {
  cases: number;
  frames: number;
  clean: number;
  closeCodes: Record<string, number>;
  failures: string[];
}

/**
 * Feeds random bytes and mutated valid frames, in random chunks, to a
 * `FrameDecoder`; every outcome must be frames or a `WebSocketError` with
 * 1002 or 1009. Self-contained (it uses only its arguments and the global
 * `mulberry32`) because its source text runs in a worker.
 */
function fuzzFrameDecoder(
  lib: FuzzLibrary,
  seed: number,
  cases: number,
): FuzzResult {
  const random = mulberry32(seed);
  const int = (n: number) => (random() * n) | 0;
  const bytes = (n: number) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = int(256);
    return out;
  };
  const result: FuzzResult = {
    cases,
    frames: 0,
    clean: 0,
    closeCodes: {},
    failures: [],
  };
  for (let c = 0; c < cases; c++) {
    const role = random() < 0.5 ? "server" : "client";
    const options = {
      role: role as "server" | "client",
      allowRsv1: random() < 0.3,
      maxPayloadLength: random() < 0.5 ? undefined : int(400),
    };
    let input: Uint8Array;
    if (random() < 0.3) {
      input = bytes(int(48));
    } else {
      const parts: Uint8Array[] = [];
      for (let n = 1 + int(4); n > 0; n--) {
        const control = random() < 0.3;
        const payload = bytes(
          control ? int(126) : int(random() < 0.8 ? 130 : 700),
        );
        parts.push(lib.encodeFrame({
          fin: control || random() < 0.7,
          opcode: control ? 8 + int(3) : int(3),
          payload,
          rsv1: random() < 0.2,
        }, role === "server" ? bytes(4) : undefined));
      }
      let joined: number[] = [];
      for (const part of parts) joined.push(...part);
      for (let m = 1 + int(3); m > 0; m--) {
        // Mutations land in the first 16 bytes more often, where headers are.
        const at = random() < 0.6
          ? int(Math.min(16, joined.length + 1))
          : int(joined.length + 1);
        const kind = int(6);
        if (kind === 0 && at < joined.length) joined[at] ^= 1 << int(8);
        else if (kind === 1 && at < joined.length) joined[at] = int(256);
        else if (kind === 2) joined = joined.slice(0, at);
        else if (kind === 3) joined.splice(at, 0, int(256));
        else if (kind === 4) joined.splice(at, 1 + int(4));
        else joined.splice(at, 0, ...bytes(1 + int(12)));
      }
      input = Uint8Array.from(joined);
    }
    let depth = 0;
    let length = 0;
    let received = 0;
    // Each handler call takes at least one byte of input, or two for an
    // empty frame's start and end: more calls than that would mean a loop.
    let calls = 0;
    let budget = 0;
    const check = (ok: boolean, what: string) => {
      if (!ok) throw new Error(`Handler contract broken: ${what}`);
    };
    const decoder = new lib.FrameDecoder({
      onFrameStart(header) {
        check(++calls <= budget, "no progress");
        check(depth === 0, "onFrameStart inside a frame");
        check(
          Number.isInteger(header.length) && header.length >= 0,
          "length",
        );
        check(
          options.maxPayloadLength === undefined ||
            header.length <= options.maxPayloadLength,
          "a frame over the limit",
        );
        depth = 1;
        length = header.length;
        received = 0;
      },
      onFramePayload(piece) {
        check(++calls <= budget, "no progress");
        check(depth === 1 && piece.length > 0, "an empty or stray piece");
        received += piece.length;
        check(received <= length, "more payload than the header said");
      },
      onFrameEnd() {
        check(++calls <= budget, "no progress");
        check(depth === 1 && received === length, "a short or stray frame");
        depth = 0;
        result.frames++;
      },
    }, options);
    let error: unknown = null;
    try {
      for (let at = 0; at < input.length;) {
        const size = 1 + int(random() < 0.5 ? 4 : 64);
        const chunk = input.subarray(at, at + size);
        budget += 2 * chunk.length;
        decoder.push(chunk);
        at += size;
      }
      result.clean++;
    } catch (caught) {
      error = caught;
    }
    if (error === null) continue;
    const where = `case ${c}, ${role}, input ${
      Array.from(input, (b) => b.toString(16).padStart(2, "0")).join("")
    }`;
    if (!(error instanceof lib.WebSocketError)) {
      result.failures.push(`${where}: ${error}`);
    } else if (error.closeCode !== 1002 && error.closeCode !== 1009) {
      result.failures.push(`${where}: close code ${error.closeCode}`);
    } else {
      result.closeCodes[error.closeCode] =
        (result.closeCodes[error.closeCode] ?? 0) + 1;
      try {
        decoder.push(new Uint8Array(1));
        result.failures.push(`${where}: accepted input after failing`);
      } catch (again) {
        if (again !== error) result.failures.push(`${where}: a new error`);
      }
    }
  }
  return result;
}

Deno.test("§5.2 fuzz: random bytes and mutated frames give only frames or a WebSocketError with 1002 or 1009, and never hang", async () => {
  // The fuzz runs in a worker so that a decoder stuck in a loop fails the
  // test on a timeout instead of hanging the suite.
  const frameUrl = new URL("../src/protocol/frame.ts", import.meta.url).href;
  const errorUrl =
    new URL("../src/protocol/websocket_error.ts", import.meta.url).href;
  const source = `
    import { encodeFrame, FrameDecoder } from ${JSON.stringify(frameUrl)};
    import { WebSocketError } from ${JSON.stringify(errorUrl)};
    ${mulberry32}
    const fuzz = ${fuzzFrameDecoder};
    self.onmessage = ({ data }) => {
      const lib = { encodeFrame, FrameDecoder, WebSocketError };
      self.postMessage(fuzz(lib, data.seed, data.cases));
    };
  `;
  const url = URL.createObjectURL(
    new Blob([source], { type: "text/javascript" }),
  );
  const worker = new Worker(url, { type: "module" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await new Promise<FuzzResult>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new Error("The fuzz did not finish in 30 s: a hang?")),
        30_000,
      );
      worker.onmessage = (event) => resolve(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(event.message));
      };
      worker.postMessage({ seed: 0xf00d, cases: 5000 });
    });
    assert.deepEqual(result.failures, []);
    // The run must have reached every outcome for the test to mean anything.
    assert.ok(result.clean > 500, `clean cases: ${result.clean}`);
    assert.ok(result.frames > 1000, `frames: ${result.frames}`);
    assert.ok(result.closeCodes[1002] > 500, JSON.stringify(result.closeCodes));
    assert.ok(result.closeCodes[1009] > 100, JSON.stringify(result.closeCodes));
  } finally {
    clearTimeout(timer);
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});

// ---------------------------------------------------------------------------
// The TransformStream stages

Deno.test("§5.7 FrameDecoderStream turns bytes in any chunking into frames", async () => {
  const bytes = concat([
    hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
    hex("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
    encodeFrame({ fin: true, opcode: 2, payload: pattern(300) }, RFC_KEY),
  ]);
  const chunks = [
    bytes.subarray(0, 3),
    bytes.subarray(3, 20),
    bytes.subarray(20),
  ];
  const frames = await Array.fromAsync(
    ReadableStream.from(chunks).pipeThrough(new FrameDecoderStream()),
  );
  assert.deepEqual(frames, [
    {
      fin: true,
      opcode: 1,
      payload: HELLO,
      rsv1: false,
      rsv2: false,
      rsv3: false,
    },
    {
      fin: true,
      opcode: 10,
      payload: HELLO,
      rsv1: false,
      rsv2: false,
      rsv3: false,
    },
    {
      fin: true,
      opcode: 2,
      payload: pattern(300),
      rsv1: false,
      rsv2: false,
      rsv3: false,
    },
  ]);
});

Deno.test("§5.2 FrameDecoderStream reports RSV1 when allowRsv1 is set", async () => {
  const frames = await Array.fromAsync(
    ReadableStream.from([hex("c1 05 48 65 6c 6c 6f")]).pipeThrough(
      new FrameDecoderStream({ role: "client", allowRsv1: true }),
    ),
  );
  assert.deepEqual(frames, [
    {
      fin: true,
      opcode: 1,
      payload: HELLO,
      rsv1: true,
      rsv2: false,
      rsv3: false,
    },
  ]);
});

Deno.test("§5.1 FrameDecoderStream errors with a WebSocketError carrying 1002 on an unmasked client frame", async () => {
  const stream = ReadableStream.from([hex("81 05 48 65 6c 6c 6f")])
    .pipeThrough(new FrameDecoderStream({ role: "server" }));
  await assert.rejects(Array.fromAsync(stream), (error: unknown) => {
    assert.ok(error instanceof WebSocketError);
    assert.equal(error.closeCode, 1002);
    return true;
  });
});

Deno.test("§10.4 FrameDecoderStream errors with a WebSocketError carrying 1009 on a frame over maxPayloadLength", async () => {
  const stream = ReadableStream.from([hex("82 7e 01 00")])
    .pipeThrough(
      new FrameDecoderStream({ role: "client", maxPayloadLength: 255 }),
    );
  await assert.rejects(Array.fromAsync(stream), (error: unknown) => {
    assert.ok(error instanceof WebSocketError);
    assert.equal(error.closeCode, 1009);
    return true;
  });
});

Deno.test("§7.1.5 FrameDecoderStream errors with a WebSocketError carrying 1006 when its input ends inside a frame", async () => {
  for (const bytes of [hex("81"), hex("81 05 48 65")]) {
    const stream = ReadableStream.from([bytes])
      .pipeThrough(new FrameDecoderStream({ role: "client" }));
    await assert.rejects(
      Array.fromAsync(stream),
      isCloseError(1006),
    );
  }
});

Deno.test("§5.7 FrameEncoderStream writes unmasked frames exactly", async () => {
  const frames: Frame[] = [
    { fin: true, opcode: Opcode.Text, payload: HELLO },
    { fin: true, opcode: Opcode.Ping, payload: HELLO },
  ];
  const chunks = await Array.fromAsync(
    ReadableStream.from(frames).pipeThrough(new FrameEncoderStream()),
  );
  assert.deepEqual(chunks, [
    hex("81 05 48 65 6c 6c 6f"),
    hex("89 05 48 65 6c 6c 6f"),
  ]);
});

Deno.test("§5.3 FrameEncoderStream with mask: true masks every frame with its own key and leaves payloads unchanged", async () => {
  const frames: Frame[] = [
    { fin: false, opcode: Opcode.Text, payload: encoder.encode("Hel") },
    { fin: true, opcode: Opcode.Continuation, payload: encoder.encode("lo") },
    { fin: true, opcode: Opcode.Binary, payload: pattern(70000) },
  ];
  const chunks = await Array.fromAsync(
    ReadableStream.from(frames).pipeThrough(
      new FrameEncoderStream({ mask: true }),
    ),
  );
  assert.equal(chunks.length, 3);
  for (const chunk of chunks) assert.equal(chunk[1] & 0x80, 0x80);
  // Random 4-byte keys: equal keys would happen once in 2³² runs.
  assert.notDeepEqual(chunks[0].subarray(2, 6), chunks[1].subarray(2, 6));
  assertBytesEqual(frames[2].payload, pattern(70000));
  assertFramesEqual(decode(chunks, { role: "server" }), frames.map(decoded));
});
