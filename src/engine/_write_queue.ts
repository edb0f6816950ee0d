// The one outbound queue of a connection: frames in order, small ones
// batched into one buffer, written with as few writes as possible.

import { clearImmediate, setImmediate } from "node:timers";

/** The writing half of a transport, as the write queue needs it. */
export interface Writer {
  write(bytes: Uint8Array): Promise<number>;
  /** Turns Nagle's algorithm off (TCP only); called before the first write. */
  setNoDelay?(noDelay: boolean): void;
}

/** Small frames are written into batch buffers of at least this size. */
const MIN_BATCH = 4 * 1024;
/**
 * Queued parts smaller than this are gathered into one write with their
 * neighbours (up to `GATHER_LIMIT` bytes): a copy of a few bytes costs far
 * less than a system call per frame, as when many publications wait.
 */
const GATHER_MAX = 16 * 1024;
const GATHER_LIMIT = 64 * 1024;

/**
 * The turns of the event loop, counted only while a write needs them: a
 * write still waiting two turns after it was handed to the transport is
 * waiting for the peer (a write the transport can take ends in the next
 * turn). `setImmediate` runs after the pending I/O of a turn.
 */
let turn = 0;
let turnsWanted = 0;
let ticking = false;

/** The current turn; the clock runs for two more. */
function writeTurn(): number {
  turnsWanted = turn + 2;
  if (!ticking) {
    ticking = true;
    setImmediate(tick);
  }
  return turn;
}

function tick(): void {
  turn++;
  ticking = turn < turnsWanted;
  if (ticking) setImmediate(tick);
}

/**
 * The one outbound queue of a connection: data frames from `writable` and the
 * control frames the protocol sends (pongs, closes) go through it in order.
 * Small frames are written straight into a shared batch buffer (`reserve`),
 * large payloads are queued by reference (`push`); while one socket write is
 * in flight, everything queued behind it goes out in the next write (write
 * coalescing). `hold()` and `release(true)` keep writing back until the
 * current task's microtasks have run, so that the replies to one read go out
 * in one write.
 */
export class WriteQueue {
  #writer: Writer;
  #highWaterMark: number;
  #onError: (error: unknown) => void;
  /** Sealed parts waiting to be written, in order. */
  #chunks: Uint8Array[] = [];
  /**
   * The open batch buffer: bytes before `#batchStart` are sealed (queued or
   * written), those up to `#batchUsed` are committed and not yet sealed.
   */
  #batch: Uint8Array | null = null;
  #batchStart = 0;
  #batchUsed = 0;
  #pending = 0;
  #writing = false;
  /** Whether anything was written yet. */
  #written = false;
  /** The turn in which the write in flight was handed to the transport. */
  #offeredAt = 0;
  /** The last write came back short: the transport took only part of it. */
  #short = false;
  /** The release that waits for the current task's microtasks to run. */
  #uncork: ReturnType<typeof setImmediate> | undefined;
  /** Between `hold()` and `release()`. */
  #held = false;
  /** Released with `deferred`: waiting for the microtasks to run. */
  #corked = false;
  #failed = false;
  /** Who waits for room or for the end of writing: rare, made when needed. */
  #readyWaiters: (() => void)[] | null = null;
  #idleWaiters: (() => void)[] | null = null;

  /**
   * @param writer Where the bytes go.
   * @param highWaterMark Queued bytes above which `ready` waits.
   * @param onError Told once when a write fails; the queue then drops all.
   */
  constructor(
    writer: Writer,
    highWaterMark: number,
    onError: (error: unknown) => void,
  ) {
    this.#writer = writer;
    this.#highWaterMark = highWaterMark;
    this.#onError = onError;
  }

  /** Bytes queued or being written. */
  get pending(): number {
    return this.#pending;
  }

  /** Whether more bytes are queued than the high-water mark. */
  get full(): boolean {
    return this.#pending > this.#highWaterMark;
  }

  /**
   * Whether what is queued waits for the peer: the transport took only part
   * of the last write, or has not taken the write in flight since two turns
   * of the event loop. Bytes queued in the current task are not written
   * before it ends, whatever the peer does: until the transport refuses
   * some, a queue over any size only says that much was queued at once.
   */
  get backlogged(): boolean {
    return this.#writing && (this.#short || turn >= this.#offeredAt + 2);
  }

  /**
   * Makes room for `size` bytes in the open batch and returns where they
   * start in `batch`; the caller fills them and then calls `commit` with how
   * many it used (at most `size`), before anything else is queued. An offset
   * rather than a view, so that a small frame allocates nothing.
   */
  reserve(size: number): number {
    const batch = this.#batch;
    if (batch === null || batch.length - this.#batchUsed < size) {
      this.#seal();
      this.#batch = new Uint8Array(Math.max(size, MIN_BATCH));
      this.#batchStart = this.#batchUsed = 0;
    }
    return this.#batchUsed;
  }

  /** The open batch buffer that the last `reserve` made room in. */
  get batch(): Uint8Array {
    return this.#batch!;
  }

  /** Queues the first `used` bytes of the last `reserve`. */
  commit(used: number): void {
    if (this.#failed) {
      this.#batch = null;
      return;
    }
    this.#batchUsed += used;
    this.#pending += used;
    this.#kick();
  }

  /**
   * Queues bytes by reference, after what is queued; they must not change
   * until written. For large payloads and frames shared by many sockets:
   * other frames go through `reserve`. Writing starts once the current
   * microtasks have run, so that a burst of publications goes out in one
   * write.
   */
  push(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#seal();
    this.#chunks.push(bytes);
    this.#pending += bytes.length;
    if (this.#writing || this.#corked || this.#held) return;
    this.#corked = true;
    queueMicrotask(() => {
      this.#corked = false;
      this.#kick();
      if (!this.#writing && !this.#held) wake(this.#idleWaiters);
    });
  }

  /** Holds writing back until `release()`: what is queued meanwhile waits. */
  hold(): void {
    this.#held = true;
  }

  /**
   * Ends a `hold()`: writes what waits now or, when `deferred`, once the
   * current task's microtasks have run (replies queued by them join it).
   */
  release(deferred: boolean): void {
    this.#held = false;
    if (deferred) {
      if (this.#corked) return;
      this.#corked = true;
      this.#uncork = setImmediate(() => {
        this.#uncork = undefined;
        this.#corked = false;
        this.#kick();
        if (!this.#writing) wake(this.#idleWaiters);
      });
    } else {
      this.#kick();
      if (!this.#writing && !this.#corked) wake(this.#idleWaiters);
    }
  }

  /** Resolves once the queue is at or below its high-water mark (or failed). */
  ready(): Promise<void> {
    if (!this.full || this.#failed) return RESOLVED;
    return new Promise((resolve) => (this.#readyWaiters ??= []).push(resolve));
  }

  /** Resolves once everything queued has been written (or the queue failed). */
  idle(): Promise<void> {
    if ((!this.#writing && !this.#corked && !this.#held) || this.#failed) {
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#idleWaiters ??= []).push(resolve));
  }

  /** Drops what waits, for a connection that has ended: no timer stays. */
  dispose(): void {
    clearImmediate(this.#uncork);
    this.#uncork = undefined;
    this.#corked = false;
    this.#chunks = [];
    this.#batch = null;
  }

  /**
   * Drops the batch buffer while nothing is queued, so that a connection
   * that has gone quiet does not keep it (the next frame makes a new one).
   */
  trim(): void {
    if (!this.#writing && !this.#corked && !this.#held && this.#pending === 0) {
      this.#batch = null;
    }
  }

  /** Moves the committed part of the open batch to the parts to write. */
  #seal(): void {
    if (this.#batch !== null && this.#batchUsed > this.#batchStart) {
      this.#chunks.push(
        this.#batch.subarray(this.#batchStart, this.#batchUsed),
      );
      // The rest of the buffer stays open for the next small frames.
      this.#batchStart = this.#batchUsed;
    }
  }

  #kick(): void {
    if (!this.#writing && !this.#corked && !this.#held && this.#pending > 0) {
      this.#flush();
    }
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    if (!this.#written) {
      this.#written = true;
      // Frames are coalesced here; Nagle's delay would only add latency to
      // the last write of a burst. Done at the first write, not at accept:
      // a socket that never sends (an idle subscriber) costs no call.
      try {
        this.#writer.setNoDelay?.(true);
      } catch {
        // Closed meanwhile: the write below fails and says so.
      }
    }
    try {
      while (true) {
        this.#seal();
        if (this.#chunks.length === 0) break;
        const chunks = this.#chunks;
        this.#chunks = [];
        for (let i = 0; i < chunks.length;) {
          const end = gatherEnd(chunks, i);
          const bytes = end - i === 1 ? chunks[i] : join(chunks, i, end);
          i = end;
          let written = 0;
          do {
            this.#offeredAt = writeTurn();
            const offered = bytes.length - written;
            const taken = await this.#writer.write(
              written === 0 ? bytes : bytes.subarray(written),
            );
            this.#short = taken < offered;
            written += taken;
          } while (written < bytes.length);
          this.#pending -= bytes.length;
          if (!this.full) wake(this.#readyWaiters);
        }
      }
    } catch (error) {
      this.#failed = true;
      this.#chunks = [];
      this.#batch = null;
      this.#pending = 0;
      wake(this.#readyWaiters);
      this.#onError(error);
    } finally {
      this.#writing = false;
      this.#short = false;
      if (!this.#corked && !this.#held) wake(this.#idleWaiters);
    }
  }
}

/**
 * Where the run of parts to write together from `chunks[at]` ends: small
 * parts are gathered up to `GATHER_LIMIT` bytes; a large one goes alone.
 */
function gatherEnd(chunks: Uint8Array[], at: number): number {
  let end = at;
  let size = 0;
  while (
    end < chunks.length && chunks[end].length < GATHER_MAX &&
    size + chunks[end].length <= GATHER_LIMIT
  ) {
    size += chunks[end++].length;
  }
  return Math.max(end, at + 1);
}

/** A copy of `chunks[from]` to `chunks[to - 1]`, joined. */
function join(chunks: Uint8Array[], from: number, to: number): Uint8Array {
  let size = 0;
  for (let i = from; i < to; i++) size += chunks[i].length;
  const joined = new Uint8Array(size);
  let offset = 0;
  for (let i = from; i < to; i++) {
    joined.set(chunks[i], offset);
    offset += chunks[i].length;
  }
  return joined;
}

/** What `ready()` returns while there is room: one promise for all calls. */
const RESOLVED: Promise<void> = Promise.resolve();

function wake(waiters: (() => void)[] | null): void {
  if (waiters === null || waiters.length === 0) return;
  for (const wake of waiters.splice(0)) wake();
}
