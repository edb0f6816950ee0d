/**
 * The WebSocket wire format for the tests, written from RFC 6455 §5.2 and
 * not from src/: the frames a test's peer sends, and the reading of what the
 * code under test sends. An oracle independent of the library's own codec,
 * so that a mistake in that codec cannot hide on both sides of a test.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-------+-+-------------+-------------------------------+
 * |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 * |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 * |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 * | |1|2|3|       |K|             |                               |
 * +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 * |     Extended payload length continued, if payload len == 127  |
 * + - - - - - - - - - - - - - - - +-------------------------------+
 * |                               |Masking-key, if MASK set to 1  |
 * +-------------------------------+-------------------------------+
 * | Masking-key (continued)       |          Payload Data         |
 * +-------------------------------- - - - - - - - - - - - - - - - +
 * ```
 */

import assert from "node:assert/strict";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** The masking key of a masked frame when a test gives none. */
export const KEY: readonly number[] = [0x37, 0xfa, 0x21, 0x3d];

/** How a test's peer builds one frame. */
export interface FrameOptions {
  /** FIN: the last frame of its message. Default true. */
  fin?: boolean;
  /** RSV1, RSV2, RSV3 as the bits 4, 2 and 1 (4: RSV1). Default 0. */
  rsv?: number;
  /**
   * Masked, as a client's frames must be (§5.3), or not, as a server's.
   * Default true.
   */
  mask?: boolean;
  /** The masking key, 4 bytes. Default {@linkcode KEY}. */
  key?: ArrayLike<number>;
  /**
   * The payload length the header announces, when it is not the payload's
   * own: a header that announces more than follows, say.
   */
  length?: number;
}

/** The size of a header for a payload of `length` bytes (§5.2). */
function headerSize(length: number, masked: boolean): number {
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  return 2 + extended + (masked ? 4 : 0);
}

/**
 * Writes one frame at `at` of `out` (which has room for it) and returns
 * where it ends: the header with the length in its shortest form, then the
 * payload, XORed with the key when there is one (masked).
 */
function writeFrame(
  out: Uint8Array,
  at: number,
  first: number,
  payload: Uint8Array,
  key: ArrayLike<number> | null,
  length = payload.length,
): number {
  out[at] = first;
  const maskBit = key ? 0x80 : 0;
  if (length < 126) {
    out[at + 1] = maskBit | length;
    at += 2;
  } else if (length < 65536) {
    out[at + 1] = maskBit | 126;
    out[at + 2] = length >>> 8;
    out[at + 3] = length & 255;
    at += 4;
  } else {
    out[at + 1] = maskBit | 127;
    // A 64-bit big-endian length, its top bit 0.
    new DataView(out.buffer, out.byteOffset).setBigUint64(
      at + 2,
      BigInt(length),
    );
    at += 10;
  }
  if (key) {
    for (let i = 0; i < 4; i++) out[at + i] = key[i];
    at += 4;
    for (let i = 0; i < payload.length; i++) {
      out[at + i] = payload[i] ^ key[i & 3];
    }
  } else {
    out.set(payload, at);
  }
  return at + payload.length;
}

/** The first byte of a header: FIN, RSV1–3 and the opcode. */
function firstByte(fin: boolean, rsv: number, opcode: number): number {
  return (fin ? 0x80 : 0) | (rsv << 4) | opcode;
}

/**
 * One frame, as a test's peer sends it: masked with {@linkcode KEY} unless
 * `mask` is false.
 */
export function frame(
  opcode: number,
  payload: Uint8Array | string = EMPTY,
  options: FrameOptions = {},
): Uint8Array {
  const data = typeof payload === "string" ? encoder.encode(payload) : payload;
  const key = (options.mask ?? true) ? options.key ?? KEY : null;
  const length = options.length ?? data.length;
  const out = new Uint8Array(headerSize(length, key !== null) + data.length);
  const first = firstByte(options.fin ?? true, options.rsv ?? 0, opcode);
  writeFrame(out, 0, first, data, key, length);
  return out;
}

/**
 * One message cut into frames of `size` payload bytes (the last one
 * shorter), in one buffer: the first frame has the opcode and `rsv`, the
 * others are continuations, the last has FIN.
 */
export function fragments(
  opcode: number,
  payload: Uint8Array,
  size: number,
  options: Omit<FrameOptions, "fin" | "length"> = {},
): Uint8Array {
  const count = Math.max(1, Math.ceil(payload.length / size));
  const key = (options.mask ?? true) ? options.key ?? KEY : null;
  let total = payload.length;
  for (let i = 0; i < count; i++) {
    total += headerSize(Math.min(size, payload.length - i * size), !!key);
  }
  const out = new Uint8Array(total);
  for (let i = 0, at = 0; i < count; i++) {
    const first = firstByte(
      i === count - 1,
      i === 0 ? options.rsv ?? 0 : 0,
      i === 0 ? opcode : 0,
    );
    const piece = payload.subarray(i * size, (i + 1) * size);
    at = writeFrame(out, at, first, piece, key);
  }
  return out;
}

/** A close frame's payload (§5.5.1): the code, two bytes, then the reason. */
export function closePayload(code: number, reason = ""): Uint8Array {
  const text = encoder.encode(reason);
  const out = new Uint8Array(2 + text.length);
  out[0] = code >> 8;
  out[1] = code & 255;
  out.set(text, 2);
  return out;
}

/**
 * Frames that fail a connection with 1002 (§5.2), named, as a server
 * (`mask` false) or a client sends them.
 */
export function badFrames(mask: boolean): [string, Uint8Array][] {
  return [
    ["a frame with reserved bits set", frame(1, "x", { rsv: 2, mask })],
    ["a frame with a reserved opcode", frame(3, "x", { mask })],
    ["a continuation frame out of order", frame(0, "x", { mask })],
  ];
}

/** A frame's header as read off the wire. */
export interface WireHeader {
  fin: boolean;
  /** RSV1, RSV2, RSV3 as the bits 4, 2 and 1. */
  rsv: number;
  opcode: number;
  masked: boolean;
  /** The masking key, or null for an unmasked frame. */
  key: Uint8Array | null;
  /** The payload length. */
  length: number;
  /** The header's own size, in bytes. */
  headerSize: number;
}

/** A frame as read off the wire, its payload unmasked. */
export interface WireFrame extends WireHeader {
  payload: Uint8Array;
  /** The frame's size on the wire: header and payload. */
  size: number;
}

/**
 * The size of the header that starts with `b1` as its second byte: the
 * length form and the mask bit say.
 */
export function headerSizeOf(b1: number): number {
  const length = b1 & 127;
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) +
    (b1 & 0x80 ? 4 : 0);
}

/**
 * The header at the start of `bytes`, or undefined while not all of it is
 * there. Fails on a length not in its shortest form or a 64-bit length with
 * its top bit set (§5.2): a frame the code under test must never send.
 */
export function readHeader(bytes: Uint8Array): WireHeader | undefined {
  if (bytes.length < 2) return undefined;
  const headerSize = headerSizeOf(bytes[1]);
  if (bytes.length < headerSize) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerSize);
  let length = bytes[1] & 127;
  let at = 2;
  if (length === 126) {
    length = view.getUint16(2);
    assert.ok(length >= 126, "a 16-bit length below 126 (§5.2: shortest form)");
    at = 4;
  } else if (length === 127) {
    const long = view.getBigUint64(2);
    assert.ok(long < 2n ** 63n, "a 64-bit length with its top bit set (§5.2)");
    length = Number(long);
    assert.ok(
      length >= 65536,
      "a 64-bit length below 65536 (§5.2: shortest form)",
    );
    at = 10;
  }
  const masked = (bytes[1] & 0x80) !== 0;
  return {
    fin: (bytes[0] & 0x80) !== 0,
    rsv: (bytes[0] >> 4) & 7,
    opcode: bytes[0] & 15,
    masked,
    key: masked ? bytes.slice(at, at + 4) : null,
    length,
    headerSize,
  };
}

/** Unmasks `payload` in place with `key` (§5.3); nothing without a key. */
export function unmask(payload: Uint8Array, key: Uint8Array | null): void {
  if (key === null) return;
  for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
}

/**
 * Every frame in `bytes`, which must hold whole frames only: each with its
 * own copy of the payload, unmasked.
 */
export function readFrames(bytes: Uint8Array): WireFrame[] {
  const frames: WireFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    const header = readHeader(bytes.subarray(at));
    assert.ok(header, "a frame header cut off");
    const start = at + header.headerSize;
    assert.ok(
      start + header.length <= bytes.length,
      "a frame payload cut off",
    );
    const payload = bytes.slice(start, start + header.length);
    unmask(payload, header.key);
    frames.push({
      ...header,
      payload,
      size: header.headerSize + header.length,
    });
    at = start + header.length;
  }
  return frames;
}
