// A socket's receiving side: the messages its engine delivers, kept in
// order (compressed ones inflated in turn) until `readable` or a direct
// pipe takes them, and the stop and resume of reading that bounds them.

import type { Message } from "../protocol/message_assembler.ts";
import type { WebSocketError } from "../protocol/websocket_error.ts";
import { internalsOf, setInternals } from "../pubsub/_internals.ts";
import { held, type Pipe, pipeDirectly, type PipeSource } from "./_pipe.ts";

/**
 * A received message still compressed (permessage-deflate).
 *
 * @example
 * ```ts ignore
 * inbox.deliver({ text: true, payload: deflated });
 * ```
 */
export interface CompressedMessage {
  text: boolean;
  payload: Uint8Array;
}

/**
 * How a socket's engine ended, as the socket needs to know it.
 *
 * @example
 * ```ts ignore
 * const end: EngineEnd = { closeCode: 1000, reason: "" };
 * ```
 */
export interface EngineEnd {
  closeCode: number;
  reason: string;
  error?: WebSocketError;
}

/**
 * What an inbox needs of the engine under its socket.
 *
 * @example
 * ```ts ignore
 * const inbox = new Inbox(connection, socketCore);
 * ```
 */
export interface InboxEngine {
  /** `"open"` until a close is asked for or seen, then `"closing"`, `"closed"`. */
  readonly state: "open" | "closing" | "closed";
  /** The socket has room for messages again: reading may go on. */
  resume(): void;
  /**
   * Inflates a received compressed message, in arrival order; rejects
   * with the `WebSocketError` the connection fails with.
   */
  inflate(message: CompressedMessage): Promise<Message>;
  /** The socket needs nothing more from the engine's codec. */
  release(): void;
}

/**
 * What an inbox tells its socket.
 *
 * @example
 * ```ts ignore
 * const owner: InboxOwner = { readableCanceled: (reason) => close(reason) };
 * ```
 */
export interface InboxOwner {
  /** `readable` was canceled (by its reader, or by a failed pipe). */
  readableCanceled(reason: unknown): void;
}

/**
 * Received messages the socket keeps beyond what `readable` holds before
 * it asks its engine to stop reading: a peer's close or FIN behind a few
 * messages is still seen, while a flood stays bounded.
 */
const INBOX_MAX_MESSAGES = 64;
const INBOX_MAX_BYTES = 64 * 1024;
/** What each queued message counts for besides its bytes. */
const ITEM_COST = 64;
/** `readable` holds this many messages before the inbox takes over. */
const READABLE_HIGH_WATER_MARK = 2;

/**
 * The receiving side of one socket. The engine hands it each message
 * (`deliver`, which says when to stop reading) and the end; it moves them
 * into `readable` as its reader pulls, or to a direct pipe, and ends
 * `readable` once every message before the end has gone.
 *
 * @example
 * ```ts ignore
 * const inbox = new Inbox(engine, owner);
 * if (!inbox.deliver("hello")) pauseReading();
 * for await (const message of inbox.readable) console.log(message);
 * ```
 */
export class Inbox implements PipeSource {
  #engine: InboxEngine;
  #owner: InboxOwner;
  /**
   * `readable`: held weakly once a direct pipe has locked it (see `Pipe`),
   * so that an idle piped socket keeps no stream that nobody else holds;
   * it is made again, in the same state, if asked for.
   */
  #readable: MessageReadable | WeakRef<MessageReadable> | undefined;
  /** `readable`'s controller while it is read (not piped directly). */
  #controller: ReadableStreamDefaultController<Message> | undefined;
  /** Messages received and not yet in `readable`, in order. */
  #items: (Message | CompressedMessage)[] = NO_ITEMS;
  #bytes = 0;
  /** A compressed message is being inflated. */
  #inflating = false;
  /** Where `readable`'s messages go when piped to a socket's `writable`. */
  #pipe: Pipe | undefined;
  /** Whether `readable` is finished (closed, errored or canceled). */
  #readableDone = false;
  #full = false;
  #end: EngineEnd | undefined;

  constructor(engine: InboxEngine, owner: InboxOwner) {
    this.#engine = engine;
    this.#owner = owner;
  }

  /** The socket's `readable`, made when first asked for. */
  get readable(): ReadableStream<Message> {
    const readable = this.#readable;
    if (readable instanceof WeakRef) {
      return readable.deref() ?? this.#remakeReadable();
    }
    return readable ??
      (this.#readable = new MessageReadable(new Source(this)));
  }

  /**
   * Takes a message from the engine; `false` asks it to stop reading
   * until `resume()`.
   */
  deliver(message: Message | CompressedMessage): boolean {
    if (this.#readableDone) return true;
    let items = this.#items;
    if (
      items.length === 0 && !this.#inflating && isMessage(message) &&
      this.#canTake()
    ) {
      this.#take(message);
      return true;
    }
    if (this.#full && this.#engine.state !== "open") {
      // After our own close, a reader that does not keep up loses messages
      // rather than letting the peer fill memory until the close timeout.
      return true;
    }
    if (items === NO_ITEMS) this.#items = items = [];
    items.push(message);
    this.#bytes += itemSize(message);
    if (
      (this.#controller !== undefined || this.#pipe !== undefined) &&
      !this.#inflating
    ) {
      this.pump();
    }
    // Two messages may always wait, whatever their size, as `readable`'s
    // own high-water mark lets two in: a large message then goes on while
    // the next one is read.
    if (
      items.length >= INBOX_MAX_MESSAGES ||
      (this.#bytes >= INBOX_MAX_BYTES && items.length >= 2)
    ) {
      this.#full = true;
    }
    return !this.#full;
  }

  /** No more messages will come: `readable` ends once it has the rest. */
  endReading(end: EngineEnd): void {
    this.#end = end;
    if (this.#controller !== undefined || this.#pipe !== undefined) {
      this.pump();
    } else if (this.#items.length === 0) this.#engine.release();
  }

  /** The connection is closed: the end, if reading had not ended yet. */
  settle(end: EngineEnd): void {
    this.#end ??= end;
  }

  /** Moves messages into `readable` (or the pipe) while it has room. */
  pump(): void {
    const items = this.#items;
    while (
      items.length > 0 && !this.#inflating && !this.#readableDone &&
      this.#canTake()
    ) {
      const message = items[0];
      if (isMessage(message)) {
        items.shift();
        this.#bytes -= itemSize(message);
        this.#take(message);
      } else {
        this.#inflate(message);
      }
    }
    if (
      this.#full && items.length <= INBOX_MAX_MESSAGES >>> 1 &&
      this.#bytes <= INBOX_MAX_BYTES >>> 1
    ) {
      this.#full = false;
      this.#engine.resume();
    }
    if (items.length === 0 && !this.#inflating) this.#finishReadable();
  }

  /** `readable` was made: messages that came before it go in now. */
  startReading(controller: ReadableStreamDefaultController<Message>): void {
    // A `readable` made again for a direct pipe is not read from.
    if (this.#pipe !== undefined) return;
    this.#controller = controller;
    if (this.#items.length > 0 || this.#end) {
      queueMicrotask(() => this.pump());
    }
  }

  cancel(reason: unknown): void {
    this.#readableDone = true;
    this.#dropItems();
    this.#engine.release();
    this.#owner.readableCanceled(reason);
  }

  // --- PipeSource: what a direct pipe from `readable` needs ------------------

  /**
   * Whether `readable` may be piped directly: it is still readable and holds
   * nothing in its own queue (what it holds is read by the streams' pipe).
   */
  pipeable(): boolean {
    const controller = this.#controller;
    return !this.#readableDone && this.#pipe === undefined &&
      (controller === undefined ||
        controller.desiredSize === READABLE_HIGH_WATER_MARK);
  }

  pipeOut(pipe: Pipe, readable: ReadableStream<Message>): void {
    const piped = readable as MessageReadable;
    sourceOf(piped).reader = piped.getReader();
    this.#pipe = pipe;
    this.#controller = undefined;
    this.#readable = new WeakRef(piped);
    // What waited for a reader goes first; an end that came already, next
    // (once the pipe's target is set up). Most pipes start with neither.
    if (this.#items.length > 0 || this.#end !== undefined) {
      queueMicrotask(() => this.pump());
    }
  }

  get pipeReader(): ReadableStreamDefaultReader<Message> | undefined {
    const readable = held(this.#readable);
    return readable && sourceOf(readable).reader;
  }

  unlock(): void {
    const readable = held(this.#readable);
    if (readable === undefined) return;
    const source = sourceOf(readable);
    source.reader?.releaseLock();
    source.reader = undefined;
  }

  /**
   * `readable` again, after the one a direct pipe locked was collected:
   * locked by the pipe while it runs, then as the pipe left it.
   */
  #remakeReadable(): MessageReadable {
    const pipe = this.#pipe!;
    const readable = new MessageReadable(new Source(this));
    if (pipe.done) endReadable(readable, pipe.readableError);
    else sourceOf(readable).reader = readable.getReader();
    this.#readable = new WeakRef(readable);
    return readable;
  }

  /** Inflates the compressed message at the head of the inbox. */
  #inflate(message: CompressedMessage): void {
    this.#inflating = true;
    this.#engine.inflate(message).then((inflated) => {
      this.#inflating = false;
      if (this.#readableDone) return;
      this.#items.shift();
      this.#bytes -= itemSize(message);
      this.#take(inflated);
      this.pump();
    }, (error: WebSocketError) => {
      this.#inflating = false;
      if (this.#readableDone) return;
      // What came after the corrupt message is dropped; what `readable`
      // already holds is read first, then it errors.
      this.#dropItems();
      this.#end = { closeCode: error.closeCode, reason: error.reason, error };
      this.pump();
    });
  }

  /**
   * Ends `readable` once every message before the end was read: closed
   * after a clean close; errored after a failure, once `readable`'s own
   * queue is empty too (erroring it would discard what it holds).
   */
  #finishReadable(): void {
    const end = this.#end;
    if (end === undefined || this.#readableDone) return;
    const pipe = this.#pipe;
    if (pipe !== undefined) {
      // A direct pipe leaves `readable`'s own queue empty.
      this.#readableDone = true;
      const readable = held(this.#readable);
      if (readable !== undefined) endReadable(readable, end.error);
      this.#engine.release();
      pipe.ended(end.error);
      return;
    }
    const controller = this.#controller;
    if (controller === undefined) return;
    if (end.error === undefined) {
      this.#readableDone = true;
      controller.close();
      this.#engine.release();
    } else if (controller.desiredSize === READABLE_HIGH_WATER_MARK) {
      this.#readableDone = true;
      controller.error(end.error);
      this.#engine.release();
    }
  }

  /**
   * Whether a message can go on now: into `readable` while it has room, or,
   * when piped, to the target while it is under its mark.
   */
  #canTake(): boolean {
    const pipe = this.#pipe;
    if (pipe !== undefined) return !pipe.waiting && !pipe.done;
    const controller = this.#controller;
    return controller !== undefined && controller.desiredSize! > 0;
  }

  #take(message: Message): void {
    const pipe = this.#pipe;
    if (pipe === undefined) this.#controller!.enqueue(message);
    else pipe.write(message);
  }

  #dropItems(): void {
    this.#items = NO_ITEMS;
    this.#bytes = 0;
    if (this.#full) {
      this.#full = false;
      this.#engine.resume();
    }
  }
}

/**
 * A socket's `readable`. Piped into a socket's `writable` with no options
 * (`socket.readable.pipeTo(other.writable)`, or an echo's
 * `socket.readable.pipeTo(socket.writable)`), messages go straight from one
 * socket to the other, with the same backpressure, ends and errors as the
 * streams' `pipeTo`, but without a read and a write promise per message.
 */
class MessageReadable extends ReadableStream<Message> {
  constructor(source: Source) {
    // Reachable as `readable.constructor`: only this module makes them.
    if (!(source instanceof Source)) throw new TypeError("Illegal constructor");
    super(source, { highWaterMark: READABLE_HIGH_WATER_MARK });
    // Its source, whose owner is the inbox: for the direct pipe.
    setInternals(this, source);
  }

  override pipeTo(
    destination: WritableStream<Message>,
    options?: StreamPipeOptions,
  ): Promise<void> {
    const plain = options === undefined ||
      (!options.preventClose && !options.preventAbort &&
        !options.preventCancel && options.signal === undefined);
    return (plain ? pipeDirectly(this, destination) : undefined) ??
      super.pipeTo(destination, options);
  }
}

/**
 * `readable`'s source: a class rather than an object literal, so that its
 * methods are shared and a socket holds no closure per stream callback. It
 * holds the direct pipe's lock on the stream, so that the lock goes with
 * the stream when nothing else holds it.
 */
class Source implements UnderlyingDefaultSource<Message> {
  readonly owner: Inbox;
  controller: ReadableStreamDefaultController<Message> | undefined;
  /** The direct pipe's lock on the stream. */
  reader: ReadableStreamDefaultReader<Message> | undefined;

  constructor(owner: Inbox) {
    this.owner = owner;
  }

  start(controller: ReadableStreamDefaultController<Message>): void {
    this.controller = controller;
    this.owner.startReading(controller);
  }

  pull(): void {
    this.owner.pump();
  }

  cancel(reason: unknown): void {
    this.owner.cancel(reason);
  }
}

/** The source of one of this module's streams. */
function sourceOf(readable: MessageReadable): Source {
  return internalsOf(readable) as Source;
}

/** Closes `readable` (no error) or errors it. */
function endReadable(readable: MessageReadable, error: unknown): void {
  const controller = sourceOf(readable).controller!;
  if (error === undefined) controller.close();
  else controller.error(error);
}

/**
 * What `#items` holds until its first item: one shared empty array, never
 * pushed to, rather than an array per idle socket.
 */
const NO_ITEMS: (Message | CompressedMessage)[] = [];

function isMessage(item: Message | CompressedMessage): item is Message {
  return typeof item === "string" || item instanceof Uint8Array;
}

/**
 * A message's size as counted by `bufferedAmount` (UTF-16 units for text).
 *
 * @example
 * ```ts ignore
 * messageSize("é"); // 1
 * ```
 */
export function messageSize(message: Message): number {
  return typeof message === "string"
    ? message.length
    : message instanceof Uint8Array
    ? message.byteLength
    : 0;
}

/**
 * What a queued message counts for: its size and a fixed cost per item.
 *
 * @example
 * ```ts ignore
 * itemSize(new Uint8Array(10)); // 74
 * ```
 */
export function itemSize(item: Message | CompressedMessage): number {
  return ITEM_COST +
    (isMessage(item) ? messageSize(item) : item.payload.byteLength);
}
