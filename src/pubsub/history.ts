// The vocabulary of topics' history: where a publication stands (offset and
// epoch), how much a topic keeps, and what a read of it returns.

/**
 * Where a publication stands in its topic's history. The offset grows by
 * one per publication in the topic; the epoch names the history's lifetime,
 * and changes whenever entries may have been lost (a process restarted for
 * the in-memory history, a Redis key flushed or expired), so that a
 * position from an earlier lifetime is never taken for one of this one.
 *
 * @example Keeping the last position seen, to resume from it
 * ```ts
 * import assert from "node:assert/strict";
 * import type { StreamPosition } from "@scope/ws";
 *
 * let last: StreamPosition | undefined;
 * function seen(position: StreamPosition) {
 *   last = position;
 * }
 * seen({ offset: 41, epoch: "k3x9Qa" });
 * assert.deepEqual(last, { offset: 41, epoch: "k3x9Qa" });
 * ```
 */
export interface StreamPosition {
  /** The publication's number in its topic, from 1; 0 before the first. */
  offset: number;
  /** The history's lifetime: another epoch means entries may be lost. */
  epoch: string;
}

/**
 * How much history a topic keeps: its latest `size` publications, none
 * older than `ttl`. A topic's position (offset and epoch) outlives its
 * publications by `metaTtl`; after that long without a publication, the
 * next one starts a new epoch from offset 1.
 *
 * @example A chat room keeps its last 100 lines for 10 minutes
 * ```ts
 * import type { HistoryOptions } from "@scope/ws";
 *
 * const rooms: HistoryOptions = { size: 100, ttl: 10 * 60_000 };
 * ```
 */
export interface HistoryOptions {
  /** The most publications kept, at least 1. */
  size: number;
  /** The longest a publication is kept, in ms. */
  ttl: number;
  /**
   * How long a topic's position is kept after its last publication, in ms
   * (at least `ttl`). Default 24 hours.
   */
  metaTtl?: number;
}

/**
 * What to read of a topic's history: what came after a position, or the
 * latest publications.
 *
 * @example What a page missed since its last position, or the last price
 * ```ts
 * import type { HistoryQuery } from "@scope/ws";
 *
 * const missed: HistoryQuery = { since: { offset: 41, epoch: "k3x9Qa" } };
 * const latest: HistoryQuery = { limit: 1 };
 * ```
 */
export interface HistoryQuery {
  /** The last position the reader saw: read every publication after it. */
  since?: StreamPosition;
  /** Without `since`: how many of the latest publications. Default 0. */
  limit?: number;
}

/**
 * A publication that a topic's history kept.
 *
 * @example Showing what was kept
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Publication } from "@scope/ws";
 *
 * const kept: Publication = { offset: 42, message: "Hello" };
 * assert.equal(`#${kept.offset}: ${kept.message}`, "#42: Hello");
 * ```
 */
export interface Publication {
  /** Its offset in the topic. */
  offset: number;
  /** The message: a `string` was published as text, bytes as binary. */
  message: string | Uint8Array;
}

/**
 * What a read of a topic's history returns.
 *
 * @example Telling a page whether it missed anything
 * ```ts
 * import assert from "node:assert/strict";
 * import type { HistoryResult } from "@scope/ws";
 *
 * function report(result: HistoryResult): string {
 *   return result.recovered
 *     ? `${result.publications.length} missed publications`
 *     : "history does not reach back: send a snapshot";
 * }
 * const position = { offset: 3, epoch: "a" };
 * assert.equal(
 *   report({ position, publications: [], recovered: true }),
 *   "0 missed publications",
 * );
 * ```
 */
export interface HistoryResult {
  /** The topic's latest position (offset 0 when nothing was published). */
  position: StreamPosition;
  /**
   * With `since`: every publication after it, when `recovered`; none
   * otherwise. Without: the latest `limit`. Oldest first.
   */
  publications: Publication[];
  /**
   * With `since`: whether `publications` are all of those after it (the
   * epoch is the same and the history still reaches back to it). Without
   * `since`: `false`.
   */
  recovered: boolean;
}
