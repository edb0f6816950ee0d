// The topic hub: which sockets subscribe to which topics, and publishing
// one message to all of a topic's subscribers, framed once.

import type { Message } from "../core/message_assembler.ts";
import { report } from "../_report.ts";
import { offer, type Socket } from "../socket.ts";
import { SharedMessage } from "./_shared_message.ts";

/**
 * Carries publications between the topic hubs of several processes or
 * machines, over an existing engine (Redis, a `BroadcastChannel`). A hub
 * tells its adapter when a topic gains its first local subscriber and loses
 * its last (so that a node only receives what it has subscribers for), and
 * hands it every local publication; the adapter hands the hub what other
 * nodes published, which the hub delivers to its local subscribers. An
 * adapter does not hand a node back its own publications.
 *
 * @example An adapter that only logs (a real one carries messages)
 * ```ts
 * import type { PubSubAdapter } from "@scope/ws";
 *
 * const logging: PubSubAdapter = {
 *   open(_deliver) {},
 *   subscribe: (topic) => console.log("subscribe", topic),
 *   unsubscribe: (topic) => console.log("unsubscribe", topic),
 *   publish: (topic) => console.log("publish to", topic),
 *   close: () => Promise.resolve(),
 * };
 * ```
 */
export interface PubSubAdapter {
  /**
   * Called once by the hub: messages published on other nodes are to be
   * passed to `deliver`.
   */
  open(deliver: (topic: string, message: string | Uint8Array) => void): void;
  /** The topic gained its first local subscriber: receive it from now on. */
  subscribe(topic: string): void;
  /** The topic lost its last local subscriber: stop receiving it. */
  unsubscribe(topic: string): void;
  /** A local publication, to be carried to the other nodes. */
  publish(topic: string, message: string | Uint8Array): void;
  /** Stops carrying messages and frees the adapter's connections. */
  close(): Promise<void>;
}

/**
 * What a {@linkcode PubSubAdapter} of this module counts, from its start.
 * The bus's guarantee is at most once, in order per publisher: these say
 * what was lost and where.
 *
 * @example Watching for losses
 * ```ts
 * import { BroadcastChannelPubSub } from "@scope/ws";
 *
 * const pubsub = new BroadcastChannelPubSub();
 * const { failed, gaps, malformed } = pubsub.stats;
 * console.log({ failed, gaps, malformed }); // { failed: 0, gaps: 0, malformed: 0 }
 * await pubsub.close();
 * ```
 */
export interface PubSubStats {
  /** Local publications handed to the bus (for Redis: acknowledged by it). */
  published: number;
  /**
   * Local publications that could not be handed to the bus (it was
   * unreachable, too much was waiting for it, or it refused them): the
   * other nodes never get them.
   */
  failed: number;
  /** Messages from other nodes passed to the local subscribers. */
  delivered: number;
  /**
   * Messages from other nodes, to topics subscribed here, found missing by
   * their publishers' sequence numbers: lost on the way (an outage, a bus
   * that dropped this node as a slow subscriber, a publisher's failure).
   */
  gaps: number;
  /**
   * Bus messages ignored because they were not a valid message of this
   * module (foreign, truncated, of another version) or were too big.
   */
  malformed: number;
  /**
   * Messages from other nodes whose number went back or jumped implausibly
   * far ahead (a forged or corrupt message): taken, and their publisher's
   * count started again from them rather than refusing what follows.
   */
  resets: number;
  /** Times the adapter got its connection to the bus back after losing it. */
  reconnects: number;
}

/**
 * Options for {@linkcode TopicHub}.
 *
 * @example A hub shared by two servers, carried between processes by an
 * adapter
 * ```ts ignore
 * import { serve, TopicHub } from "@scope/ws";
 * import { RedisPubSub } from "@scope/ws/redis";
 *
 * const hub = new TopicHub({ pubsub: new RedisPubSub({ url: "redis://127.0.0.1:6379" }) });
 * serve({ port: 8080, hub }, (socket) => socket.subscribe("news"));
 * serve({ port: 8081, hub }, (socket) => socket.subscribe("news"));
 * ```
 */
export interface TopicHubOptions {
  /** Carries publications to and from other processes or machines. */
  pubsub?: PubSubAdapter;
  /** Told when the adapter throws; default: logs it. */
  onError?: (error: unknown) => void;
}

/** Subscribes a socket (from `socket.subscribe`); true if it was not yet. */
export let join: (hub: TopicHub, socket: Socket, topic: string) => boolean;
/** Unsubscribes a socket; true if it was subscribed. */
export let leave: (hub: TopicHub, socket: Socket, topic: string) => boolean;
/** Publishes to a topic's subscribers but one (from `socket.publish`). */
export let publishFrom: (
  hub: TopicHub,
  topic: string,
  message: Message,
  exclude: Socket | undefined,
) => number;

/**
 * The topics of a set of sockets: a socket subscribes to topics (exact
 * strings), and a message published to a topic is queued for each of its
 * subscribers. `serve()` has one ({@linkcode WebSocketServer.publish});
 * make one to share it between servers, or to carry publications to other
 * processes with a {@linkcode PubSubAdapter}.
 *
 * Publishing never waits for a socket: the message is framed once and the
 * same bytes are queued for every subscriber, each of which applies its own
 * backpressure policy (`maxBackpressure`, `backpressure`).
 *
 * @example Publishing to the sockets that subscribed to a topic
 * ```ts ignore
 * import { serve, TopicHub } from "@scope/ws";
 *
 * const hub = new TopicHub();
 * serve({ port: 8080, hub }, (socket) => socket.subscribe("prices"));
 * setInterval(() => hub.publish("prices", JSON.stringify({ usd: 1.09 })), 1000);
 * ```
 */
export class TopicHub {
  #topics = new Map<string, Set<Socket>>();
  #pubsub: PubSubAdapter | undefined;
  #onError: (error: unknown) => void;

  /**
   * Creates a hub.
   *
   * @param options An adapter to carry publications to other nodes.
   */
  constructor(options?: TopicHubOptions) {
    this.#onError = options?.onError ??
      ((error) => console.error("Topic hub error:", error));
    const pubsub = this.#pubsub = options?.pubsub;
    this.#call(() =>
      pubsub?.open((topic, message) => this.#fanOut(topic, message))
    );
  }

  static {
    join = (hub, socket, topic) => hub.#join(socket, topic);
    leave = (hub, socket, topic) => hub.#leave(socket, topic);
    publishFrom = (hub, topic, message, exclude) =>
      hub.#publish(topic, message, exclude);
  }

  /**
   * Publishes a message to every subscriber of `topic` (and, through the
   * adapter, to the other nodes). Never waits and never throws for a
   * socket.
   *
   * @param topic The topic.
   * @param message A `string` (text) or a `Uint8Array` (binary).
   * @returns How many local sockets it was queued for.
   *
   * @example Publishing a price
   * ```ts ignore
   * const reached = hub.publish("prices/EURUSD", "1.0912");
   * ```
   */
  publish(topic: string, message: string | Uint8Array): number {
    return this.#publish(topic, message, undefined);
  }

  /**
   * How many local sockets subscribe to `topic`.
   *
   * @param topic The topic.
   * @returns The number of subscribers on this node.
   *
   * @example Skipping work nobody would receive
   * ```ts ignore
   * if (hub.subscriberCount("prices") > 0) hub.publish("prices", quote());
   * ```
   */
  subscriberCount(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /**
   * The topics that have at least one local subscriber.
   *
   * @returns The topics, in the order they first got a subscriber.
   *
   * @example Listing the rooms in use
   * ```ts ignore
   * console.log(hub.topics()); // ["room/1", "room/7"]
   * ```
   */
  topics(): string[] {
    return [...this.#topics.keys()];
  }

  /**
   * Closes the adapter, if any; the hub's sockets are not closed.
   *
   * @returns Resolves once the adapter is closed.
   *
   * @example Closing a hub made with an adapter
   * ```ts ignore
   * await hub.close();
   * ```
   */
  async close(): Promise<void> {
    await this.#pubsub?.close();
  }

  #join(socket: Socket, topic: string): boolean {
    let subscribers = this.#topics.get(topic);
    if (subscribers === undefined) {
      subscribers = new Set();
      this.#topics.set(topic, subscribers);
      this.#call(() => this.#pubsub?.subscribe(topic));
    } else if (subscribers.has(socket)) {
      return false;
    }
    subscribers.add(socket);
    return true;
  }

  #leave(socket: Socket, topic: string): boolean {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined || !subscribers.delete(socket)) return false;
    if (subscribers.size === 0) {
      this.#topics.delete(topic);
      this.#call(() => this.#pubsub?.unsubscribe(topic));
    }
    return true;
  }

  #publish(topic: string, message: Message, exclude: Socket | undefined) {
    if (typeof topic !== "string") {
      throw new TypeError("A topic must be a string");
    }
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError("A message must be a string or a Uint8Array");
    }
    const pubsub = this.#pubsub;
    if (pubsub !== undefined) this.#call(() => pubsub.publish(topic, message));
    return this.#fanOut(topic, message, exclude);
  }

  /** Queues a message for the local subscribers of a topic. */
  #fanOut(topic: string, message: Message, exclude?: Socket): number {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined) return 0;
    // One copy of a binary message per publication (never per subscriber):
    // a subscriber may frame it later, and the caller may reuse its array.
    const shared = new SharedMessage(
      typeof message === "string" ? message : message.slice(),
    );
    let reached = 0;
    for (const socket of subscribers) {
      if (socket !== exclude && offer(socket, shared)) reached++;
    }
    return reached;
  }

  /** Calls the adapter; what it throws goes to `onError`. */
  #call(call: () => void): void {
    try {
      call();
    } catch (error) {
      report(this.#onError, error);
    }
  }
}
