// The topic hub: which subscribers (sockets) subscribe to which topics,
// publishing one message to all of a topic's subscribers, framed once, and,
// on topics that keep history, their positions, recovery and presence.

import type { Message } from "../protocol/message_assembler.ts";
import { report } from "./_report.ts";
import { internalsOf, setInternals } from "./_internals.ts";
import {
  type HistoryLimits,
  MemoryHistory,
  resolveHistory,
} from "./_memory_history.ts";
import { SharedMessage } from "./_shared_message.ts";
import type {
  HistoryOptions,
  HistoryQuery,
  HistoryResult,
  StreamPosition,
} from "./history.ts";

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
   * passed to `deliver`. A publication of a topic that keeps history in the
   * adapter (see `history`) comes with its position, to every node in the
   * order of the positions, this node's own too, with the `tag` that this
   * node's `history.publish` was given.
   */
  open(deliver: PubSubDeliver): void;
  /**
   * The topic gained its first local subscriber: receive it from now on.
   * May return a promise that resolves once what is published to the topic
   * reaches this node (a Redis SUBSCRIBE acknowledged): recovering
   * subscribers wait for it before they read history.
   */
  subscribe(topic: string): void | Promise<void>;
  /** The topic lost its last local subscriber: stop receiving it. */
  unsubscribe(topic: string): void;
  /** A local publication, to be carried to the other nodes. */
  publish(topic: string, message: string | Uint8Array): void;
  /** Stops carrying messages and frees the adapter's connections. */
  close(): Promise<void>;
  /**
   * Keeps the history of the topics that have one, shared by every node
   * (`RedisPubSub` does). Without it a hub with `history` refuses the
   * adapter: each node's history would number the same topic differently.
   */
  history?: HistoryAdapter;
  /**
   * Shares the presence of the topics that have it between the nodes
   * (`RedisPubSub` does); without it, presence is this node's.
   */
  presence?: PresenceAdapter;
}

/**
 * Where a {@linkcode PubSubAdapter} hands a hub what was published on other
 * nodes (and, on topics with history in the adapter, on this one).
 *
 * @example What an adapter calls
 * ```ts ignore
 * deliver("news", "Hello"); // a publication of another node
 * deliver("room/1", "Hi", { offset: 7, epoch: "k3x9Qa" }); // one with history
 * ```
 */
export type PubSubDeliver = (
  topic: string,
  message: string | Uint8Array,
  position?: StreamPosition,
  tag?: unknown,
) => void;

/**
 * The history side of a {@linkcode PubSubAdapter}: a store that every node
 * shares, which numbers each topic's publications once for all (see
 * `RedisPubSub`).
 *
 * @example The calls a hub makes
 * ```ts ignore
 * const limits = { size: 100, ttl: 600_000, metaTtl: 86_400_000 };
 * await adapter.history!.publish("room/1", "Hi", limits, undefined);
 * const { publications, recovered } = await adapter.history!.read(
 *   "room/1",
 *   { since: { offset: 41, epoch: "k3x9Qa" } },
 *   limits,
 * );
 * ```
 */
export interface HistoryAdapter {
  /**
   * Appends a publication to the topic's history and publishes it, as one
   * step: the adapter then delivers it, with its position, to every node
   * subscribed to the topic, this one included (with `tag`). Rejects when
   * it could not be published (counted and reported by the adapter).
   */
  publish(
    topic: string,
    message: string | Uint8Array,
    limits: Required<HistoryOptions>,
    tag: unknown,
  ): Promise<StreamPosition>;
  /** Reads the topic's history. */
  read(
    topic: string,
    query: HistoryQuery,
    limits: Required<HistoryOptions>,
  ): Promise<HistoryResult>;
}

/**
 * The presence side of a {@linkcode PubSubAdapter}: each node's subscribers
 * of a topic, summed over the nodes that are alive.
 *
 * @example The calls a hub makes
 * ```ts ignore
 * adapter.presence!.update("room/1", () => ({ count: 2, members: [] }));
 * const { count } = await adapter.presence!.get("room/1", { count: 2, members: [] });
 * ```
 */
export interface PresenceAdapter {
  /**
   * This node's subscribers of the topic changed: `local` tells them when
   * the adapter asks (it may gather several changes into one update, and
   * asks again to refresh them while they last).
   */
  update(topic: string, local: () => TopicPresence): void;
  /** The topic's presence over every node, with this node's as `local`. */
  get(topic: string, local: TopicPresence): Promise<TopicPresence>;
}

/**
 * One member of a topic's presence: a subscriber that the application
 * named (the live protocol's clients are).
 *
 * @example A chat member
 * ```ts
 * import type { PresenceMember } from "@scope/ws";
 *
 * const member: PresenceMember = { client: "c81f", info: { name: "Ada" } };
 * ```
 */
export interface PresenceMember {
  /** The client's id. */
  client: string;
  /** What the application tells of it: anything JSON can carry. */
  info?: unknown;
}

/**
 * Who subscribes to a topic: how many subscribers, and the members among
 * them (subscribers that carry a client id).
 *
 * @example Showing a room's members
 * ```ts
 * import assert from "node:assert/strict";
 * import type { TopicPresence } from "@scope/ws";
 *
 * function line(presence: TopicPresence): string {
 *   const names = presence.members.map((member) => member.client);
 *   return `${presence.count} here: ${names.join(", ")}`;
 * }
 * assert.equal(
 *   line({ count: 2, members: [{ client: "c81f" }, { client: "d02a" }] }),
 *   "2 here: c81f, d02a",
 * );
 * ```
 */
export interface TopicPresence {
  /** How many subscribers. */
  count: number;
  /** The members among them. */
  members: PresenceMember[];
}

/**
 * What a {@linkcode PubSubAdapter} of this module counts, from its start.
 * The bus's guarantee is at most once, in order per publisher: these say
 * what was lost and where.
 *
 * @example Watching for losses
 * ```ts
 * import assert from "node:assert/strict";
 * import { BroadcastChannelPubSub } from "@scope/ws";
 *
 * const pubsub = new BroadcastChannelPubSub();
 * const { failed, gaps, malformed } = pubsub.stats;
 * assert.deepEqual({ failed, gaps, malformed }, { failed: 0, gaps: 0, malformed: 0 });
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
  /**
   * Which topics keep their recent publications, and how many and for how
   * long: the same for every topic, or a rule over topic names
   * (`undefined`: none). Each publication to such a topic gets a position
   * (offset and epoch), and a subscriber that comes back with the last
   * position it saw can be given what it missed (the live protocol does
   * this). In memory without an adapter; in the adapter's store with one
   * (`RedisPubSub`). Default: no topic keeps history.
   */
  history?:
    | HistoryOptions
    | ((topic: string) => HistoryOptions | undefined);
  /**
   * Which topics share their presence (subscriber counts and members)
   * between the nodes of the adapter: `true` for all, or a rule over topic
   * names. Without it, or without an adapter, {@linkcode TopicHub.presence}
   * tells this node's. Default `false`.
   */
  presence?: boolean | ((topic: string) => boolean);
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
  /**
   * Told that publications of the topic were lost before `position` and
   * could not be recovered from history (a subscriber with positions then
   * needs a snapshot). Never throws.
   */
  gap?(topic: string, position: StreamPosition): void;
  /** Who the subscriber is in the topic's presence, if anyone. */
  readonly member?: PresenceMember;
}

/** What {@linkcode Subscriptions.subscribeFrom} tells before it delivers. */
export interface Recovery {
  /** Whether every publication after `since` follows (see `HistoryResult`). */
  recovered: boolean;
  /** The topic's position the subscriber starts from; none without history. */
  position: StreamPosition | undefined;
}

/** A topic with local subscribers. */
interface Topic {
  subscribers: Set<Subscriber>;
  /**
   * Resolves once the adapter receives the topic; `undefined` when it
   * needed no wait.
   */
  ready: Promise<void> | undefined;
  /**
   * On a topic whose history the adapter keeps: the position of the last
   * publication delivered here, to find one the bus lost.
   */
  last: StreamPosition | undefined;
  /** While a lost publication is read back: what arrived meanwhile. */
  held: [SharedMessage, unknown][] | undefined;
  /**
   * Subscribers between their subscription and the end of their history
   * read: what was published meanwhile waits here for each.
   */
  recovering: Map<Subscriber, SharedMessage[]> | undefined;
  /**
   * The shared messages of the topic's recent publications, by offset (in
   * the epoch of the first): what many recovering subscribers are offered
   * is framed, and turned into the live protocol's JSON, once for all.
   */
  recent: Map<number, SharedMessage> | undefined;
  /**
   * Subscribers whose history read went past what the bus has brought
   * here: the position they were offered up to, so that those
   * publications, when they come, are not offered to them twice.
   */
  ahead: Map<Subscriber, StreamPosition> | undefined;
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
  #topics = new Map<string, Topic>();
  #pubsub: PubSubAdapter | undefined;
  #onError: (error: unknown) => void;
  /** The history rule, defaults applied; `undefined`: no history at all. */
  #history: ((topic: string) => HistoryLimits | undefined) | undefined;
  /** The history, when the hub keeps it (no adapter keeps it). */
  #memory: MemoryHistory | undefined;
  #presence: (topic: string) => boolean;

  constructor(
    pubsub: PubSubAdapter | undefined,
    onError: (error: unknown) => void,
    options: Pick<TopicHubOptions, "history" | "presence"> = {},
  ) {
    this.#pubsub = pubsub;
    this.#onError = onError;
    this.#history = historyRule(options.history);
    if (this.#history !== undefined) {
      if (pubsub === undefined) this.#memory = new MemoryHistory();
      else if (pubsub.history === undefined) {
        throw new TypeError(
          "History needs an adapter that keeps it (RedisPubSub), or no adapter: each node would number the topics on its own",
        );
      }
    }
    const presence = options.presence ?? false;
    this.#presence = typeof presence === "function" ? presence : () => presence;
  }

  /** Subscribes to a topic; true if it was not subscribed yet. */
  subscribe(subscriber: Subscriber, topic: string): boolean {
    let state = this.#topics.get(topic);
    if (state === undefined) {
      state = {
        subscribers: new Set(),
        ready: undefined,
        last: undefined,
        held: undefined,
        recovering: undefined,
        recent: undefined,
        ahead: undefined,
      };
      this.#topics.set(topic, state);
      const ready = this.#call(() => this.#pubsub?.subscribe(topic));
      if (ready instanceof Promise) {
        // Whoever waits for it hears of a failure; nobody else must.
        ready.catch(() => {});
        state.ready = ready;
      }
    } else if (state.subscribers.has(subscriber)) {
      return false;
    }
    state.subscribers.add(subscriber);
    this.#presenceChanged(topic);
    return true;
  }

  /** Unsubscribes from a topic; true if it was subscribed. */
  unsubscribe(subscriber: Subscriber, topic: string): boolean {
    const state = this.#topics.get(topic);
    if (state === undefined || !state.subscribers.delete(subscriber)) {
      return false;
    }
    state.recovering?.delete(subscriber);
    state.ahead?.delete(subscriber);
    if (state.subscribers.size === 0) {
      this.#topics.delete(topic);
      this.#call(() => this.#pubsub?.unsubscribe(topic));
    }
    this.#presenceChanged(topic);
    return true;
  }

  /**
   * Subscribes from a position in the topic's history: once the subscriber
   * is subscribed and the history read, `ready` is told whether it
   * recovered, then the subscriber is offered the publications after
   * `query.since` (or the latest `query.limit`), then those published
   * meanwhile, then the live ones: none missing, none twice. On a topic
   * without history, `ready` is told at once (not recovered, no
   * position). Settles once the subscriber is live; a subscriber that was
   * subscribed already is left as it is (false).
   */
  subscribeFrom(
    subscriber: Subscriber,
    topic: string,
    query: HistoryQuery,
    ready: (recovery: Recovery) => void,
  ): boolean | Promise<boolean> {
    if (!this.subscribe(subscriber, topic)) return false;
    const limits = this.#history?.(topic);
    if (limits === undefined) {
      ready({ recovered: false, position: undefined });
      return true;
    }
    const memory = this.#memory;
    if (memory !== undefined) {
      // Read and delivered in one step: nothing can be published between.
      const result = memory.read(topic, query, limits);
      this.#recover(subscriber, topic, result, [], ready, limits);
      return true;
    }
    const state = this.#topics.get(topic)!;
    const waiting: SharedMessage[] = [];
    (state.recovering ??= new Map()).set(subscriber, waiting);
    return this.#readThenRecover(
      subscriber,
      topic,
      state,
      query,
      limits,
      waiting,
      ready,
    );
  }

  async #readThenRecover(
    subscriber: Subscriber,
    topic: string,
    state: Topic,
    query: HistoryQuery,
    limits: HistoryLimits,
    waiting: SharedMessage[],
    ready: (recovery: Recovery) => void,
  ): Promise<boolean> {
    let result: HistoryResult | undefined;
    try {
      // Subscribed first, so that what is published after the read reaches
      // the subscriber live (and waits meanwhile).
      await state.ready;
      result = await this.#read(topic, query, limits);
    } catch (error) {
      report(this.#onError, error);
    }
    if (state.recovering?.get(subscriber) !== waiting) return true;
    state.recovering.delete(subscriber);
    if (result === undefined) {
      // No history to read: not recovered; what came meanwhile follows.
      ready({ recovered: false, position: undefined });
      for (const shared of waiting) subscriber.offer(shared);
      return true;
    }
    const offered = this.#recover(
      subscriber,
      topic,
      result,
      waiting,
      ready,
      limits,
    );
    // The read can be ahead of the bus (the store numbered a publication
    // whose message is still on its way here).
    const live = state.last;
    if (
      live === undefined || live.epoch !== offered.epoch ||
      live.offset < offered.offset
    ) {
      (state.ahead ??= new Map()).set(subscriber, offered);
    }
    return true;
  }

  /** What the adapter's history reads, once for readers asking the same at once. */
  #reads = new Map<string, Promise<HistoryResult>>();

  #read(
    topic: string,
    query: HistoryQuery,
    limits: HistoryLimits,
  ): Promise<HistoryResult> {
    const since = query.since;
    const key = `${
      since ? `${since.epoch}:${since.offset}` : `last ${query.limit ?? 0}`
    } ${topic}`;
    let reading = this.#reads.get(key);
    if (reading === undefined) {
      reading = this.#pubsub!.history!.read(topic, query, limits);
      this.#reads.set(key, reading);
      const forget = () => this.#reads.delete(key);
      reading.then(forget, forget);
    }
    return reading;
  }

  /**
   * Tells `ready`, offers the history read, then what was published since
   * the read above its top; returns the position offered up to.
   */
  #recover(
    subscriber: Subscriber,
    topic: string,
    result: HistoryResult,
    waiting: SharedMessage[],
    ready: (recovery: Recovery) => void,
    limits: HistoryLimits,
  ): StreamPosition {
    const top = result.position;
    ready({ recovered: result.recovered, position: top });
    const state = this.#topics.get(topic);
    for (const { offset, message } of result.publications) {
      let shared = state?.recent?.get(offset);
      if (shared === undefined || shared.position!.epoch !== top.epoch) {
        shared = new SharedMessage(message, topic, {
          offset,
          epoch: top.epoch,
        });
        if (state !== undefined) remember(state, shared, limits);
      }
      subscriber.offer(shared);
    }
    let last = top;
    for (const shared of waiting) {
      const position = shared.position!;
      if (position.epoch === last.epoch) {
        if (position.offset <= last.offset) continue;
        if (position.offset > last.offset + 1) {
          subscriber.gap?.(topic, position);
        }
      } else {
        subscriber.gap?.(topic, position);
      }
      last = position;
      subscriber.offer(shared);
    }
    return last;
  }

  /**
   * Publishes to the topic's subscribers but `exclude`, and through the
   * adapter to the other nodes; returns how many subscribers queued it (on
   * a topic whose history the adapter keeps: how many will be offered it,
   * once it comes back from the adapter).
   */
  publish(topic: string, message: Message, exclude?: Subscriber): number {
    if (typeof topic !== "string") {
      throw new TypeError("A topic must be a string");
    }
    if (typeof message !== "string" && !(message instanceof Uint8Array)) {
      throw new TypeError("A message must be a string or a Uint8Array");
    }
    const limits = this.#history?.(topic);
    const pubsub = this.#pubsub;
    if (limits !== undefined) {
      if (this.#memory !== undefined) {
        const kept = copy(message);
        const position = this.#memory.append(topic, kept, limits);
        const state = this.#topics.get(topic);
        if (state === undefined) return 0;
        const shared = new SharedMessage(kept, topic, position);
        remember(state, shared, limits);
        return this.#offer(state, shared, exclude);
      }
      // The adapter numbers it and hands it back to every node, this one
      // too, in the order of the numbers: delivered then.
      pubsub!.history!.publish(topic, copy(message), limits, exclude).catch(
        () => {
          // The adapter counted and reported it.
        },
      );
      const subscribers = this.#topics.get(topic)?.subscribers;
      return subscribers === undefined
        ? 0
        : subscribers.size - (exclude && subscribers.has(exclude) ? 1 : 0);
    }
    if (pubsub !== undefined) this.#call(() => pubsub.publish(topic, message));
    return this.fanOut(topic, message, exclude);
  }

  /**
   * Queues a message for the local subscribers of a topic (but `exclude`):
   * one `SharedMessage` for all, so that it is framed once.
   */
  fanOut(
    topic: string,
    message: Message,
    exclude?: Subscriber,
    position?: StreamPosition,
  ): number {
    const state = this.#topics.get(topic);
    if (state === undefined) return 0;
    // One copy of a binary message per publication (never per subscriber):
    // a subscriber may frame it later, and the caller may reuse its array.
    return this.#offer(
      state,
      new SharedMessage(copy(message), topic, position),
      exclude,
    );
  }

  #offer(state: Topic, shared: SharedMessage, exclude: unknown): number {
    const recovering = state.recovering;
    const ahead = state.ahead;
    let reached = 0;
    for (const subscriber of state.subscribers) {
      if (subscriber === exclude) continue;
      if (recovering !== undefined && recovering.size > 0) {
        const waiting = recovering.get(subscriber);
        if (waiting !== undefined) {
          waiting.push(shared);
          continue;
        }
      }
      if (ahead !== undefined && ahead.size > 0) {
        const offered = ahead.get(subscriber);
        if (offered !== undefined) {
          const position = shared.position;
          if (
            position?.epoch === offered.epoch &&
            position.offset <= offered.offset
          ) {
            continue;
          }
          ahead.delete(subscriber);
        }
      }
      if (subscriber.offer(shared)) reached++;
    }
    return reached;
  }

  /**
   * What the adapter hands the hub: another node's publication, or, with a
   * position, one of a topic whose history the adapter keeps (this node's
   * own too, with the `tag` its publish was given: the subscriber left
   * out). A position that skips some is repaired from history before
   * anything after it is delivered; what history cannot give back is told
   * to the topic's subscribers as a gap and reported, never passed over.
   */
  deliver: PubSubDeliver = (topic, message, position, tag) => {
    if (position === undefined) {
      this.fanOut(topic, message);
      return;
    }
    const state = this.#topics.get(topic);
    if (state === undefined) return;
    this.#advance(
      topic,
      state,
      new SharedMessage(copy(message), topic, position),
      tag,
    );
  };

  #advance(
    topic: string,
    state: Topic,
    shared: SharedMessage,
    exclude: unknown,
  ): void {
    if (state.held !== undefined) {
      state.held.push([shared, exclude]);
      return;
    }
    const position = shared.position!;
    const last = state.last;
    if (last !== undefined && position.epoch === last.epoch) {
      // Once already: Redis delivers a message once per subscription, but
      // a repair may have read it before it came.
      if (position.offset <= last.offset) return;
      if (position.offset > last.offset + 1) {
        state.held = [[shared, exclude]];
        this.#repair(topic, state, last);
        return;
      }
    } else if (last !== undefined) {
      // A new epoch: the history was lost (flushed, expired), and what was
      // published between can never be read back.
      this.#gap(topic, state, position, last);
    }
    state.last = position;
    const limits = this.#history?.(topic);
    if (limits !== undefined) remember(state, shared, limits);
    this.#offer(state, shared, exclude);
  }

  /** Reads back what the bus lost after `since`, then goes on. */
  async #repair(topic: string, state: Topic, since: StreamPosition) {
    const limits = this.#history?.(topic);
    let result: HistoryResult | undefined;
    if (limits !== undefined) {
      try {
        result = await this.#pubsub!.history!.read(topic, { since }, limits);
      } catch (error) {
        report(this.#onError, error);
      }
    }
    const held = state.held!;
    state.held = undefined;
    if (this.#topics.get(topic) !== state) return;
    if (result?.recovered) {
      const epoch = result.position.epoch;
      for (const { offset, message } of result.publications) {
        this.#advance(
          topic,
          state,
          new SharedMessage(message, topic, { offset, epoch }),
          undefined,
        );
      }
    } else {
      this.#gap(topic, state, held[0][0].position!, since);
      state.last = undefined;
    }
    for (const [shared, exclude] of held) {
      this.#advance(topic, state, shared, exclude);
    }
  }

  /** Tells the topic's subscribers, and the application, of a loss. */
  #gap(
    topic: string,
    state: Topic,
    position: StreamPosition,
    last: StreamPosition,
  ): void {
    report(
      this.#onError,
      new Error(
        position.epoch === last.epoch
          ? `Publications ${last.offset + 1} to ${
            position.offset - 1
          } of topic "${topic}" were lost and are no longer in its history`
          : `The history of topic "${topic}" started again (epoch ${last.epoch} → ${position.epoch}): what was published between is lost`,
      ),
    );
    for (const subscriber of state.subscribers) {
      if (state.recovering?.has(subscriber)) continue;
      try {
        subscriber.gap?.(topic, position);
      } catch (error) {
        report(this.#onError, error);
      }
    }
  }

  /** Reads the topic's history (see {@linkcode TopicHub.history}). */
  history(topic: string, query: HistoryQuery): Promise<HistoryResult> {
    const limits = this.#history?.(topic);
    if (limits === undefined) {
      return Promise.reject(
        new TypeError(`Topic "${topic}" keeps no history`),
      );
    }
    if (this.#memory !== undefined) {
      return Promise.resolve(this.#memory.read(topic, query, limits));
    }
    return this.#pubsub!.history!.read(topic, query, limits);
  }

  /** The topic's subscribers here. */
  localPresence(topic: string): TopicPresence {
    const subscribers = this.#topics.get(topic)?.subscribers;
    const members: PresenceMember[] = [];
    if (subscribers === undefined) return { count: 0, members };
    for (const subscriber of subscribers) {
      const member = subscriber.member;
      if (member !== undefined) members.push(member);
    }
    return { count: subscribers.size, members };
  }

  /** The topic's presence (see {@linkcode TopicHub.presence}). */
  presence(topic: string): Promise<TopicPresence> {
    const local = this.localPresence(topic);
    const shared = this.#pubsub?.presence;
    if (shared === undefined || !this.#presence(topic)) {
      return Promise.resolve(local);
    }
    return shared.get(topic, local);
  }

  #presenceChanged(topic: string): void {
    const shared = this.#pubsub?.presence;
    if (shared === undefined || !this.#presence(topic)) return;
    this.#call(() => shared.update(topic, () => this.localPresence(topic)));
  }

  /** How many subscribers the topic has. */
  count(topic: string): number {
    return this.#topics.get(topic)?.subscribers.size ?? 0;
  }

  /** The topics with at least one subscriber, in the order they got one. */
  topics(): string[] {
    return [...this.#topics.keys()];
  }

  /** Calls the adapter; what it throws goes to `onError`. */
  #call<T>(call: () => T): T | undefined {
    try {
      return call();
    } catch (error) {
      report(this.#onError, error);
      return undefined;
    }
  }
}

/** The history rule of hub options, with the defaults applied. */
function historyRule(
  history: TopicHubOptions["history"],
): ((topic: string) => HistoryLimits | undefined) | undefined {
  if (history === undefined) return undefined;
  if (typeof history !== "function") {
    const limits = resolveHistory(history);
    return () => limits;
  }
  // Rules are called per publication: the same options object resolves once.
  const resolved = new WeakMap<HistoryOptions, HistoryLimits>();
  return (topic) => {
    const options = history(topic);
    if (options === undefined) return undefined;
    let limits = resolved.get(options);
    if (limits === undefined) {
      limits = resolveHistory(options);
      resolved.set(options, limits);
    }
    return limits;
  };
}

/** The most recent publications a topic keeps framed for recoveries. */
const MAX_RECENT = 1024;

/**
 * Keeps a topic's publication framed for the subscribers that recover it
 * soon: at most its history's size (and `MAX_RECENT`), the oldest kept
 * going first.
 */
function remember(state: Topic, shared: SharedMessage, limits: HistoryLimits) {
  const recent = state.recent ??= new Map();
  recent.set(shared.position!.offset, shared);
  if (recent.size > Math.min(limits.size, MAX_RECENT)) {
    recent.delete(recent.keys().next().value!);
  }
}

/** A binary message copied (the caller may reuse its array); text as is. */
function copy(message: Message): Message {
  return typeof message === "string" ? message : message.slice();
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
      options,
    );
    setInternals(this, subscriptions);
    try {
      pubsub?.open(subscriptions.deliver);
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
   * @returns How many local sockets it was queued for (on a topic whose
   * history `RedisPubSub` keeps: how many will be offered it once it comes
   * back from Redis). Other processes' subscribers are not counted.
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
   * Reads a topic's history: the publications after a position (and
   * whether they are all of them), or the latest ones.
   *
   * @param topic A topic that keeps history (see `history`).
   * @param query What to read; default: only the topic's position.
   * @returns The topic's position and the publications read.
   * @throws {TypeError} (a rejection) When the topic keeps no history.
   *
   * @example The last price of a symbol
   * ```ts
   * import { TopicHub } from "@scope/ws";
   *
   * const hub = new TopicHub({ history: { size: 1, ttl: 60_000 } });
   * hub.publish("prices/EURUSD", "1.0912");
   * const { publications } = await hub.history("prices/EURUSD", { limit: 1 });
   * console.assert(publications[0].message === "1.0912");
   * ```
   */
  history(topic: string, query: HistoryQuery = {}): Promise<HistoryResult> {
    return this.#subscriptions.history(topic, query);
  }

  /**
   * Who subscribes to a topic: on every node, on a topic with `presence`
   * and an adapter that shares it (`RedisPubSub`); else on this one.
   *
   * @param topic The topic.
   * @returns Its subscriber count and members.
   *
   * @example How many are in a room
   * ```ts ignore
   * const { count, members } = await hub.presence("room/lobby");
   * ```
   */
  presence(topic: string): Promise<TopicPresence> {
    return this.#subscriptions.presence(topic);
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
