// The live wire protocol v1, sans I/O: parses the client's commands from a
// frame and builds the server's events as JSON text.
//
// Each frame carries one JSON object whose `t` names it. Commands that want
// an answer carry an `id`, a positive integer the client picks, which the
// answer (`subscribed`, `unsubscribed`, `ok`, `presence` or `error`) repeats.
// Unknown fields are ignored, so that a later version may add some.

/** The protocol version this codec speaks: `connect` carries it as `v`. */
export const PROTOCOL_VERSION = 1;

/** The longest topic a command may name by default, in UTF-16 code units. */
export const DEFAULT_MAX_TOPIC_LENGTH = 256;

/**
 * The longest epoch a `since` may carry: far above any epoch the stores
 * make, low enough that a client cannot make the server keep a long string.
 */
export const MAX_EPOCH_LENGTH = 128;

/** Where a publication stands in its topic's history. */
export interface StreamPosition {
  /** Grows by one per publication in the topic, from 1; 0 before any. */
  offset: number;
  /** Names the history's lifetime: another epoch means entries may be lost. */
  epoch: string;
}

/** `{"t":"connect","v":1}`: the first command on a socket. */
export interface ConnectCommand {
  t: "connect";
  /** The protocol version the client speaks (the handler checks it). */
  v: number;
}

/** `{"t":"sub","id":1,"topic":"…"}`, optionally from a position or the last N. */
export interface SubscribeCommand {
  t: "sub";
  id: number;
  topic: string;
  /** The last position the client saw: it wants what came after it. */
  since?: StreamPosition;
  /** How many of the latest publications the client wants first. */
  last?: number;
}

/** `{"t":"unsub","id":2,"topic":"…"}`. */
export interface UnsubscribeCommand {
  t: "unsub";
  id: number;
  topic: string;
}

/**
 * `{"t":"pub","id":3,"topic":"…","data":"…"}` (`"binary":true` with the bytes
 * in base64). Without an `id`, the client wants no `ok`.
 */
export interface PublishCommand {
  t: "pub";
  id?: number;
  topic: string;
  /** Text as a `string`, binary data (sent in base64) as bytes. */
  data: string | Uint8Array;
}

/** `{"t":"presence","id":4,"topic":"…"}`. */
export interface PresenceCommand {
  t: "presence";
  id: number;
  topic: string;
}

/** A client command, as {@linkcode parseCommand} returns it. */
export type Command =
  | ConnectCommand
  | SubscribeCommand
  | UnsubscribeCommand
  | PublishCommand
  | PresenceCommand;

/**
 * What {@linkcode parseCommand} returns: the command, or why it is not one
 * (to answer with an `error` event of code `bad-request`, carrying the
 * command's `id` when it had a valid one).
 */
export type ParseResult =
  | { ok: true; command: Command }
  | { ok: false; id?: number; message: string };

/** Limits {@linkcode parseCommand} checks. */
export interface ParseOptions {
  /** The longest topic, in UTF-16 code units. Default 256. */
  maxTopicLength?: number;
}

/** The codes of an `error` event. */
export type ErrorCode =
  | "bad-request"
  | "forbidden"
  | "too-many-topics"
  | "not-subscribed"
  | "unavailable";

/** One member of a topic, as a `presence` answer lists it. */
export interface PresenceMember {
  /** The client's id, as `connected` gave it. */
  client: string;
  /** What the app said about the client (JSON), if anything. */
  info?: unknown;
}

/** Thrown inside the parser; becomes the `ok: false` result. */
class BadRequest extends Error {}

/** Which commands need an `id`: every one that is answered. */
const NEEDS_ID: Record<Command["t"], boolean> = {
  connect: false,
  sub: true,
  unsub: true,
  pub: false,
  presence: true,
};

/**
 * Parses one frame from a client into a command, checking every field's
 * type and the topic's length. Never throws: a binary frame, text that is
 * not a JSON object, an unknown `t` or a bad field give `ok: false` and a
 * message for the `bad-request` error.
 *
 * @example A subscription from a position
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./_protocol.ts";
 *
 * const result = parseCommand(
 *   '{"t":"sub","id":2,"topic":"room/lobby","since":{"offset":5,"epoch":"k3x"}}',
 * );
 * assert.deepEqual(result, {
 *   ok: true,
 *   command: {
 *     t: "sub",
 *     id: 2,
 *     topic: "room/lobby",
 *     since: { offset: 5, epoch: "k3x" },
 *   },
 * });
 * ```
 *
 * @example A malformed command keeps its id for the answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./_protocol.ts";
 *
 * assert.deepEqual(parseCommand('{"t":"sub","id":7,"topic":42}'), {
 *   ok: false,
 *   id: 7,
 *   message: "The topic must be a string",
 * });
 * ```
 */
export function parseCommand(
  frame: string | Uint8Array,
  options: ParseOptions = {},
): ParseResult {
  if (typeof frame !== "string") {
    return {
      ok: false,
      message: "Commands are JSON text frames, not binary frames",
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(frame);
  } catch {
    return { ok: false, message: "A command must be JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, message: "A command must be a JSON object" };
  }
  const fields = value as Record<string, unknown>;
  const id = isPositiveInteger(fields.id) ? fields.id : undefined;
  try {
    return { ok: true, command: toCommand(fields, options) };
  } catch (error) {
    if (!(error instanceof BadRequest)) throw error;
    return id === undefined
      ? { ok: false, message: error.message }
      : { ok: false, id, message: error.message };
  }
}

function toCommand(
  fields: Record<string, unknown>,
  options: ParseOptions,
): Command {
  const { t } = fields;
  if (typeof t !== "string") {
    throw new BadRequest('A command needs a string "t"');
  }
  if (!Object.hasOwn(NEEDS_ID, t)) {
    throw new BadRequest(`Unknown command "${t.slice(0, 32)}"`);
  }
  const type = t as Command["t"];
  if (type === "connect") {
    if (!isPositiveInteger(fields.v)) {
      throw new BadRequest('The connect command needs a version "v"');
    }
    return { t: type, v: fields.v };
  }
  const id = readId(fields.id, type);
  const topic = readTopic(fields.topic, options);
  switch (type) {
    case "sub": {
      const command: SubscribeCommand = { t: type, id: id!, topic };
      if (fields.since !== undefined) command.since = readSince(fields.since);
      if (fields.last !== undefined) {
        if (!isPositiveInteger(fields.last)) {
          throw new BadRequest('"last" must be a positive integer');
        }
        if (command.since !== undefined) {
          throw new BadRequest('"since" and "last" cannot be combined');
        }
        command.last = fields.last;
      }
      return command;
    }
    case "pub": {
      const data = readData(fields.data, fields.binary);
      return id === undefined
        ? { t: type, topic, data }
        : { t: type, id, topic, data };
    }
    case "unsub":
    case "presence":
      return { t: type, id: id!, topic };
  }
}

function readId(id: unknown, type: Command["t"]): number | undefined {
  if (id === undefined) {
    if (NEEDS_ID[type]) {
      throw new BadRequest(`The ${type} command needs an "id"`);
    }
    return undefined;
  }
  if (!isPositiveInteger(id)) {
    throw new BadRequest('"id" must be a positive integer');
  }
  return id;
}

function readTopic(topic: unknown, options: ParseOptions): string {
  const max = options.maxTopicLength ?? DEFAULT_MAX_TOPIC_LENGTH;
  if (typeof topic !== "string") {
    throw new BadRequest("The topic must be a string");
  }
  if (topic === "") throw new BadRequest("The topic must not be empty");
  if (topic.length > max) {
    throw new BadRequest(`The topic is longer than ${max} characters`);
  }
  return topic;
}

function readSince(since: unknown): StreamPosition {
  const { offset, epoch } =
    (typeof since === "object" && since !== null ? since : {}) as Record<
      string,
      unknown
    >;
  if (
    !Number.isSafeInteger(offset) || (offset as number) < 0 ||
    typeof epoch !== "string" || epoch.length > MAX_EPOCH_LENGTH
  ) {
    throw new BadRequest(
      `"since" must be {"offset": an integer >= 0, "epoch": a string of at most ${MAX_EPOCH_LENGTH} characters}`,
    );
  }
  return { offset: offset as number, epoch };
}

function readData(data: unknown, binary: unknown): string | Uint8Array {
  if (binary !== undefined && typeof binary !== "boolean") {
    throw new BadRequest('"binary" must be a boolean');
  }
  if (typeof data !== "string") {
    throw new BadRequest('"data" must be a string (base64 when binary)');
  }
  if (!binary) return data;
  try {
    return Uint8Array.fromBase64(data);
  } catch {
    throw new BadRequest('"data" is not valid base64');
  }
}

function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

// --- Server events ------------------------------------------------------------

/**
 * `{"t":"connected","v":1,"client":"…"}`: the answer to `connect`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectedEvent } from "./_protocol.ts";
 *
 * assert.equal(connectedEvent("c1"), '{"t":"connected","v":1,"client":"c1"}');
 * ```
 */
export function connectedEvent(client: string): string {
  return JSON.stringify({ t: "connected", v: PROTOCOL_VERSION, client });
}

/**
 * `{"t":"subscribed","id":1,"topic":"…","recovered":false,"position":{…}}`:
 * the answer to `sub`, before the publications it brings. `position` (the
 * topic's latest) is left out on a topic without history.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { subscribedEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   subscribedEvent(1, "room", true, { offset: 7, epoch: "k3x" }),
 *   '{"t":"subscribed","id":1,"topic":"room","recovered":true,"position":{"offset":7,"epoch":"k3x"}}',
 * );
 * ```
 */
export function subscribedEvent(
  id: number,
  topic: string,
  recovered: boolean,
  position?: StreamPosition,
): string {
  return JSON.stringify({
    t: "subscribed",
    id,
    topic,
    recovered,
    position: position && positionOf(position),
  });
}

/**
 * `{"t":"pub","topic":"…","data":"…","offset":6,"epoch":"…"}`: a
 * publication, built once and shared by every subscriber. Bytes go in
 * base64 with `"binary":true`; the position only on a topic with history.
 *
 * @example Text and bytes
 * ```ts
 * import assert from "node:assert/strict";
 * import { publicationEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   publicationEvent("room", "hi", { offset: 6, epoch: "k3x" }),
 *   '{"t":"pub","topic":"room","data":"hi","offset":6,"epoch":"k3x"}',
 * );
 * assert.equal(
 *   publicationEvent("files", new Uint8Array([0, 1, 2])),
 *   '{"t":"pub","topic":"files","data":"AAEC","binary":true}',
 * );
 * ```
 */
export function publicationEvent(
  topic: string,
  message: string | Uint8Array,
  position?: StreamPosition,
): string {
  const binary = typeof message !== "string";
  return JSON.stringify({
    t: "pub",
    topic,
    data: binary ? message.toBase64() : message,
    binary: binary || undefined,
    offset: position?.offset,
    epoch: position?.epoch,
  });
}

/**
 * `{"t":"gap","topic":"…","position":{…}}`: publications up to `position`
 * were lost and cannot be recovered; the client should resync the topic.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gapEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   gapEvent("room", { offset: 9, epoch: "k3x" }),
 *   '{"t":"gap","topic":"room","position":{"offset":9,"epoch":"k3x"}}',
 * );
 * ```
 */
export function gapEvent(topic: string, position: StreamPosition): string {
  return JSON.stringify({ t: "gap", topic, position: positionOf(position) });
}

/**
 * `{"t":"unsubscribed","id":4,"topic":"…"}`: the answer to `unsub`; or,
 * without `id` and with a `reason`, the server ending a subscription.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unsubscribedEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   unsubscribedEvent("room", { id: 4 }),
 *   '{"t":"unsubscribed","id":4,"topic":"room"}',
 * );
 * assert.equal(
 *   unsubscribedEvent("room", { reason: "Kicked" }),
 *   '{"t":"unsubscribed","topic":"room","reason":"Kicked"}',
 * );
 * ```
 */
export function unsubscribedEvent(
  topic: string,
  { id, reason }: { id?: number; reason?: string } = {},
): string {
  return JSON.stringify({ t: "unsubscribed", id, topic, reason });
}

/**
 * `{"t":"error","id":5,"code":"forbidden","message":"…"}`: a command was
 * refused or failed; `id` is left out when the command had none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   errorEvent("forbidden", "Not allowed to publish to room", 5),
 *   '{"t":"error","id":5,"code":"forbidden","message":"Not allowed to publish to room"}',
 * );
 * ```
 */
export function errorEvent(
  code: ErrorCode,
  message: string,
  id?: number,
): string {
  return JSON.stringify({ t: "error", id, code, message });
}

/**
 * `{"t":"ok","id":5}`: a publication was accepted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { okEvent } from "./_protocol.ts";
 *
 * assert.equal(okEvent(5), '{"t":"ok","id":5}');
 * ```
 */
export function okEvent(id: number): string {
  return JSON.stringify({ t: "ok", id });
}

/**
 * `{"t":"presence","id":7,"topic":"…","count":2,"members":[…]}`: the answer
 * to `presence`. Throws a `TypeError` when a member's `info` is not
 * JSON-serializable (a `BigInt`, a cycle).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { presenceEvent } from "./_protocol.ts";
 *
 * assert.equal(
 *   presenceEvent(7, "room", {
 *     count: 1,
 *     members: [{ client: "c1", info: { name: "Ada" } }],
 *   }),
 *   '{"t":"presence","id":7,"topic":"room","count":1,"members":[{"client":"c1","info":{"name":"Ada"}}]}',
 * );
 * ```
 */
export function presenceEvent(
  id: number,
  topic: string,
  { count, members }: { count: number; members: readonly PresenceMember[] },
): string {
  return JSON.stringify({
    t: "presence",
    id,
    topic,
    count,
    members: members.map(({ client, info }) => ({ client, info })),
  });
}

/** The position alone, in the protocol's field order. */
function positionOf({ offset, epoch }: StreamPosition): StreamPosition {
  return { offset, epoch };
}
