// `RedisPubSub`: topics shared between processes and machines over Redis
// PUB/SUB, through node-redis (its core package, `@redis/client`).

import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import { byteLength } from "../protocol/_bytes.ts";
import { DEFAULT_MAX_MESSAGE_SIZE } from "../protocol/message_assembler.ts";
import { BusNode } from "./_bus.ts";
import { decodeEnvelope, encodeEnvelope, type Envelope } from "./_envelope.ts";
import type { PubSubAdapter, PubSubStats } from "./topic_hub.ts";

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
 *   onError: (error) => console.warn("bus:", error),
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
   * Told about connection losses, failed publications (once when they
   * start failing, then how many failed once they work again), messages
   * found missing, numbering resets, and malformed or too big messages on
   * the channels (ignored).
   * Reports of one kind go out once a second at most; `stats` counts them
   * all. Default: `console.error`.
   */
  onError?: (error: unknown) => void;
}

const DEFAULT_URL = "redis://127.0.0.1:6379";
const DEFAULT_PREFIX = "ws:";
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** How long `close()` waits for Redis to acknowledge what was published. */
const CLOSE_TIMEOUT = 2000;

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
 * missing (`stats.gaps`); both are reported to `onError`.
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
    this.#prefix = prefix;
    this.#maxPendingBytes = maxPendingBytes;
    this.#maxMessageSize = maxMessageSize;
    this.#bus = new BusNode(options.onError, "RedisPubSub");
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
  open(deliver: (topic: string, message: string | Uint8Array) => void): void {
    if (this.#closing) throw new TypeError("This adapter is closed");
    this.#bus.open(deliver);
  }

  /**
   * Subscribes the topic's channel on Redis (called by the hub for a
   * topic's first local subscriber). While Redis is unreachable, the
   * subscription is made once it is back.
   *
   * @param topic The topic.
   *
   * @example What a hub calls
   * ```ts ignore
   * import { RedisPubSub } from "@scope/ws/redis";
   *
   * const pubsub = new RedisPubSub();
   * pubsub.subscribe("news"); // channel "ws:news"
   * ```
   */
  subscribe(topic: string): void {
    if (this.#closing || this.#topics.has(topic)) return;
    this.#topics.add(topic);
    this.#subscribeChannel(topic);
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
    const bus = this.#bus;
    // Numbered even when it fails, so that receivers count the loss too.
    const { epoch, sequence } = bus.next(topic);
    const publisher = this.#publisher;
    if (this.#closing) {
      this.#fail(new TypeError("The adapter is closed"));
      return;
    }
    if (!publisher.isReady) {
      this.#fail(new Error("Redis is not connected"));
      return;
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
      return;
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
      return;
    }
    const size = bytes.length;
    if (
      this.#pendingBytes > 0 &&
      this.#pendingBytes + size > this.#maxPendingBytes
    ) {
      this.#fail(
        new RangeError(
          `More than maxPendingBytes (${this.#maxPendingBytes}) wait for Redis`,
        ),
      );
      return;
    }
    this.#pendingBytes += size;
    publisher.publish(
      this.#prefix + topic,
      Buffer.from(bytes.buffer, bytes.byteOffset, size),
    ).then(
      () => {
        this.#pendingBytes -= size;
        bus.stats.published++;
        if (this.#failing && !this.#outage) this.#recovered();
      },
      (error) => {
        this.#pendingBytes -= size;
        this.#fail(error);
      },
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
    this.#subscriber.destroy();
    const publisher = this.#publisher;
    if (publisher.isReady) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        publisher.close().catch(() => {}),
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

  #subscribeChannel(topic: string): void {
    this.#subscriber.subscribe(this.#prefix + topic, this.#onMessage, true)
      .catch((error: unknown) => {
        if (this.#closing || !this.#topics.has(topic)) return;
        this.#unsettled.add(topic);
        // A connection loss was reported as such; anything else is news.
        if (this.#subscriber.isReady) this.#bus.report(error);
      });
  }

  #unsubscribeChannel(topic: string): void {
    this.#subscriber.unsubscribe(this.#prefix + topic, this.#onMessage, true)
      .catch((error: unknown) => {
        if (this.#closing || this.#topics.has(topic)) return;
        this.#unsettled.add(topic);
        if (this.#subscriber.isReady) this.#bus.report(error);
      });
  }

  /** Follows a connection's events: losses, returns, giving up. */
  #watch(client: RedisClient, role: "publisher" | "subscriber"): void {
    let reported = false;
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
      this.#bus.report(
        new Error(
          `${
            this.#everReady ? "Lost the connection" : "Cannot connect"
          } to Redis (${role}): retrying; ${
            role === "publisher"
              ? "publications fail meanwhile"
              : "messages from other nodes are missed meanwhile"
          }`,
          { cause: error },
        ),
      );
    });
    client.on("terminated", (cause: unknown) => {
      if (this.#closing) return;
      this.#bus.report(
        new Error(
          `Gave up reconnecting to Redis (${role}): the topics are no longer shared`,
          { cause },
        ),
      );
    });
    client.on("ready", () => {
      if (this.#closing) {
        // Connected while closing: a connection that raced `destroy()`.
        client.destroy();
        return;
      }
      reported = false;
      if (role === "subscriber") this.#settle();
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
    this.#bus.report(
      new Error(
        "Publications to Redis are failing: other nodes will miss them (counted in stats.failed)",
        { cause: error },
      ),
    );
  }

  /** Publishing works again: reports how many publications were lost. */
  #recovered(): void {
    const failed = this.#failedSinceReport;
    this.#failing = false;
    this.#failedSinceReport = 0;
    this.#bus.report(
      new Error(
        `Publishing to Redis works again; ${failed} publication(s) failed meanwhile and reached no other node`,
      ),
    );
  }

  #receive(message: Buffer, channel: Buffer): void {
    const bus = this.#bus;
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(
        new Uint8Array(message.buffer, message.byteOffset, message.length),
        undefined,
        this.#maxMessageSize,
      )!;
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
    if (this.#topics.has(envelope.topic)) bus.receive(envelope);
  }
}
