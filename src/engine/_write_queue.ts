// The one outbound queue of a connection: frames in order, small ones
// batched into one buffer, written with as few writes as possible.

import { clearImmediate, setImmediate } from "node:timers";

/** The writing half of a transport, as the write queue needs it. */
export interface Writer {
  write(bytes: Uint8Array): Promise<number>;
  /** Turns Nagle's algorithm off (TCP only); called before the first write. */
  setNoDelay?(noDelay: boolean): void;
}

/** Who is told when a write fails: the queue's connection. */
export interface WriteQueueOwner {
  writeFailed(error: unknown): void;
}

/** Small frames are written into batch buffers of at least this size. */
const MIN_BATCH = 4 * 1024;
/**
 * Queued parts smaller than this are gathered into one write with their
 * neighbours (up to `GATHER_LIMIT` bytes): a copy of a few bytes costs far
 * less than a system call per frame, as when many publications wait. The
 * limit holds a publisher's read of 4 KiB messages (16 of them in the
 * bench's (g): 64 KiB and their headers) in one write.
 */
const GATHER_MAX = 16 * 1024;
const GATHER_LIMIT = 256 * 1024;

/**
 * Writes handed to the transport per turn of the event loop, across all
 * connections; the others wait for the next turn, first come first
 * served. Deno completes an I/O operation at once only while the event
 * loop's turn has budget left (Tokio's cooperative budget: 128 per turn,
 * reads and accepts included); past it, each write waits in a slower
 * queue of its own, where fresh writes overtake it: fanning a message out
 * to 10,000 sockets in one turn left some of them without a byte for
 * seconds (bench/README.md, "Fan-out at 10,000 subscribers"). Half the
 * budget leaves room for the reads and accepts of the same turn. A
 * connection's answers to its own read do not count: one read makes them.
 */
export const TURN_WRITES = 64;

/**
 * The turns of the event loop, counted only while something needs them: a
 * write still waiting two turns after it was handed to the transport is
 * waiting for the peer (a write the transport can take ends in the next
 * turn), which only `backlogged` asks, and rarely (a queue over
 * `maxBackpressure`); the budget of writes, once spent; a joined copy, to
 * let go of it. Not for every write: an immediate per write (two turns of
 * them) cost a single echoed connection 7% of its round trips, as the
 * event loop then spins through those turns before it waits for the peer.
 * `setImmediate` runs after the pending I/O of a turn.
 */
let turn = 0;
let turnsWanted = 0;
let ticking = false;
/** Writes still allowed in this turn (see `TURN_WRITES`). */
let budget = TURN_WRITES;
/**
 * Queues waiting for their next write: publications queued in this task,
 * written once it ends, and writes over this turn's budget.
 */
let due: WriteQueue[] = [];
let dueHead = 0;

/** Counts the turns of the event loop for two more (at least). */
function watchTurns(): void {
  turnsWanted = Math.max(turnsWanted, turn + 2);
  tickSoon();
}

function tickSoon(): void {
  if (!ticking) {
    ticking = true;
    setImmediate(tick);
  }
}

/** A new turn: the budget is refilled and the queues that wait go first. */
function tick(): void {
  turn++;
  budget = TURN_WRITES;
  while (budget > 0 && dueHead < due.length) {
    const queue = due[dueHead];
    due[dueHead++] = undefined!;
    queue.resume();
  }
  if (dueHead === due.length) {
    due.length = dueHead = 0;
  } else if (dueHead >= 1024) {
    due = due.slice(dueHead);
    dueHead = 0;
  }
  ticking = turn < turnsWanted || dueHead < due.length;
  if (ticking) {
    setImmediate(tick);
  } else {
    // Writing has stopped: the last join is not kept.
    joined = null;
    joinedParts = [];
  }
}

/** Takes one write from this turn's budget, if any is left. */
function takeWrite(): boolean {
  if (budget === 0) return false;
  budget--;
  return true;
}

/**
 * The one outbound queue of a connection: data frames from `writable` and the
 * control frames the protocol sends (pongs, closes) go through it in order.
 * Small frames are written straight into a shared batch buffer (`reserve`),
 * large payloads and shared frames are queued by reference (`push`); while
 * one socket write is in flight, everything queued behind it goes out in the
 * next write (write coalescing). `hold()` and `release(true)` keep writing
 * back until the current task's microtasks have run, so that the replies to
 * one read go out in one write; `push` waits for the end of the task, so
 * that all the publications of one task go out in one write.
 */
export class WriteQueue {
  #writer: Writer;
  #highWaterMark: number;
  #owner: WriteQueueOwner;
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
  /** Waiting in `due` for its next write. */
  #due = false;
  /** The bytes of the write in flight (or cut short), and how many went. */
  #bytes: Uint8Array | null = null;
  #offset = 0;
  /**
   * What the transport's write promises settle with: made at the first
   * write, so that a socket that never sends (an idle subscriber) has none.
   */
  #onWritten: ((taken: number) => void) | null = null;
  #onFailed: ((error: unknown) => void) | null = null;
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
   * @param owner Told once when a write fails; the queue then drops all.
   */
  constructor(writer: Writer, highWaterMark: number, owner: WriteQueueOwner) {
    this.#writer = writer;
    this.#highWaterMark = highWaterMark;
    this.#owner = owner;
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
    if (!this.#writing) return false;
    if (this.#short || turn >= this.#offeredAt + 2) return true;
    // Counted from now on, if they were not: a write offered while the
    // clock stood counts its turns from here.
    watchTurns();
    return false;
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
   * other frames go through `reserve`. Writing starts once the current task
   * has ended (in the event loop's next round of immediates), so that all
   * the publications of one task, as those of one read of a publisher, go
   * out in one write.
   */
  push(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#seal();
    this.#chunks.push(bytes);
    this.#pending += bytes.length;
    if (this.#writing || this.#corked || this.#held || this.#due) return;
    this.#wait();
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
        this.#kick(true);
        if (this.#idle()) wake(this.#idleWaiters);
      });
    } else {
      this.#kick(true);
      if (this.#idle()) wake(this.#idleWaiters);
    }
  }

  /** Resolves once the queue is at or below its high-water mark (or failed). */
  ready(): Promise<void> {
    if (!this.full || this.#failed) return RESOLVED;
    return new Promise((resolve) => (this.#readyWaiters ??= []).push(resolve));
  }

  /** Resolves once everything queued has been written (or the queue failed). */
  idle(): Promise<void> {
    if (this.#idle() || this.#failed) return Promise.resolve();
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
    if (this.#idle() && this.#pending === 0) this.#batch = null;
  }

  /**
   * This queue's turn to write, given by the turn clock (`tick`) to a queue
   * that waited in `due`.
   */
  resume(): void {
    this.#due = false;
    this.#kick();
    if (this.#idle()) wake(this.#idleWaiters);
  }

  /** Whether nothing is being written nor waits to be. */
  #idle(): boolean {
    return !this.#writing && !this.#corked && !this.#held && !this.#due;
  }

  /** Waits in `due` for the next turn. */
  #wait(): void {
    this.#due = true;
    due.push(this);
    tickSoon();
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

  /** Writes what waits unless a write is in flight; `answer`: see `#next`. */
  #kick(answer = false): void {
    if (this.#idle() && this.#pending > 0) this.#next(answer);
  }

  /**
   * Hands the next write to the transport: the rest of one cut short, or
   * the parts queued, small ones gathered into one. Over this turn's
   * budget, the queue waits for the next turn instead, unless the write is
   * the `answer` to a read of this connection (what `release()` writes):
   * the reads of a turn bound those already, and made to wait behind each
   * other they held 256 echoing connections' p99 round trip at 30 ms
   * rather than 7 (bench (f)).
   */
  #next(answer = false): void {
    if (!answer && !takeWrite()) {
      this.#wait();
      return;
    }
    let bytes = this.#bytes;
    if (bytes === null) {
      this.#seal();
      const chunks = this.#chunks;
      if (chunks.length === 0) {
        // Disposed meanwhile: nothing is left to write.
        if (!answer) budget++;
        return;
      }
      const end = gatherEnd(chunks, 0);
      bytes = this.#bytes = end === 1 ? chunks[0] : join(chunks, 0, end);
      if (end === chunks.length) chunks.length = 0;
      else chunks.splice(0, end);
    }
    if (this.#onWritten === null) {
      this.#onWritten = (taken) => this.#written(taken);
      this.#onFailed = (error) => this.#fail(error);
      // Frames are coalesced here; Nagle's delay would only add latency to
      // the last write of a burst. Done at the first write, not at accept:
      // a socket that never sends (an idle subscriber) costs no call.
      try {
        this.#writer.setNoDelay?.(true);
      } catch {
        // Closed meanwhile: the write below fails and says so.
      }
    }
    this.#writing = true;
    this.#offeredAt = turn;
    const offset = this.#offset;
    let written: Promise<number>;
    try {
      written = this.#writer.write(
        offset === 0 ? bytes : bytes.subarray(offset),
      );
    } catch (error) {
      this.#fail(error);
      return;
    }
    written.then(this.#onWritten, this.#onFailed);
  }

  /** The transport took `taken` bytes of the write in flight. */
  #written(taken: number): void {
    const bytes = this.#bytes!;
    this.#writing = false;
    this.#short = taken < bytes.length - this.#offset;
    this.#offset += taken;
    if (this.#offset >= bytes.length) {
      this.#bytes = null;
      this.#offset = 0;
      this.#pending -= bytes.length;
      if (!this.full) wake(this.#readyWaiters);
    }
    // Whatever was queued meanwhile goes next, held or not: a hold only
    // gathers what one read answers, and this write has ended.
    if (this.#bytes !== null || this.#pending > 0) {
      if (!this.#due) this.#next();
      if (this.#writing) return;
    }
    this.#short = false;
    if (this.#idle()) wake(this.#idleWaiters);
  }

  #fail(error: unknown): void {
    this.#failed = true;
    this.#chunks = [];
    this.#batch = null;
    this.#bytes = null;
    this.#pending = 0;
    wake(this.#readyWaiters);
    this.#owner.writeFailed(error);
    this.#writing = false;
    this.#short = false;
    if (!this.#corked && !this.#held) wake(this.#idleWaiters);
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

/**
 * The parts of the last join and their copy. The subscribers of a topic are
 * written one after another, each with the same shared frames queued: they
 * share one copy rather than making one each. The parts never change once
 * queued (see `push`), so the same parts make the same bytes.
 */
let joinedParts: Uint8Array[] = [];
let joined: Uint8Array | null = null;

/** `chunks[from]` to `chunks[to - 1]`, joined (a copy, or the last one). */
function join(chunks: Uint8Array[], from: number, to: number): Uint8Array {
  const count = to - from;
  if (joined !== null && joinedParts.length === count) {
    let same = 0;
    while (same < count && chunks[from + same] === joinedParts[same]) same++;
    if (same === count) return joined;
  }
  let size = 0;
  for (let i = from; i < to; i++) size += chunks[i].length;
  const copy = new Uint8Array(size);
  let offset = 0;
  for (let i = from; i < to; i++) {
    copy.set(chunks[i], offset);
    offset += chunks[i].length;
  }
  joinedParts = chunks.slice(from, to);
  // The clock lets go of the copy once writing has stopped.
  watchTurns();
  return joined = copy;
}

/** What `ready()` returns while there is room: one promise for all calls. */
const RESOLVED: Promise<void> = Promise.resolve();

function wake(waiters: (() => void)[] | null): void {
  if (waiters === null || waiters.length === 0) return;
  for (const wake of waiters.splice(0)) wake();
}
