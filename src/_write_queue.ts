/** The writing half of a transport, as the write queue needs it. */
export interface Writer {
  write(bytes: Uint8Array): Promise<number>;
}

/**
 * The one outbound queue of a connection: data frames from `writable` and the
 * control frames the protocol sends (pongs, closes) go through it in order.
 * While one socket write is in flight, the frames queued behind it are
 * gathered into the next single write (write coalescing).
 */
export class WriteQueue {
  #writer: Writer;
  #highWaterMark: number;
  #onError: (error: unknown) => void;
  #chunks: Uint8Array[] = [];
  #pending = 0;
  #writing = false;
  #failed = false;
  #readyWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

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

  /** Queues bytes to write; starts writing if no write is in flight. */
  push(bytes: Uint8Array): void {
    if (this.#failed) return;
    this.#chunks.push(bytes);
    this.#pending += bytes.length;
    if (!this.#writing) this.#flush();
  }

  /** Resolves once the queue is at or below its high-water mark (or failed). */
  ready(): Promise<void> {
    if (!this.full || this.#failed) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Resolves once everything queued has been written (or the queue failed). */
  idle(): Promise<void> {
    if (!this.#writing || this.#failed) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#chunks.length > 0) {
        const chunks = this.#chunks;
        this.#chunks = [];
        let bytes: Uint8Array;
        if (chunks.length === 1) {
          bytes = chunks[0];
        } else {
          let size = 0;
          for (const chunk of chunks) size += chunk.length;
          bytes = new Uint8Array(size);
          let at = 0;
          for (const chunk of chunks) {
            bytes.set(chunk, at);
            at += chunk.length;
          }
        }
        let written = 0;
        while (written < bytes.length) {
          written += await this.#writer.write(bytes.subarray(written));
        }
        this.#pending -= bytes.length;
        if (!this.full) _wake(this.#readyWaiters);
      }
    } catch (error) {
      this.#failed = true;
      this.#chunks = [];
      this.#pending = 0;
      _wake(this.#readyWaiters);
      this.#onError(error);
    } finally {
      this.#writing = false;
      _wake(this.#idleWaiters);
    }
  }
}

function _wake(waiters: (() => void)[]): void {
  for (const wake of waiters.splice(0)) wake();
}
