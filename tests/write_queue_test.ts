import assert from "node:assert/strict";
import { WriteQueue } from "../src/_write_queue.ts";

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

Deno.test("write queue writes the first frame at once and coalesces the small frames queued behind a write in flight, in order", async () => {
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
  for (let i = 0; i < 4; i++) {
    writer.release();
    await tick();
  }
  // Small frames share a write; a payload queued by reference is its own.
  assert.deepEqual(writer.writes, [[1, 2], [3, 4], [5, 5], [6]]);
  await queue.idle();
  assert.equal(queue.pending, 0);
});

Deno.test("write queue reserves successive frames in one batch buffer, at increasing offsets", () => {
  const writer = new GatedWriter();
  const queue = new WriteQueue(writer, 1024, () => {});
  queue.cork();
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
