/**
 * The events a `LiveClient` tells (src/live/client.d.ts), listened to all
 * at once, and a client whose events a test waits for one at a time: what
 * the live tests record or wait for.
 */
import {
  LiveClient,
  type LiveClientEventMap,
  type LiveClientOptions,
} from "../src/live/client.js";
import { Inbox, within } from "./_peer_helpers.ts";

/** Every event type of a `LiveClient`. */
export const LIVE_EVENTS = [
  "connected",
  "disconnected",
  "subscribed",
  "publication",
  "gap",
  "unsubscribed",
  "error",
] as const satisfies readonly (keyof LiveClientEventMap)[];

/** One of them. */
export type LiveEvent = typeof LIVE_EVENTS[number];

/** Calls `listener` with every event `client` tells, in order. */
export function onEveryEvent(
  client: LiveClient,
  listener: (type: LiveEvent, detail: unknown) => void,
): void {
  for (const type of LIVE_EVENTS) {
    client.addEventListener(type, (event) => listener(type, event.detail));
  }
}

/** One of a `LiveClient`'s event types, and what its event carries. */
export type EventType = keyof LiveClientEventMap;
export type Detail<K extends EventType> = LiveClientEventMap[K]["detail"];

/**
 * A `LiveClient` whose events a test takes one at a time, per type;
 * disposing it closes it and waits for its last `disconnected`.
 */
export class WatchedClient extends LiveClient implements AsyncDisposable {
  /** Every event's type, in order. */
  readonly log: string[] = [];
  #inboxes = new Map<string, Inbox<unknown>>();
  #ended = Promise.withResolvers<void>();

  constructor(url: string, options?: LiveClientOptions) {
    super(url, options);
    onEveryEvent(this, (type, detail) => {
      this.log.push(type);
      this.#inbox(type).push(detail);
    });
    this.addEventListener("disconnected", ({ detail }) => {
      if (!detail.willRetry) this.#ended.resolve();
    });
  }

  #inbox(type: string): Inbox<unknown> {
    let inbox = this.#inboxes.get(type);
    if (!inbox) this.#inboxes.set(type, inbox = new Inbox());
    return inbox;
  }

  /** The next `type` event's detail. */
  next<K extends EventType>(type: K): Promise<Detail<K>> {
    return this.answer(
      this.#inbox(type).next() as Promise<Detail<K>>,
      `a ${type} event`,
    );
  }

  /** Waits for `promise`, `what` the test waits for, within the step limit. */
  protected answer<T>(promise: Promise<T>, what: string): Promise<T> {
    return within(promise, what);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const open = this.state === "connecting" || this.state === "connected";
    this.close();
    if (open) await within(this.#ended.promise, "the last disconnected event");
  }
}
