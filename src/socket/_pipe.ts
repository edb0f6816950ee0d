// The direct pipe: a socket's `readable` piped into a socket's `writable`
// hands each message from one to the other, with no stream promise per
// message.

import type { Message } from "../protocol/message_assembler.ts";
import { SendAfterCloseError } from "../protocol/websocket_error.ts";
import { internalsOf } from "../pubsub/_internals.ts";

/**
 * What a pipe needs of its source: the inbox behind the piped `readable`.
 *
 * @example
 * ```ts ignore
 * if (source.pipeable()) source.pipeOut(pipe, readable);
 * ```
 */
export interface PipeSource {
  /** Whether `readable` may be piped directly now. */
  pipeable(): boolean;
  /** Starts sending what arrives (and what waits) to `pipe`. */
  pipeOut(pipe: Pipe, readable: ReadableStream<Message>): void;
  /** Hands what waits to the pipe while the target has room. */
  pump(): void;
  /** The pipe's lock on `readable`, while that stream exists. */
  readonly pipeReader: ReadableStreamDefaultReader<Message> | undefined;
  /** Cancels reading, as `readable`'s cancel does. */
  cancel(reason: unknown): void;
  /** Releases the pipe's lock on `readable`, if it exists. */
  unlock(): void;
}

/**
 * What a pipe needs of its target: the socket behind the `writable`.
 *
 * @example
 * ```ts ignore
 * if (!target.pipedWrite(message)) fail(new SendAfterCloseError());
 * ```
 */
export interface PipeTarget {
  /** Whether a pipe may write now: none does, and no write waits. */
  pipeable(): boolean;
  /** Takes the pipe's writes from now on. */
  pipeIn(pipe: Pipe, writable: WritableStream<Message>): void;
  /** Sends a message as `writable`'s sink does; false once it does not. */
  pipedWrite(message: Message): boolean;
  /** Resolves once the target is under its mark; undefined while it is. */
  ready(): Promise<void> | undefined;
  /** The pipe's lock on `writable`, while that stream exists. */
  readonly pipeWriter: WritableStreamDefaultWriter<Message> | undefined;
  /** Closes the target as `writable`'s close does. */
  closeWritable(): void;
  /** Drops what waits and closes, as `writable`'s abort does. */
  abortWrites(reason: unknown): void;
  /** Releases the pipe's lock on `writable`, if it exists. */
  unlock(): void;
}

/**
 * The internals of a socket's stream, as a pipe reaches them: its source
 * or sink, whose `owner` is the inbox or socket behind it.
 */
interface Piped<T> {
  readonly owner: T;
}

/**
 * Pipes a socket's `readable` into a socket's `writable` directly when it
 * can: both are the sockets' own, unlocked, and nothing waits in either
 * (what `readable` holds or `writable` queued goes through the streams'
 * own `pipeTo`). Returns the pipe's promise, or undefined when it cannot.
 *
 * @example
 * ```ts ignore
 * return pipeDirectly(this, destination) ?? super.pipeTo(destination);
 * ```
 */
export function pipeDirectly(
  readable: ReadableStream<Message>,
  destination: WritableStream<Message>,
): Promise<void> | undefined {
  const source = (internalsOf(readable) as Piped<PipeSource> | undefined)
    ?.owner;
  const target = (internalsOf(destination) as Piped<PipeTarget> | undefined)
    ?.owner;
  if (
    source === undefined || target === undefined || readable.locked ||
    destination.locked || !source.pipeable() || !target.pipeable()
  ) {
    return undefined;
  }
  const pipe = new Pipe(source, target);
  source.pipeOut(pipe, readable);
  target.pipeIn(pipe, destination);
  return pipe.promise;
}

/**
 * A direct pipe from one socket's `readable` to a socket's `writable`: the
 * source hands each message to `write`, which sends it on the target and,
 * when the target is over its mark, holds the source (its inbox fills, then
 * it stops reading) until the target drains. It ends as `pipeTo` does: the
 * source's clean end closes the target's `writable`; its error aborts it; a
 * target that no longer sends cancels the source with a `TypeError`.
 *
 * The pipe locks both streams but holds neither: the sockets hold them
 * weakly. An echo's streams, which nobody reads while the pipe runs, are
 * then collected, and an idle echo socket costs what a socket without
 * streams costs. Ending the pipe does through the streams what their sink
 * and source would do, or, when they are gone, calls that directly.
 *
 * @example
 * ```ts ignore
 * const pipe = new Pipe(inbox, socketCore);
 * pipe.write("hello"); // sent on the target
 * pipe.ended(undefined); // the source closed: so does the target's writable
 * ```
 */
export class Pipe {
  readonly promise: Promise<void>;
  /** The target is over its mark: the source holds its messages. */
  waiting = false;
  done = false;
  /** Once done: the error `readable` ended with; undefined when closed. */
  readableError: unknown;
  /** Once done: what `writable` was aborted with; undefined when closed. */
  writableError: unknown;
  #source: PipeSource;
  #target: PipeTarget;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;

  constructor(source: PipeSource, target: PipeTarget) {
    this.#source = source;
    this.#target = target;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  write(message: Message): void {
    const target = this.#target;
    if (!target.pipedWrite(message)) {
      this.#failed(new SendAfterCloseError());
      return;
    }
    const ready = target.ready();
    if (ready !== undefined) {
      this.waiting = true;
      ready.then(() => {
        this.waiting = false;
        this.#source.pump();
      });
    }
  }

  /** The source ended: cleanly (`error` undefined) or with an error. */
  ended(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.readableError = this.writableError = error;
    const target = this.#target;
    const writer = target.pipeWriter;
    let finish: Promise<void> = RESOLVED;
    if (writer !== undefined) {
      finish = error === undefined ? writer.close() : writer.abort(error);
    } else if (error === undefined) {
      target.closeWritable();
    } else {
      target.abortWrites(error);
    }
    finish.catch(ignore).then(() => {
      this.#release();
      if (error === undefined) this.#resolve();
      else this.#reject(error);
    });
  }

  /** The target no longer sends: the source is canceled with the error. */
  #failed(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.writableError = error;
    const source = this.#source;
    const target = this.#target;
    const writer = target.pipeWriter;
    if (writer !== undefined) writer.abort(error).catch(ignore);
    else target.abortWrites(error);
    const reader = source.pipeReader;
    let canceled: Promise<void> = RESOLVED;
    if (reader !== undefined) canceled = reader.cancel(error);
    else source.cancel(error);
    canceled.catch(ignore).then(() => {
      this.#release();
      this.#reject(error);
    });
  }

  /**
   * Releases the pipe's locks: on its source's `readable` and its target's
   * `writable`, where they exist (not on the other stream of either socket,
   * which another pipe may hold).
   */
  #release(): void {
    this.#source.unlock();
    this.#target.unlock();
  }
}

/**
 * A socket's stream as its socket holds it: strongly, or weakly once a
 * direct pipe has locked it (then it may be gone).
 *
 * @example
 * ```ts ignore
 * const readable = held(this.#readable); // undefined if collected
 * ```
 */
export function held<T extends object>(
  stream: T | WeakRef<T> | undefined,
): T | undefined {
  return stream instanceof WeakRef ? stream.deref() : stream;
}

const RESOLVED: Promise<void> = Promise.resolve();

function ignore(): void {}
