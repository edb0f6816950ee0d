// The bus message codec: one publication as it travels between nodes
// (Redis PUB/SUB, a BroadcastChannel), with its origin and sequence number.

import type { Message } from "../protocol/message_assembler.ts";

/**
 * The layout's version, the first byte. A node ignores (and counts as
 * malformed) a message of another version rather than guess at it.
 */
export const ENVELOPE_VERSION = 1;

const KIND_TEXT = 1;
const KIND_BINARY = 2;
/** Version, kind, origin length, epoch, sequence, topic length. */
const FIXED_SIZE = 1 + 1 + 1 + 4 + 4 + 4;
const MAX_ORIGIN_LENGTH = 255;
const MAX_U32 = 0xffff_ffff;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * One publication on the bus. `epoch` and `sequence` number the origin's
 * publications to one topic: the sequence counts from 1 within an epoch, and
 * a new epoch (the origin forgot its count, or it wrapped) starts again
 * from 1, so that a receiver can tell a gap from a restart.
 */
export interface Envelope {
  /** The publishing node's id (1–255 bytes of UTF-8). */
  origin: string;
  /** The origin's epoch for this topic. */
  epoch: number;
  /** The publication's number in its epoch, from 1. */
  sequence: number;
  /** The topic. */
  topic: string;
  /** The message: a `string` was published as text, bytes as binary. */
  message: Message;
}

/**
 * Encodes an envelope:
 *
 * ```
 * offset    size  field
 * 0         1     version (1)
 * 1         1     kind: 1 text, 2 binary
 * 2         1     origin length n (1–255)
 * 3         n     origin, UTF-8
 * 3+n       4     epoch, u32 big-endian
 * 7+n       4     sequence, u32 big-endian, from 1
 * 11+n      4     topic length t, u32 big-endian
 * 15+n      t     topic, UTF-8
 * 15+n+t    …     payload (UTF-8 for text) to the end
 * ```
 *
 * The topic travels even where the bus names it already (a Redis channel),
 * so that one codec serves every bus and a message whose channel and topic
 * disagree is caught.
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const origin = encoder.encode(envelope.origin);
  if (origin.length === 0 || origin.length > MAX_ORIGIN_LENGTH) {
    throw new RangeError(
      `An origin id must be 1 to 255 bytes of UTF-8, got ${origin.length}`,
    );
  }
  checkU32("epoch", envelope.epoch, 0);
  checkU32("sequence", envelope.sequence, 1);
  const topic = encoder.encode(envelope.topic);
  const message = envelope.message;
  const text = typeof message === "string";
  const payload = text ? encoder.encode(message) : message;
  const bytes = new Uint8Array(
    FIXED_SIZE + origin.length + topic.length + payload.length,
  );
  const view = new DataView(bytes.buffer);
  bytes[0] = ENVELOPE_VERSION;
  bytes[1] = text ? KIND_TEXT : KIND_BINARY;
  bytes[2] = origin.length;
  bytes.set(origin, 3);
  let at = 3 + origin.length;
  view.setUint32(at, envelope.epoch);
  view.setUint32(at + 4, envelope.sequence);
  view.setUint32(at + 8, topic.length);
  at += 12;
  bytes.set(topic, at);
  bytes.set(payload, at + topic.length);
  return bytes;
}

/**
 * Decodes an envelope. A binary message is a view of `bytes`, not a copy.
 * With `wants`, an envelope whose topic it refuses is left undecoded past
 * its topic, and `undefined` is returned.
 *
 * @throws {TypeError} When `bytes` is not an envelope of this version:
 * too short, an unknown kind, an empty origin, sequence 0, a topic that
 * overruns, or invalid UTF-8 in the origin, the topic or a text payload.
 * @throws {RangeError} When the payload is over `maxPayload` bytes (found
 * before a text payload is decoded).
 */
export function decodeEnvelope(
  bytes: Uint8Array,
  wants?: (topic: string) => boolean,
  maxPayload = Infinity,
): Envelope | undefined {
  if (bytes.length < FIXED_SIZE + 1) {
    throw new TypeError(`A bus message of ${bytes.length} bytes is too short`);
  }
  if (bytes[0] !== ENVELOPE_VERSION) {
    throw new TypeError(`Unknown bus message version ${bytes[0]}`);
  }
  const kind = bytes[1];
  if (kind !== KIND_TEXT && kind !== KIND_BINARY) {
    throw new TypeError(`Unknown bus message kind ${kind}`);
  }
  const originLength = bytes[2];
  if (originLength === 0) throw new TypeError("A bus message has no origin");
  let at = 3 + originLength;
  if (bytes.length < FIXED_SIZE + originLength) {
    throw new TypeError("A bus message ends inside its header");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const epoch = view.getUint32(at);
  const sequence = view.getUint32(at + 4);
  const topicLength = view.getUint32(at + 8);
  if (sequence === 0) throw new TypeError("A bus message has sequence 0");
  at += 12;
  if (topicLength > bytes.length - at) {
    throw new TypeError("A bus message ends inside its topic");
  }
  const topic = utf8(bytes.subarray(at, at + topicLength), "topic");
  if (wants !== undefined && !wants(topic)) return undefined;
  const origin = utf8(bytes.subarray(3, 3 + originLength), "origin");
  const payload = bytes.subarray(at + topicLength);
  if (payload.length > maxPayload) {
    throw new RangeError(
      `A bus message's payload of ${payload.length} bytes is over the limit of ${maxPayload}`,
    );
  }
  const message = kind === KIND_TEXT ? utf8(payload, "text payload") : payload;
  return { origin, epoch, sequence, topic, message };
}

function utf8(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new TypeError(`A bus message's ${what} is not valid UTF-8`);
  }
}

function checkU32(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min || value > MAX_U32) {
    throw new RangeError(
      `An envelope's ${name} must be an integer from ${min} to ${MAX_U32}, got ${value}`,
    );
  }
}
