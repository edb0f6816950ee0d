// `RedisPubSub`: topics shared between processes and machines over Redis
// PUB/SUB, through node-redis (its core package, `@redis/client`).

import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import { byteLength } from "../protocol/_bytes.ts";
import { DEFAULT_MAX_MESSAGE_SIZE } from "../protocol/message_assembler.ts";
import { BusNode, messageOf } from "./_bus.ts";
import { decodeEnvelope, encodeEnvelope, type Envelope } from "./_envelope.ts";
import type { HistoryLimits } from "./_memory_history.ts";
import {
  decodePositioned,
  POSITIONED_MARKER,
  RedisHistory,
} from "./_redis_history.ts";
import type { HistoryQuery, HistoryResult, StreamPosition } from "./history.ts";
import type { PubSubEvent } from "./pubsub_event.ts";
import type {
  HistoryAdapter,
  PresenceAdapter,
  PubSubAdapter,
  PubSubDeliver,
  PubSubStats,
  TopicPresence,
} from "./topic_hub.ts";

/**
 * A node-redis client (made by `createClient()` of `npm:redis` or
 * `npm:@redis/client`, version 4 or later), as the `client` option takes
 * it: the adapter only calls its `duplicate()`.
 *
 * @example A client made by the application
 * ```ts ignore
 * import { createClient } from "npm:redis@^5";
 * import { RedisPubSub, type RedisClientLike } from "@scope/ws/redis";
 *
 * const client: RedisClientLike = createClient({ url: "rediss://redis.internal:6380" });
 * const pubsub = new RedisPubSub({ client });
 * ```
 */
export interface RedisClientLike {
  /** Makes a new client with the same settings but `overrides`. */
  duplicate(overrides: { disableOfflineQueue: boolean }): unknown;
}

/** The client as the adapter uses it (the same API in every RESP version). */
type RedisClient = ReturnType<typeof createClient>;

/**
 * Options for {@linkcode RedisPubSub}.
 *
 * @example Every option
 * ```ts ignore
 * import { RedisPubSub } from "@scope/ws/redis";
 *
 * const pubsub = new RedisPubSub({
 *   url: "redis://:secret@redis.internal:6379",
 *   prefix: "chat:",
 *   maxPendingBytes: 4 * 1024 * 1024,
 *   maxMessageSize: 1024 * 1024,
 *   onEvent: (event) => console.warn(`bus ${event.kind}: ${event.message}`),
 * });
 * ```
 */
export interface RedisPubSubOptions {
  /**
   * Where Redis is, as node-redis takes it
   * (`redis[s]://[[user]:password@]host[:port][/db]`). Default
   * `"redis://127.0.0.1:6379"`. Not with `client`.
   */
  url?: string;
  /**
   * A node-redis client whose settings (address, credentials, TLS,
   * `reconnectStrategy`, …) the adapter's two connections copy with
   * `client.duplicate()`. The client itself is neither used nor closed. Not
   * with `url`.
   */
  client?: RedisClientLike;
  /**
   * Put before each topic to make its Redis channel, so that several
   * applications can share one Redis: topic `room/1` is channel
   * `ws:room/1`. Default `"ws:"`.
   */
  prefix?: string;
  /**
   * Publication bytes sent to Redis and not yet acknowledged above which
   * further publications fail (counted and reported) instead of queueing
   * in memory without bound while Redis is slow. Default 16 MiB.
   */
  maxPendingBytes?: number;
  /**
   * The largest message, in bytes (UTF-8 bytes for text), that goes over
   * the bus: a bigger local publication fails (counted in `stats.failed`),
   * and a bigger one from the bus is dropped unread (counted in
   * `stats.malformed`) before it is decoded or delivered. Default 16 MiB,
   * the default `maxMessageSize` of a socket.
   */
  maxMessageSize?: number;
  /**
   * How long a node's presence entries last in Redis without a refresh, in
   * ms: a node refreshes them every third of it, so one that dies drops out
   * of every topic's presence within this long. Default 15 s.
   */
  presenceTtl?: number;
  /**
   * Told what happens to the adapter's connections and messages, one
   * {@linkcode PubSubEvent} each: a connection lost (`disconnected`) and
   * back (`reconnected`), given up (`gave-up`), publications failing
   * (`publish-failed`, when they start) and working again
   * (`publish-recovered`, with how many failed), messages found missing
   * (`gap`), numbering resets (`reset`), malformed or too big messages on
   * the channels (`malformed`, ignored), and other errors (`error`).
   * Reports of one kind go out once a second at most; `stats` counts them
   * all. Without `onEvent` and `onError`, each is logged as one line:
   * `RedisPubSub: Lost the connection to Redis (publisher): retrying; …`.
   */
  onEvent?: (event: PubSubEvent) => void;
  /**
   * Told the same events as `onEvent` but `reconnected`, each as an `Error`
   * whose message is the event's and whose `cause` is the error behind it
   * (as before `onEvent` existed: `publish-recovered` too, as an `Error`).
   */
  onError?: (error: unknown) => void;
}

const DEFAULT_URL = "redis://127.0.0.1:6379";
const DEFAULT_PREFIX = "ws:";
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** How long `close()` waits for Redis to acknowledge what was published. */
const CLOSE_TIMEOUT = 2000;
const DEFAULT_PRESENCE_TTL = 15_000;
/** How long presence changes gather before they go to Redis, in ms. */
const PRESENCE_DELAY = 5;
/**
 * The most publications of this node, on topics with history, whose
 * left-out subscriber (`socket.publish`) waits for the publication to come
 * back from Redis: past it the oldest are forgotten (their publisher then
 * gets its own publication).
 */
const MAX_TAGS = 4096;

/**
 * Shares topics between processes and machines through Redis PUB/SUB. Each
 * process runs `serve({ pubsub: new RedisPubSub({ url }) })`; a publication
 * on any of them reaches the subscribers of all. A topic is subscribed on
 * Redis (channel `<prefix><topic>`) only while the node has a local
 * subscriber to it, so a node receives only what it has subscribers for.
 *
 * The adapter makes two connections: one publishes and fails at once while
 * Redis is unreachable, the other subscribes and keeps its SUBSCRIBE and
 * UNSUBSCRIBE commands until Redis is back (and a flood of incoming
 * messages does not delay publications). Both reconnect by themselves
 * after a Redis restart (node-redis's backoff: up to 2 s between tries) and
 * the topics are subscribed again; the WebSockets stay open meanwhile.
 *
 * **What is guaranteed: at most once, in order per publisher.** A message
 * reaches each subscribed node once or not at all, and the messages of one
 * publishing node arrive in the order it published them. Redis PUB/SUB
 * keeps nothing: what is published while a node is disconnected is lost
 * for it. Losses are never silent: the publisher counts what it could not
 * send (`stats.failed`: publications while Redis is unreachable fail at
 * once rather than wait in an offline queue, which would deliver them late
 * and hold memory without bound), and every message carries its
 * publisher's sequence number per topic, so receivers count what went
 * missing (`stats.gaps`); both are told to `onEvent` (by default logged,
 * one line each), as are a lost connection and its return.
 *
 * **History and presence.** For topics that keep history (the hub's
 * `history` option), Redis keeps it: one Lua script gives each publication
 * the topic's next offset, appends it to a stream (`<prefix>{<topic>}:log`,
 * bounded by count, expiring after its `ttl`) and publishes it, as one
 * step, so that every node sees the same offsets; each node delivers them
 * in that order, its own publications too. The topic's offset and epoch
 * live in `<prefix>{<topic>}:meta` for `metaTtl`; a flushed or expired one
 * starts a new epoch, and positions of the old one are not recovered. For
 * topics with `presence`, each node keeps its subscriber count and members
 * in `<prefix>{<topic>}:presence`, refreshed while it lives: a node that
 * dies drops out within `presenceTtl`.
 *
 * @example Two processes, one Redis
 * ```ts ignore
 * // Run this twice (ports 8080 and 8081): a message sent to either
 * // reaches the sockets of both.
 * import { serve } from "@scope/ws";
 * import { RedisPubSub } from "@scope/ws/redis";
 *
 * serve({
 *   port: Number(Deno.args[0]),
 *   pubsub: new RedisPubSub({ url: "redis://127.0.0.1:6379" }),
 * }, async (socket) => {
 *   socket.subscribe("chat");
 *   for await (const message of socket.readable) socket.publish("chat", message);
 * });
 * ```
 */
export class RedisPubSub implements PubSubAdapter {
  #bus: BusNode;
  #prefix: string;
  #maxPendingBytes: number;
  #maxMessageSize: number;
  /** Publishes; fails at once while disconnected (no offline queue). */
  #publisher: RedisClient;
  /** Subscribes; its commands wait for the connection while it is down. */
  #subscriber: RedisClient;
  #connecting: Promise<unknown>[];
  /** Resolved when both connections are first up, rejected on an early close. */
  #ready = Promise.withResolvers<void>();
  /** The topics with local subscribers: subscribed on Redis. */
  #topics = new Set<string>();
  /**
   * Topics whose SUBSCRIBE or UNSUBSCRIBE failed (the connection dropped
   * under it): made right on the subscriber's next `ready`.
   */
  #unsettled = new Set<string>();
  #pendingBytes = 0;
  /** Both connections have been ready; one of them dropped since. */
  #outage = false;
  #everReady = false;
  /** Publications are failing; how many since that was reported. */
  #failing = false;
  #failedSinceReport = 0;
  #closing: Promise<void> | undefined;
  #onMessage = (message: Buffer, channel: Buffer) =>
    this.#receive(message, channel);
  /** The history and presence kept in Redis, over the publisher. */
  #store: RedisHistory;
  /**
   * This node's publications to topics with history that leave a
   * subscriber out, by `<sequence> <topic>`, until they come back.
   */
  #tags = new Map<string, unknown>();
  #presenceTtl: number;
  /** Topics with presence and local subscribers: how to ask for them. */
  #presenceLocal = new Map<string, () => TopicPresence>();
  /** Topics whose presence changed since it was last written. */
  #presenceDirty = new Set<string>();
  #presenceFlush: ReturnType<typeof setTimeout> | undefined;
  #presenceRefresh: ReturnType<typeof setInterval> | undefined;

  /**
   * Makes the adapter and starts connecting to Redis (a hub starts using
   * it with `open()`; see also {@linkcode RedisPubSub.ready}).
   *
   * @param options Where Redis is, the channel prefix and the callbacks.
   */
  constructor(options: RedisPubSubOptions = {}) {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (typeof prefix !== "string") {
      throw new TypeError("The prefix option must be a string");
    }
    const maxPendingBytes = options.maxPendingBytes ??
      DEFAULT_MAX_PENDING_BYTES;
    if (!(maxPendingBytes > 0)) {
      throw new RangeError(
        `The maxPendingBytes option must be more than 0, got ${maxPendingBytes}`,
      );
    }
    const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!(maxMessageSize >= 0)) {
      throw new RangeError(
        `The maxMessageSize option must be 0 or more, got ${maxMessageSize}`,
      );
    }
    if (options.url !== undefined && options.client !== undefined) {
      throw new TypeError("The url and client options go apart");
    }
    const presenceTtl = options.presenceTtl ?? DEFAULT_PRESENCE_TTL;
    if (!Number.isSafeInteger(presenceTtl) || presenceTtl < 3) {
      throw new RangeError(
        `The presenceTtl option must be an integer of at least 3 (ms), got ${presenceTtl}`,
      );
    }
    this.#presenceTtl = presenceTtl;
    this.#prefix = prefix;
    this.#maxPendingBytes = maxPendingBytes;
    this.#maxMessageSize = maxMessageSize;
    this.#bus = new BusNode(options, "RedisPubSub");
    const template = options.client;
    if (template !== undefined) {
      this.#publisher = template.duplicate({
        disableOfflineQueue: true,
      }) as RedisClient;
      this.#subscriber = template.duplicate({
        disableOfflineQueue: false,
      }) as RedisClient;
    } else {
      const url = options.url ?? DEFAULT_URL;
      this.#publisher = createClient({ url, disableOfflineQueue: true });
      this.#subscriber = createClient({ url, disableOfflineQueue: false });
    }
    this.#store = new RedisHistory(this.#publisher, prefix);
    this.#watch(this.#publisher, "publisher");
    this.#watch(this.#subscriber, "subscriber");
    // Rejections were reported through the clients' `error` events.
    this.#connecting = [this.#publisher, this.#subscriber].map((client) =>
      client.connect().catch(() => {})
    );
    // Whoever awaits `ready` sees the rejection; nobody else must.
    this.#ready.promise.catch(() => {});
  }

  /**
   * Resolves once both connections to Redis are up for the first time;
   * rejects if the adapter is closed before. Publications fail until then
   * (as during an outage): await it before serving when they matter.
   *
   * @example Serving once Redis is reached
   * ```ts ignore
   * import { serve } from "@scope/ws";
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub({ url: "redis://127.0.0.1:6379" });
   * await pubsub.ready;
   * serve({ port: 8080, pubsub }, (socket) => socket.subscribe("news"));
   * ```
   */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /**
   * This node's id on the bus, random per adapter: it travels with each
   * publication, so that a node drops its own when Redis sends them back.
   *
   * @example Naming the node in logs
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * console.log(`node ${pubsub.id}`);
   * ```
   */
  get id(): string {
    return this.#bus.id;
  }

  /**
   * What was published, delivered, lost and ignored so far (a copy).
   *
   * @example Exposing the counters to monitoring
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * setInterval(() => {
   *   const { published, failed, delivered, gaps, malformed, resets } = pubsub.stats;
   *   console.log(JSON.stringify({ published, failed, delivered, gaps, malformed, resets }));
   * }, 60_000);
   * ```
   */
  get stats(): PubSubStats {
    return { ...this.#bus.stats };
  }

  /**
   * Called once by the hub: messages from other nodes go to `deliver`.
   *
   * @param deliver Where messages from other nodes go.
   *
   * @example What a hub does with it
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * pubsub.open((topic, message) => console.log(topic, message));
   * pubsub.subscribe("news");
   * ```
   */
  open(deliver: PubSubDeliver): void {
    if (this.#closing) throw new TypeError("This adapter is closed");
    this.#bus.open(deliver);
  }

  /**
   * Subscribes the topic's channel on Redis (called by the hub for a
   * topic's first local subscriber). While Redis is unreachable, the
   * subscription is made once it is back.
   *
   * @param topic The topic.
   * @returns Resolves once Redis has acknowledged the subscription (what
   *   is published from then on reaches this node); rejects if the
   *   connection dropped before (it is made again once Redis is back).
   *
   * @example What a hub calls
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * pubsub.subscribe("news"); // channel "ws:news"
   * ```
   */
  subscribe(topic: string): Promise<void> {
    if (this.#closing) {
      return Promise.reject(new TypeError("The adapter is closed"));
    }
    if (this.#topics.has(topic)) return Promise.resolve();
    this.#topics.add(topic);
    return this.#subscribeChannel(topic);
  }

  /**
   * Unsubscribes the topic's channel on Redis (called by the hub when a
   * topic loses its last local subscriber).
   *
   * @param topic The topic.
   *
   * @example What a hub calls
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * pubsub.subscribe("news");
   * pubsub.unsubscribe("news");
   * ```
   */
  unsubscribe(topic: string): void {
    if (this.#closing || !this.#topics.delete(topic)) return;
    this.#bus.forget(topic);
    // Own publications still on their way back are no longer due here.
    for (const key of this.#tags.keys()) {
      if (key.endsWith(` ${topic}`)) this.#tags.delete(key);
    }
    this.#unsubscribeChannel(topic);
  }

  /**
   * Publishes a local publication on the topic's channel. Never waits and
   * never throws: a publication that cannot be sent (Redis unreachable,
   * over `maxMessageSize` or `maxPendingBytes`, refused) is counted in
   * `stats.failed` and reported.
   *
   * @param topic The topic.
   * @param message A `string` (text) or a `Uint8Array` (binary).
   *
   * @example Publishing without a hub
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * await pubsub.ready;
   * pubsub.publish("news", "Hello, every node");
   * ```
   */
  publish(topic: string, message: string | Uint8Array): void {
    const bytes = this.#envelope(topic, message)?.bytes;
    if (bytes === undefined) return;
    this.#sent(
      bytes.length,
      this.#publisher.publish(this.#prefix + topic, asBuffer(bytes)),
    );
  }

  /**
   * The history of topics that keep one (the hub's `history` option), kept
   * in Redis for every node: the hub publishes to such topics and reads
   * them through it. A publication through it comes back to every node
   * subscribed to the topic with its position, in the order of the
   * positions, this one included.
   *
   * @example Reading a topic's history without a hub
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * await pubsub.ready;
   * const limits = { size: 100, ttl: 600_000, metaTtl: 86_400_000 };
   * const { position, publications } = await pubsub.history.read("room/1", { limit: 10 }, limits);
   * ```
   */
  readonly history: HistoryAdapter = {
    publish: (topic, message, limits, tag) =>
      this.#publishWithHistory(topic, message, limits, tag),
    read: (topic: string, query: HistoryQuery, limits: HistoryLimits) =>
      this.#store.read(topic, query, limits) as Promise<HistoryResult>,
  };

  /**
   * The presence of topics that share it (the hub's `presence` option):
   * each node's subscriber count and members per topic, in Redis, summed
   * over the nodes whose entries are alive.
   *
   * @example Who is in a room, on every node
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * await pubsub.ready;
   * const { count, members } = await pubsub.presence.get("room/1", { count: 0, members: [] });
   * ```
   */
  readonly presence: PresenceAdapter = {
    update: (topic, local) => {
      if (this.#closing) return;
      this.#presenceLocal.set(topic, local);
      this.#presenceDirty.add(topic);
      this.#presenceFlush ??= setTimeout(
        () => this.#writePresence(),
        PRESENCE_DELAY,
      );
      this.#presenceRefresh ??= setInterval(
        () => this.#refreshPresence(),
        Math.floor(this.#presenceTtl / 3),
      );
    },
    get: async (topic, local) => {
      const others = await this.#store.presenceGet(topic, this.#bus.id);
      return {
        count: others.count + local.count,
        members: [...local.members, ...others.members],
      };
    },
  };

  #publishWithHistory(
    topic: string,
    message: string | Uint8Array,
    limits: HistoryLimits,
    tag: unknown,
  ): Promise<StreamPosition> {
    const envelope = this.#envelope(topic, message);
    if (envelope === undefined) {
      return Promise.reject(new Error("The publication failed"));
    }
    let key: string | undefined;
    if (tag !== undefined) {
      key = `${envelope.sequence} ${topic}`;
      this.#tags.set(key, tag);
      if (this.#tags.size > MAX_TAGS) {
        this.#tags.delete(this.#tags.keys().next().value!);
      }
    }
    const published = this.#store.publish(
      topic,
      this.#prefix + topic,
      message,
      envelope.bytes,
      limits,
    );
    this.#sent(envelope.bytes.length, published);
    if (key !== undefined) published.catch(() => this.#tags.delete(key));
    return published;
  }

  /**
   * The envelope of a local publication, numbered; `undefined` (counted
   * and reported as failed) when it cannot be sent now.
   */
  #envelope(
    topic: string,
    message: string | Uint8Array,
  ): { bytes: Uint8Array; sequence: number } | undefined {
    const bus = this.#bus;
    // Numbered even when it fails, so that receivers count the loss too.
    const { epoch, sequence } = bus.next(topic);
    if (this.#closing) {
      this.#fail(new TypeError("The adapter is closed"));
      return undefined;
    }
    if (!this.#publisher.isReady) {
      this.#fail(new Error("Redis is not connected"));
      return undefined;
    }
    // Text has 1 to 3 UTF-8 bytes per UTF-16 unit: counted only when that
    // leaves it in doubt.
    const max = this.#maxMessageSize;
    const messageSize = typeof message !== "string"
      ? message.length
      : message.length * 3 <= max
      ? 0
      : byteLength(message);
    if (messageSize > max) {
      this.#fail(
        new RangeError(
          `A publication of ${messageSize} bytes is over maxMessageSize (${max})`,
        ),
      );
      return undefined;
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeEnvelope({
        origin: bus.id,
        epoch,
        sequence,
        topic,
        message,
      });
    } catch (error) {
      this.#fail(error);
      return undefined;
    }
    if (
      this.#pendingBytes > 0 &&
      this.#pendingBytes + bytes.length > this.#maxPendingBytes
    ) {
      this.#fail(
        new RangeError(
          `More than maxPendingBytes (${this.#maxPendingBytes}) wait for Redis`,
        ),
      );
      return undefined;
    }
    return { bytes, sequence };
  }

  /** Counts `size` bytes as pending until Redis has taken them, or failed. */
  #sent(size: number, sending: Promise<unknown>): void {
    this.#pendingBytes += size;
    sending.then(
      () => {
        this.#pendingBytes -= size;
        this.#bus.stats.published++;
        if (this.#failing && !this.#outage) this.#recovered();
      },
      (error) => {
        this.#pendingBytes -= size;
        this.#fail(error);
      },
    );
  }

  /** Writes the presence of the topics that changed. */
  #writePresence(): void {
    this.#presenceFlush = undefined;
    const topics = [...this.#presenceDirty];
    this.#presenceDirty.clear();
    for (const topic of topics) this.#writeTopicPresence(topic);
  }

  /** Writes every topic's presence again, before its entries expire. */
  #refreshPresence(): void {
    for (const topic of this.#presenceLocal.keys()) {
      if (!this.#presenceDirty.has(topic)) this.#writeTopicPresence(topic);
    }
    if (this.#presenceLocal.size === 0) {
      clearInterval(this.#presenceRefresh);
      this.#presenceRefresh = undefined;
    }
  }

  #writeTopicPresence(topic: string): void {
    const local = this.#presenceLocal.get(topic);
    if (local === undefined || !this.#publisher.isReady) return;
    const { count, members } = local();
    const id = this.#bus.id;
    const writing = count === 0
      ? this.#store.presenceRemove(topic, id)
      : this.#store.presenceUpdate(
        topic,
        id,
        count,
        members,
        this.#presenceTtl,
      );
    if (count === 0) this.#presenceLocal.delete(topic);
    writing.catch((error) =>
      this.#bus.tell(
        "error",
        `Could not write presence to Redis: ${messageOf(error)}`,
        {
          cause: error,
          error,
          limited: "presence failures",
        },
      )
    );
  }

  /**
   * Closes both connections: publications already sent get up to 2 s for
   * Redis to take them, then nothing keeps the process alive.
   *
   * @returns Resolves once the connections are closed.
   *
   * @example Closing an adapter that no server owns
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * await pubsub.close();
   * ```
   */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    // No effect once `ready` has resolved.
    this.#ready.reject(
      new Error("The adapter was closed before Redis was reached"),
    );
    this.#topics.clear();
    this.#unsettled.clear();
    this.#tags.clear();
    clearTimeout(this.#presenceFlush);
    clearInterval(this.#presenceRefresh);
    // This node's presence goes with it, rather than after presenceTtl.
    const leaving = [...this.#presenceLocal.keys()].map((topic) =>
      this.#store.presenceRemove(topic, this.#bus.id).catch(() => {})
    );
    this.#presenceLocal.clear();
    this.#subscriber.destroy();
    const publisher = this.#publisher;
    if (publisher.isReady) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(leaving).then(() => publisher.close()).catch(() => {}),
        new Promise<void>((resolve) =>
          timer = setTimeout(resolve, CLOSE_TIMEOUT)
        ),
      ]);
      clearTimeout(timer);
    }
    publisher.destroy();
    // A reconnection waiting for its next try ends with it.
    await Promise.all(this.#connecting);
  }

  #subscribeChannel(topic: string): Promise<void> {
    const subscribing = this.#subscriber.subscribe(
      this.#prefix + topic,
      this.#onMessage,
      true,
    );
    subscribing.catch((error: unknown) => {
      if (this.#closing || !this.#topics.has(topic)) return;
      this.#unsettled.add(topic);
      this.#reportUnlessDown(error, this.#subscriber);
    });
    return subscribing;
  }

  #unsubscribeChannel(topic: string): void {
    this.#subscriber.unsubscribe(this.#prefix + topic, this.#onMessage, true)
      .catch((error: unknown) => {
        if (this.#closing || this.#topics.has(topic)) return;
        this.#unsettled.add(topic);
        this.#reportUnlessDown(error, this.#subscriber);
      });
  }

  /**
   * Reports a command's failure unless its client is down: a command cut
   * off by a lost connection (a reset, a socket closed) is part of the loss,
   * which was told when the client's `error` came, before the rejection.
   */
  #reportUnlessDown(error: unknown, client: RedisClient): void {
    if (this.#closing || !client.isReady) return;
    this.#bus.report(error);
  }

  /** Follows a connection's events: losses, returns, giving up. */
  #watch(client: RedisClient, role: "publisher" | "subscriber"): void {
    /** Whether a loss (or a failed first connection) was told. */
    let reported = false;
    /** Whether this connection has been up before. */
    let connected = false;
    client.on("error", (error: unknown) => {
      if (this.#closing) return;
      if (client.isReady) {
        // The connection is still up: an error of its own.
        this.#bus.report(error);
        return;
      }
      if (this.#everReady) this.#outage = true;
      if (reported) return;
      reported = true;
      this.#bus.tell(
        "disconnected",
        `${
          this.#everReady ? "Lost the connection" : "Cannot connect"
        } to Redis (${role}): retrying; ${
          role === "publisher"
            ? "publications fail meanwhile"
            : "messages from other nodes are missed meanwhile"
        }`,
        { cause: error },
      );
    });
    client.on("terminated", (cause: unknown) => {
      if (this.#closing) return;
      this.#bus.tell(
        "gave-up",
        `Gave up reconnecting to Redis (${role}): the topics are no longer shared`,
        { cause },
      );
    });
    client.on("ready", () => {
      if (this.#closing) {
        // Connected while closing: a connection that raced `destroy()`.
        client.destroy();
        return;
      }
      if (reported) {
        reported = false;
        this.#bus.tell(
          "reconnected",
          connected
            ? `Connected to Redis (${role}) again${
              role === "subscriber" ? ": its topics are subscribed again" : ""
            }`
            : `Connected to Redis (${role})`,
        );
      }
      connected = true;
      if (role === "subscriber") this.#settle();
      else {
        // Loaded before the first publication, so that pipelined EVALSHAs
        // never all fail over to EVAL (and out of order) after a restart.
        this.#store.loadScripts().catch((error) =>
          this.#reportUnlessDown(error, client)
        );
      }
      if (!this.#publisher.isReady || !this.#subscriber.isReady) return;
      if (!this.#everReady) {
        this.#everReady = true;
        this.#ready.resolve();
      } else if (this.#outage) {
        this.#outage = false;
        this.#bus.stats.reconnects++;
      }
      if (this.#failing) this.#recovered();
    });
  }

  /** Subscribes and unsubscribes what a dropped connection left undone. */
  #settle(): void {
    const unsettled = [...this.#unsettled];
    this.#unsettled.clear();
    for (const topic of unsettled) {
      if (this.#topics.has(topic)) this.#subscribeChannel(topic);
      else this.#unsubscribeChannel(topic);
    }
  }

  /** Counts a failed publication; reports the first of a series. */
  #fail(error: unknown): void {
    this.#bus.stats.failed++;
    this.#failedSinceReport++;
    // Publications still in flight when the adapter closes are counted only.
    if (this.#failing || this.#closing) return;
    this.#failing = true;
    this.#bus.tell(
      "publish-failed",
      "Publications to Redis are failing: other nodes will miss them (counted in stats.failed)",
      { cause: error },
    );
  }

  /** Publishing works again: reports how many publications were lost. */
  #recovered(): void {
    const failed = this.#failedSinceReport;
    this.#failing = false;
    this.#failedSinceReport = 0;
    this.#bus.tell(
      "publish-recovered",
      `Publishing to Redis works again; ${failed} publication(s) failed meanwhile and reached no other node`,
    );
  }

  #receive(message: Buffer, channel: Buffer): void {
    const bus = this.#bus;
    let envelope: Envelope;
    let position: StreamPosition | undefined;
    try {
      let bytes = new Uint8Array(
        message.buffer,
        message.byteOffset,
        message.length,
      );
      if (bytes[0] === POSITIONED_MARKER) {
        const positioned = decodePositioned(bytes);
        position = positioned.position;
        bytes = positioned.envelope;
      }
      envelope = decodeEnvelope(bytes, undefined, this.#maxMessageSize)!;
      if (this.#prefix + envelope.topic !== channel.toString()) {
        throw new TypeError(`It is for topic "${envelope.topic}"`);
      }
    } catch (error) {
      bus.malformed(
        new TypeError(
          `Ignored a message on Redis channel "${channel}": ${
            (error as Error).message
          }`,
        ),
      );
      return;
    }
    // A message that crossed an UNSUBSCRIBE is not due. The hub copies a
    // binary message it keeps, so none holds on to the reply's buffer.
    if (!this.#topics.has(envelope.topic)) return;
    if (position === undefined) {
      bus.receive(envelope);
      return;
    }
    // Its position orders it (the hub finds what is missing), this node's
    // own publications too.
    let tag: unknown;
    if (envelope.origin === bus.id) {
      const key = `${envelope.sequence} ${envelope.topic}`;
      tag = this.#tags.get(key);
      this.#tags.delete(key);
    }
    bus.deliver(envelope, position, tag);
  }
}

/** The bytes as node-redis sends them, without a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
