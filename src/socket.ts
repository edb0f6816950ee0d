// The WebSocket object users hold: web streams (`readable`, `writable`),
// `send()`, `close()` and `closed`, over an engine that moves its bytes.

import { CloseCode } from "./core/constants.ts";
import { byteLength } from "./core/_bytes.ts";
import { COPY_LIMIT } from "./core/_protocol.ts";
import { headerSize } from "./core/frame.ts";
import type { Message } from "./core/message_assembler.ts";
import type { SharedMessage } from "./pubsub/_shared_message.ts";
import { join, leave, publishFrom, type TopicHub } from "./pubsub/topic_hub.ts";
import {
  checkCloseInfo,
  isApplicationCode,
  type WebSocketCloseInfo,
  type WebSocketCloseResult,
  WebSocketError,
} from "./core/websocket_error.ts";

/**
 * One open WebSocket, in the vocabulary of the WHATWG WebSocketStream
 * proposal. Messages are read from `readable` (a `string` per text message,
 * a `Uint8Array` per binary message) and sent with `writable` or `send()`.
 *
 * @example An echo handler
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({ port: 8080 }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface WebSocketConnection {
  /**
   * The messages from the peer; ends after a clean close, errors with a
   * {@linkcode WebSocketError} otherwise. Messages that arrived before the
   * end are delivered first. Canceling it starts the closing handshake.
   */
  readonly readable: ReadableStream<string | Uint8Array>;
  /**
   * Where to write messages; `write()` waits while more than 64 KiB is
   * queued for a slow peer. As with any stream, a `Uint8Array` written must
   * not change until its `write()` has resolved. Closing it starts the
   * closing handshake.
   */
  readonly writable: WritableStream<string | Uint8Array>;
  /** The negotiated subprotocol, or `""`. */
  readonly protocol: string;
  /** The negotiated extensions, or `""`. */
  readonly extensions: string;
  /**
   * Resolves with the peer's close code and reason once the closing
   * handshake is done and the connection closed; rejects with a
   * {@linkcode WebSocketError} when the connection ended otherwise.
   */
  readonly closed: Promise<WebSocketCloseResult>;
  /**
   * The opening handshake's request (for a server, the client's upgrade).
   * `serve()` makes it when first asked for and does not keep it: once
   * nothing else holds it, the next access makes an equal one.
   */
  readonly request: Request;
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * Bytes queued to send that the connection has not written yet, by every
   * path: `send()`, `writable` (including what waits in its queue) and
   * published messages.
   */
  readonly bufferedAmount: number;
  /**
   * Messages that `send()` or a publication did not queue because more than
   * `maxBackpressure` bytes were waiting and the policy is `"drop"`.
   */
  readonly droppedMessages: number;
  /**
   * Queues a message, in order with what `writable` and publications
   * queue: a `string` as text, a `Uint8Array` as binary (what it holds at
   * the call: the array may be reused at once). Never throws and never
   * waits. Returns the bytes queued, or 0 when nothing was queued: the
   * socket is closing or closed, or the backpressure policy dropped it.
   */
  send(message: string | Uint8Array): number;
  /**
   * Subscribes the socket to a topic (an exact string) of its server's
   * topic hub: what is published to the topic is queued for it.
   * Subscribing twice is the same as once; a socket that closes leaves all
   * its topics. Throws a `TypeError` for a socket without a hub.
   */
  subscribe(topic: string): void;
  /** Unsubscribes the socket from a topic; nothing if it was not subscribed. */
  unsubscribe(topic: string): void;
  /** Whether the socket subscribes to a topic. */
  isSubscribed(topic: string): boolean;
  /** The topics the socket subscribes to, in the order it subscribed. */
  readonly subscriptions: readonly string[];
  /**
   * Publishes a message to every subscriber of a topic except this socket
   * (on this node, and through the hub's adapter on the others). Returns
   * how many local sockets it was queued for.
   */
  publish(topic: string, message: string | Uint8Array): number;
  /**
   * Starts the closing handshake. `closeCode` must be 1000 or 3000–4999 (a
   * reason without a code sends 1000; neither sends a close frame with no
   * code); a reason over 123 bytes of UTF-8 throws a `RangeError`.
   */
  close(closeInfo?: WebSocketCloseInfo): void;
}

/** A received message still compressed (permessage-deflate). */
export interface CompressedMessage {
  text: boolean;
  payload: Uint8Array;
}

/** How a socket's engine ended, as the socket needs to know it. */
export interface EngineEnd {
  closeCode: number;
  reason: string;
  error?: WebSocketError;
}

/**
 * What a socket needs from the connection under it: the engine that frames
 * and moves its bytes (this module's own protocol over a TCP connection).
 */
export interface SocketEngine {
  /** `"open"` until a close is asked for or seen, then `"closing"`, `"closed"`. */
  readonly state: "open" | "closing" | "closed";
  /** Bytes queued to send, not yet written. */
  readonly bufferedAmount: number;
  /**
   * Whether what is queued waits for the peer rather than for the end of
   * the current task (see `maxBackpressure`). An engine that cannot tell
   * leaves it out: all it holds then counts.
   */
  readonly backlogged?: boolean;
  /** Queues a data message; returns the bytes queued, 0 once not open. */
  send(message: Message): number;
  /** Queues a publication, framed once for all; returns the bytes queued. */
  sendShared(shared: SharedMessage): number;
  /**
   * Resolves once the outbound queue is back under its high-water mark;
   * undefined while it is under it.
   */
  ready(): Promise<void> | undefined;
  /** Starts the closing handshake with any sendable code. */
  close(code: number | undefined, reason: string): void;
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

/** Per-socket policy for what `send()` queues beyond the limit. */
export interface SocketOptions {
  /** Bytes queued above which `send()` applies the policy. */
  maxBackpressure: number;
  /** Close the socket with 1013, or drop the message and count it. */
  backpressure: "close" | "drop";
}

/** The defaults of {@linkcode SocketOptions}. */
export const DEFAULT_SOCKET_OPTIONS: SocketOptions = {
  maxBackpressure: 1024 * 1024,
  backpressure: "close",
};

/** Checks the `send()` policy options. */
export function checkSocketOptions(
  options: Partial<SocketOptions>,
): SocketOptions {
  const maxBackpressure = options.maxBackpressure ??
    DEFAULT_SOCKET_OPTIONS.maxBackpressure;
  const backpressure = options.backpressure ??
    DEFAULT_SOCKET_OPTIONS.backpressure;
  if (!(maxBackpressure > 0)) {
    throw new RangeError(
      `The maxBackpressure option must be more than 0, got ${maxBackpressure}`,
    );
  }
  if (backpressure !== "close" && backpressure !== "drop") {
    throw new TypeError(
      `The backpressure option must be "close" or "drop", got "${backpressure}"`,
    );
  }
  return { maxBackpressure, backpressure };
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

/** Thrown by `writable` for a write after the socket started closing. */
export class SendAfterCloseError extends TypeError {
  constructor() {
    super("Cannot send on a closing or closed WebSocket");
    this.name = "TypeError";
  }
}

/** Handed a message by the engine: `false` asks it to stop reading. */
export let deliver: (
  socket: Socket,
  message: Message | CompressedMessage,
) => boolean;
/** Told by the engine that no more messages will come. */
export let endReading: (socket: Socket, end: EngineEnd) => void;
/** Told by the engine that the connection is closed: settles `closed`. */
export let settle: (socket: Socket, end: EngineEnd) => void;
/** Closes with any sendable code (1001 going away, 1011, 1013). */
export let closeWith: (socket: Socket, code: number, reason: string) => void;
/** Queues a publication for the socket under its backpressure policy. */
export let offer: (socket: Socket, shared: SharedMessage) => boolean;
/** The state of the socket's connection. */
export let stateOf: (socket: Socket) => "open" | "closing" | "closed";
/** Makes the socket for an engine. */
export let openSocket: (engine: SocketEngine, init: SocketInit) => Socket;

/** What a socket is told about its connection when it is made. */
export interface SocketInit {
  request: Request | (() => Request);
  remoteAddr: Deno.NetAddr;
  protocol: string;
  extensions: string;
  options?: SocketOptions;
  /** The hub whose topics the socket may subscribe to. */
  hub?: TopicHub;
  /**
   * Make `readable` at once rather than when first asked for: with
   * permessage-deflate, so that corrupt data is found even by an
   * application that never reads.
   */
  eagerReadable?: boolean;
}

// What `readable`'s source and `writable`'s sink call.
let startReading: (
  socket: Socket,
  controller: ReadableStreamDefaultController<Message>,
) => void;
let pull: (socket: Socket) => void;
let cancel: (socket: Socket, reason: unknown) => void;
let write: (socket: Socket, message: Message) => Promise<void> | undefined;
let pipeTo: (
  readable: ReadableStream<Message>,
  destination: WritableStream<Message>,
) => Promise<void> | undefined;
let closeWritable: (socket: Socket) => void;
let abortWrites: (socket: Socket, reason: unknown) => void;
let writableStrategy: (socket: Socket) => QueuingStrategy<Message>;
let pipedWrite: (socket: Socket, message: Message) => boolean;
let readyOf: (socket: Socket) => Promise<void> | undefined;
let pumpOf: (socket: Socket) => void;
/** The locks of a direct pipe, while the streams exist. */
let pipeReader: (
  socket: Socket,
) => ReadableStreamDefaultReader<Message> | undefined;
let pipeWriter: (
  socket: Socket,
) => WritableStreamDefaultWriter<Message> | undefined;
/**
 * Releases a direct pipe's locks: on its source's `readable` and its
 * target's `writable`, where they exist (not on the other stream of either
 * socket, which another pipe may hold).
 */
let unlock: (source: Socket, target: Socket) => void;

/**
 * The socket users get from `serve()` and `connect()`. Every member is
 * documented: the engine reaches the rest through the module's functions
 * above, never through the object.
 */
export class Socket implements WebSocketConnection {
  #engine: SocketEngine;
  /** The upgrade request, or how to make it from the head the server read. */
  #request: Request | (() => Request);
  #madeRequest: WeakRef<Request> | undefined;
  #remoteAddr: Deno.NetAddr;
  #protocol: string;
  #extensions: string;
  #options: SocketOptions;
  /**
   * `readable` and `writable`: held weakly once a direct pipe has locked
   * them (see `Pipe`), so that an idle piped socket keeps no streams that
   * nobody else holds; they are made again, in the same state, if asked for.
   */
  #readable: MessageReadable | WeakRef<MessageReadable> | undefined;
  /** `readable`'s controller while it is read (not piped directly). */
  #controller: ReadableStreamDefaultController<Message> | undefined;
  #writable: MessageWritable | WeakRef<MessageWritable> | undefined;
  /** Bytes and messages written to `writable` that wait in its queue. */
  #writableQueued = 0;
  #writableCount = 0;
  /** Every write that entered `writable`'s queue, counted from the start. */
  #writesEntered = 0;
  /**
   * What `send()` and publications queued while writes waited in
   * `writable`'s queue: each goes out once the writes that entered before
   * it have, so that everything leaves in call order.
   */
  #behind: Behind[] = NO_BEHIND;
  #behindQueued = 0;
  /**
   * A close asked for while writes waited in `writable`'s queue: it goes
   * out after them, as it was asked for after them.
   */
  #pendingClose: [code: number | undefined, reason: string] | undefined;
  #writesBeforeClose = 0;
  /** The close that a cancel without a reason does a moment later. */
  #cancelTimer: ReturnType<typeof setTimeout> | undefined;
  /** Messages received and not yet in `readable`, in order. */
  #inbox: (Message | CompressedMessage)[] = NO_INBOX;
  #inboxBytes = 0;
  /** A compressed message is being inflated. */
  #inflating = false;
  /** Where `readable`'s messages go when piped to a socket's `writable`. */
  #pipe: Pipe | undefined;
  /** The direct pipe into `writable`, if any. */
  #pipeIn: Pipe | undefined;
  /** Whether `readable` is finished (closed, errored or canceled). */
  #readableDone = false;
  #full = false;
  #end: EngineEnd | undefined;
  #dropped = 0;
  #hub: TopicHub | undefined;
  /** The topics subscribed to: one as a string, more as a set. */
  #topics: string | Set<string> | undefined;
  /** Made when first asked for: an idle socket holds no promise for it. */
  #closed: Promise<WebSocketCloseResult> | undefined;
  #resolve: ((result: WebSocketCloseResult) => void) | undefined;
  #reject: ((error: WebSocketError) => void) | undefined;
  /** How the connection ended, once it has. */
  #settled: EngineEnd | undefined;

  constructor(engine: SocketEngine, init: SocketInit, key: typeof INTERNAL) {
    // Only `openSocket` makes sockets: `new socket.constructor()` is refused.
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#engine = engine;
    this.#request = init.request;
    this.#remoteAddr = init.remoteAddr;
    this.#protocol = init.protocol;
    this.#extensions = init.extensions;
    this.#options = init.options ?? DEFAULT_SOCKET_OPTIONS;
    this.#hub = init.hub;
    if (init.eagerReadable) void this.readable;
  }

  static {
    openSocket = (engine, init) => new Socket(engine, init, INTERNAL);
    deliver = (socket, message) => socket.#deliver(message);
    endReading = (socket, end) => socket.#endReading(end);
    settle = (socket, end) => socket.#settle(end);
    closeWith = (socket, code, reason) => socket.#closeEngine(code, reason);
    stateOf = (socket) => socket.#engine.state;
    offer = (socket, shared) => {
      if (!socket.#admits(shared.message)) return false;
      if (socket.#writableCount > 0) {
        socket.#queueBehind(shared, shared.message);
        return true;
      }
      return socket.#engine.sendShared(shared) > 0;
    };
    startReading = (socket, controller) => {
      // A `readable` made again for a direct pipe is not read from.
      if (socket.#pipe !== undefined) return;
      socket.#controller = controller;
      // Messages that arrived before `readable` was first asked for.
      if (socket.#inbox.length > 0 || socket.#end) {
        queueMicrotask(() => socket.#pump());
      }
    };
    pull = (socket) => socket.#pump();
    cancel = (socket, reason) => {
      socket.#readableDone = true;
      socket.#dropInbox();
      socket.#engine.release();
      if (reason !== undefined) {
        socket.#closeFor(reason);
        return;
      }
      // Nothing to close any more (a loop that ended with the connection).
      if (socket.#engine.state !== "open" || socket.#pendingClose) return;
      // The cancel of a `for await` that a throwing handler leaves: wait a
      // moment, so that the handler's fault can close with 1011 first.
      socket.#cancelTimer = setTimeout(() => socket.#close(undefined, ""), 0);
    };
    write = (socket, message) => {
      socket.#writableQueued -= messageSize(message);
      socket.#writableCount--;
      if (typeof message !== "string" && !(message instanceof Uint8Array)) {
        // `writable` errors and drops the writes queued behind this one.
        socket.#dropWrites();
        throw new TypeError("A message must be a string or a Uint8Array");
      }
      const engine = socket.#engine;
      const pendingClose = socket.#pendingClose;
      if (pendingClose) {
        // Written before the close was asked for: it goes first.
        if (socket.#writesBeforeClose === 0) throw new SendAfterCloseError();
        const sent = engine.send(message);
        socket.#sendBehind();
        if (--socket.#writesBeforeClose === 0) {
          socket.#closeEngine(...pendingClose);
        }
        if (sent === 0) throw new SendAfterCloseError();
        return engine.ready();
      }
      const sent = engine.send(message);
      socket.#sendBehind();
      if (sent === 0) {
        socket.#dropWrites();
        throw new SendAfterCloseError();
      }
      return engine.ready();
    };
    closeWritable = (socket) => {
      // The stream calls this once every write it took has been handed
      // over: a write it refused still counted in `size()`.
      socket.#writableCount = 0;
      socket.#writableQueued = 0;
      socket.#closeFor(undefined);
    };
    pipeTo = (readable, destination) => {
      if (
        !(readable instanceof MessageReadable) ||
        !(destination instanceof MessageWritable)
      ) {
        return undefined;
      }
      const source = readableSocket(readable);
      const target = writableSocket(destination);
      // A writable that a direct pipe ended is closed or errored: the
      // streams' own pipe deals with that.
      if (
        readable.locked || destination.locked || target.#pipeIn !== undefined ||
        !source.#pipeable() || !target.#writesSettled()
      ) {
        return undefined;
      }
      const pipe = new Pipe(source, target);
      lockReadable(readable);
      lockWritable(destination);
      source.#pipe = pipe;
      source.#controller = undefined;
      source.#readable = new WeakRef(readable);
      target.#pipeIn = pipe;
      target.#writable = new WeakRef(destination);
      // What waited for a reader goes first; an end that came already, next.
      queueMicrotask(() => source.#pump());
      return pipe.promise;
    };
    pipedWrite = (socket, message) => socket.#pipedWrite(message);
    pipeReader = (socket) => {
      const readable = socket.#liveReadable();
      return readable === undefined ? undefined : readerOf(readable);
    };
    pipeWriter = (socket) => {
      const writable = socket.#liveWritable();
      return writable === undefined ? undefined : writerOf(writable);
    };
    unlock = (source, target) => {
      const readable = source.#liveReadable();
      if (readable !== undefined) unlockReadable(readable);
      const writable = target.#liveWritable();
      if (writable !== undefined) unlockWritable(writable);
    };
    readyOf = (socket) => socket.#engine.ready();
    pumpOf = (socket) => socket.#pump();
    abortWrites = (socket, reason) => {
      socket.#dropWrites();
      socket.#closeFor(reason);
    };
    writableStrategy = (socket) => ({
      highWaterMark: 1,
      size(message: Message): number {
        const size = messageSize(message);
        socket.#writableQueued += size;
        socket.#writableCount++;
        socket.#writesEntered++;
        return size;
      },
    });
  }

  get readable(): ReadableStream<string | Uint8Array> {
    const held = this.#readable;
    if (held instanceof WeakRef) return held.deref() ?? this.#remakeReadable();
    return held ?? (this.#readable = new MessageReadable(new Source(this)));
  }

  get writable(): WritableStream<string | Uint8Array> {
    const held = this.#writable;
    if (held instanceof WeakRef) return held.deref() ?? this.#remakeWritable();
    return held ?? (this.#writable = new MessageWritable(this, INTERNAL));
  }

  /** `readable` if it exists now: never made for the asking. */
  #liveReadable(): MessageReadable | undefined {
    const held = this.#readable;
    return held instanceof WeakRef ? held.deref() : held;
  }

  #liveWritable(): MessageWritable | undefined {
    const held = this.#writable;
    return held instanceof WeakRef ? held.deref() : held;
  }

  /**
   * `readable` again, after the one a direct pipe locked was collected:
   * locked by the pipe while it runs, then as the pipe left it.
   */
  #remakeReadable(): MessageReadable {
    const pipe = this.#pipe!;
    const readable = new MessageReadable(new Source(this));
    if (pipe.done) endReadable(readable, pipe.readableError);
    else lockReadable(readable);
    this.#readable = new WeakRef(readable);
    return readable;
  }

  /** `writable` again, as `#remakeReadable` makes `readable`. */
  #remakeWritable(): MessageWritable {
    const pipe = this.#pipeIn!;
    const writable = new MessageWritable(this, INTERNAL);
    if (pipe.done) {
      // Closed or aborted as the pipe left it: the socket is closing already,
      // so the sink's close or abort changes nothing.
      const writer = writable.getWriter();
      const error = pipe.writableError;
      (error === undefined ? writer.close() : writer.abort(error)).catch(
        ignore,
      );
      writer.releaseLock();
    } else {
      lockWritable(writable);
    }
    this.#writable = new WeakRef(writable);
    return writable;
  }

  get protocol(): string {
    return this.#protocol;
  }

  get extensions(): string {
    return this.#extensions;
  }

  get closed(): Promise<WebSocketCloseResult> {
    if (this.#closed === undefined) {
      const settled = this.#settled;
      if (settled === undefined) {
        this.#closed = new Promise((resolve, reject) => {
          this.#resolve = resolve;
          this.#reject = reject;
        });
      } else if (settled.error) {
        this.#closed = Promise.reject(settled.error);
        // Nobody has to await `closed`: an unobserved rejection must not crash.
        this.#closed.catch(ignore);
      } else {
        this.#closed = Promise.resolve(cleanClose(settled));
      }
    }
    return this.#closed;
  }

  get request(): Request {
    const request = this.#request;
    if (typeof request !== "function") return request;
    // Held weakly: a socket that was routed by its URL once keeps no
    // Request and Headers (~2.5 KiB) that nobody holds any more.
    let made = this.#madeRequest?.deref();
    if (made === undefined) {
      made = request();
      this.#madeRequest = new WeakRef(made);
    }
    return made;
  }

  get remoteAddr(): Deno.NetAddr {
    return this.#remoteAddr;
  }

  get bufferedAmount(): number {
    const engine = this.#engine;
    return engine.bufferedAmount +
      (engine.state === "open" ? this.#writableQueued + this.#behindQueued : 0);
  }

  get droppedMessages(): number {
    return this.#dropped;
  }

  send(message: string | Uint8Array): number {
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      return 0;
    }
    if (!this.#admits(message)) return 0;
    // What is sent is the message as it is now: one kept by reference (a
    // large payload, one compressed later, one waiting behind writes) is a
    // copy, so that the caller may reuse its array at once.
    if (
      typeof message !== "string" &&
      (message.byteLength > COPY_LIMIT || this.#extensions !== "" ||
        this.#writableCount > 0)
    ) {
      message = message.slice();
    }
    if (this.#writableCount > 0) {
      this.#queueBehind(message, message);
      const length = byteLength(message);
      return headerSize(length, false) + length;
    }
    return this.#engine.send(message);
  }

  /** Queues a message after the writes waiting in `writable`'s queue. */
  #queueBehind(item: Message | SharedMessage, message: Message): void {
    const size = messageSize(message);
    if (this.#behind === NO_BEHIND) this.#behind = [];
    this.#behind.push({ after: this.#writesEntered, item, size });
    this.#behindQueued += size;
  }

  /** Sends what waited for the writes that have now left `writable`. */
  #sendBehind(): void {
    const behind = this.#behind;
    const done = this.#writesEntered - this.#writableCount;
    let count = 0;
    while (count < behind.length && behind[count].after <= done) {
      const { item, size } = behind[count++];
      this.#behindQueued -= size;
      if (typeof item === "string" || item instanceof Uint8Array) {
        this.#engine.send(item);
      } else {
        this.#engine.sendShared(item);
      }
    }
    if (count > 0) behind.splice(0, count);
  }

  /**
   * `writable` was aborted or failed: the writes in its queue are dropped,
   * so what waited behind them goes now, and a close waiting for them next.
   */
  #dropWrites(): void {
    this.#writableQueued = 0;
    this.#writableCount = 0;
    this.#sendBehind();
    const pendingClose = this.#pendingClose;
    if (pendingClose && this.#writesBeforeClose > 0) {
      this.#writesBeforeClose = 0;
      this.#closeEngine(...pendingClose);
    }
  }

  /**
   * Whether a message from `send()` or a publication may be queued: the
   * socket is open, and it fits under `maxBackpressure` (a message always
   * fits an empty queue). Over it, the policy drops the message (counted)
   * or closes the socket with 1013 `Send queue over <limit>`.
   *
   * The limit measures the peer, not the size of a burst: nothing is
   * written before the current task ends, so what the queue holds counts
   * only once the transport has refused some of it (the engine is
   * `backlogged`). A fast reader then takes any burst queued in one task;
   * a peer that does not read is held to the limit from the turn after its
   * transport refused, so a socket holds at most the limit plus what was
   * queued while that was not yet known.
   */
  #admits(message: Message): boolean {
    const engine = this.#engine;
    if (engine.state !== "open" || this.#pendingClose) return false;
    const options = this.#options;
    const buffered = this.bufferedAmount;
    if (
      buffered > 0 &&
      buffered + messageSize(message) > options.maxBackpressure &&
      engine.backlogged !== false
    ) {
      if (options.backpressure === "drop") {
        this.#dropped++;
      } else {
        clearTimeout(this.#cancelTimer);
        this.#closeEngine(
          CloseCode.TryAgainLater,
          `Send queue over ${formatBytes(options.maxBackpressure)}`,
        );
      }
      return false;
    }
    return true;
  }

  subscribe(topic: string): void {
    const hub = this.#hubFor(topic);
    if (this.#engine.state !== "open" || this.#pendingClose) return;
    if (!join(hub, this, topic)) return;
    const topics = this.#topics;
    if (topics === undefined) this.#topics = topic;
    else if (typeof topics === "string") {
      this.#topics = new Set([topics, topic]);
    } else topics.add(topic);
  }

  unsubscribe(topic: string): void {
    const hub = this.#hubFor(topic);
    if (!leave(hub, this, topic)) return;
    const topics = this.#topics!;
    if (typeof topics === "string") this.#topics = undefined;
    else topics.delete(topic);
  }

  isSubscribed(topic: string): boolean {
    const topics = this.#topics;
    return typeof topics === "string"
      ? topics === topic
      : topics?.has(topic) ?? false;
  }

  get subscriptions(): readonly string[] {
    const topics = this.#topics;
    return topics === undefined
      ? []
      : typeof topics === "string"
      ? [topics]
      : [...topics];
  }

  publish(topic: string, message: string | Uint8Array): number {
    const hub = this.#hubFor(topic);
    if (this.#engine.state !== "open" || this.#pendingClose) return 0;
    return publishFrom(hub, topic, message, this);
  }

  #hubFor(topic: string): TopicHub {
    if (this.#hub === undefined) {
      throw new TypeError("This socket has no topic hub");
    }
    if (typeof topic !== "string") {
      throw new TypeError("A topic must be a string");
    }
    return this.#hub;
  }

  /** Leaves every topic at once: work in its own topics, not the hub's. */
  #leaveTopics(): void {
    const topics = this.#topics;
    if (topics === undefined) return;
    this.#topics = undefined;
    if (typeof topics === "string") leave(this.#hub!, this, topics);
    else for (const topic of topics) leave(this.#hub!, this, topic);
  }

  close(closeInfo?: WebSocketCloseInfo): void {
    const { closeCode, reason } = checkCloseInfo(closeInfo);
    // A reason needs a code: 1000 when none is given (as the WHATWG API).
    this.#close(
      closeCode ?? (reason !== "" ? CloseCode.NormalClosure : undefined),
      reason,
    );
  }

  /** Closes, after the writes already waiting in `writable`'s queue. */
  #close(code: number | undefined, reason: string): void {
    clearTimeout(this.#cancelTimer);
    if (this.#pendingClose) return;
    if (this.#writableCount > 0 && this.#engine.state === "open") {
      this.#pendingClose = [code, reason];
      this.#writesBeforeClose = this.#writableCount;
      // Publications stop now: the socket is on its way out.
      this.#leaveTopics();
    } else {
      this.#closeEngine(code, reason);
    }
  }

  /** Starts the engine's closing handshake; the socket leaves its topics. */
  #closeEngine(code: number | undefined, reason: string): void {
    clearTimeout(this.#cancelTimer);
    this.#leaveTopics();
    this.#engine.close(code, reason);
  }

  /**
   * Closes for a stream's cancel or abort reason, as WebSocketStream does:
   * a `WebSocketError`'s code and reason when an application may send that
   * code, else no code (a reason alone then sends 1000).
   */
  #closeFor(reason: unknown): void {
    if (!(reason instanceof WebSocketError)) {
      this.#close(undefined, "");
      return;
    }
    const code = reason.closeCode;
    if (isApplicationCode(code)) {
      this.#close(code, reason.reason);
    } else {
      this.#close(
        reason.reason ? CloseCode.NormalClosure : undefined,
        reason.reason,
      );
    }
  }

  // --- Receiving ------------------------------------------------------------

  #deliver(message: Message | CompressedMessage): boolean {
    if (this.#readableDone) return true;
    let inbox = this.#inbox;
    if (
      inbox.length === 0 && !this.#inflating && isMessage(message) &&
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
    if (inbox === NO_INBOX) this.#inbox = inbox = [];
    inbox.push(message);
    this.#inboxBytes += itemSize(message);
    if (
      (this.#controller !== undefined || this.#pipe !== undefined) &&
      !this.#inflating
    ) {
      this.#pump();
    }
    // Two messages may always wait, whatever their size, as `readable`'s
    // own high-water mark lets two in: a large message then goes on while
    // the next one is read.
    if (
      inbox.length >= INBOX_MAX_MESSAGES ||
      (this.#inboxBytes >= INBOX_MAX_BYTES && inbox.length >= 2)
    ) {
      this.#full = true;
    }
    return !this.#full;
  }

  /** Moves messages from the inbox into `readable` while it has room. */
  #pump(): void {
    const inbox = this.#inbox;
    while (
      inbox.length > 0 && !this.#inflating && !this.#readableDone &&
      this.#canTake()
    ) {
      const message = inbox[0];
      if (isMessage(message)) {
        inbox.shift();
        this.#inboxBytes -= itemSize(message);
        this.#take(message);
      } else {
        this.#inflate(message);
      }
    }
    if (
      this.#full && inbox.length <= INBOX_MAX_MESSAGES >>> 1 &&
      this.#inboxBytes <= INBOX_MAX_BYTES >>> 1
    ) {
      this.#full = false;
      this.#engine.resume();
    }
    if (inbox.length === 0 && !this.#inflating) this.#finishReadable();
  }

  /** Inflates the compressed message at the head of the inbox. */
  #inflate(message: CompressedMessage): void {
    this.#inflating = true;
    this.#engine.inflate(message).then((inflated) => {
      this.#inflating = false;
      if (this.#readableDone) return;
      this.#inbox.shift();
      this.#inboxBytes -= itemSize(message);
      this.#take(inflated);
      this.#pump();
    }, (error: WebSocketError) => {
      this.#inflating = false;
      if (this.#readableDone) return;
      // What came after the corrupt message is dropped; what `readable`
      // already holds is read first, then it errors.
      this.#dropInbox();
      this.#end = { closeCode: error.closeCode, reason: error.reason, error };
      this.#pump();
    });
  }

  #endReading(end: EngineEnd): void {
    this.#end = end;
    this.#leaveTopics();
    if (this.#controller !== undefined || this.#pipe !== undefined) {
      this.#pump();
    } else if (this.#inbox.length === 0) this.#engine.release();
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
      const readable = this.#liveReadable();
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

  /**
   * Whether `readable` may be piped directly: it is still readable and holds
   * nothing in its own queue (what it holds is read by the streams' pipe).
   */
  #pipeable(): boolean {
    const controller = this.#controller;
    return !this.#readableDone && this.#pipe === undefined &&
      (controller === undefined ||
        controller.desiredSize === READABLE_HIGH_WATER_MARK);
  }

  /**
   * Whether nothing written to `writable` still waits: a direct pipe into it
   * would overtake it.
   */
  #writesSettled(): boolean {
    return this.#writableCount === 0 && this.#behind.length === 0 &&
      this.#pendingClose === undefined;
  }

  /**
   * A message piped from a socket's `readable` (see `Pipe`): what
   * `writable`'s sink does, without the stream. False once the socket no
   * longer sends.
   */
  #pipedWrite(message: Message): boolean {
    if (this.#pendingClose) return false;
    return this.#engine.send(message) > 0;
  }

  #dropInbox(): void {
    this.#inbox = NO_INBOX;
    this.#inboxBytes = 0;
    if (this.#full) {
      this.#full = false;
      this.#engine.resume();
    }
  }

  #settle(end: EngineEnd): void {
    clearTimeout(this.#cancelTimer);
    this.#end ??= end;
    this.#settled = end;
    if (this.#closed === undefined) return;
    if (end.error) {
      // Nobody has to await `closed`: an unobserved rejection must not crash.
      this.#closed.catch(ignore);
      this.#reject!(end.error);
    } else {
      this.#resolve!(cleanClose(end));
    }
    this.#resolve = this.#reject = undefined;
  }
}

/** What the streams and the pipe reach: not members users can reach. */
let readableSocket: (readable: MessageReadable) => Socket;
let writableSocket: (writable: MessageWritable) => Socket;
/** Locks a stream for a direct pipe, which holds it through the socket. */
let lockReadable: (readable: MessageReadable) => void;
let lockWritable: (writable: MessageWritable) => void;
let readerOf: (
  readable: MessageReadable,
) => ReadableStreamDefaultReader<Message> | undefined;
let writerOf: (
  writable: MessageWritable,
) => WritableStreamDefaultWriter<Message> | undefined;
let unlockReadable: (readable: MessageReadable) => void;
let unlockWritable: (writable: MessageWritable) => void;
/** Closes `readable` (no error) or errors it. */
let endReadable: (readable: MessageReadable, error: unknown) => void;

/**
 * A socket's `readable`. Piped into a socket's `writable` with no options
 * (`socket.readable.pipeTo(other.writable)`, or an echo's
 * `socket.readable.pipeTo(socket.writable)`), messages go straight from one
 * socket to the other, with the same backpressure, ends and errors as the
 * streams' `pipeTo`, but without a read and a write promise per message.
 */
class MessageReadable extends ReadableStream<Message> {
  #source: Source;
  #reader: ReadableStreamDefaultReader<Message> | undefined;

  constructor(source: Source) {
    // Reachable as `readable.constructor`: only this module makes them.
    if (!(source instanceof Source)) throw new TypeError("Illegal constructor");
    super(source, { highWaterMark: READABLE_HIGH_WATER_MARK });
    this.#source = source;
  }

  static {
    readableSocket = (readable) => readable.#source.socket;
    lockReadable = (readable) => readable.#reader = readable.getReader();
    readerOf = (readable) => readable.#reader;
    unlockReadable = (readable) => {
      readable.#reader?.releaseLock();
      readable.#reader = undefined;
    };
    endReadable = (readable, error) => {
      const controller = readable.#source.controller!;
      if (error === undefined) controller.close();
      else controller.error(error);
    };
  }

  override pipeTo(
    destination: WritableStream<Message>,
    options?: StreamPipeOptions,
  ): Promise<void> {
    const plain = options === undefined ||
      (!options.preventClose && !options.preventAbort &&
        !options.preventCancel && options.signal === undefined);
    return (plain ? pipeTo(this, destination) : undefined) ??
      super.pipeTo(destination, options);
  }
}

/** A socket's `writable`, which a socket's `readable` can pipe into directly. */
class MessageWritable extends WritableStream<Message> {
  #socket: Socket;
  #writer: WritableStreamDefaultWriter<Message> | undefined;

  constructor(socket: Socket, key: typeof INTERNAL) {
    // Reachable as `writable.constructor`: only this module makes them.
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    super(new Sink(socket), writableStrategy(socket));
    this.#socket = socket;
  }

  static {
    writableSocket = (writable) => writable.#socket;
    lockWritable = (writable) => writable.#writer = writable.getWriter();
    writerOf = (writable) => writable.#writer;
    unlockWritable = (writable) => {
      writable.#writer?.releaseLock();
      writable.#writer = undefined;
    };
  }
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
 */
class Pipe {
  readonly promise: Promise<void>;
  /** The target is over its mark: the source holds its messages. */
  waiting = false;
  done = false;
  /** Once done: the error `readable` ended with; undefined when closed. */
  readableError: unknown;
  /** Once done: what `writable` was aborted with; undefined when closed. */
  writableError: unknown;
  #source: Socket;
  #target: Socket;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;

  constructor(source: Socket, target: Socket) {
    this.#source = source;
    this.#target = target;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  write(message: Message): void {
    if (!pipedWrite(this.#target, message)) {
      this.#failed(new SendAfterCloseError());
      return;
    }
    const ready = readyOf(this.#target);
    if (ready !== undefined) {
      this.waiting = true;
      ready.then(() => {
        this.waiting = false;
        pumpOf(this.#source);
      });
    }
  }

  /** The source ended: cleanly (`error` undefined) or with an error. */
  ended(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.readableError = this.writableError = error;
    const target = this.#target;
    const writer = pipeWriter(target);
    let finish: Promise<void> = RESOLVED;
    if (writer !== undefined) {
      finish = error === undefined ? writer.close() : writer.abort(error);
    } else if (error === undefined) {
      closeWritable(target);
    } else {
      abortWrites(target, error);
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
    const writer = pipeWriter(target);
    if (writer !== undefined) writer.abort(error).catch(ignore);
    else abortWrites(target, error);
    const reader = pipeReader(source);
    let canceled: Promise<void> = RESOLVED;
    if (reader !== undefined) canceled = reader.cancel(error);
    else cancel(source, error);
    canceled.catch(ignore).then(() => {
      this.#release();
      this.#reject(error);
    });
  }

  #release(): void {
    unlock(this.#source, this.#target);
  }
}

/**
 * `readable`'s source: a class rather than an object literal, so that its
 * methods are shared and a socket holds no closure per stream callback.
 */
class Source implements UnderlyingDefaultSource<Message> {
  #socket: Socket;
  #controller: ReadableStreamDefaultController<Message> | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  get socket(): Socket {
    return this.#socket;
  }

  get controller(): ReadableStreamDefaultController<Message> | undefined {
    return this.#controller;
  }

  start(controller: ReadableStreamDefaultController<Message>): void {
    this.#controller = controller;
    startReading(this.#socket, controller);
  }

  pull(): void {
    pull(this.#socket);
  }

  cancel(reason: unknown): void {
    cancel(this.#socket, reason);
  }
}

/** `writable`'s sink. */
class Sink implements UnderlyingSink<Message> {
  #socket: Socket;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  write(message: Message): Promise<void> | undefined {
    return write(this.#socket, message);
  }

  close(): void {
    closeWritable(this.#socket);
  }

  abort(reason: unknown): void {
    abortWrites(this.#socket, reason);
  }
}

/** A message queued behind writes, after the `after`th of them. */
interface Behind {
  after: number;
  item: Message | SharedMessage;
  size: number;
}

/** Proves a constructor call comes from this module. */
const INTERNAL: unique symbol = Symbol("internal");

/**
 * What `#inbox` and `#behind` hold until their first item: one shared empty
 * array, never pushed to, rather than an array per idle socket.
 */
const NO_INBOX: (Message | CompressedMessage)[] = [];
const NO_BEHIND: Behind[] = [];

function isMessage(item: Message | CompressedMessage): item is Message {
  return typeof item === "string" || item instanceof Uint8Array;
}

/** A message's size as counted by `bufferedAmount` (UTF-16 units for text). */
function messageSize(message: Message): number {
  return typeof message === "string"
    ? message.length
    : message instanceof Uint8Array
    ? message.byteLength
    : 0;
}

/** What a queued message counts for: its size and a fixed cost per item. */
export function itemSize(item: Message | CompressedMessage): number {
  return ITEM_COST +
    (isMessage(item) ? messageSize(item) : item.payload.byteLength);
}

function ignore(): void {}

/** A byte count for a close reason: `1 MiB`, `512 KiB`, `1000 bytes`. */
function formatBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** What `closed` resolves with after a clean close. */
function cleanClose(end: EngineEnd): WebSocketCloseResult {
  return { closeCode: end.closeCode, reason: end.reason, wasClean: true };
}
