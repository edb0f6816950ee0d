// The protocol state machine (src/protocol/_protocol.ts) driven without sockets:
// the peer's bytes in, handler events and the bytes it queues out.

import assert from "node:assert/strict";
import {
  type CloseResult,
  type FrameSink,
  Protocol,
  type ProtocolOptions,
} from "../src/protocol/_protocol.ts";
import type { Message } from "../src/protocol/message_assembler.ts";
import { WebSocketError } from "../src/protocol/websocket_error.ts";
import { closePayload, frame, readFrames, type WireFrame } from "./_wire.ts";
import { concat, mulberry32 } from "./_util.ts";

// ---------------------------------------------------------------------------
// Helpers: the peer's frames and the reading of what the protocol queued,
// through the independent wire format of _wire.ts; a recording sink and
// handler.

type Role = "server" | "client";
const ROLES: Role[] = ["server", "client"];

// The RFC 6455 §5.2 opcodes, spelled out so that the test states them itself.
const CONTINUATION = 0x0;
const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

const RSV1 = 4;
const RSV2 = 2;
const RSV3 = 1;

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

type Bytes = Uint8Array | string | number[];

function toBytes(data: Bytes): Uint8Array {
  if (typeof data === "string") return encoder.encode(data);
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

interface PeerFrame {
  opcode: number;
  payload?: Bytes;
  /** Default true. */
  fin?: boolean;
  /** RSV1, RSV2, RSV3 as bits 4, 2, 1. */
  rsv?: number;
  /** Default: as the peer of `role` must (a client masks, a server not). */
  masked?: boolean;
  /** The length the header declares, when no payload follows it. */
  length?: number;
}

let keySeed = 1;

/**
 * A frame as the peer of a `role` endpoint sends it (a client's masked, a
 * server's not, unless `masked` says otherwise). Each masked frame gets its
 * own key.
 */
function peerFrame(role: Role, peer: PeerFrame): Uint8Array {
  const masked = peer.masked ?? role === "server";
  const key = [0, 0, 0, 0];
  if (masked) {
    const next = mulberry32(keySeed++);
    for (let i = 0; i < 4; i++) key[i] = 1 + Math.floor(next() * 255);
  }
  return frame(peer.opcode, toBytes(peer.payload ?? []), {
    fin: peer.fin,
    rsv: peer.rsv,
    mask: masked,
    key,
    length: peer.length,
  });
}

/** Encodes several peer frames into one chunk. */
function peerFrames(role: Role, ...frames: PeerFrame[]): Uint8Array {
  return concat(frames.map((frame) => peerFrame(role, frame)));
}

/**
 * A FrameSink that keeps everything queued, in order, as one byte log.
 * Reservations start at odd offsets of a shared batch, so that a writer
 * that ignores the offset `reserve` returns is caught.
 */
class RecordingSink implements FrameSink {
  batch: Uint8Array = new Uint8Array(0);
  /** Everything queued, in order: committed copies and pushed arrays. */
  parts: Uint8Array[] = [];
  /** The arrays queued by reference with `push`. */
  pushed: Uint8Array[] = [];
  /** Bytes queued so far. */
  length = 0;
  #next = 0;
  #reserved = -1;
  #size = 0;

  reserve(size: number): number {
    assert.equal(this.#reserved, -1, "reserve() twice without commit()");
    if (this.batch.length - this.#next < size) {
      this.batch = new Uint8Array(Math.max(size + 3, 512)).fill(0xee);
      this.#next = 3;
    }
    this.#reserved = this.#next;
    this.#size = size;
    return this.#reserved;
  }

  commit(used: number): void {
    assert.ok(this.#reserved !== -1, "commit() without reserve()");
    assert.ok(used >= 0 && used <= this.#size, "commit() over the reserve");
    this.parts.push(this.batch.slice(this.#reserved, this.#reserved + used));
    this.length += used;
    this.#next = this.#reserved + used;
    this.#reserved = -1;
  }

  push(bytes: Uint8Array): void {
    assert.equal(this.#reserved, -1, "push() between reserve() and commit()");
    this.parts.push(bytes);
    this.pushed.push(bytes);
    this.length += bytes.length;
  }

  bytes(): Uint8Array {
    return concat(this.parts);
  }
}

/** How `end` was called, with the error reduced to what it carries. */
interface End {
  closeCode: number;
  reason: string;
  error: { closeCode: number; reason: string } | null;
}

/** What the handler was told, in order. */
type Event =
  | { message: Message }
  | { compressed: { text: boolean; payload: Uint8Array } }
  | { end: End };

/** One protocol with a recording handler and sink. */
class Session {
  readonly role: Role;
  readonly sink = new RecordingSink();
  readonly protocol: Protocol;
  readonly events: Event[] = [];
  /** For each event, how many bytes had been queued when it came. */
  readonly sentAt: number[] = [];
  /** What `message()` and `compressedMessage()` return. */
  answer: boolean | void = undefined;
  /** How often `frames()` was called, and what it returns. */
  batches = 0;
  batchAnswer: boolean | void = undefined;

  constructor(role: Role, options: Partial<ProtocolOptions> = {}) {
    this.role = role;
    const record = (event: Event) => {
      this.events.push(event);
      this.sentAt.push(this.sink.length);
    };
    this.protocol = new Protocol(
      { role, maxMessageSize: 1 << 20, ...options },
      {
        message: (message) => {
          record({ message });
          return this.answer;
        },
        compressedMessage: (text, payload) => {
          record({ compressed: { text, payload: payload.slice() } });
          return this.answer;
        },
        frames: () => {
          this.batches++;
          return this.batchAnswer;
        },
        end: (result: CloseResult) => {
          const error = result.error;
          if (error !== undefined) {
            assert.ok(error instanceof WebSocketError, "not a WebSocketError");
          }
          record({
            end: {
              closeCode: result.closeCode,
              reason: result.reason,
              error: error
                ? { closeCode: error.closeCode, reason: error.reason }
                : null,
            },
          });
        },
      },
      this.sink,
    );
  }

  /** Feeds each chunk once (a copy: the decoder unmasks in place). */
  feed(...chunks: Uint8Array[]): number[] {
    return chunks.map((chunk) => this.protocol.receive(chunk.slice()));
  }

  /** Feeds peer frames in one chunk; returns what `receive` returned. */
  feedFrames(...frames: PeerFrame[]): number {
    return this.feed(peerFrames(this.role, ...frames))[0];
  }

  /** The frames queued so far, each checked for this role's masking. */
  frames(): WireFrame[] {
    const frames = readFrames(this.sink.bytes());
    for (const frame of frames) {
      if (this.role === "server") {
        assert.equal(frame.key, null, "a server frame was masked (§5.1)");
      } else {
        assert.notEqual(frame.key, null, "a client frame was unmasked (§5.1)");
      }
    }
    return frames;
  }

  ends(): End[] {
    return this.events.flatMap((event) => "end" in event ? [event.end] : []);
  }

  messages(): Message[] {
    return this.events.flatMap((e) => "message" in e ? [e.message] : []);
  }
}

/** A frame's opcode and payload, the parts a peer acts on. */
function summary(frame: WireFrame): [number, number[]] {
  return [frame.opcode, [...frame.payload]];
}

/**
 * Asserts that the connection failed with `code`: exactly one close frame
 * went out, last, carrying `code` and the reason `end` got; `end` got a
 * WebSocketError with that code; the state is closed; and nothing more
 * happens either way afterwards.
 */
function assertFailed(session: Session, code: number): void {
  const ends = session.ends();
  assert.equal(ends.length, 1, "end() is called once");
  const end = ends[0];
  assert.equal(end.closeCode, code);
  assert.deepEqual(end.error, { closeCode: code, reason: end.reason });
  assert.ok(end.reason.length > 0, "a failure gives a reason");
  const frames = session.frames();
  const closes = frames.filter((frame) => frame.opcode === CLOSE);
  assert.equal(closes.length, 1, "exactly one close frame is sent");
  assert.equal(frames.at(-1), closes[0], "the close frame is sent last");
  assert.equal(closes[0].fin, true);
  assert.equal(closes[0].rsv, 0);
  assert.deepEqual(closes[0].payload, closePayload(code, end.reason));
  assert.equal(session.protocol.state, "closed");
  assertInert(session);
}

/** Asserts that a closed protocol ignores input and refuses to send. */
function assertInert(session: Session): void {
  const { protocol, role } = session;
  const events = session.events.length;
  const sent = session.sink.length;
  const late = peerFrames(
    role,
    { opcode: TEXT, payload: "late" },
    { opcode: PING, payload: "p" },
    { opcode: CLOSE, payload: closePayload(1000) },
  );
  assert.equal(protocol.receive(late), late.length);
  const garbage = new Uint8Array([0xff, 0xff, 0xff]);
  assert.equal(protocol.receive(garbage), garbage.length);
  protocol.receiveEof();
  assert.equal(protocol.send("text"), 0);
  assert.equal(protocol.send(new Uint8Array(3)), 0);
  assert.equal(protocol.sendEncoded(new Uint8Array([0x81, 0])), 0);
  protocol.ping();
  protocol.close(1000, "again");
  protocol.fail(1011, "Internal error");
  protocol.abort();
  assert.equal(session.events.length, events, "no event after the end");
  assert.equal(session.sink.length, sent, "nothing is sent after the end");
  assert.equal(protocol.state, "closed");
}

// ---------------------------------------------------------------------------
// §5.5.2, §5.5.3 ping and pong

for (const role of ROLES) {
  Deno.test(`§5.5.2 ${role}: a ping is answered with a pong carrying the same payload (0 and 125 bytes)`, () => {
    for (const size of [0, 1, 125]) {
      const session = new Session(role);
      const payload = Uint8Array.from({ length: size }, (_, i) => i * 7);
      const chunk = peerFrame(role, { opcode: PING, payload });
      assert.equal(session.feed(chunk)[0], chunk.length);
      const frames = session.frames();
      assert.equal(frames.length, 1);
      assert.equal(frames[0].fin, true);
      assert.equal(frames[0].rsv, 0);
      assert.deepEqual(summary(frames[0]), [PONG, [...payload]]);
      assert.deepEqual(session.events, [], "a ping is not an event");
      assert.equal(session.protocol.state, "open");
    }
  });

  Deno.test(`§5.5.2 ${role}: pings in one chunk get one pong each, in order`, () => {
    const session = new Session(role);
    session.feedFrames(
      { opcode: PING, payload: "a" },
      { opcode: PING, payload: "bb" },
      { opcode: PING },
    );
    assert.deepEqual(session.frames().map(summary), [
      [PONG, [0x61]],
      [PONG, [0x62, 0x62]],
      [PONG, []],
    ]);
  });

  Deno.test(`§5.4 §5.5.2 ${role}: a ping between fragments is answered at once, before the message is handed over`, () => {
    const session = new Session(role);
    session.feedFrames(
      { opcode: TEXT, fin: false, payload: "frag" },
      { opcode: PING, payload: "between" },
      { opcode: CONTINUATION, fin: false, payload: "ment" },
    );
    assert.deepEqual(session.frames().map(summary), [
      [PONG, [...toBytes("between")]],
    ]);
    assert.deepEqual(session.events, []);
    session.feedFrames({ opcode: CONTINUATION, payload: "ed" });
    assert.deepEqual(session.events, [{ message: "fragmented" }]);
    assert.equal(session.frames().length, 1);
  });

  Deno.test(`§5.5.3 ${role}: an unsolicited pong is not answered and is not an event`, () => {
    const session = new Session(role);
    session.feedFrames({ opcode: PONG, payload: "heartbeat" }, {
      opcode: PONG,
    });
    assert.equal(session.sink.length, 0);
    assert.deepEqual(session.events, []);
    assert.equal(session.protocol.state, "open");
  });

  Deno.test(`§5.5.2 ${role}: once our close frame is sent, a ping is not answered`, () => {
    const session = new Session(role);
    session.protocol.close(1000);
    const sent = session.sink.length;
    session.feedFrames({ opcode: PING, payload: "late" });
    assert.equal(session.sink.length, sent);
    assert.deepEqual(session.frames().map((f) => f.opcode), [CLOSE]);
    assert.equal(session.protocol.state, "closing");
  });

  Deno.test(`§5.5.2 ${role}: ping() sends a ping with its payload while open, nothing once closing`, () => {
    const session = new Session(role);
    session.protocol.ping();
    session.protocol.ping(toBytes("beat"));
    session.protocol.close(1001);
    session.protocol.ping(toBytes("no"));
    assert.deepEqual(session.frames().map(summary), [
      [PING, []],
      [PING, [...toBytes("beat")]],
      [CLOSE, [0x03, 0xe9]],
    ]);
  });
}

// ---------------------------------------------------------------------------
// §5.5.1, §7.1.2 the closing handshake started by us

for (const role of ROLES) {
  Deno.test(`§5.5.1 §7.1.2 ${role}: close() sends one close frame, data still arrives while closing, the peer's close ends it cleanly`, () => {
    const session = new Session(role);
    const { protocol } = session;
    protocol.close(4000, "done ✓");
    protocol.close(1001, "again");
    assert.equal(protocol.state, "closing");
    let frames = session.frames();
    assert.equal(frames.length, 1, "a second close() sends nothing");
    assert.equal(frames[0].fin, true);
    assert.deepEqual(frames[0].payload, closePayload(4000, "done ✓"));
    assert.equal(frames[0].opcode, CLOSE);

    assert.equal(protocol.send("late"), 0);
    assert.equal(protocol.send(new Uint8Array(1)), 0);
    assert.equal(protocol.sendEncoded(new Uint8Array([0x81, 0])), 0);

    // §7.1.2: the peer may still send data before its close frame.
    session.feedFrames(
      { opcode: TEXT, payload: "still" },
      { opcode: BINARY, fin: false, payload: [1] },
      { opcode: CONTINUATION, payload: [2] },
    );
    assert.deepEqual(session.events, [
      { message: "still" },
      { message: new Uint8Array([1, 2]) },
    ]);
    assert.equal(protocol.state, "closing");

    session.feedFrames({
      opcode: CLOSE,
      payload: closePayload(1000, "ok"),
    });
    assert.deepEqual(session.ends(), [
      { closeCode: 1000, reason: "ok", error: null },
    ]);
    assert.equal(protocol.state, "closed");
    frames = session.frames();
    assert.equal(frames.length, 1, "the peer's close is not echoed");
    assertInert(session);
  });

  Deno.test(`§5.5.1 ${role}: close() without a code sends an empty close frame; the peer's empty close ends with 1005`, () => {
    const session = new Session(role);
    session.protocol.close();
    assert.deepEqual(session.frames().map(summary), [[CLOSE, []]]);
    session.feedFrames({ opcode: CLOSE });
    assert.deepEqual(session.ends(), [
      { closeCode: 1005, reason: "", error: null },
    ]);
    assert.equal(session.protocol.state, "closed");
  });

  Deno.test(`§5.5.1 ${role}: a close reason over 123 bytes is cut at a character boundary`, () => {
    const session = new Session(role);
    session.protocol.close(1000, "é".repeat(70));
    const [frame] = session.frames();
    assert.equal(frame.payload.length, 2 + 122);
    assert.equal(strictUtf8.decode(frame.payload.subarray(2)), "é".repeat(61));
  });

  Deno.test(`§7.1.7 ${role}: a violation while closing fails with 1002 and sends no second close frame`, () => {
    const session = new Session(role);
    session.protocol.close(1000);
    session.feedFrames({ opcode: TEXT, rsv: RSV2, payload: "x" });
    const ends = session.ends();
    assert.equal(ends.length, 1);
    assert.equal(ends[0].closeCode, 1002);
    assert.equal(ends[0].error?.closeCode, 1002);
    assert.deepEqual(session.frames().map(summary), [
      [CLOSE, [0x03, 0xe8]],
    ]);
    assertInert(session);
  });
}

// ---------------------------------------------------------------------------
// §5.5.1 the closing handshake started by the peer

for (const role of ROLES) {
  Deno.test(`§5.5.1 ${role}: the peer's close is echoed with its code and no reason, and end gets the peer's code and reason`, () => {
    const session = new Session(role);
    const chunk = peerFrame(role, {
      opcode: CLOSE,
      payload: closePayload(1001, "going away"),
    });
    assert.equal(session.feed(chunk)[0], chunk.length);
    const frames = session.frames();
    assert.deepEqual(frames.map(summary), [[CLOSE, [0x03, 0xe9]]]);
    assert.deepEqual(session.ends(), [
      { closeCode: 1001, reason: "going away", error: null },
    ]);
    assert.equal(session.sentAt[0], frames[0].size, "echoed before end()");
    assert.equal(session.protocol.state, "closed");
    assertInert(session);
  });

  Deno.test(`§5.5.1 ${role}: an empty close is answered with 1000 and ends with 1005`, () => {
    const session = new Session(role);
    session.feedFrames({ opcode: CLOSE });
    assert.deepEqual(session.frames().map(summary), [[CLOSE, [0x03, 0xe8]]]);
    assert.deepEqual(session.ends(), [
      { closeCode: 1005, reason: "", error: null },
    ]);
    assert.equal(session.protocol.state, "closed");
  });

  Deno.test(`§5.5.1 ${role}: every byte after the peer's close frame in the same chunk is ignored`, () => {
    const session = new Session(role);
    const chunk = concat([
      peerFrames(
        role,
        { opcode: TEXT, payload: "before" },
        { opcode: CLOSE, payload: closePayload(3000, "bye") },
        { opcode: CLOSE, payload: closePayload(1002) },
        { opcode: TEXT, payload: "after" },
        { opcode: PING, payload: "after" },
        { opcode: TEXT, payload: [0xff] },
      ),
      new Uint8Array([0xff, 0x00, 0x13, 0x37]),
    ]);
    assert.equal(
      session.feed(chunk)[0],
      chunk.length,
      "the bytes after the close are used up, not left to feed again",
    );
    assert.deepEqual(session.events, [
      { message: "before" },
      { end: { closeCode: 3000, reason: "bye", error: null } },
    ]);
    assert.deepEqual(session.frames().map(summary), [[CLOSE, [0x0b, 0xb8]]]);
    assertInert(session);
  });
}

// ---------------------------------------------------------------------------
// §7.1.7, §7.4.1 failing the connection, with every failure code

interface FailureCase {
  name: string;
  roles?: Role[];
  options?: Partial<ProtocolOptions>;
  /** What the peer sends, in one chunk. */
  input: (role: Role) => Uint8Array;
  code: number;
}

const text = (payload: Bytes, more: Partial<PeerFrame> = {}): PeerFrame => ({
  opcode: TEXT,
  payload,
  ...more,
});

const failures: FailureCase[] = [
  {
    name: "§5.1 server: an unmasked client frame fails with 1002",
    roles: ["server"],
    input: (role) => peerFrame(role, text("hi", { masked: false })),
    code: 1002,
  },
  {
    name: "§5.1 server: an unmasked client control frame fails with 1002",
    roles: ["server"],
    input: (role) =>
      peerFrame(role, { opcode: PING, payload: "p", masked: false }),
    code: 1002,
  },
  {
    name: "§5.1 client: a masked server frame fails with 1002",
    roles: ["client"],
    input: (role) => peerFrame(role, text("hi", { masked: true })),
    code: 1002,
  },
  ...[RSV1, RSV2, RSV3, RSV1 | RSV2, RSV2 | RSV3].map((rsv) => ({
    name: `§5.2 a reserved bit (${rsv}) without an extension fails with 1002`,
    input: (role: Role) => peerFrame(role, text("x", { rsv })),
    code: 1002,
  })),
  ...[3, 4, 5, 6, 7, 11, 12, 13, 14, 15].map((opcode) => ({
    name: `§5.2 the reserved opcode ${opcode} fails with 1002`,
    input: (role: Role) => peerFrame(role, { opcode, payload: "x" }),
    code: 1002,
  })),
  ...[CLOSE, PING, PONG].map((opcode) => ({
    name: `§5.5 a fragmented control frame (opcode ${opcode}) fails with 1002`,
    input: (role: Role) => peerFrame(role, { opcode, fin: false }),
    code: 1002,
  })),
  ...[126, 65535, 65536].map((length) => ({
    name: `§5.5 a ping declaring a ${length}-byte payload fails with 1002`,
    input: (role: Role) =>
      peerFrame(role, {
        opcode: PING,
        payload: new Uint8Array(Math.min(length, 200)),
        length,
      }),
    code: 1002,
  })),
  {
    name:
      "§5.2 a 64-bit length with its most significant bit set fails with 1002",
    input: (role) => {
      const frame = peerFrame(role, { opcode: BINARY, length: 2 ** 40 });
      frame[2] |= 0x80;
      return frame;
    },
    code: 1002,
  },
  {
    name:
      "§5.4 a continuation frame with no message in progress fails with 1002",
    input: (role) => peerFrame(role, { opcode: CONTINUATION, payload: "x" }),
    code: 1002,
  },
  {
    name: "§5.4 a text frame inside a fragmented message fails with 1002",
    input: (role) => peerFrames(role, text("a", { fin: false }), text("b")),
    code: 1002,
  },
  {
    name: "§5.4 a binary frame inside a fragmented message fails with 1002",
    input: (role) =>
      peerFrames(role, { opcode: BINARY, fin: false, payload: [1] }, {
        opcode: BINARY,
        payload: [2],
      }),
    code: 1002,
  },
  {
    name: "§5.5.1 a close frame with a 1-byte payload fails with 1002",
    input: (role) => peerFrame(role, { opcode: CLOSE, payload: [0x03] }),
    code: 1002,
  },
  ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535].map((
    code,
  ) => ({
    name: `§7.4.1 a close frame with the invalid code ${code} fails with 1002`,
    input: (role: Role) =>
      peerFrame(role, { opcode: CLOSE, payload: closePayload(code) }),
    code: 1002,
  })),
  {
    name:
      "RFC 7692 §6.1 with compression, RSV1 on a continuation frame fails with 1002",
    options: { compression: true },
    input: (role) =>
      peerFrames(role, text("a", { fin: false, rsv: RSV1 }), {
        opcode: CONTINUATION,
        rsv: RSV1,
        payload: "b",
      }),
    code: 1002,
  },
  ...[PING, PONG, CLOSE].map((opcode) => ({
    name:
      `RFC 7692 §6.1 with compression, RSV1 on a control frame (opcode ${opcode}) fails with 1002`,
    options: { compression: true },
    input: (role: Role) =>
      peerFrame(role, { opcode, rsv: RSV1, payload: closePayload(1000) }),
    code: 1002,
  })),
  ...[RSV2, RSV3, RSV1 | RSV2].map((rsv) => ({
    name:
      `RFC 7692 §6 with compression, the reserved bits ${rsv} still fail with 1002`,
    options: { compression: true },
    input: (role: Role) => peerFrame(role, text("x", { rsv })),
    code: 1002,
  })),
  {
    name: "§8.1 invalid UTF-8 in a text message fails with 1007",
    input: (role) => peerFrame(role, text([0x68, 0x69, 0xc0, 0x80])),
    code: 1007,
  },
  {
    name: "§8.1 a text message ending inside a UTF-8 sequence fails with 1007",
    input: (role) =>
      peerFrames(role, text([0x63, 0xe2], { fin: false }), {
        opcode: CONTINUATION,
        payload: [0x98],
      }),
    code: 1007,
  },
  {
    name: "§8.1 a lone surrogate (CESU-8) in a text message fails with 1007",
    input: (role) => peerFrame(role, text([0xed, 0xa0, 0x80])),
    code: 1007,
  },
  {
    name: "§5.5.1 §8.1 invalid UTF-8 in a close reason fails with 1007",
    input: (role) =>
      peerFrame(role, {
        opcode: CLOSE,
        payload: [0x03, 0xe8, 0x6f, 0xff],
      }),
    code: 1007,
  },
  {
    name: "§10.4 a message of more than maxFragments frames fails with 1008",
    options: { maxFragments: 3 },
    input: (role) =>
      peerFrames(
        role,
        text("a", { fin: false }),
        { opcode: CONTINUATION, fin: false, payload: "b" },
        { opcode: CONTINUATION, fin: false, payload: "c" },
        { opcode: CONTINUATION, payload: "d" },
      ),
    code: 1008,
  },
  {
    name: "§10.4 a frame over maxMessageSize fails with 1009",
    options: { maxMessageSize: 10 },
    input: (role) =>
      peerFrame(role, { opcode: BINARY, payload: new Uint8Array(11) }),
    code: 1009,
  },
  {
    name: "§10.4 fragments summing over maxMessageSize fail with 1009",
    options: { maxMessageSize: 10 },
    input: (role) =>
      peerFrames(role, text("12345", { fin: false }), {
        opcode: CONTINUATION,
        payload: "123456",
      }),
    code: 1009,
  },
];

for (const failure of failures) {
  for (const role of failure.roles ?? ROLES) {
    const name = failure.roles ? failure.name : `${failure.name} (${role})`;
    Deno.test(name, () => {
      const session = new Session(role, failure.options);
      const chunk = failure.input(role);
      assert.equal(session.feed(chunk)[0], chunk.length);
      assert.deepEqual(session.messages(), []);
      assertFailed(session, failure.code);
    });
  }
}

for (const role of ROLES) {
  Deno.test(`§5.1 §5.2 ${role}: a violation in the first two bytes of a header fails with 1002 before the rest of the frame arrives`, () => {
    const cases: PeerFrame[] = [
      text("x", { rsv: RSV2 }),
      { opcode: 3, payload: "x" },
      { opcode: PING, fin: false },
      { opcode: PING, length: 126, payload: new Uint8Array(126) },
      text("x", { masked: role === "client" }),
    ];
    for (const frame of cases) {
      const session = new Session(role);
      session.feed(peerFrame(role, frame).subarray(0, 2));
      assertFailed(session, 1002);
    }
  });

  Deno.test(`§8.1 ${role}: invalid UTF-8 fails with 1007 on the chunk holding the bad byte, mid-frame, before the message ends`, () => {
    // One unfragmented frame, its payload fed in pieces.
    let session = new Session(role);
    let wire = peerFrame(role, text([0x6f, 0x6b, 0xff, 0x6f, 0x6b]));
    const header = wire.length - 5;
    session.feed(wire.subarray(0, header + 2));
    assert.deepEqual(session.events, [], "valid so far");
    assert.equal(session.sink.length, 0);
    session.feed(wire.subarray(header + 2, header + 3));
    assertFailed(session, 1007);

    // A fragmented message: the bad byte is in the middle of the second of
    // three fragments; the third is never fed.
    session = new Session(role);
    wire = peerFrames(
      role,
      text("héllo ", { fin: false }),
      { opcode: CONTINUATION, fin: false, payload: [0x61, 0x62, 0xf8, 0x63] },
    );
    const bad = wire.length - 2;
    session.feed(wire.subarray(0, bad));
    assert.deepEqual(session.events, []);
    session.feed(wire.subarray(bad, bad + 1));
    assertFailed(session, 1007);
  });

  Deno.test(`§8.1 ${role}: a code point split across fragments and chunks is valid`, () => {
    const session = new Session(role);
    const snowman = [...toBytes("☃")];
    const wire = peerFrames(
      role,
      text([0x61, snowman[0]], { fin: false }),
      { opcode: CONTINUATION, fin: false, payload: [snowman[1]] },
      { opcode: CONTINUATION, payload: [snowman[2], 0x62] },
    );
    for (let i = 0; i < wire.length; i++) session.feed(wire.subarray(i, i + 1));
    assert.deepEqual(session.events, [{ message: "a☃b" }]);
  });

  Deno.test(`§10.4 ${role}: a frame over maxMessageSize fails with 1009 from its header alone`, () => {
    for (const length of [1001, 65536, 2 ** 40, 2 ** 53 - 1]) {
      const session = new Session(role, { maxMessageSize: 1000 });
      const header = peerFrame(role, { opcode: BINARY, length });
      assert.equal(session.feed(header)[0], header.length);
      assertFailed(session, 1009);
    }
    // The limit itself is accepted.
    const session = new Session(role, { maxMessageSize: 1000 });
    session.feedFrames({ opcode: BINARY, payload: new Uint8Array(1000) });
    assert.equal(session.messages().length, 1);
    assert.equal(session.protocol.state, "open");
  });

  Deno.test(`§10.4 ${role}: fragments summing over maxMessageSize fail with 1009 from the next fragment's header`, () => {
    const over = new Session(role, { maxMessageSize: 1000 });
    over.feedFrames(
      text("a".repeat(600), { fin: false }),
      { opcode: CONTINUATION, fin: false, payload: "b".repeat(399) },
    );
    assert.deepEqual(over.events, []);
    // Only the header of a fragment that would make 1001 bytes.
    over.feed(peerFrame(role, { opcode: CONTINUATION, length: 2 }));
    assertFailed(over, 1009);

    // Exactly the limit, summed over fragments, is accepted.
    const exact = new Session(role, { maxMessageSize: 1000 });
    exact.feedFrames(
      text("a".repeat(600), { fin: false }),
      { opcode: CONTINUATION, fin: false, payload: "b".repeat(399) },
      { opcode: CONTINUATION, payload: "c" },
    );
    assert.deepEqual(exact.events, [{
      message: "a".repeat(600) + "b".repeat(399) + "c",
    }]);
  });

  Deno.test(`§10.4 ${role}: maxFragments fragments pass, one more fails with 1008 from its header, and control frames do not count`, () => {
    const fragments = (n: number): PeerFrame[] =>
      Array.from({ length: n }, (_, i) => ({
        opcode: i === 0 ? TEXT : CONTINUATION,
        fin: i === n - 1,
        payload: String(i),
      }));
    const ok = new Session(role, { maxFragments: 3 });
    const [a, b, c] = fragments(3);
    ok.feedFrames(a, { opcode: PING }, b, { opcode: PONG }, c);
    assert.deepEqual(ok.messages(), ["012"]);
    assert.equal(ok.protocol.state, "open");

    const over = new Session(role, { maxFragments: 3 });
    const four = fragments(4);
    over.feedFrames(...four.slice(0, 3).map((f) => ({ ...f, fin: false })));
    assert.deepEqual(over.events, []);
    over.feed(peerFrame(role, { opcode: CONTINUATION, length: 1 }));
    assertFailed(over, 1008);
  });

  Deno.test(`§5.4 ${role}: the handler hears of every 256 frames, and false from it stops receive after that frame, as for a message`, () => {
    // 1,000 one-byte fragments complete no message: an owner that bounded
    // a read's work by messages alone could never stop it.
    const fragments = Array.from({ length: 1000 }, (_, i) => ({
      opcode: i === 0 ? TEXT : CONTINUATION,
      fin: i === 999,
      payload: "x",
    }));
    const bytes = peerFrames(role, ...fragments);
    const size = bytes.length / 1000;

    const counting = new Session(role);
    assert.deepEqual(counting.feed(bytes), [bytes.length]);
    assert.equal(counting.batches, 3);
    assert.deepEqual(counting.messages(), ["x".repeat(1000)]);

    const pausing = new Session(role);
    pausing.batchAnswer = false;
    let rest = bytes.slice();
    const used: number[] = [];
    while (rest.length > 0) {
      const n = pausing.protocol.receive(rest);
      used.push(n);
      rest = rest.subarray(n);
    }
    assert.deepEqual(used, [256 * size, 256 * size, 256 * size, 232 * size]);
    assert.deepEqual(pausing.messages(), ["x".repeat(1000)]);
  });
}

// ---------------------------------------------------------------------------
// §7.1.5, §7.1.7 abort and EOF: 1006

for (const role of ROLES) {
  Deno.test(`§7.1.5 ${role}: abort() ends with 1006 and an error, sending no close frame`, () => {
    const session = new Session(role);
    session.protocol.abort("Gone");
    assert.deepEqual(session.ends(), [
      { closeCode: 1006, reason: "", error: { closeCode: 1006, reason: "" } },
    ]);
    assert.equal(session.sink.length, 0);
    assert.equal(session.protocol.state, "closed");
    assertInert(session);
  });

  Deno.test(`§7.1.5 ${role}: EOF before the closing handshake ends with 1006, open or closing`, () => {
    const open = new Session(role);
    open.feedFrames(text("half", { fin: false }));
    open.protocol.receiveEof();
    assert.deepEqual(open.ends(), [
      { closeCode: 1006, reason: "", error: { closeCode: 1006, reason: "" } },
    ]);
    assert.equal(open.sink.length, 0);
    assertInert(open);

    const closing = new Session(role);
    closing.protocol.close(1000);
    closing.protocol.receiveEof();
    assert.equal(closing.ends().length, 1);
    assert.equal(closing.ends()[0].closeCode, 1006);
    assert.equal(closing.ends()[0].error?.closeCode, 1006);
    assert.equal(closing.frames().length, 1, "only our close frame");
    assertInert(closing);
  });

  Deno.test(`§7.1.5 ${role}: EOF after the closing handshake changes nothing`, () => {
    const session = new Session(role);
    session.feedFrames({ opcode: CLOSE, payload: closePayload(1000) });
    session.protocol.receiveEof();
    assert.deepEqual(session.ends(), [
      { closeCode: 1000, reason: "", error: null },
    ]);
  });
}

// ---------------------------------------------------------------------------
// Ordering rules

/** A multi-frame exchange ending with the peer's close. */
function exchange(role: Role): { chunk: Uint8Array; messageEnds: number[] } {
  const frames: [PeerFrame, boolean][] = [
    [text("one"), true],
    [{ opcode: PING, payload: "p1" }, false],
    [{ opcode: BINARY, fin: false, payload: [1, 2, 3] }, false],
    [{ opcode: PONG, payload: "x" }, false],
    [{ opcode: CONTINUATION, payload: [4, 5] }, true],
    [text(""), true],
    [text("t", { fin: false }), false],
    [{ opcode: PING }, false],
    [{ opcode: CONTINUATION, payload: "wö" }, true],
    [{ opcode: BINARY, payload: new Uint8Array(130).fill(9) }, true],
    [{ opcode: CLOSE, payload: closePayload(1000, "end") }, false],
  ];
  const parts: Uint8Array[] = [];
  const messageEnds: number[] = [];
  let at = 0;
  for (const [frame, endsMessage] of frames) {
    const bytes = peerFrame(role, frame);
    parts.push(bytes);
    at += bytes.length;
    if (endsMessage) messageEnds.push(at);
  }
  return { chunk: concat(parts), messageEnds };
}

const EXCHANGE_EVENTS: Event[] = [
  { message: "one" },
  { message: new Uint8Array([1, 2, 3, 4, 5]) },
  { message: "" },
  { message: "twö" },
  { message: new Uint8Array(130).fill(9) },
  { end: { closeCode: 1000, reason: "end", error: null } },
];

/** What a session queued and was told, for comparing runs. */
function outcome(session: Session) {
  return {
    events: session.events,
    frames: session.frames().map(summary),
    state: session.protocol.state,
  };
}

for (const role of ROLES) {
  Deno.test(`§5.4 ${role}: messages are handed over in order, with pongs between them`, () => {
    const session = new Session(role);
    const { chunk } = exchange(role);
    assert.equal(session.feed(chunk)[0], chunk.length);
    assert.deepEqual(session.events, EXCHANGE_EVENTS);
    assert.deepEqual(session.frames().map(summary), [
      [PONG, [...toBytes("p1")]],
      [PONG, []],
      [CLOSE, [0x03, 0xe8]],
    ]);
  });

  Deno.test(`§7.1.7 ${role}: messages before a violation in the same chunk are handed over before end`, () => {
    const violations: [PeerFrame, number][] = [
      [text("x", { rsv: RSV2 }), 1002],
      [{ opcode: CONTINUATION, payload: "x" }, 1002],
      [text([0xff]), 1007],
      [{ opcode: CLOSE, payload: [1] }, 1002],
    ];
    for (const [violation, code] of violations) {
      const session = new Session(role);
      session.feedFrames(
        text("first"),
        { opcode: BINARY, payload: [7] },
        violation,
        text("never"),
      );
      assert.deepEqual(session.events.slice(0, 2), [
        { message: "first" },
        { message: new Uint8Array([7]) },
      ]);
      assert.equal(session.events.length, 3);
      assert.ok("end" in session.events[2]);
      assertFailed(session, code);
    }
  });

  Deno.test(`§5.4 ${role}: message() returning false stops receive() right after that message, at every split of a chunk`, () => {
    const { chunk, messageEnds } = exchange(role);
    const reference = new Session(role);
    reference.feed(chunk);
    const expected = outcome(reference);
    // How much had been sent when each message was handed over.
    const sentAtMessage = reference.sentAt.slice(0, messageEnds.length);

    for (let split = 0; split <= chunk.length; split++) {
      const session = new Session(role);
      session.answer = false;
      const pieces = [chunk.slice(0, split), chunk.slice(split)];
      let base = 0;
      for (const piece of pieces) {
        let rest = piece;
        let offset = 0;
        for (let rounds = 0;; rounds++) {
          assert.ok(rounds < 100, "receive() makes no progress");
          const before = session.messages().length;
          const used = session.protocol.receive(rest);
          assert.ok(used >= 0 && used <= rest.length);
          const count = session.messages().length;
          const at = base + offset + used;
          assert.ok(count - before <= 1, `split ${split}: did not stop`);
          if (count > before) {
            // Stopped right after the message that just came (or the piece
            // ended there), with nothing after it handled yet: no pong for
            // a later ping, no end.
            assert.equal(at, messageEnds[count - 1], `split ${split}`);
            assert.equal(session.sink.length, sentAtMessage[count - 1]);
            assert.equal(session.ends().length, 0);
          }
          if (used === rest.length) break;
          assert.ok(count > before, `split ${split}: stopped after no message`);
          rest = rest.subarray(used);
          offset += used;
        }
        base += piece.length;
      }
      assert.deepEqual(outcome(session), expected, `split at ${split}`);
    }
  });

  Deno.test(`§5.4 ${role}: the same frames fed in one chunk, byte by byte or at random splits give the same events and output`, () => {
    const { chunk } = exchange(role);
    // A long text message (64-bit length) split around a multi-byte
    // character, before the exchange.
    const long = "ab☃".repeat(22000);
    const longBytes = toBytes(long);
    const wire = concat([
      peerFrames(
        role,
        text(longBytes.subarray(0, 33001), { fin: false }),
        { opcode: PING, payload: "mid" },
        { opcode: CONTINUATION, payload: longBytes.subarray(33001) },
      ),
      chunk,
    ]);
    const run = (pieces: Uint8Array[]) => {
      const session = new Session(role);
      for (const piece of pieces) {
        assert.equal(session.feed(piece)[0], piece.length);
      }
      return outcome(session);
    };
    const whole = run([wire]);
    assert.deepEqual(whole.events, [{ message: long }, ...EXCHANGE_EVENTS]);
    assert.equal(whole.state, "closed");

    const bytes = Array.from(
      { length: wire.length },
      (_, i) => wire.subarray(i, i + 1),
    );
    assert.deepEqual(run(bytes), whole, "byte by byte");

    for (let seed = 1; seed <= 20; seed++) {
      const random = mulberry32(seed);
      const pieces: Uint8Array[] = [];
      for (let at = 0; at < wire.length;) {
        const size = 1 + Math.floor(2 ** (random() * 17));
        pieces.push(wire.subarray(at, at + size));
        at += size;
      }
      assert.deepEqual(run(pieces), whole, `seed ${seed}`);
    }
  });

  Deno.test(`§7.1.7 ${role}: a failing sequence fails the same way however it is split`, () => {
    const wire = peerFrames(
      role,
      text("ok"),
      text("abc", { fin: false }),
      { opcode: PING, payload: "q" },
      { opcode: CONTINUATION, fin: false, payload: [0x64, 0xe2, 0x28, 0x65] },
      { opcode: CONTINUATION, payload: "never" },
    );
    const run = (pieces: Uint8Array[]) => {
      const session = new Session(role);
      for (const piece of pieces) {
        assert.equal(session.feed(piece)[0], piece.length);
      }
      assertFailed(session, 1007);
      return outcome(session);
    };
    const whole = run([wire]);
    assert.deepEqual(whole.events[0], { message: "ok" });
    for (let split = 0; split <= wire.length; split++) {
      assert.deepEqual(
        run([wire.subarray(0, split), wire.subarray(split)]),
        whole,
        `split at ${split}`,
      );
    }
  });
}

// ---------------------------------------------------------------------------
// §5.3, §5.6 sending

/** Sends `message` and returns what was queued for it. */
function sendOne(role: Role, message: Message) {
  const session = new Session(role);
  const returned = session.protocol.send(message);
  const frames = session.frames();
  assert.equal(frames.length, 1);
  assert.equal(
    returned,
    session.sink.length,
    "send() returns the bytes queued",
  );
  assert.equal(returned, frames[0].size);
  return { session, frame: frames[0], returned };
}

function headerBytes(length: number, role: Role): number {
  return 2 + (length < 126 ? 0 : length < 65536 ? 2 : 8) +
    (role === "client" ? 4 : 0);
}

for (const role of ROLES) {
  Deno.test(`§5.6 ${role}: send() queues text as one final text frame, short and long, ASCII or not`, () => {
    const texts = [
      "",
      "hi",
      "héllo wörld ☃ 😀",
      "☃".repeat(41),
      "☃".repeat(42),
      "a".repeat(41),
      "a".repeat(125),
      "ж".repeat(63),
      "x😀".repeat(300),
      "☃".repeat(30000),
      "\ud800 lone",
    ];
    for (const message of texts) {
      const { frame, returned } = sendOne(role, message);
      const payload = toBytes(message);
      assert.equal(frame.fin, true);
      assert.equal(frame.rsv, 0);
      assert.equal(frame.opcode, TEXT);
      assert.deepEqual(frame.payload, payload, JSON.stringify(message));
      assert.equal(
        returned,
        headerBytes(payload.length, role) + payload.length,
      );
    }
  });

  Deno.test(`§5.6 ${role}: send() queues bytes as one final binary frame at every length boundary`, () => {
    for (const length of [0, 1, 125, 126, 127, 65535, 65536, 65537, 70000]) {
      const message = Uint8Array.from({ length }, (_, i) => (i * 13) & 255);
      const copy = message.slice();
      const { frame, returned } = sendOne(role, message);
      assert.equal(frame.opcode, BINARY);
      assert.equal(frame.fin, true);
      assert.deepEqual(frame.payload, copy);
      assert.deepEqual(message, copy, "the caller's array is left as it was");
      assert.equal(returned, headerBytes(length, role) + length);
    }
  });

  Deno.test(`§5.6 ${role}: send() returns 0 and queues nothing once closing or closed`, () => {
    const ends: ((session: Session) => void)[] = [
      (s) => s.protocol.close(1000),
      (s) => s.feedFrames({ opcode: CLOSE }),
      (s) => s.feedFrames(text([0xff])),
      (s) => s.protocol.abort(),
    ];
    for (const end of ends) {
      const session = new Session(role);
      end(session);
      const sent = session.sink.length;
      assert.equal(session.protocol.send("x"), 0);
      assert.equal(session.protocol.send("x".repeat(1000)), 0);
      assert.equal(session.protocol.send(new Uint8Array(200_000)), 0);
      assert.equal(session.protocol.send(""), 0);
      assert.equal(
        session.protocol.sendFrame(BINARY, new Uint8Array(1), false),
        0,
      );
      assert.equal(session.sink.length, sent);
    }
  });
}

Deno.test("§5.1 server: frames sent are never masked", () => {
  const session = new Session("server");
  session.protocol.send("a");
  session.protocol.send("a".repeat(300));
  session.protocol.send(new Uint8Array(100_000));
  session.feedFrames({ opcode: PING, payload: "p" });
  session.protocol.close(1000);
  const frames = session.frames();
  assert.equal(frames.length, 5);
  for (const frame of frames) assert.equal(frame.key, null);
});

Deno.test("§5.3 client: every frame is masked with a fresh key, and unmasks to the message", () => {
  const session = new Session("client");
  const message = toBytes("same payload every time");
  for (let i = 0; i < 8; i++) session.protocol.send(message);
  session.protocol.send("same payload every time");
  session.feedFrames({ opcode: PING, payload: "same" });
  session.protocol.close(1000, "same");
  const frames = session.frames();
  assert.equal(frames.length, 11);
  const keys = new Set(frames.map((f) => [...f.key!].join(",")));
  assert.equal(keys.size, frames.length, "a fresh key for every frame");
  for (const frame of frames.slice(0, 9)) {
    assert.deepEqual(frame.payload, message);
  }
  // The wire bytes are the masked ones: not the message itself.
  const wire = session.sink.bytes();
  const firstPayload = wire.subarray(6, 6 + message.length);
  assert.notDeepEqual(firstPayload, message);
});

Deno.test("§5.3 client: a large binary message is masked in the queue, not in the caller's array", () => {
  const session = new Session("client");
  const message = new Uint8Array(100_000).fill(0x5a);
  session.protocol.send(message);
  assert.ok(message.every((b) => b === 0x5a));
  assert.equal(session.sink.pushed.length, 0, "no payload queued by reference");
  const [frame] = session.frames();
  assert.deepEqual(frame.payload, message);
});

Deno.test("sendEncoded() server: queues the same array by reference and returns its length", () => {
  const session = new Session("server");
  const frame = new Uint8Array([0x81, 0x02, 0x68, 0x69]);
  assert.equal(session.protocol.send("a"), 3);
  assert.equal(session.protocol.sendEncoded(frame), 4);
  assert.equal(session.protocol.send("b"), 3);
  assert.equal(session.sink.pushed.length, 1);
  assert.equal(session.sink.pushed[0], frame, "the same array, not a copy");
  assert.deepEqual(session.frames().map(summary), [
    [TEXT, [0x61]],
    [TEXT, [0x68, 0x69]],
    [TEXT, [0x62]],
  ]);
});

Deno.test("sendEncoded() is refused (0) by a client, and by a server once closing or closed", () => {
  const frame = new Uint8Array([0x81, 0x00]);
  const client = new Session("client");
  assert.equal(client.protocol.sendEncoded(frame), 0);
  assert.equal(client.sink.length, 0);

  const closing = new Session("server");
  closing.protocol.close(1000);
  assert.equal(closing.protocol.sendEncoded(frame), 0);
  assert.equal(closing.sink.pushed.length, 0);

  const closed = new Session("server");
  closed.feedFrames({ opcode: CLOSE });
  assert.equal(closed.protocol.sendEncoded(frame), 0);
  assert.equal(closed.sink.pushed.length, 0);
});

// ---------------------------------------------------------------------------
// RFC 7692 §6 compressed messages

for (const role of ROLES) {
  Deno.test(`RFC 7692 §6 ${role}: an RSV1 message is handed over still compressed, in one frame or across fragments`, () => {
    const session = new Session(role, { compression: true });
    const deflated = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    session.feedFrames(
      text(deflated, { rsv: RSV1 }),
      { opcode: BINARY, rsv: RSV1, fin: false, payload: [0xff, 0x00] },
      { opcode: PING, payload: "p" },
      { opcode: CONTINUATION, fin: false, payload: [] },
      { opcode: CONTINUATION, payload: [0x80, 0x7f] },
      text("plain"),
      { opcode: BINARY, rsv: RSV1, payload: [] },
    );
    assert.deepEqual(session.events, [
      { compressed: { text: true, payload: new Uint8Array(deflated) } },
      {
        compressed: {
          text: false,
          payload: new Uint8Array([0xff, 0x00, 0x80, 0x7f]),
        },
      },
      { message: "plain" },
      { compressed: { text: false, payload: new Uint8Array(0) } },
    ]);
    assert.deepEqual(session.frames().map(summary), [[PONG, [0x70]]]);
  });

  Deno.test(`RFC 7692 §6 ${role}: compressed text is not checked as UTF-8 before inflation`, () => {
    const session = new Session(role, { compression: true });
    session.feedFrames(text([0xff, 0xfe, 0xc0], { rsv: RSV1 }));
    assert.equal(session.events.length, 1);
    assert.equal(session.protocol.state, "open");
  });

  Deno.test(`RFC 7692 §6 ${role}: compressedMessage() returning false stops receive() after that message`, () => {
    const session = new Session(role, { compression: true });
    session.answer = false;
    const first = peerFrame(role, text([1, 2], { rsv: RSV1 }));
    const chunk = concat([first, peerFrame(role, text("next"))]);
    const rest = chunk.slice();
    assert.equal(session.protocol.receive(rest), first.length);
    assert.equal(session.events.length, 1);
    assert.equal(
      session.protocol.receive(rest.subarray(first.length)),
      chunk.length - first.length,
    );
    assert.deepEqual(session.events[1], { message: "next" });
  });

  Deno.test(`RFC 7692 §6 ${role}: sendFrame() sets RSV1 on a compressed payload`, () => {
    const session = new Session(role, { compression: true });
    const payload = new Uint8Array([0xf2, 0x48, 0x05, 0x00]);
    const returned = session.protocol.sendFrame(TEXT, payload, true);
    const [frame] = session.frames();
    assert.equal(frame.rsv, RSV1);
    assert.equal(frame.opcode, TEXT);
    assert.deepEqual(frame.payload, payload);
    assert.equal(returned, frame.size);
  });
}

// ---------------------------------------------------------------------------
// §5.4 reassembly cost

/**
 * Counts the bytes copied by `Uint8Array.prototype.set` and `.slice` while
 * `run` runs (it is given the count so far); the originals are restored
 * afterwards.
 */
function countCopies(run: (copied: () => number) => void): number {
  const proto = Uint8Array.prototype as unknown as Record<string, unknown>;
  const own = {
    set: Object.getOwnPropertyDescriptor(proto, "set"),
    slice: Object.getOwnPropertyDescriptor(proto, "slice"),
  };
  const set = Uint8Array.prototype.set;
  const slice = Uint8Array.prototype.slice;
  let copied = 0;
  try {
    proto.set = function (
      this: Uint8Array,
      source: ArrayLike<number>,
      offset?: number,
    ) {
      copied += source.length;
      return set.call(this, source, offset);
    };
    proto.slice = function (this: Uint8Array, start?: number, end?: number) {
      const out = slice.call(this, start, end);
      copied += out.length;
      return out;
    };
    run(() => copied);
  } finally {
    for (const name of ["set", "slice"] as const) {
      const descriptor = own[name];
      if (descriptor) Object.defineProperty(proto, name, descriptor);
      else delete proto[name];
    }
  }
  assert.equal(Uint8Array.prototype.set, set);
  assert.equal(Uint8Array.prototype.slice, slice);
  return copied;
}

Deno.test("§5.4 reassembling a 16 MiB binary message from 1,024 fragments of 16 KiB copies O(message size) bytes", () => {
  const fragment = 16 * 1024;
  const count = 1024;
  const size = fragment * count;
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const payload = new Uint8Array(fragment);
    for (let j = 0; j < fragment; j++) payload[j] = (i * 7 + j) & 255;
    frames.push(peerFrame("server", {
      opcode: i === 0 ? BINARY : CONTINUATION,
      fin: i === count - 1,
      payload,
    }));
  }
  const session = new Session("server", { maxMessageSize: size });
  let fed = 0;
  const copied = countCopies((copiedSoFar) => {
    for (const frame of frames) {
      session.protocol.receive(frame);
      fed++;
      // Quadratic copying of 16 MiB takes half a minute: fail in seconds.
      if (copiedSoFar() > 4 * size) break;
    }
  });
  assert.ok(
    copied <= 4 * size,
    `copied ${copied} bytes (${(copied / size).toFixed(2)}× the message) ` +
      `after ${fed} of ${count} fragments`,
  );
  // Each fragment comes in its own array, so it is copied once at least:
  // this shows that the count sees the copies.
  assert.ok(copied >= size, `copied only ${copied} bytes`);
  const [message] = session.messages();
  assert.ok(message instanceof Uint8Array);
  assert.equal(message.length, size);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < fragment; j += 4093) {
      assert.equal(message[i * fragment + j], (i * 7 + j) & 255);
    }
  }
});
