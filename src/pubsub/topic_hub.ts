// The topic hub: which subscribers (sockets) subscribe to which topics, and
// publishing one message to all of a topic's subscribers, framed once.

import type { Message } from "../protocol/message_assembler.ts";
import { report } from "./_report.ts";
import { internalsOf, setInternals } from "./_internals.ts";
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

/**
 * What a hub needs of a subscriber: a socket implements it, and so can a
 * test's fake. The hub knows nothing else of it (uWebSockets' TopicTree
 * knows only subscribers, likewise).
 *
 * @example A subscriber that keeps what it is offered
 * ```ts ignore
 * const kept: SharedMessage[] = [];
 * subscriptionsOf(hub).subscribe({ offer: (shared) => kept.push(shared) > 0 }, "t");
 * ```
 */
export interface Subscriber {
  /**
   * Queues a publication under the subscriber's own backpressure policy;
   * returns whether it was queued. Never throws and never waits.
   */
  offer(shared: SharedMessage): boolean;
}

/**
 * A hub's topics and their subscribers, with the adapter told when a topic
 * gains its first local subscriber and loses its last, and of every local
 * publication. It knows subscribers only as {@linkcode Subscriber}s. It is
 * the hub's internals: sockets subscribe and publish through it
 * (`subscriptionsOf(hub)`); the hub's public methods are its others.
 *
 * @example What `socket.subscribe` and `socket.publish` do
 * ```ts ignore
 * const subscriptions = subscriptionsOf(hub);
 * subscriptions.subscribe(core, "news");
 * subscriptions.publish("news", "hello", core); // to all but `core`
 * ```
 */
export class Subscriptions {
  #topics = new Map<string, Set<Subscriber>>();
  #pubsub: PubSubAdapter | undefined;
  #onError: (error: unknown) => void;

  constructor(
    pubsub: PubSubAdapter | undefined,
    onError: (error: unknown) => void,
  ) {
    this.#pubsub = pubsub;
    this.#onError = onError;
  }

  /** Subscribes to a topic; true if it was not subscribed yet. */
  subscribe(subscriber: Subscriber, topic: string): boolean {
    let subscribers = this.#topics.get(topic);
    if (subscribers === undefined) {
      subscribers = new Set();
      this.#topics.set(topic, subscribers);
      this.#call(() => this.#pubsub?.subscribe(topic));
    } else if (subscribers.has(subscriber)) {
      return false;
    }
    subscribers.add(subscriber);
    return true;
  }

  /** Unsubscribes from a topic; true if it was subscribed. */
  unsubscribe(subscriber: Subscriber, topic: string): boolean {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined || !subscribers.delete(subscriber)) {
      return false;
    }
    if (subscribers.size === 0) {
      this.#topics.delete(topic);
      this.#call(() => this.#pubsub?.unsubscribe(topic));
    }
    return true;
  }

  /**
   * Publishes to the topic's subscribers but `exclude`, and through the
   * adapter to the other nodes; returns how many subscribers queued it.
   */
  publish(topic: string, message: Message, exclude?: Subscriber): number {
    if (typeof topic !== "string") {
      throw new TypeError("A topic must be a string");
    }
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError("A message must be a string or a Uint8Array");
    }
    const pubsub = this.#pubsub;
    if (pubsub !== undefined) this.#call(() => pubsub.publish(topic, message));
    return this.fanOut(topic, message, exclude);
  }

  /**
   * Queues a message for the local subscribers of a topic (but `exclude`):
   * one `SharedMessage` for all, so that it is framed once.
   */
  fanOut(topic: string, message: Message, exclude?: Subscriber): number {
    const subscribers = this.#topics.get(topic);
    if (subscribers === undefined) return 0;
    // One copy of a binary message per publication (never per subscriber):
    // a subscriber may frame it later, and the caller may reuse its array.
    const shared = new SharedMessage(
      typeof message === "string" ? message : message.slice(),
    );
    let reached = 0;
    for (const subscriber of subscribers) {
      if (subscriber !== exclude && subscriber.offer(shared)) reached++;
    }
    return reached;
  }

  /** How many subscribers the topic has. */
  count(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  /** The topics with at least one subscriber, in the order they got one. */
  topics(): string[] {
    return [...this.#topics.keys()];
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
  #subscriptions: Subscriptions;
  #pubsub: PubSubAdapter | undefined;

  /**
   * Creates a hub.
   *
   * @param options An adapter to carry publications to other nodes.
   */
  constructor(options?: TopicHubOptions) {
    const onError = options?.onError ??
      ((error) => console.error("Topic hub error:", error));
    const pubsub = this.#pubsub = options?.pubsub;
    const subscriptions = this.#subscriptions = new Subscriptions(
      pubsub,
      onError,
    );
    setInternals(this, subscriptions);
    try {
      pubsub?.open((topic, message) => subscriptions.fanOut(topic, message));
    } catch (error) {
      report(onError, error);
    }
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
    return this.#subscriptions.publish(topic, message);
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
    return this.#subscriptions.count(topic);
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
    return this.#subscriptions.topics();
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
}

/**
 * What sockets subscribe and publish through: the hub's internals.
 *
 * @example
 * ```ts ignore
 * this.#hub = init.hub && subscriptionsOf(init.hub);
 * ```
 */
export function subscriptionsOf(hub: TopicHub): Subscriptions {
  return internalsOf(hub) as Subscriptions;
}
