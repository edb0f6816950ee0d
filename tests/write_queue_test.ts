import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import { setImmediate } from "node:timers";
import { TURN_WRITES, WriteQueue } from "../src/engine/_write_queue.ts";

/** Owners of the queues below: one ignores a failed write, one throws it. */
const IGNORE_FAILURES = { writeFailed() {} };
const THROW_FAILURES = {
  writeFailed(error: unknown) {
    throw error;
  },
};

/** A writer that records what it is given and completes when told to. */
class GatedWriter {
  writes: number[][] = [];
  #release: (() => void)[] = [];

  write(bytes: Uint8Array): Promise<number> {
    this.writes.push([...bytes]);
    return new Promise((resolve) =>
      this.#release.push(() => resolve(bytes.length))
    );
  }

  /** Completes the oldest write in flight. */
  release(): void {
    this.#release.shift()?.();
  }
}

/** Queues `bytes` as a small frame would: reserve, fill, commit. */
function queueSmall(queue: WriteQueue, bytes: number[]): void {
  const at = queue.reserve(bytes.length);
  queue.batch.set(bytes, at);
  queue.commit(bytes.length);
}

Deno.test("write queue writes the first frame at once and gathers the small parts queued behind a write in flight into one write, in order", async () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, THROW_FAILURES);
  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
  queueSmall(queue, [1, 2]);
  queueSmall(queue, [3]);
  queueSmall(queue, [4]);
  queue.push(new Uint8Array([5, 5]));
  queueSmall(queue, [6]);
  assert.deepEqual(writer.writes, [[1, 2]]);
  assert.equal(queue.pending, 7);
  for (let i = 0; i < 2; i++) {
    writer.release();
    await tick();
  }
  // Small parts, batched or queued by reference, share one write.
  assert.deepEqual(writer.writes, [[1, 2], [3, 4, 5, 5, 6]]);
  await queue.idle();
  assert.equal(queue.pending, 0);
});

Deno.test("write queue writes a large part queued by reference on its own, without copying it", async () => {
  const written: Uint8Array[] = [];
  const queue = new WriteQueue(
    {
      write(bytes) {
        written.push(bytes);
        return Promise.resolve(bytes.length);
      },
    },
    1 << 20,
    THROW_FAILURES,
  );
  const large = new Uint8Array(64 * 1024).fill(7);
  queueSmall(queue, [1]);
  queue.push(large);
  queueSmall(queue, [2]);
  await queue.idle();
  assert.equal(written.length, 3);
  assert.deepEqual([...written[0]], [1]);
  assert.ok(written[1] === large, "the pushed array itself is written");
  assert.deepEqual([...written[2]], [2]);
});

Deno.test("write queue reserves successive frames in one batch buffer, at increasing offsets", () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, IGNORE_FAILURES);
  queue.hold();
  const first = queue.reserve(10);
  const batch = queue.batch;
  queue.commit(3);
  const second = queue.reserve(10);
  assert.equal(first, 0);
  assert.equal(second, 3);
  assert.equal(queue.batch, batch);
});

Deno.test("write queue trim gives back the batch buffer only when nothing is queued", async () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, IGNORE_FAILURES);
  queueSmall(queue, [1]);
  const batch = queue.batch;
  queue.trim();
  // A write is in flight: the buffer is kept.
  queue.reserve(1);
  assert.equal(queue.batch, batch);
  writer.release();
  await queue.idle();
  queue.trim();
  queue.reserve(1);
  assert.notEqual(queue.batch, batch);
});

Deno.test("write queue holds frames until release, then writes them together: at once, or after the task's microtasks when deferred", async () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, IGNORE_FAILURES);
  queue.hold();
  queueSmall(queue, [1]);
  queueSmall(queue, [2]);
  assert.deepEqual(writer.writes, []);
  queue.release(false);
  assert.deepEqual(writer.writes, [[1, 2]]);
  writer.release();
  await queue.idle();

  queue.hold();
  queueSmall(queue, [3]);
  queue.release(true);
  // Replies queued by this task's microtasks join the same write.
  await Promise.resolve().then(() => queueSmall(queue, [4]));
  assert.deepEqual(writer.writes, [[1, 2]]);
  // Immediates run in order: the queue's, then this one.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(writer.writes, [[1, 2], [3, 4]]);
  writer.release();
  await queue.idle();
});

/** Resolves after one turn of the event loop (an immediate). */
const turn = () => new Promise((resolve) => setImmediate(resolve));

Deno.test("write queue is not backlogged by what one task queued, however much: only once the transport refuses some", async () => {
  // Completes each write when told to (records nothing: 6.4 MiB pass).
  const gates: (() => void)[] = [];
  const writer = {
    write: (bytes: Uint8Array) =>
      new Promise<number>((resolve) => gates.push(() => resolve(bytes.length))),
    release: () => gates.shift()?.(),
  };
  const queue = new WriteQueue(writer, 1024, IGNORE_FAILURES);
  for (let i = 0; i < 100; i++) queue.push(new Uint8Array(64 * 1024));
  // 6.4 MiB queued in this task, none of it refused yet.
  assert.equal(queue.backlogged, false);
  await turn();
  // The first write is in flight since this turn: the transport may take it.
  assert.equal(queue.backlogged, false);
  writer.release();
  await turn();
  assert.equal(queue.backlogged, false, "the transport took all of it");
  // The next write waits two turns: the transport does not take it.
  await turn();
  await turn();
  assert.equal(queue.backlogged, true);
  while (queue.pending > 0) {
    writer.release();
    await turn();
  }
  await queue.idle();
  assert.equal(queue.backlogged, false, "an idle queue waits for no one");
});

Deno.test("write queue schedules no turn of the event loop for writes the transport takes, one per turn as an echo makes them", async () => {
  // Counted with async hooks: an immediate per write (the turn clock run
  // for every write) cost a single echoed connection 7% of its round trips.
  let immediates = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === "Immediate") immediates++;
    },
  }).enable();
  try {
    const queue = new WriteQueue(
      { write: (bytes) => Promise.resolve(bytes.length) },
      1024,
      THROW_FAILURES,
    );
    for (let i = 0; i < 10; i++) {
      queueSmall(queue, [i]);
      await queue.idle();
      // The next write in a later turn, as the next message of a peer.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(immediates, 0);
    // Asked whether it is backlogged while a write is in flight, it counts
    // turns again: two of them, then the clock stops.
    const writer = new GatedWriter();
    const gated = new WriteQueue(writer, 1024, THROW_FAILURES);
    queueSmall(gated, [1]);
    assert.equal(gated.backlogged, false);
    await turn();
    await turn();
    assert.equal(gated.backlogged, true);
    writer.release();
    await gated.idle();
    assert.equal(gated.backlogged, false);
  } finally {
    hook.disable();
  }
});

Deno.test("write queue is backlogged as soon as a write comes back short, until one is taken whole", async () => {
  const offered: number[] = [];
  /** Whether the queue said it was backlogged as each write was offered. */
  const backlogged: boolean[] = [];
  const queue: WriteQueue = new WriteQueue(
    {
      write(bytes) {
        offered.push(bytes.length);
        backlogged.push(queue.backlogged);
        // The transport takes 10 bytes at a time, the first 3 times.
        return Promise.resolve(offered.length <= 3 ? 10 : bytes.length);
      },
    },
    1024,
    IGNORE_FAILURES,
  );
  queue.push(new Uint8Array(100));
  assert.equal(queue.backlogged, false);
  await queue.idle();
  assert.deepEqual(offered, [100, 90, 80, 70]);
  assert.deepEqual(backlogged, [false, true, true, true]);
  assert.equal(queue.backlogged, false);
});

Deno.test("write queue writes what one task pushed in one write once the task has ended, microtasks between the pushes included", async () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, IGNORE_FAILURES);
  // As a publisher's messages arrive: each from its own promise callback.
  queue.push(new Uint8Array([1]));
  await Promise.resolve();
  queue.push(new Uint8Array([2]));
  await Promise.resolve();
  queue.push(new Uint8Array([3]));
  assert.deepEqual(writer.writes, []);
  await turn();
  assert.deepEqual(writer.writes, [[1, 2, 3]]);
  writer.release();
  await queue.idle();
});

Deno.test("write queues start at most TURN_WRITES writes per turn of the event loop, the others in the next turns, first come first served", async () => {
  const started: number[] = [];
  const queues = Array.from(
    { length: TURN_WRITES * 2 + 10 },
    (_, i) =>
      new WriteQueue(
        {
          write(bytes) {
            started.push(i);
            return Promise.resolve(bytes.length);
          },
        },
        1024,
        IGNORE_FAILURES,
      ),
  );
  // A publication to every queue, as a topic's fan-out queues it.
  const frame = new Uint8Array([0x81, 0]);
  for (const queue of queues) queue.push(frame);
  await turn();
  assert.equal(started.length, TURN_WRITES);
  await turn();
  assert.equal(started.length, TURN_WRITES * 2);
  await turn();
  assert.deepEqual(started, queues.map((_, i) => i));
  await Promise.all(queues.map((queue) => queue.idle()));
});

Deno.test("write queue writes the answers to a read at once, even when this turn's budget of writes is spent", async () => {
  const started: string[] = [];
  const queue = (name: string) =>
    new WriteQueue(
      {
        write(bytes) {
          started.push(name);
          return Promise.resolve(bytes.length);
        },
      },
      1024,
      IGNORE_FAILURES,
    );
  // A fan-out spends the budget: the rest of it waits for the next turn.
  const fanOut = Array.from({ length: TURN_WRITES + 1 }, () => queue("fan"));
  const frame = new Uint8Array([0x81, 0]);
  for (const q of fanOut) q.push(frame);
  await turn();
  assert.equal(started.length, TURN_WRITES);
  // An echo answers a read: its write starts now, not behind the fan-out
  // (256 echoing connections waited for each other's turns, bench (f)).
  const echo = queue("echo");
  echo.hold();
  queueSmall(echo, [0x81, 1, 0x61]);
  echo.release(false);
  assert.equal(started.at(-1), "echo");
  // Writes outside a read still take their turn.
  const late = queue("late");
  queueSmall(late, [0x81, 0]);
  assert.equal(started.at(-1), "echo");
  await turn();
  assert.deepEqual(started.slice(-2), ["fan", "late"]);
  await Promise.all([...fanOut, echo, late].map((q) => q.idle()));
});

Deno.test("write queues with the same shared frames queued write one joined copy of them, not one each", async () => {
  const written: Uint8Array[] = [];
  const writer = {
    write(bytes: Uint8Array) {
      written.push(bytes);
      return Promise.resolve(bytes.length);
    },
  };
  const queues = [0, 1, 2].map(() =>
    new WriteQueue(writer, 1024, IGNORE_FAILURES)
  );
  const first = new Uint8Array([0x81, 1, 65]);
  const second = new Uint8Array([0x81, 1, 66]);
  for (const queue of queues) {
    queue.push(first);
    queue.push(second);
  }
  await Promise.all(queues.map((queue) => queue.idle()));
  assert.equal(written.length, 3);
  assert.deepEqual([...written[0]], [0x81, 1, 65, 0x81, 1, 66]);
  assert.ok(written[1] === written[0] && written[2] === written[0]);
});

Deno.test("write queue tells its owner once when a write fails, then drops what is queued and what comes", async () => {
  const broken = new Error("Broken pipe");
  const written: number[][] = [];
  const failures: unknown[] = [];
  const queue = new WriteQueue(
    {
      write(bytes) {
        written.push([...bytes]);
        return Promise.reject(broken);
      },
    },
    1024,
    { writeFailed: (error) => failures.push(error) },
  );
  queueSmall(queue, [1]);
  // Behind the write in flight, which fails.
  queueSmall(queue, [2, 3]);
  queue.push(new Uint8Array([4]));
  await queue.idle();
  assert.deepEqual(failures, [broken]);
  assert.equal(queue.pending, 0);
  queueSmall(queue, [5]);
  queue.push(new Uint8Array([6]));
  await queue.idle();
  await turn();
  assert.deepEqual(failures, [broken]);
  assert.deepEqual(written, [[1]]);
  assert.equal(queue.pending, 0);
});
