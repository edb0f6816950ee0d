// `BroadcastChannelPubSub`: topics shared between the Web Workers of one
// process over a `BroadcastChannel`, with no dependency.

import { clearImmediate, setImmediate } from "node:timers";
import { BusNode } from "./_bus.ts";
import { decodeEnvelope, encodeEnvelope, type Envelope } from "./_envelope.ts";
import type { PubSubEvent } from "./pubsub_event.ts";
import type { PubSubAdapter, PubSubStats } from "./topic_hub.ts";

/**
 * Options for {@linkcode BroadcastChannelPubSub}.
 *
 * @example Two groups of workers that do not share topics
 * ```ts
 * import { BroadcastChannelPubSub } from "@scope/ws";
 *
 * const pubsub = new BroadcastChannelPubSub({
 *   name: "chat-cluster",
 *   onEvent: (event) => console.warn(`bus ${event.kind}: ${event.message}`),
 * });
 * await pubsub.close();
 * ```
 */
export interface BroadcastChannelPubSubOptions {
  /**
   * The channel's name: adapters with the same name share their topics.
   * Default `"@scope/ws"`.
   */
  name?: string;
  /**
   * Told about losses and bad input, one {@linkcode PubSubEvent} each: a
   * publication that could not be posted (`publish-failed`), messages
   * found missing (`gap`), a malformed message on the channel (ignored).
   * Reports of one kind go out once a second at most; `stats` counts them
   * all. Without `onEvent` and `onError`, each is logged as one line.
   */
  onEvent?: (event: PubSubEvent) => void;
  /**
   * Told the same as `onEvent`, each as an `Error` whose message is the
   * event's (as before `onEvent` existed).
   */
  onError?: (error: unknown) => void;
}

const DEFAULT_NAME = "@scope/ws";

/**
 * Shares topics between Web Workers of one process: each worker runs
 * `serve()` with its own adapter of the same `name` (on one port with
 * `reusePort`, which needs `--unstable-net`), and a publication on any of
 * them reaches the subscribers of every worker. `BroadcastChannel` is built
 * into Deno and needs no flag; it does not reach other processes (use
 * `RedisPubSub` from `@scope/ws/redis` for those).
 *
 * Every worker receives every publication and drops those to topics it has
 * no subscriber for. **What is guaranteed: at most once, in order per
 * publisher**; a node never gets its own publications back. Deno's
 * `BroadcastChannel` is lossy: all the channels of a process share a ring
 * of 256 messages, and a worker that falls further behind silently misses
 * the oldest. So the publications of one turn of the event loop go out as
 * one message (a burst of thousands is then a handful), and messages are
 * numbered per publisher and topic, so that what is lost anyway is counted
 * in {@linkcode BroadcastChannelPubSub.stats} (`gaps`) and reported.
 *
 * @example Each worker serves the same port and shares the topics
 * ```ts ignore
 * // worker.ts, started N times with
 * // new Worker(new URL("./worker.ts", import.meta.url), { type: "module" })
 * import { BroadcastChannelPubSub, serve } from "@scope/ws";
 *
 * serve({ port: 8080, reusePort: true, pubsub: new BroadcastChannelPubSub() }, (socket) => {
 *   socket.subscribe("chat");
 *   socket.readable.pipeTo(new WritableStream({
 *     write: (message) => void socket.publish("chat", message),
 *   }));
 * });
 * ```
 */
export class BroadcastChannelPubSub implements PubSubAdapter {
  #bus: BusNode;
  #name: string;
  #channel: BroadcastChannel | undefined;
  /** The topics with local subscribers. */
  #topics = new Set<string>();
  #wants = (topic: string) => this.#topics.has(topic);
  /** Envelopes published in this turn of the event loop, not yet posted. */
  #batch: Uint8Array[] | undefined;
  #timer: ReturnType<typeof setImmediate> | undefined;
  #closed = false;

  /**
   * Makes an adapter; its channel opens when a hub starts using it.
   *
   * @param options The channel's name and the error callback.
   */
  constructor(options: BroadcastChannelPubSubOptions = {}) {
    const name = options.name ?? DEFAULT_NAME;
    if (typeof name !== "string") {
      throw new TypeError("The name option must be a string");
    }
    this.#name = name;
    this.#bus = new BusNode(options, "BroadcastChannelPubSub");
  }

  /**
   * This node's id on the channel, random per adapter: it travels with each
   * publication, so that a node can drop its own.
   *
   * @example Naming the node in logs
   * ```ts
   * import assert from "node:assert/strict";
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * const label = `node ${pubsub.id}`; // 16 base64url characters
   * assert.match(label, /^node [\w-]{16}$/);
   * await pubsub.close();
   * ```
   */
  get id(): string {
    return this.#bus.id;
  }

  /**
   * What was published, delivered, lost and ignored so far (a copy).
   *
   * @example Logging losses
   * ```ts
   * import assert from "node:assert/strict";
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * const { gaps, malformed } = pubsub.stats;
   * assert.equal(`${gaps} lost, ${malformed} ignored`, "0 lost, 0 ignored");
   * await pubsub.close();
   * ```
   */
  get stats(): PubSubStats {
    return { ...this.#bus.stats };
  }

  /**
   * Opens the channel; called once by the hub.
   *
   * @param deliver Where messages from other workers go.
   *
   * @example What a hub does with it
   * ```ts
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * pubsub.open((topic, message) => console.log(topic, message));
   * await pubsub.close();
   * ```
   */
  open(deliver: (topic: string, message: string | Uint8Array) => void): void {
    if (this.#closed) throw new TypeError("This adapter is closed");
    this.#bus.open(deliver);
    const channel = this.#channel = new BroadcastChannel(this.#name);
    channel.onmessage = (event) => this.#receive(event.data);
    channel.onmessageerror = () =>
      this.#bus.malformed(
        new TypeError("A message on the BroadcastChannel could not be read"),
      );
  }

  /**
   * Starts taking the topic's messages from other workers.
   *
   * @param topic The topic that gained its first local subscriber.
   *
   * @example What a hub calls
   * ```ts
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * pubsub.subscribe("news");
   * await pubsub.close();
   * ```
   */
  subscribe(topic: string): void {
    this.#topics.add(topic);
  }

  /**
   * Stops taking the topic's messages.
   *
   * @param topic The topic that lost its last local subscriber.
   *
   * @example What a hub calls
   * ```ts
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * pubsub.subscribe("news");
   * pubsub.unsubscribe("news");
   * await pubsub.close();
   * ```
   */
  unsubscribe(topic: string): void {
    this.#topics.delete(topic);
    this.#bus.forget(topic);
  }

  /**
   * Posts a local publication to the other workers, with the others of
   * this turn of the event loop once it ends. Never throws: a failure is
   * counted (`stats.failed`) and reported.
   *
   * @param topic The topic.
   * @param message A `string` (text) or a `Uint8Array` (binary).
   *
   * @example Publishing without a hub
   * ```ts
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * pubsub.open(() => {});
   * pubsub.publish("news", "Hello, workers");
   * await pubsub.close();
   * ```
   */
  publish(topic: string, message: string | Uint8Array): void {
    const bus = this.#bus;
    let envelope: Uint8Array;
    try {
      if (this.#channel === undefined) {
        throw new TypeError(
          this.#closed ? "This adapter is closed" : "This adapter is not open",
        );
      }
      const { epoch, sequence } = bus.next(topic);
      envelope = encodeEnvelope({
        origin: bus.id,
        epoch,
        sequence,
        topic,
        message,
      });
    } catch (error) {
      this.#failed(1, error);
      return;
    }
    if (this.#batch === undefined) {
      this.#batch = [];
      this.#timer = setImmediate(this.#flush);
    }
    this.#batch.push(envelope);
  }

  /**
   * Posts what was published in this turn of the event loop as one message
   * (`setImmediate` runs after the turn, with no timer's delay): Deno's
   * channel holds 256 messages for a slow receiver, then drops the oldest,
   * so fewer, larger messages lose less in a burst.
   */
  #flush = () => {
    const batch = this.#batch;
    this.#batch = undefined;
    if (batch === undefined) return;
    clearImmediate(this.#timer);
    try {
      if (this.#channel === undefined) {
        throw new TypeError("This adapter is closed");
      }
      this.#channel.postMessage(batch.length === 1 ? batch[0] : batch);
      this.#bus.stats.published += batch.length;
    } catch (error) {
      this.#failed(batch.length, error);
    }
  };

  #failed(count: number, error: unknown): void {
    this.#bus.stats.failed += count;
    this.#bus.tell(
      "publish-failed",
      `${count} publication(s) could not be posted to the other workers`,
      { cause: error, limited: "failed publications" },
    );
  }

  /**
   * Closes the channel: nothing more is sent or received, and the worker
   * is not kept alive by it.
   *
   * @returns Resolves at once.
   *
   * @example Closing an adapter that no server owns
   * ```ts
   * import { BroadcastChannelPubSub } from "@scope/ws";
   *
   * const pubsub = new BroadcastChannelPubSub();
   * await pubsub.close();
   * ```
   */
  close(): Promise<void> {
    // What was published before the close still goes out.
    this.#flush();
    this.#closed = true;
    this.#channel?.close();
    this.#channel = undefined;
    this.#topics.clear();
    return Promise.resolve();
  }

  #receive(data: unknown): void {
    if (Array.isArray(data)) {
      if (data.length === 0) {
        this.#bus.malformed(
          new TypeError("A message on the BroadcastChannel is an empty array"),
        );
      }
      for (const item of data) this.#receiveOne(item);
    } else {
      this.#receiveOne(data);
    }
  }

  #receiveOne(data: unknown): void {
    const bus = this.#bus;
    let envelope: Envelope | undefined;
    try {
      if (!(data instanceof Uint8Array)) {
        throw new TypeError(
          `A message on the BroadcastChannel is not bytes but ${
            describe(data)
          }`,
        );
      }
      envelope = decodeEnvelope(data, this.#wants);
    } catch (error) {
      bus.malformed(error);
      return;
    }
    if (envelope !== undefined) bus.receive(envelope);
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") {
    return `an object (${value.constructor?.name ?? "no prototype"})`;
  }
  return `a ${typeof value}`;
}
