// The WebSocket object users hold (web streams, `send()`, `close()`,
// `closed`, topics), and its internals: the sending side in one order, the
// close, and the engine that moves its bytes under it.

import { CloseCode } from "../protocol/constants.ts";
import { byteLength } from "../protocol/_bytes.ts";
import { COPY_LIMIT } from "../protocol/_protocol.ts";
import { headerSize } from "../protocol/frame.ts";
import type { Message } from "../protocol/message_assembler.ts";
import type { SharedMessage } from "../pubsub/_shared_message.ts";
import {
  type Subscriber,
  type Subscriptions,
  subscriptionsOf,
  type TopicHub,
} from "../pubsub/topic_hub.ts";
import {
  checkCloseInfo,
  isApplicationCode,
  SendAfterCloseError,
  type WebSocketCloseInfo,
  type WebSocketCloseResult,
  WebSocketError,
} from "../protocol/websocket_error.ts";
import {
  type CompressedMessage,
  type EngineEnd,
  Inbox,
  type InboxEngine,
  itemSize,
  messageSize,
} from "./_inbox.ts";
import { internalsOf, setInternals } from "../pubsub/_internals.ts";
import { held, type Pipe, type PipeTarget } from "./_pipe.ts";

export { itemSize, SendAfterCloseError };
export type { CompressedMessage, EngineEnd, SocketCore };

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

/**
 * What a socket needs from the connection under it: the engine that frames
 * and moves its bytes (this module's own protocol over a TCP connection, or
 * Deno's WebSocket).
 *
 * @example
 * ```ts ignore
 * class Connection implements SocketEngine { ... }
 * this.socket = openSocket(this, init);
 * ```
 */
export interface SocketEngine extends InboxEngine {
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
}

/**
 * Per-socket policy for what `send()` and publications queue beyond the
 * limit.
 *
 * @example
 * ```ts ignore
 * const options: SocketOptions = { maxBackpressure: 1 << 20, backpressure: "drop" };
 * ```
 */
export interface SocketOptions {
  /** Bytes queued above which `send()` applies the policy. */
  maxBackpressure: number;
  /** Close the socket with 1013, or drop the message and count it. */
  backpressure: "close" | "drop";
}

/**
 * The defaults of {@linkcode SocketOptions}.
 *
 * @example
 * ```ts ignore
 * const options = init.options ?? DEFAULT_SOCKET_OPTIONS;
 * ```
 */
export const DEFAULT_SOCKET_OPTIONS: SocketOptions = {
  maxBackpressure: 1024 * 1024,
  backpressure: "close",
};

/**
 * What makes a socket's upgrade `Request` when it is first asked for (see
 * `Socket.request`): an object with a method, not a closure, so that an
 * idle socket keeps only what the source holds.
 *
 * @example
 * ```ts ignore
 * const source: RequestSource = { makeRequest: () => new Request(url) };
 * ```
 */
export interface RequestSource {
  makeRequest(): Request;
}

/**
 * What a socket is told about its connection when it is made.
 *
 * @example
 * ```ts ignore
 * openSocket(engine, { request, remoteAddr, protocol: "", extensions: "" });
 * ```
 */
export interface SocketInit {
  request: Request | RequestSource;
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

/**
 * Makes the socket for an engine.
 *
 * @example
 * ```ts ignore
 * this.socket = openSocket(this, init);
 * ```
 */
export function openSocket(engine: SocketEngine, init: SocketInit): Socket {
  return new SocketCore(engine, init).socket;
}

/**
 * Hands the socket a message from its engine: `false` asks it to stop
 * reading until the engine's `resume()`.
 *
 * @example
 * ```ts ignore
 * if (!deliver(this.socket, message)) this.#pause();
 * ```
 */
export function deliver(
  socket: Socket,
  message: Message | CompressedMessage,
): boolean {
  return coreOf(socket).inbox.deliver(message);
}

/**
 * Tells the socket that no more messages will come: it leaves its topics,
 * and `readable` ends once it has the rest.
 *
 * @example
 * ```ts ignore
 * endReading(this.socket, { closeCode: 1000, reason: "" });
 * ```
 */
export function endReading(socket: Socket, end: EngineEnd): void {
  coreOf(socket).endReading(end);
}

/**
 * Tells the socket that the connection is closed: settles `closed`.
 *
 * @example
 * ```ts ignore
 * settle(this.socket, { closeCode: 1006, reason: "", error });
 * ```
 */
export function settle(socket: Socket, end: EngineEnd): void {
  coreOf(socket).settle(end);
}

/**
 * Closes with any sendable code (1001 going away, 1011, 1013), which
 * `close()` refuses to applications.
 *
 * @example
 * ```ts ignore
 * closeWith(socket, 1001, "Server shutting down");
 * ```
 */
export function closeWith(socket: Socket, code: number, reason: string): void {
  coreOf(socket).closeEngine(code, reason);
}

/**
 * The state of the socket's connection.
 *
 * @example
 * ```ts ignore
 * if (stateOf(socket) === "closed") return; // nothing to report
 * ```
 */
export function stateOf(socket: Socket): "open" | "closing" | "closed" {
  return coreOf(socket).state;
}

/** What the engine and the server drive: the socket's internals. */
function coreOf(socket: Socket): SocketCore {
  return internalsOf(socket) as SocketCore;
}

/**
 * The socket users get from `serve()` and `connect()`: the public members
 * only. What its engine, server, hub and streams drive is its internals,
 * which no member reaches (see `internalsOf`).
 *
 * @example
 * ```ts ignore
 * const socket: Socket = openSocket(engine, init);
 * socket.send("hello");
 * ```
 */
export class Socket implements WebSocketConnection {
  #core: SocketCore;
  /** The upgrade request, or how to make it from the head the server read. */
  #request: Request | RequestSource;
  #madeRequest: WeakRef<Request> | undefined;
  #remoteAddr: Deno.NetAddr;
  #protocol: string;
  #extensions: string;

  constructor(core: SocketCore, init: SocketInit, key: typeof INTERNAL) {
    // Only `openSocket` makes sockets: `new socket.constructor()` is refused.
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    this.#core = core;
    this.#request = init.request;
    this.#remoteAddr = init.remoteAddr;
    this.#protocol = init.protocol;
    this.#extensions = init.extensions;
    setInternals(this, core);
  }

  get readable(): ReadableStream<string | Uint8Array> {
    return this.#core.inbox.readable;
  }

  get writable(): WritableStream<string | Uint8Array> {
    return this.#core.writable;
  }

  get protocol(): string {
    return this.#protocol;
  }

  get extensions(): string {
    return this.#extensions;
  }

  get closed(): Promise<WebSocketCloseResult> {
    return this.#core.closed;
  }

  get request(): Request {
    const request = this.#request;
    if (request instanceof Request) return request;
    // Held weakly: a socket that was routed by its URL once keeps no
    // Request and Headers (~2.5 KiB) that nobody holds any more.
    let made = this.#madeRequest?.deref();
    if (made === undefined) {
      made = request.makeRequest();
      this.#madeRequest = new WeakRef(made);
    }
    return made;
  }

  get remoteAddr(): Deno.NetAddr {
    return this.#remoteAddr;
  }

  get bufferedAmount(): number {
    return this.#core.bufferedAmount;
  }

  get droppedMessages(): number {
    return this.#core.dropped;
  }

  send(message: string | Uint8Array): number {
    return this.#core.send(message, this.#extensions !== "");
  }

  subscribe(topic: string): void {
    this.#core.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.#core.unsubscribe(topic);
  }

  isSubscribed(topic: string): boolean {
    return this.#core.isSubscribed(topic);
  }

  get subscriptions(): readonly string[] {
    return this.#core.subscriptions;
  }

  publish(topic: string, message: string | Uint8Array): number {
    return this.#core.publish(topic, message);
  }

  close(closeInfo?: WebSocketCloseInfo): void {
    const { closeCode, reason } = checkCloseInfo(closeInfo);
    // A reason needs a code: 1000 when none is given (as the WHATWG API).
    this.#core.close(
      closeCode ?? (reason !== "" ? CloseCode.NormalClosure : undefined),
      reason,
    );
  }
}

/**
 * A socket's internals: its sending side (`send()`, `writable`, the
 * publications of its topics, all in one order), its close and `closed`,
 * and its inbox. The engine under it reaches it through the functions
 * above; the hub knows it as a {@linkcode Subscriber}, a direct pipe as a
 * {@linkcode PipeTarget}.
 */
class SocketCore implements Subscriber, PipeTarget {
  /** The object users hold. */
  readonly socket: Socket;
  readonly inbox: Inbox;
  #engine: SocketEngine;
  #options: SocketOptions;
  /**
   * `writable`: held weakly once a direct pipe has locked it (see `Pipe`),
   * as the inbox holds `readable`.
   */
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
  /** The direct pipe into `writable`, if any. */
  #pipeIn: Pipe | undefined;
  #dropped = 0;
  #hub: Subscriptions | undefined;
  /** The topics subscribed to: one as a string, more as a set. */
  #topics: string | Set<string> | undefined;
  /** Made when first asked for: an idle socket holds no promise for it. */
  #closed: Promise<WebSocketCloseResult> | undefined;
  #resolve: ((result: WebSocketCloseResult) => void) | undefined;
  #reject: ((error: WebSocketError) => void) | undefined;
  /** How the connection ended, once it has. */
  #settled: EngineEnd | undefined;

  constructor(engine: SocketEngine, init: SocketInit) {
    this.#engine = engine;
    this.#options = init.options ?? DEFAULT_SOCKET_OPTIONS;
    this.#hub = init.hub && subscriptionsOf(init.hub);
    this.inbox = new Inbox(engine, this);
    this.socket = new Socket(this, init, INTERNAL);
    if (init.eagerReadable) void this.inbox.readable;
  }

  get state(): "open" | "closing" | "closed" {
    return this.#engine.state;
  }

  get dropped(): number {
    return this.#dropped;
  }

  /** The hub the socket was made with (the live topics handler's). */
  get hub(): Subscriptions | undefined {
    return this.#hub;
  }

  get writable(): MessageWritable {
    const writable = this.#writable;
    if (writable instanceof WeakRef) {
      return writable.deref() ?? this.#remakeWritable();
    }
    return writable ??
      (this.#writable = new MessageWritable(new Sink(this), INTERNAL));
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

  get bufferedAmount(): number {
    const engine = this.#engine;
    return engine.bufferedAmount +
      (engine.state === "open" ? this.#writableQueued + this.#behindQueued : 0);
  }

  /**
   * `socket.send()`; `compressing`: the engine may compress the message
   * later, from the array it was given.
   */
  send(message: string | Uint8Array, compressing: boolean): number {
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      return 0;
    }
    if (!this.#admits(message)) return 0;
    // What is sent is the message as it is now: one kept by reference (a
    // large payload, one compressed later, one waiting behind writes) is a
    // copy, so that the caller may reuse its array at once.
    if (
      typeof message !== "string" &&
      (message.byteLength > COPY_LIMIT || compressing ||
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

  /** A publication, under the backpressure policy (see `Subscriber`). */
  offer(shared: SharedMessage): boolean {
    if (!this.#admits(shared.message)) return false;
    if (this.#writableCount > 0) {
      this.#queueBehind(shared, shared.message);
      return true;
    }
    return this.#engine.sendShared(shared) > 0;
  }

  /** Told by the engine that no more messages will come. */
  endReading(end: EngineEnd): void {
    this.#leaveTopics();
    this.inbox.endReading(end);
  }

  /** Told by the engine that the connection is closed: settles `closed`. */
  settle(end: EngineEnd): void {
    clearTimeout(this.#cancelTimer);
    this.inbox.settle(end);
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

  readableCanceled(reason: unknown): void {
    if (reason !== undefined) {
      this.#closeFor(reason);
      return;
    }
    // Nothing to close any more (a loop that ended with the connection).
    if (this.#engine.state !== "open" || this.#pendingClose) return;
    // The cancel of a `for await` that a throwing handler leaves: wait a
    // moment, so that the handler's fault can close with 1011 first.
    this.#cancelTimer = setTimeout(() => this.close(undefined, ""), 0);
  }

  // --- Topics ---------------------------------------------------------------

  subscribe(topic: string): void {
    const hub = this.#hubFor(topic);
    if (this.#engine.state !== "open" || this.#pendingClose) return;
    if (!hub.subscribe(this, topic)) return;
    const topics = this.#topics;
    if (topics === undefined) this.#topics = topic;
    else if (typeof topics === "string") {
      this.#topics = new Set([topics, topic]);
    } else topics.add(topic);
  }

  unsubscribe(topic: string): void {
    const hub = this.#hubFor(topic);
    if (!hub.unsubscribe(this, topic)) return;
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
    return hub.publish(topic, message, this);
  }

  #hubFor(topic: string): Subscriptions {
    if (this.#hub === undefined) {
      throw new TypeError(
        "This socket has no topic hub: pass { hub } to upgradeWebSocket() (a client's socket has none)",
      );
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
    if (typeof topics === "string") this.#hub!.unsubscribe(this, topics);
    else for (const topic of topics) this.#hub!.unsubscribe(this, topic);
  }

  // --- Closing --------------------------------------------------------------

  /** Closes, after the writes already waiting in `writable`'s queue. */
  close(code: number | undefined, reason: string): void {
    clearTimeout(this.#cancelTimer);
    if (this.#pendingClose) return;
    if (this.#writableCount > 0 && this.#engine.state === "open") {
      this.#pendingClose = [code, reason];
      this.#writesBeforeClose = this.#writableCount;
      // Publications stop now: the socket is on its way out.
      this.#leaveTopics();
    } else {
      this.closeEngine(code, reason);
    }
  }

  /**
   * Starts the engine's closing handshake with any sendable code; the
   * socket leaves its topics.
   */
  closeEngine(code: number | undefined, reason: string): void {
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
      this.close(undefined, "");
      return;
    }
    const code = reason.closeCode;
    if (isApplicationCode(code)) {
      this.close(code, reason.reason);
    } else {
      this.close(
        reason.reason ? CloseCode.NormalClosure : undefined,
        reason.reason,
      );
    }
  }

  // --- Sending --------------------------------------------------------------

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
        this.closeEngine(
          CloseCode.TryAgainLater,
          `Send queue over ${formatBytes(options.maxBackpressure)}`,
        );
      }
      return false;
    }
    return true;
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
      this.closeEngine(...pendingClose);
    }
  }

  // --- `writable`'s sink ----------------------------------------------------

  /** Counts a write entering `writable`'s queue (its strategy's `size`). */
  entered(message: Message): number {
    const size = messageSize(message);
    this.#writableQueued += size;
    this.#writableCount++;
    this.#writesEntered++;
    return size;
  }

  write(message: Message): Promise<void> | undefined {
    this.#writableQueued -= messageSize(message);
    this.#writableCount--;
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      // `writable` errors and drops the writes queued behind this one.
      this.#dropWrites();
      throw new TypeError("A message must be a string or a Uint8Array");
    }
    const engine = this.#engine;
    const pendingClose = this.#pendingClose;
    if (pendingClose) {
      // Written before the close was asked for: it goes first.
      if (this.#writesBeforeClose === 0) throw new SendAfterCloseError();
      const sent = engine.send(message);
      this.#sendBehind();
      if (--this.#writesBeforeClose === 0) this.closeEngine(...pendingClose);
      if (sent === 0) throw new SendAfterCloseError();
      return engine.ready();
    }
    const sent = engine.send(message);
    this.#sendBehind();
    if (sent === 0) {
      this.#dropWrites();
      throw new SendAfterCloseError();
    }
    return engine.ready();
  }

  closeWritable(): void {
    // The stream calls this once every write it took has been handed
    // over: a write it refused still counted in `size()`.
    this.#writableCount = 0;
    this.#writableQueued = 0;
    this.#closeFor(undefined);
  }

  abortWrites(reason: unknown): void {
    this.#dropWrites();
    this.#closeFor(reason);
  }

  // --- PipeTarget: what a direct pipe into `writable` needs -----------------

  /**
   * Whether a direct pipe may write into `writable`: none does, and nothing
   * written to `writable` still waits (the pipe would overtake it).
   */
  pipeable(): boolean {
    return this.#pipeIn === undefined && this.#writableCount === 0 &&
      this.#behind.length === 0 && this.#pendingClose === undefined;
  }

  pipeIn(pipe: Pipe, writable: WritableStream<Message>): void {
    const piped = writable as MessageWritable;
    sinkOf(piped).writer = piped.getWriter();
    this.#pipeIn = pipe;
    this.#writable = new WeakRef(piped);
  }

  /**
   * A message piped from a socket's `readable`: what `writable`'s sink
   * does, without the stream. False once the socket no longer sends.
   */
  pipedWrite(message: Message): boolean {
    if (this.#pendingClose) return false;
    return this.#engine.send(message) > 0;
  }

  ready(): Promise<void> | undefined {
    return this.#engine.ready();
  }

  get pipeWriter(): WritableStreamDefaultWriter<Message> | undefined {
    const writable = held(this.#writable);
    return writable && sinkOf(writable).writer;
  }

  unlock(): void {
    const writable = held(this.#writable);
    if (writable === undefined) return;
    const sink = sinkOf(writable);
    sink.writer?.releaseLock();
    sink.writer = undefined;
  }

  /**
   * `writable` again, after the one a direct pipe locked was collected:
   * locked by the pipe while it runs, then closed or aborted as the pipe
   * left it.
   */
  #remakeWritable(): MessageWritable {
    const pipe = this.#pipeIn!;
    const writable = new MessageWritable(new Sink(this), INTERNAL);
    if (pipe.done) {
      // The socket is closing already, so the sink's close or abort
      // changes nothing.
      const writer = writable.getWriter();
      const error = pipe.writableError;
      (error === undefined ? writer.close() : writer.abort(error)).catch(
        ignore,
      );
      writer.releaseLock();
    } else {
      sinkOf(writable).writer = writable.getWriter();
    }
    this.#writable = new WeakRef(writable);
    return writable;
  }
}

/** A socket's `writable`, which a socket's `readable` can pipe into directly. */
class MessageWritable extends WritableStream<Message> {
  constructor(sink: Sink, key: typeof INTERNAL) {
    // Reachable as `writable.constructor`: only this module makes them.
    if (key !== INTERNAL) throw new TypeError("Illegal constructor");
    const core = sink.owner;
    // The default high-water mark, 1: one write waits while one is in
    // flight. Left out, as a member less for the stream to convert.
    super(sink, { size: (message: Message) => core.entered(message) });
    // Its sink, whose owner is the socket: for the direct pipe.
    setInternals(this, sink);
  }
}

/** The sink of one of this module's streams. */
function sinkOf(writable: MessageWritable): Sink {
  return internalsOf(writable) as Sink;
}

/**
 * `writable`'s sink. It holds the direct pipe's lock on the stream, so that
 * the lock goes with the stream when nothing else holds it.
 */
class Sink implements UnderlyingSink<Message> {
  readonly owner: SocketCore;
  /** The direct pipe's lock on the stream. */
  writer: WritableStreamDefaultWriter<Message> | undefined;

  constructor(owner: SocketCore) {
    this.owner = owner;
  }

  write(message: Message): Promise<void> | undefined {
    return this.owner.write(message);
  }

  close(): void {
    this.owner.closeWritable();
  }

  abort(reason: unknown): void {
    this.owner.abortWrites(reason);
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
 * What `#behind` holds until its first item: one shared empty array, never
 * pushed to, rather than an array per idle socket.
 */
const NO_BEHIND: Behind[] = [];

function ignore(): void {}

/** A byte count for a close reason: `1 MiB`, `512 KiB`, `1000 bytes`. */
function formatBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** What `closed` resolves with after a clean close. */
function cleanClose(end: EngineEnd): WebSocketCloseResult {
  return { closeCode: end.closeCode, reason: end.reason, wasClean: true };
}
