/**
 * The events a `LiveClient` tells (src/live/client.d.ts), listened to all
 * at once: what the live tests record or wait for.
 */
import type { LiveClient, LiveClientEventMap } from "../src/live/client.js";

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
