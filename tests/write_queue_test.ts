import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { WriteQueue } from "../src/engine/_write_queue.ts";

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
  const queue = new WriteQueue(writer, 1024, (error) => {
    throw error;
  });
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
    (error) => {
      throw error;
    },
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
  const queue = new WriteQueue(writer, 1024, () => {});
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
  const queue = new WriteQueue(writer, 1024, () => {});
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
  const queue = new WriteQueue(writer, 1024, () => {});
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
  const queue = new WriteQueue(writer, 1024, () => {});
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

Deno.test("write queue is backlogged as soon as a write comes back short, until one is taken whole", async () => {
  const offered: number[] = [];
  let take = 10;
  const queue = new WriteQueue(
    {
      write(bytes) {
        offered.push(bytes.length);
        return Promise.resolve(Math.min(take, bytes.length));
      },
    },
    1024,
    () => {},
  );
  queue.push(new Uint8Array(100));
  assert.equal(queue.backlogged, false);
  // Short writes follow each other within microtasks.
  await Promise.resolve();
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(queue.backlogged, true);
  take = Infinity;
  await queue.idle();
  assert.equal(queue.backlogged, false);
  assert.equal(offered[0], 100);
  assert.equal(offered.at(-1), 100 - 10 * (offered.length - 1));
});
