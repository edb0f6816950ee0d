// The in-memory history of a process's topics: each publication gets the
// next offset of its topic and is kept, bounded by count and by age, so that
// a subscriber that comes back can be given what it missed.

import type { Message } from "../protocol/message_assembler.ts";
import type {
  HistoryOptions,
  HistoryQuery,
  HistoryResult,
  Publication,
  StreamPosition,
} from "./history.ts";

/** How much history a topic keeps, with every default applied. */
export type HistoryLimits = Required<HistoryOptions>;

/** The default `metaTtl`: a day. */
export const DEFAULT_META_TTL = 24 * 60 * 60 * 1000;

/**
 * Checks history options and applies their defaults; what an application
 * gave wrong is a `RangeError` or `TypeError` naming it.
 */
export function resolveHistory(options: HistoryOptions): HistoryLimits {
  if (typeof options !== "object" || options === null) {
    throw new TypeError("History options must be an object");
  }
  const { size, ttl } = options;
  const metaTtl = options.metaTtl ?? Math.max(DEFAULT_META_TTL, ttl);
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(
      `The history size must be an integer of at least 1, got ${size}`,
    );
  }
  for (const [name, value] of [["ttl", ttl], ["metaTtl", metaTtl]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(
        `The history ${name} must be a positive integer (ms), got ${value}`,
      );
    }
  }
  if (metaTtl < ttl) {
    throw new RangeError(
      `The history metaTtl (${metaTtl}) must be at least its ttl (${ttl})`,
    );
  }
  return { size, ttl, metaTtl };
}

/** A kept publication and when it was made. */
interface Entry extends Publication {
  time: number;
}

/** One topic's history: its position and its latest publications. */
interface Log {
  epoch: string;
  /** The offset of the last publication. */
  top: number;
  /** When the last publication was made (or the log, before any). */
  touched: number;
  /** The topic's `metaTtl` at its last write, for the sweep. */
  metaTtl: number;
  /** Kept publications, oldest first from `head` (a queue in an array). */
  entries: Entry[];
  head: number;
}

/**
 * The history of the topics of one process. Every call takes the topic's
 * limits (they come from the hub's rule, which may differ per topic) and
 * applies them then: entries past `size` or older than `ttl` go when the
 * topic is next written or read, and topics whose position is older than
 * their `metaTtl` are swept as others are written.
 */
export class MemoryHistory {
  /** In order of last write: what the sweep walks. */
  #logs = new Map<string, Log>();
  #now: () => number;

  /** @param now The clock, in ms (a test may drive it). */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** How many topics have a position kept. */
  get topics(): number {
    return this.#logs.size;
  }

  /** Appends a publication; returns its position. */
  append(
    topic: string,
    message: Message,
    limits: HistoryLimits,
  ): StreamPosition {
    const now = this.#now();
    this.#sweep(now);
    const log = this.#log(topic, limits, now);
    const offset = ++log.top;
    log.touched = now;
    log.metaTtl = limits.metaTtl;
    this.#logs.delete(topic);
    this.#logs.set(topic, log);
    log.entries.push({ offset, message, time: now });
    trim(log, limits.size);
    return { offset, epoch: log.epoch };
  }

  /** Reads a topic's history (see {@linkcode HistoryResult}). */
  read(
    topic: string,
    query: HistoryQuery,
    limits: HistoryLimits,
  ): HistoryResult {
    const now = this.#now();
    // A read makes the topic's position (it must hold until the next
    // publication), so it sweeps too.
    this.#sweep(now);
    const log = this.#log(topic, limits, now);
    trim(log, limits.size);
    const position = { offset: log.top, epoch: log.epoch };
    const { entries, head } = log;
    const { since } = query;
    if (since !== undefined) {
      const first = head < entries.length ? entries[head].offset : log.top + 1;
      // Recovered when nothing after `since` is missing: the same epoch,
      // not ahead of the top, and the oldest kept entry right after it.
      const recovered = since.epoch === log.epoch &&
        since.offset <= log.top && since.offset >= first - 1;
      return {
        position,
        publications: recovered
          ? copy(entries, head + Math.max(0, since.offset - first + 1))
          : [],
        recovered,
      };
    }
    const limit = Math.max(
      0,
      Math.min(query.limit ?? 0, entries.length - head),
    );
    return {
      position,
      publications: copy(entries, entries.length - limit),
      recovered: false,
    };
  }

  /**
   * The topic's log with what `ttl` no longer allows gone; a new one, in a
   * new epoch, when there was none or its position has expired.
   */
  #log(topic: string, limits: HistoryLimits, now: number): Log {
    let log = this.#logs.get(topic);
    if (log !== undefined && log.touched + limits.metaTtl <= now) {
      this.#logs.delete(topic);
      log = undefined;
    }
    if (log === undefined) {
      log = {
        epoch: newEpoch(),
        top: 0,
        touched: now,
        metaTtl: limits.metaTtl,
        entries: [],
        head: 0,
      };
      this.#logs.set(topic, log);
      return log;
    }
    const entries = log.entries;
    while (
      log.head < entries.length && entries[log.head].time + limits.ttl <= now
    ) {
      log.head++;
    }
    compact(log);
    return log;
  }

  /**
   * Forgets the topics not written for longer than their `metaTtl`: the map
   * is in order of last write, so the walk stops at the first topic still
   * alive (one with a shorter `metaTtl` behind it waits, but reads and
   * writes check each topic's own).
   */
  #sweep(now: number): void {
    for (const [topic, log] of this.#logs) {
      if (log.touched + log.metaTtl > now) break;
      this.#logs.delete(topic);
    }
  }
}

/** A new epoch: random, so that one from another process never matches. */
export function newEpoch(): string {
  return crypto.getRandomValues(new Uint8Array(6)).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
}

/** Drops the oldest entries past `size`. */
function trim(log: Log, size: number): void {
  const over = log.entries.length - log.head - size;
  if (over > 0) log.head += over;
  compact(log);
}

/**
 * Gives back the array's dropped front once it is half the array, so that
 * dropping is O(1) amortized and the array stays within twice the kept.
 */
function compact(log: Log): void {
  if (log.head > 0 && log.head * 2 >= log.entries.length) {
    log.entries = log.entries.slice(log.head);
    log.head = 0;
  }
}

/** The publications of `entries` from `from` on, without their times. */
function copy(entries: Entry[], from: number): Publication[] {
  const publications: Publication[] = [];
  for (let i = from; i < entries.length; i++) {
    publications.push({
      offset: entries[i].offset,
      message: entries[i].message,
    });
  }
  return publications;
}
