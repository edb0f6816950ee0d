/**
 * The in-memory history of topics, without sockets: offsets and epochs,
 * the bounds by count and by age, reading since a position or the latest,
 * and forgetting a topic's position after `metaTtl`.
 */

import assert from "node:assert/strict";
import {
  type HistoryLimits,
  MemoryHistory,
} from "../src/pubsub/_memory_history.ts";

const LIMITS: HistoryLimits = { size: 3, ttl: 1000, metaTtl: 10_000 };

/** A history on a clock the test moves. */
function clocked() {
  const clock = { now: 0 };
  return { clock, history: new MemoryHistory(() => clock.now) };
}

Deno.test("history: offsets grow by one per publication, per topic, in one epoch", () => {
  const { history } = clocked();
  const a1 = history.append("a", "1", LIMITS);
  const a2 = history.append("a", "2", LIMITS);
  const b1 = history.append("b", "x", LIMITS);
  assert.equal(a1.offset, 1);
  assert.equal(a2.offset, 2);
  assert.equal(b1.offset, 1);
  assert.equal(a1.epoch, a2.epoch);
  assert.notEqual(a1.epoch, b1.epoch);
});

Deno.test("history: a topic never published to is at offset 0", () => {
  const { history } = clocked();
  const read = history.read("none", {}, LIMITS);
  assert.equal(read.position.offset, 0);
  assert.deepEqual(read.publications, []);
  assert.equal(read.recovered, false);
});

Deno.test("history: reading since a position gives every publication after it, recovered", () => {
  const { history } = clocked();
  const first = history.append("a", "1", LIMITS);
  history.append("a", "2", LIMITS);
  history.append("a", new Uint8Array([3]), LIMITS);
  const read = history.read("a", { since: first }, LIMITS);
  assert.equal(read.recovered, true);
  assert.deepEqual(read.publications, [
    { offset: 2, message: "2" },
    { offset: 3, message: new Uint8Array([3]) },
  ]);
  assert.deepEqual(read.position, { offset: 3, epoch: first.epoch });
});

Deno.test("history: reading since the top is recovered with nothing to give", () => {
  const { history } = clocked();
  history.append("a", "1", LIMITS);
  const top = history.append("a", "2", LIMITS);
  const read = history.read("a", { since: top }, LIMITS);
  assert.equal(read.recovered, true);
  assert.deepEqual(read.publications, []);
});

Deno.test("history: it is bounded by count, and a position older than what is kept is not recovered", () => {
  const { history } = clocked();
  const positions = ["1", "2", "3", "4", "5"].map((message) =>
    history.append("a", message, LIMITS)
  );
  const kept = history.read("a", { limit: 10 }, LIMITS).publications;
  assert.deepEqual(kept.map((entry) => entry.message), ["3", "4", "5"]);
  // Offset 2 is the one before the oldest kept (3): nothing is missing.
  assert.equal(
    history.read("a", { since: positions[1] }, LIMITS).recovered,
    true,
  );
  const lost = history.read("a", { since: positions[0] }, LIMITS);
  assert.equal(lost.recovered, false);
  assert.deepEqual(lost.publications, []);
  assert.equal(lost.position.offset, 5);
});

Deno.test("history: it is bounded by age: publications older than ttl are gone", () => {
  const { clock, history } = clocked();
  const first = history.append("a", "old", LIMITS);
  clock.now = 600;
  history.append("a", "newer", LIMITS);
  clock.now = 1000;
  const read = history.read("a", { limit: 3 }, LIMITS);
  assert.deepEqual(read.publications.map((entry) => entry.message), ["newer"]);
  // The first publication's successor is kept, so nothing after it is lost.
  assert.equal(history.read("a", { since: first }, LIMITS).recovered, true);
  clock.now = 1600;
  assert.deepEqual(history.read("a", { limit: 3 }, LIMITS).publications, []);
  assert.equal(history.read("a", { since: first }, LIMITS).recovered, false);
  // The position outlives its publications.
  assert.equal(history.read("a", {}, LIMITS).position.offset, 2);
});

Deno.test("history: another epoch is not recovered", () => {
  const { history } = clocked();
  const top = history.append("a", "1", LIMITS);
  const read = history.read(
    "a",
    { since: { offset: 0, epoch: "other" } },
    LIMITS,
  );
  assert.equal(read.recovered, false);
  assert.deepEqual(read.position, top);
});

Deno.test("history: a position ahead of the top is not recovered", () => {
  const { history } = clocked();
  const top = history.append("a", "1", LIMITS);
  const read = history.read(
    "a",
    { since: { offset: 5, epoch: top.epoch } },
    LIMITS,
  );
  assert.equal(read.recovered, false);
});

Deno.test("history: a process's history is its own epoch (a restart is not recovered)", () => {
  const before = new MemoryHistory();
  const position = before.append("a", "1", LIMITS);
  before.append("a", "2", LIMITS);
  const after = new MemoryHistory();
  after.append("a", "3", LIMITS);
  const read = after.read("a", { since: position }, LIMITS);
  assert.equal(read.recovered, false);
  assert.notEqual(read.position.epoch, position.epoch);
});

Deno.test("history: the latest N, oldest first", () => {
  const { history } = clocked();
  for (const message of ["1", "2", "3"]) history.append("a", message, LIMITS);
  assert.deepEqual(
    history.read("a", { limit: 2 }, LIMITS).publications,
    [{ offset: 2, message: "2" }, { offset: 3, message: "3" }],
  );
  assert.deepEqual(history.read("a", { limit: 0 }, LIMITS).publications, []);
  assert.deepEqual(
    history.read("a", { limit: 1 }, LIMITS).publications,
    [{ offset: 3, message: "3" }],
  );
});

Deno.test("history: after metaTtl without a publication, a topic starts a new epoch from offset 1", () => {
  const { clock, history } = clocked();
  const old = history.append("a", "1", LIMITS);
  clock.now = LIMITS.metaTtl;
  const fresh = history.append("a", "2", LIMITS);
  assert.equal(fresh.offset, 1);
  assert.notEqual(fresh.epoch, old.epoch);
  assert.equal(history.read("a", { since: old }, LIMITS).recovered, false);
});

Deno.test("history: topics not written for their metaTtl are swept as others are written", () => {
  const { clock, history } = clocked();
  for (let i = 0; i < 100; i++) history.append(`t${i}`, "x", LIMITS);
  assert.equal(history.topics, 100);
  clock.now = LIMITS.metaTtl;
  history.append("live", "x", LIMITS);
  assert.equal(history.topics, 1);
});

Deno.test("history: a smaller size for a topic keeps its newest publications", () => {
  const { history } = clocked();
  for (const message of ["1", "2", "3"]) history.append("a", message, LIMITS);
  const smaller = { ...LIMITS, size: 1 };
  assert.deepEqual(
    history.read("a", { limit: 3 }, smaller).publications,
    [{ offset: 3, message: "3" }],
  );
});

Deno.test("history: a long run keeps memory bounded by size", () => {
  const { history } = clocked();
  for (let i = 1; i <= 10_000; i++) history.append("a", String(i), LIMITS);
  const read = history.read("a", { limit: 5 }, LIMITS);
  assert.deepEqual(read.publications.map((entry) => entry.message), [
    "9998",
    "9999",
    "10000",
  ]);
});
