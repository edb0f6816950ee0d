// The history and presence of topics kept in Redis, for every node at once:
// a publication's offset, its stream entry and its PUB/SUB message are one
// atomic script, so all nodes see the same offsets in the same order.

import { Buffer } from "node:buffer";
import { type createClient, RESP_TYPES } from "@redis/client";
import type { Message } from "../protocol/message_assembler.ts";
import { type HistoryLimits, newEpoch } from "./_memory_history.ts";
import type {
  HistoryQuery,
  HistoryResult,
  Publication,
  StreamPosition,
} from "./history.ts";
import type { PresenceMember } from "./topic_hub.ts";
import {
  PRESENCE_GET,
  PRESENCE_UPDATE,
  PUBLISH,
  READ,
  type Script,
} from "./_redis_scripts.ts";

/**
 * What the store needs of a node-redis client (`createClient()` of
 * `@redis/client` or `redis`, version 5 or later): raw commands, which
 * node-redis pipelines on its one connection in the order they are sent.
 */
export type RedisCommandClient = Pick<
  ReturnType<typeof createClient>,
  "sendCommand"
>;

/**
 * The first byte of a positioned PUB/SUB message (ASCII `P`); a plain bus
 * envelope starts with its version (1), so a receiver tells them apart by
 * it.
 */
export const POSITIONED_MARKER = 0x50;
/** Marker, offset (two u32), epoch length. */
const POSITIONED_HEAD = 1 + 8 + 1;
/** The offsets a `number` holds exactly: 2^53 - 1 is 0x1f_ffff high word. */
const MAX_HIGH_WORD = 0x1f_ffff;

/** A positioned PUB/SUB message, split (see {@linkcode decodePositioned}). */
export interface PositionedMessage {
  /** The publication's place in its topic's history. */
  position: StreamPosition;
  /** The bus envelope as the publisher gave it: a view, not a copy. */
  envelope: Uint8Array;
}

/** A topic's presence summed over the nodes whose entries are alive. */
export interface Presence {
  /** The subscribers on all nodes. */
  count: number;
  /** Their members, node after node. */
  members: PresenceMember[];
  /** How many nodes have subscribers (alive entries). */
  nodes: number;
  /** Entries that were not JSON of `{count, members}`: skipped. */
  malformed: number;
}

/** A read of a topic's history in Redis. */
export interface RedisHistoryRead extends HistoryResult {
  /**
   * Stream entries in the read's range that were not ours (another id than
   * `<offset>-0`, missing fields, an unknown kind, text that is not UTF-8):
   * skipped, never returned. A skipped entry is a publication missing, so a
   * read since a position before it is not recovered.
   */
  malformed: number;
}

/** Maps the replies' blob strings to `Buffer`s: payloads are bytes. */
const AS_BUFFERS = {
  typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer },
} as const;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Splits a positioned PUB/SUB message, which the publish script makes:
 *
 * ```
 * offset  size  field
 * 0       1     marker 0x50 ("P"); a plain bus envelope starts with 1
 * 1       8     offset, u64 big-endian (at most 2^53 - 1, from 1)
 * 9       1     epoch length e (1–255)
 * 10      e     epoch, UTF-8
 * 10+e    …     the bus envelope bytes, as given to `publish`, to the end
 * ```
 *
 * A fixed head and a length byte: the receiver finds the envelope with
 * two reads and no scan, and the envelope is binary like any payload.
 *
 * @throws {TypeError} When `bytes` is not of this layout (another marker,
 * too short, offset 0 or past 2^53 - 1, an empty or overrunning epoch, an
 * epoch that is not UTF-8).
 */
export function decodePositioned(bytes: Uint8Array): PositionedMessage {
  if (bytes[0] !== POSITIONED_MARKER) {
    throw new TypeError(
      `Not a positioned bus message: it starts with byte ${bytes[0]}`,
    );
  }
  if (bytes.length < POSITIONED_HEAD) {
    throw new TypeError(
      `A positioned bus message of ${bytes.length} bytes is too short`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const high = view.getUint32(1);
  const offset = high * 2 ** 32 + view.getUint32(5);
  if (high > MAX_HIGH_WORD || offset === 0) {
    throw new TypeError(
      `A positioned bus message has offset ${
        high > MAX_HIGH_WORD ? "past 2^53 - 1" : 0
      }`,
    );
  }
  const length = bytes[9];
  const end = POSITIONED_HEAD + length;
  if (length === 0 || end > bytes.length) {
    throw new TypeError("A positioned bus message has no whole epoch");
  }
  let epoch: string;
  try {
    epoch = utf8.decode(bytes.subarray(POSITIONED_HEAD, end));
  } catch {
    throw new TypeError("A positioned bus message's epoch is not UTF-8");
  }
  return { position: { offset, epoch }, envelope: bytes.subarray(end) };
}

/**
 * The history and presence of topics in Redis, shared by every node: the
 * same semantics as `MemoryHistory` (the same limits, queries and
 * reads), with Redis's clock for ages and expiries. Each call takes the
 * topic's limits and applies them then.
 *
 * Keys, per topic: `<prefix>{<topic>}:meta` (a hash: `e` epoch, `o` the top
 * offset; it lives `metaTtl` after the last publication, or after the read
 * that made it), `<prefix>{<topic>}:log` (a stream: id `<offset>-0`, fields
 * `d` payload, `k` kind `t` text or `b` binary, `t` time in ms; `MAXLEN`
 * size; it lives `ttl` after the last publication) and
 * `<prefix>{<topic>}:presence` (a hash, one field per node). The braces keep
 * a topic's keys in one Redis Cluster slot.
 *
 * When the meta key is gone (FLUSHALL, expired after `metaTtl`, a Redis
 * restart without persistence), the next publication or read starts a new
 * epoch from offset 0, so that positions of the old one are not recovered.
 *
 * Scripts go by EVALSHA (EVAL costs Redis a SHA-1 of the text each time:
 * about a quarter more per publication here) and fall back to EVAL, which
 * loads them, when Redis answers NOSCRIPT. Call
 * {@linkcode RedisHistory.loadScripts} on each `ready` of the client:
 * otherwise, after a Redis restart, a publication that met NOSCRIPT goes
 * again after later ones of its pipeline that found the script another
 * node had loaded meanwhile, out of this node's order.
 */
export class RedisHistory {
  #client: RedisCommandClient;
  #prefix: string;

  /**
   * @param client The connection the scripts go over (a publisher's: not
   * one in subscriber mode).
   * @param prefix Put before each key, like the adapter's channels.
   */
  constructor(client: RedisCommandClient, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  /**
   * Loads the scripts into Redis's script cache (SCRIPT LOAD), so that the
   * EVALSHAs sent after it on the same connection find them. Call it when
   * the connection is (again) ready, before publishing on it.
   */
  async loadScripts(): Promise<void> {
    await Promise.all(
      [PUBLISH, READ, PRESENCE_UPDATE, PRESENCE_GET].map((script) =>
        this.#client.sendCommand(["SCRIPT", "LOAD", script.text])
      ),
    );
  }

  /**
   * Appends a publication to the topic's history and publishes it on
   * `channel`, atomically: the offset is the topic's next, and the channel's
   * subscribers receive the publications in offset order, whichever node
   * made them. What they receive is `envelope` positioned (see
   * {@linkcode decodePositioned}).
   *
   * @param topic The topic.
   * @param channel The PUB/SUB channel (the adapter's `<prefix><topic>`).
   * @param message What history keeps and a read gives back.
   * @param envelope The bytes subscribers get after the position.
   * @param limits The topic's limits.
   * @returns The publication's position.
   * @throws {RangeError} When a limit is not a positive integer.
   */
  async publish(
    topic: string,
    channel: string,
    message: Message,
    envelope: Uint8Array,
    limits: HistoryLimits,
  ): Promise<StreamPosition> {
    checkLimits(limits);
    const text = typeof message === "string";
    const [offset, epoch] = await this.#run(PUBLISH, this.#logKeys(topic), [
      channel,
      newEpoch(),
      String(limits.size),
      String(limits.ttl),
      String(limits.metaTtl),
      text ? "t" : "b",
      text ? message : asBuffer(message),
      asBuffer(envelope),
    ]) as [number, string];
    return { offset, epoch };
  }

  /**
   * Reads the topic's history, as `MemoryHistory.read` does:
   * with `since`, every kept publication after it when they reach back to
   * it in the same epoch (`recovered`), none otherwise; without, the last
   * `limit` (`limit` is not used with `since`). Oldest first; a binary
   * message is a copy of its own.
   *
   * @param topic The topic.
   * @param query What to read.
   * @param limits The topic's limits.
   * @throws {RangeError} When `since.offset` is not an integer from 0, or a
   * limit is not a positive integer.
   */
  async read(
    topic: string,
    query: HistoryQuery,
    limits: HistoryLimits,
  ): Promise<RedisHistoryRead> {
    checkLimits(limits);
    const { since } = query;
    if (
      since !== undefined &&
      !(Number.isSafeInteger(since.offset) && since.offset >= 0)
    ) {
      throw new RangeError(
        `A position's offset must be an integer from 0, got ${since.offset}`,
      );
    }
    const limit = Math.max(0, Math.floor(query.limit ?? 0)) || 0;
    const reply = await this.#run(READ, this.#logKeys(topic), [
      newEpoch(),
      String(limits.size),
      String(limits.ttl),
      String(limits.metaTtl),
      since === undefined ? "" : String(since.offset),
      since?.epoch ?? "",
      String(limit),
    ], AS_BUFFERS) as (Buffer | number)[];
    const epoch = String(reply[0]);
    const top = reply[1] as number;
    let malformed = reply[2] as number;
    const publications: Publication[] = [];
    for (let i = 3; i + 2 < reply.length; i += 3) {
      const offset = reply[i] as number;
      const payload = reply[i + 2] as Buffer;
      if (String(reply[i + 1]) === "b") {
        publications.push({ offset, message: new Uint8Array(payload) });
        continue;
      }
      try {
        publications.push({ offset, message: utf8.decode(payload) });
      } catch {
        malformed++;
      }
    }
    const position = { offset: top, epoch };
    if (since === undefined) {
      return { position, publications, recovered: false, malformed };
    }
    // Recovered when nothing after `since` is missing: the same epoch, and
    // every offset from since + 1 to the top here (the script gives only
    // offsets in that range, one entry each, so their count tells; a
    // position ahead of the top gets none).
    const recovered = since.epoch === epoch &&
      publications.length === top - since.offset;
    return {
      position,
      publications: recovered ? publications : [],
      recovered,
      malformed,
    };
  }

  /**
   * Writes this node's presence in the topic, alive for `ttl` ms on the
   * Redis clock: refresh it sooner, or it drops out of the sums.
   *
   * @param topic The topic.
   * @param node This node's id (one field per node).
   * @param count The node's subscribers to the topic.
   * @param members Their members (may be fewer than `count`: not every
   * subscriber names itself).
   * @param ttl How long the entry lives, in ms.
   * @throws {RangeError} When `count` is not an integer from 0 or `ttl` not
   * a positive integer.
   * @throws {TypeError} When a member's `info` is not JSON (a BigInt).
   */
  async presenceUpdate(
    topic: string,
    node: string,
    count: number,
    members: PresenceMember[],
    ttl: number,
  ): Promise<void> {
    if (!(Number.isSafeInteger(count) && count >= 0)) {
      throw new RangeError(
        `A presence count must be an integer from 0, got ${count}`,
      );
    }
    checkPositive("presence ttl", ttl);
    await this.#run(PRESENCE_UPDATE, this.#presenceKeys(topic), [
      node,
      String(ttl),
      JSON.stringify({ count, members }),
    ]);
  }

  /**
   * Removes this node's presence in the topic (its last local subscriber
   * left).
   *
   * @param topic The topic.
   * @param node This node's id.
   */
  async presenceRemove(topic: string, node: string): Promise<void> {
    await this.#client.sendCommand(["HDEL", this.#presence(topic), node]);
  }

  /**
   * The topic's presence over all nodes whose entries are alive; expired
   * entries are deleted on the way.
   *
   * @param topic The topic.
   * @param except A node whose entry to leave out (this node's, which the
   *   caller knows fresher than Redis does).
   */
  async presenceGet(topic: string, except?: string): Promise<Presence> {
    const reply = await this.#run(
      PRESENCE_GET,
      this.#presenceKeys(topic),
      [],
      AS_BUFFERS,
    ) as Buffer[];
    const presence: Presence = {
      count: 0,
      members: [],
      nodes: 0,
      malformed: 0,
    };
    for (let i = 1; i < reply.length; i += 2) {
      if (except !== undefined && reply[i - 1].toString() === except) continue;
      const entry = parsePresence(reply[i]);
      if (entry === undefined) {
        presence.malformed++;
        continue;
      }
      presence.nodes++;
      presence.count += entry.count;
      for (const member of entry.members) presence.members.push(member);
    }
    return presence;
  }

  /** A script's key count and keys: the topic's meta hash and log stream. */
  #logKeys(topic: string): string[] {
    const key = `${this.#prefix}{${topic}}:`;
    return ["2", `${key}meta`, `${key}log`];
  }

  /** A script's key count and key: the topic's presence hash. */
  #presenceKeys(topic: string): string[] {
    return ["1", this.#presence(topic)];
  }

  #presence(topic: string): string {
    return `${this.#prefix}{${topic}}:presence`;
  }

  /**
   * Runs a script by its SHA-1; by its text when Redis does not know it
   * (yet, or any more).
   */
  async #run(
    script: Script,
    keys: string[],
    args: (string | Buffer)[],
    options?: typeof AS_BUFFERS,
  ): Promise<unknown> {
    try {
      return await this.#client.sendCommand(
        ["EVALSHA", script.sha, ...keys, ...args],
        options,
      );
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith("NOSCRIPT"))) {
        throw error;
      }
      return await this.#client.sendCommand(
        ["EVAL", script.text, ...keys, ...args],
        options,
      );
    }
  }
}

/** One node's presence entry, or `undefined` when it is not ours. */
function parsePresence(
  json: Buffer,
): { count: number; members: PresenceMember[] } | undefined {
  let entry;
  try {
    entry = JSON.parse(utf8.decode(json));
  } catch {
    return undefined;
  }
  const valid = typeof entry === "object" && entry !== null &&
    Number.isSafeInteger(entry.count) && entry.count >= 0 &&
    Array.isArray(entry.members) &&
    entry.members.every((member: unknown) =>
      typeof member === "object" && member !== null &&
      typeof (member as PresenceMember).client === "string"
    );
  return valid ? entry : undefined;
}

/** Redis takes only integers for MAXLEN and PEXPIRE. */
function checkLimits(limits: HistoryLimits): void {
  checkPositive("history size", limits.size);
  checkPositive("history ttl", limits.ttl);
  checkPositive("history metaTtl", limits.metaTtl);
}

function checkPositive(name: string, value: number): void {
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new RangeError(`A ${name} must be an integer from 1, got ${value}`);
  }
}

/** The bytes as node-redis sends them, without a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
