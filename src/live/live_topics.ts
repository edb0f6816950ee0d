// The server side of the live wire protocol v1: a handler that speaks it on
// a socket of this module, over the socket's topic hub (history, recovery
// from a position, presence), with authorization hooks and limits.

import { CloseCode } from "../protocol/constants.ts";
import { internalsOf } from "../pubsub/_internals.ts";
import { report } from "../pubsub/_report.ts";
import {
  closeWith,
  Socket,
  type SocketCore,
  type WebSocketConnection,
} from "../socket/socket.ts";
import type { SharedMessage } from "../pubsub/_shared_message.ts";
import type { StreamPosition } from "../pubsub/history.ts";
import type {
  PresenceMember,
  Subscriber,
  Subscriptions,
} from "../pubsub/topic_hub.ts";
import {
  connectedEvent,
  DEFAULT_MAX_TOPIC_LENGTH,
  type ErrorCode,
  errorEvent,
  gapEvent,
  okEvent,
  parseCommand,
  presenceEvent,
  PROTOCOL_VERSION,
  publicationEvent,
  type PublishCommand,
  type SubscribeCommand,
  subscribedEvent,
  unsubscribedEvent,
} from "./_protocol.ts";

/**
 * Options of {@linkcode LiveTopics}. `Info` is what the application tells
 * of each connection (`live.handle(socket, { info })`): the hooks get it,
 * and presence lists it beside the client's id.
 *
 * @example Rooms anyone may join; lines go out with the sender's name
 * ```ts
 * import type { LiveTopicsOptions } from "@scope/ws";
 *
 * const options: LiveTopicsOptions<{ name: string }> = {
 *   canSubscribe: (_socket, topic) => topic.startsWith("room/"),
 *   canPublish: (_socket, topic, message, info) =>
 *     topic.startsWith("room/") && typeof message === "string" &&
 *     JSON.stringify({ name: info?.name, text: message }),
 *   maxTopicsPerSocket: 10,
 * };
 * ```
 */
export interface LiveTopicsOptions<Info = unknown> {
  /**
   * Whether the connection may subscribe to `topic` (and ask for its
   * presence): `true` or `false`, or a promise of one. A refusal is
   * answered with an `error` of code `forbidden`. Default: every topic.
   */
  canSubscribe?: (
    socket: WebSocketConnection,
    topic: string,
    info: Info | undefined,
  ) => boolean | Promise<boolean>;
  /**
   * Whether the connection may publish `message` to `topic`: `false`
   * refuses (an `error` of code `forbidden`), `true` publishes the message
   * as sent, a `string` or `Uint8Array` publishes that instead (the
   * sender's name added, say); or a promise of one of these. Default:
   * clients may not publish at all.
   */
  canPublish?: (
    socket: WebSocketConnection,
    topic: string,
    message: string | Uint8Array,
    info: Info | undefined,
  ) =>
    | boolean
    | string
    | Uint8Array
    | Promise<boolean | string | Uint8Array>;
  /**
   * The most topics one connection may subscribe to at once; one more is
   * answered with an `error` of code `too-many-topics`. Default 100.
   */
  maxTopicsPerSocket?: number;
  /**
   * The longest topic a command may name, in UTF-16 code units; longer is
   * answered with an `error` of code `bad-request`. Default 256.
   */
  maxTopicLength?: number;
  /**
   * Told when a hook throws, rejects or returns what it may not (the
   * command is then answered with an `error` of code `unavailable`, which
   * tells the client nothing more), and of other faults while handling a
   * command. Default: logs them with `console.error`.
   */
  onError?: (error: unknown) => void;
}

/**
 * Options of {@linkcode LiveTopics.handle}.
 *
 * @example
 * ```ts ignore
 * live.handle(socket, { info: { name: "Ada" } });
 * ```
 */
export interface LiveHandleOptions<Info = unknown> {
  /**
   * What the application tells of this connection (a user's name and id):
   * handed to the hooks, and listed in the presence of the topics it
   * subscribes to. Anything JSON can carry; a `TypeError` otherwise.
   */
  info?: Info;
}

/** The default of `maxTopicsPerSocket`. */
const DEFAULT_MAX_TOPICS = 100;
/** What an `unavailable` error says: the fault itself goes to `onError`. */
const UNAVAILABLE = "The server could not handle this command";
/** What a hook that failed gives back, its `error` answer sent. */
const FAILED = Symbol("failed");
/** Where the JSON of a publication is kept on its shared message. */
const PUBLICATION_KIND = {};
/** Where the client module is, beside this file (file: or https:). */
const CLIENT_MODULE = new URL("./client.js", import.meta.url);

/** One connection that speaks the protocol. */
interface Session {
  socket: Socket;
  core: SocketCore;
  hub: Subscriptions;
  info: unknown;
  /** Who it is in presence: `{ client, info }`. */
  member: PresenceMember;
  /** Whether `connect` was answered. */
  connected: boolean;
  /** Whether it is over: refused, or its socket closed. */
  over: boolean;
  /** Its subscriptions, by topic. */
  topics: Map<string, LiveSubscription>;
}

/**
 * One connection's subscription to one topic, as the hub knows it: its
 * publications go out in the protocol's JSON, made once per publication
 * for every live subscriber (`derive`), under the socket's backpressure
 * policy.
 */
class LiveSubscription implements Subscriber {
  readonly #session: Session;
  readonly member: PresenceMember;

  constructor(session: Session) {
    this.#session = session;
    this.member = session.member;
  }

  offer(shared: SharedMessage): boolean {
    return this.#session.core.offer(
      shared.derive(PUBLICATION_KIND, publicationOf),
    );
  }

  gap(topic: string, position: StreamPosition): void {
    this.#session.socket.send(gapEvent(topic, position));
  }
}

/** The `pub` event of a publication (made once per publication). */
function publicationOf(shared: SharedMessage): string {
  return publicationEvent(shared.topic, shared.message, shared.position);
}

/**
 * The server side of the live topics protocol, opt-in per socket: the
 * sockets given to {@linkcode LiveTopics.handle} speak it with the
 * `LiveClient` of `@scope/ws/live-client` (a page or Deno), over the
 * socket's topic hub. Clients subscribe to topics, from the last position
 * they saw (getting what they missed, or told they could not) or for the
 * latest N publications; they publish when `canPublish` lets them, and ask
 * who is in a topic (presence, with the `info` given to `handle`).
 *
 * Each connection's commands are handled one at a time, in order: the next
 * starts once the previous is answered, so a client's publications queued
 * while it was offline reach their topics after its resubscriptions. A
 * malformed command is answered with an `error` of code `bad-request` and
 * the connection stays open; a connection whose first command is not
 * `connect` with version 1 gets an `error`, then a close with 1008. A hook
 * that throws is reported to `onError` and answered `unavailable`.
 *
 * Publications from the hub (`server.publish`, `hub.publish`, a client's
 * `pub`) reach live subscribers as `pub` events, the JSON made once per
 * publication for all of them; a client's own publication reaches it too
 * when it subscribes to the topic. Live subscriptions are the handler's,
 * not the socket's: `socket.subscriptions` does not list them (see
 * {@linkcode LiveTopics.subscriptions}), and they end when the socket
 * closes.
 *
 * @example A chat: rooms with history, lines sent with the sender's name
 * ```ts ignore
 * import { LiveTopics, serve } from "@scope/ws";
 *
 * const live: LiveTopics<{ name: string }> = new LiveTopics({
 *   canSubscribe: (_socket, topic) => topic.startsWith("room/"),
 *   canPublish: (socket, topic, message, info) =>
 *     live.isSubscribed(socket, topic) && typeof message === "string" &&
 *     JSON.stringify({ name: info?.name, text: message }),
 * });
 * serve({
 *   port: 8080,
 *   history: { size: 100, ttl: 600_000 },
 *   fetch: (request) =>
 *     new URL(request.url).pathname === "/live-client.js"
 *       ? LiveTopics.clientScript(request)
 *       : new Response("Not found", { status: 404 }),
 * }, (socket) => {
 *   const name = new URL(socket.request.url).searchParams.get("name") ?? "guest";
 *   return live.handle(socket, { info: { name } });
 * });
 * ```
 */
export class LiveTopics<Info = unknown> {
  #canSubscribe: NonNullable<LiveTopicsOptions<Info>["canSubscribe"]>;
  #canPublish: NonNullable<LiveTopicsOptions<Info>["canPublish"]>;
  #maxTopics: number;
  #maxTopicLength: number;
  #onError: (error: unknown) => void;
  #sessions = new WeakMap<WebSocketConnection, Session>();

  /**
   * Makes a handler; it keeps no socket until {@linkcode LiveTopics.handle}.
   *
   * @param options Hooks and limits; a `TypeError` or `RangeError` for an
   * invalid one.
   */
  constructor(options: LiveTopicsOptions<Info> = {}) {
    this.#canSubscribe = hook(options.canSubscribe, "canSubscribe") ??
      (() => true);
    this.#canPublish = hook(options.canPublish, "canPublish") ??
      (() => false);
    this.#maxTopics = limit(
      options.maxTopicsPerSocket,
      "maxTopicsPerSocket",
      DEFAULT_MAX_TOPICS,
    );
    this.#maxTopicLength = limit(
      options.maxTopicLength,
      "maxTopicLength",
      DEFAULT_MAX_TOPIC_LENGTH,
    );
    this.#onError = hook(options.onError, "onError") ??
      ((error) => console.error("Live topics error:", error));
  }

  /**
   * Speaks the live protocol on `socket` until it closes: reads its
   * `readable` (which must not be locked) and answers each command. The
   * topics are those of the hub the socket was made with: `serve()`'s, or
   * the `hub` given to `upgradeWebSocket()`. When the socket closes, its
   * subscriptions end (presence follows).
   *
   * @param socket A socket of `serve()` or `upgradeWebSocket()`.
   * @param options What the application tells of this connection.
   * @returns Resolves once the socket has closed, however it closed (even
   * while a hook still decides on one of its commands).
   * @throws {TypeError} The socket is not one of this module or has no
   * hub, its `readable` is locked, or `info` is not JSON.
   *
   * @example With `upgradeWebSocket()` on `Deno.serve`
   * ```ts ignore
   * import { LiveTopics, TopicHub, upgradeWebSocket } from "@scope/ws";
   *
   * const hub = new TopicHub({ history: { size: 100, ttl: 600_000 } });
   * const live = new LiveTopics();
   * Deno.serve({ port: 8080 }, (request) => {
   *   const { socket, response } = upgradeWebSocket(request, { hub });
   *   live.handle(socket);
   *   return response;
   * });
   * ```
   */
  handle(
    socket: WebSocketConnection,
    options: LiveHandleOptions<Info> = {},
  ): Promise<void> {
    if (!(socket instanceof Socket)) {
      throw new TypeError(
        "Live topics need a socket of serve() or upgradeWebSocket()",
      );
    }
    const core = internalsOf(socket) as SocketCore;
    const hub = core.hub;
    if (hub === undefined) {
      throw new TypeError(
        "This socket has no topic hub: pass { hub } to upgradeWebSocket()",
      );
    }
    const info = options.info;
    try {
      JSON.stringify(info);
    } catch (error) {
      throw new TypeError("The info must be JSON-serializable", {
        cause: error,
      });
    }
    const reader = socket.readable.getReader();
    const session: Session = {
      socket,
      core,
      hub,
      info,
      member: { client: "", info },
      connected: false,
      over: false,
      topics: new Map(),
    };
    this.#sessions.set(socket, session);
    void this.#run(session, reader);
    // A command may be waiting on a hook when the socket closes: the
    // subscriptions end now, not when that command is answered.
    const end = () => this.#end(session);
    return socket.closed.then(end, end);
  }

  /**
   * Whether the connection on `socket` subscribes to `topic` through the
   * live protocol (a subscription is counted once it is answered).
   *
   * @param socket A socket given to {@linkcode LiveTopics.handle}.
   * @param topic The topic.
   * @returns `false` for a socket this handler does not handle.
   *
   * @example Only members of a room may speak in it
   * ```ts ignore
   * const live: LiveTopics = new LiveTopics({
   *   canPublish: (socket, topic) => live.isSubscribed(socket, topic),
   * });
   * ```
   */
  isSubscribed(socket: WebSocketConnection, topic: string): boolean {
    return this.#sessions.get(socket)?.topics.has(topic) ?? false;
  }

  /**
   * The topics the connection on `socket` subscribes to through the live
   * protocol, in the order it subscribed.
   *
   * @param socket A socket given to {@linkcode LiveTopics.handle}.
   * @returns `[]` for a socket this handler does not handle.
   *
   * @example
   * ```ts ignore
   * console.log(live.subscriptions(socket)); // ["room/lobby"]
   * ```
   */
  subscriptions(socket: WebSocketConnection): string[] {
    const topics = this.#sessions.get(socket)?.topics;
    return topics === undefined ? [] : [...topics.keys()];
  }

  /**
   * Ends a connection's subscription from the server side: the client is
   * sent `{"t":"unsubscribed","topic":…,"reason":…}` and does not
   * resubscribe.
   *
   * @param socket A socket given to {@linkcode LiveTopics.handle}.
   * @param topic The topic.
   * @param reason Says why, for the client.
   * @returns Whether the connection was subscribed.
   *
   * @example Removing someone from a room
   * ```ts ignore
   * live.unsubscribe(socket, "room/lobby", "Removed by a moderator");
   * ```
   */
  unsubscribe(
    socket: WebSocketConnection,
    topic: string,
    reason = "",
  ): boolean {
    const session = this.#sessions.get(socket);
    if (session === undefined || !this.#leave(session, topic)) return false;
    socket.send(unsubscribedEvent(topic, { reason }));
    return true;
  }

  /**
   * The live client module (`LiveClient`, the file `client.js` of this
   * package) as a response, for a server to serve it to its pages: with
   * `content-type: text/javascript; charset=utf-8`, an `ETag` and
   * `cache-control: no-cache` (browsers keep it and revalidate, so a new
   * version is seen at once). Given the request, a matching
   * `If-None-Match` gets `304` and a `HEAD` no body. The file is read once,
   * from beside this module (a `file:` or `https:` URL, so the process
   * needs read or net permission for it).
   *
   * @param request The request being answered, if any.
   * @returns The response.
   *
   * @example Serving it beside the WebSocket endpoint
   * ```ts ignore
   * import { LiveTopics, serve } from "@scope/ws";
   *
   * const live = new LiveTopics();
   * serve({
   *   port: 8080,
   *   fetch: (request) =>
   *     new URL(request.url).pathname === "/live-client.js"
   *       ? LiveTopics.clientScript(request)
   *       : new Response("Not found", { status: 404 }),
   * }, (socket) => live.handle(socket));
   * // In the page: import { LiveClient } from "/live-client.js";
   * ```
   */
  static async clientScript(request?: Request): Promise<Response> {
    const { body, etag } = await clientModule();
    const headers = {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "no-cache",
      etag,
    };
    const tags = request?.headers.get("if-none-match");
    if (tags != null && matchesTag(tags, etag)) {
      return new Response(null, { status: 304, headers });
    }
    return new Response(request?.method === "HEAD" ? null : body, {
      headers,
    });
  }

  async #run(
    session: Session,
    reader: ReadableStreamDefaultReader<string | Uint8Array>,
  ): Promise<void> {
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        // Read on after a refusal, so that the closing handshake completes.
        if (!session.over) await this.#command(session, value);
      }
    } catch {
      // The connection failed: `closed` tells how.
    } finally {
      reader.releaseLock();
      this.#end(session);
    }
  }

  /** Handles one frame; never throws. */
  async #command(session: Session, frame: string | Uint8Array) {
    const parsed = parseCommand(frame, {
      maxTopicLength: this.#maxTopicLength,
    });
    if (!session.connected) {
      this.#connect(session, parsed);
      return;
    }
    if (!parsed.ok) {
      send(session, errorEvent("bad-request", parsed.message, parsed.id));
      return;
    }
    const command = parsed.command;
    const id = command.t === "connect" ? undefined : command.id;
    try {
      switch (command.t) {
        case "connect":
          send(session, errorEvent("bad-request", "Already connected"));
          return;
        case "sub":
          return await this.#subscribe(session, command);
        case "unsub":
          if (!this.#leave(session, command.topic)) {
            return refuse(session, "not-subscribed", command);
          }
          send(session, unsubscribedEvent(command.topic, { id }));
          return;
        case "pub":
          return await this.#publish(session, command);
        case "presence":
          return await this.#presence(session, command.id, command.topic);
      }
    } catch (error) {
      report(this.#onError, error);
      send(session, errorEvent("unavailable", UNAVAILABLE, id));
    }
  }

  /** The first command: `connect` with version 1, or the end. */
  #connect(session: Session, parsed: ReturnType<typeof parseCommand>) {
    const command = parsed.ok ? parsed.command : undefined;
    if (command?.t === "connect" && command.v === PROTOCOL_VERSION) {
      const client = crypto.getRandomValues(new Uint8Array(12)).toBase64({
        alphabet: "base64url",
      });
      session.member.client = client;
      session.connected = true;
      send(session, connectedEvent(client));
      return;
    }
    const version = command?.t === "connect";
    send(
      session,
      errorEvent(
        "bad-request",
        version
          ? `Unsupported protocol version ${command.v}: this server speaks ${PROTOCOL_VERSION}`
          : `The first command must be {"t":"connect","v":${PROTOCOL_VERSION}}`,
        parsed.ok ? (command as { id?: number }).id : parsed.id,
      ),
    );
    // RFC 6455 §7.4.1: 1008, a message that violates the server's policy.
    closeWith(
      session.socket,
      CloseCode.PolicyViolation,
      version ? "Unsupported protocol version" : "Expected a connect command",
    );
    this.#end(session);
  }

  async #subscribe(session: Session, command: SubscribeCommand) {
    const { id, topic, since, last } = command;
    if (session.topics.has(topic)) {
      send(
        session,
        errorEvent(
          "bad-request",
          `Already subscribed to ${JSON.stringify(topic)}`,
          id,
        ),
      );
      return;
    }
    if (session.topics.size >= this.#maxTopics) {
      send(
        session,
        errorEvent(
          "too-many-topics",
          `At most ${this.#maxTopics} topics per connection`,
          id,
        ),
      );
      return;
    }
    const allowed = await this.#ask(
      session,
      id,
      "canSubscribe",
      () => this.#canSubscribe(session.socket, topic, session.info as Info),
    );
    if (allowed === FAILED || session.over) return;
    if (allowed !== true) return refuse(session, "forbidden", command);
    const subscription = new LiveSubscription(session);
    session.topics.set(topic, subscription);
    const query = since !== undefined
      ? { since }
      : last !== undefined
      ? { limit: last }
      : {};
    let answered = false;
    try {
      // `subscribed` first, then the publications it brings (recovered or
      // the last N), then those published meanwhile, then the live ones.
      await session.hub.subscribeFrom(
        subscription,
        topic,
        query,
        ({ recovered, position }) => {
          answered = true;
          send(session, subscribedEvent(id, topic, recovered, position));
        },
      );
    } catch (error) {
      report(this.#onError, error);
      // Answered already: the client has its `subscribed`, and keeps it.
      if (answered) return;
      this.#leave(session, topic);
      send(session, errorEvent("unavailable", UNAVAILABLE, id));
    }
  }

  async #publish(session: Session, command: PublishCommand) {
    const { id, topic, data } = command;
    const decision = await this.#ask(
      session,
      id,
      "canPublish",
      () => this.#canPublish(session.socket, topic, data, session.info as Info),
    );
    if (decision === FAILED) return;
    if (decision === false) return refuse(session, "forbidden", command);
    // Published even when the socket closed while the hook decided: the
    // command came whole, and only its answer is lost.
    session.hub.publish(topic, decision === true ? data : decision);
    if (id !== undefined) send(session, okEvent(id));
  }

  async #presence(session: Session, id: number, topic: string) {
    // Who is in a topic is for those who may be in it.
    if (!session.topics.has(topic)) {
      const allowed = await this.#ask(
        session,
        id,
        "canSubscribe",
        () => this.#canSubscribe(session.socket, topic, session.info as Info),
      );
      if (allowed === FAILED) return;
      if (allowed !== true) {
        return refuse(session, "forbidden", { t: "presence", id, topic });
      }
    }
    const presence = await session.hub.presence(topic);
    send(session, presenceEvent(id, topic, presence));
  }

  /**
   * Runs a hook. What it throws or rejects, and a result of the wrong
   * type, goes to `onError` and is answered `unavailable` (`FAILED`).
   */
  async #ask<T>(
    session: Session,
    id: number | undefined,
    name: "canSubscribe" | "canPublish",
    call: () => T | Promise<T>,
  ): Promise<T | typeof FAILED> {
    try {
      const result = await call();
      if (
        typeof result === "boolean" ||
        (name === "canPublish" &&
          (typeof result === "string" || result instanceof Uint8Array))
      ) {
        return result;
      }
      throw new TypeError(
        `${name} returned ${describe(result)}: it must return ${
          name === "canPublish"
            ? "a boolean, a string or a Uint8Array"
            : "a boolean"
        }`,
      );
    } catch (error) {
      report(this.#onError, error);
      send(session, errorEvent("unavailable", UNAVAILABLE, id));
      return FAILED;
    }
  }

  /** Ends a subscription; true if there was one. */
  #leave(session: Session, topic: string): boolean {
    const subscription = session.topics.get(topic);
    if (subscription === undefined) return false;
    session.topics.delete(topic);
    session.hub.unsubscribe(subscription, topic);
    return true;
  }

  /** The connection is over: every subscription ends. */
  #end(session: Session): void {
    session.over = true;
    for (const topic of [...session.topics.keys()]) {
      this.#leave(session, topic);
    }
  }
}

function send(session: Session, event: string): void {
  session.socket.send(event);
}

/** Answers a command with a refusal that names its topic. */
function refuse(
  session: Session,
  code: ErrorCode,
  { t, id, topic }: { t: string; id?: number; topic: string },
): void {
  const name = JSON.stringify(topic);
  const message = code === "not-subscribed"
    ? `Not subscribed to ${name}`
    : t === "pub"
    ? `Not allowed to publish to ${name}`
    : t === "presence"
    ? `Not allowed to see the presence of ${name}`
    : `Not allowed to subscribe to ${name}`;
  send(session, errorEvent(code, message, id));
}

function hook<T>(value: T | undefined, name: string): T | undefined {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(`The ${name} option must be a function`);
  }
  return value;
}

function limit(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw new RangeError(`The ${name} option must be an integer >= 1`);
  }
  return value as number;
}

function describe(value: unknown): string {
  return value === null || value === undefined
    ? String(value)
    : typeof value === "object"
    ? "an object"
    : `a ${typeof value}`;
}

// --- The client module --------------------------------------------------------

/** The client module, as `clientScript()` serves it. */
interface ClientModule {
  body: Uint8Array<ArrayBuffer>;
  /** A strong validator of its bytes. */
  etag: string;
}

let client: Promise<ClientModule> | undefined;

/** The client module's bytes and their tag, read once. */
function clientModule(): Promise<ClientModule> {
  return client ??= readClient().catch((error) => {
    client = undefined; // tried again on the next request
    throw error;
  });
}

async function readClient(): Promise<ClientModule> {
  const response = await fetch(CLIENT_MODULE);
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(
      `Could not read the live client module at ${CLIENT_MODULE} (${response.status})`,
    );
  }
  const body = await response.bytes();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
  const tag = digest.subarray(0, 16).toBase64({
    alphabet: "base64url",
    omitPadding: true,
  });
  return { body, etag: `"${tag}"` };
}

/** Whether an `If-None-Match` header names `etag` (RFC 9110 §13.1.2). */
function matchesTag(header: string, etag: string): boolean {
  return header.split(",").some((tag) => {
    tag = tag.trim();
    return tag === "*" || tag === etag || tag === `W/${etag}`;
  });
}
