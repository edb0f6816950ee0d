/**
 * Helpers of the chat example's tests (tests/examples_test.ts,
 * tests/cluster_example_test.ts): a Deno `LiveClient` that records what it
 * is told, the chat's connection URLs, and the chat page in Chromium
 * driven through its element ids.
 */

import { onEveryEvent } from "./_live_events.ts";
import {
  LiveClient,
  type LiveClientEventMap,
  type LiveClientOptions,
} from "../src/live/client.js";
import type { RoomCount, RoomEvent } from "../examples/chat.ts";
import { type launchChromium, STEP_LIMIT } from "./_peer_helpers.ts";
import { waitFor } from "./_util.ts";

type EventType = keyof LiveClientEventMap;
/** One event a client told, in order. */
export type Told = {
  [K in EventType]: { type: K; detail: LiveClientEventMap[K]["detail"] };
}[EventType];

/** Quick retries with a fixed jitter. */
export const FAST: LiveClientOptions = {
  initialDelay: 20,
  maxDelay: 200,
  random: () => 0.5,
};

/** As the chat page: 4400 and 4409 (a refused name or room) are final. */
export const CHAT: LiveClientOptions = { ...FAST, stopCodes: [4400, 4409] };

/**
 * A `LiveClient` that records every event it tells, in order; disposing it
 * closes it and waits for its last `disconnected`.
 */
export class Recorder extends LiveClient implements AsyncDisposable {
  readonly told: Told[] = [];

  constructor(url: string, options: LiveClientOptions = FAST) {
    super(url, options);
    onEveryEvent(this, (type, detail) => {
      this.told.push({ type, detail } as Told);
    });
  }

  /** The details of the `type` events told so far. */
  all<K extends EventType>(type: K): LiveClientEventMap[K]["detail"][] {
    return this.told.filter((event) => event.type === type).map((event) =>
      event.detail
    ) as LiveClientEventMap[K]["detail"][];
  }

  /** Waits until `check` holds of what was told. */
  until(check: (told: Told[]) => boolean, what: string): Promise<void> {
    return waitFor(() => check(this.told), what, STEP_LIMIT);
  }

  /** Waits for the `n`th `type` event (1 = the first) and returns it. */
  async nth<K extends EventType>(
    type: K,
    n: number,
  ): Promise<LiveClientEventMap[K]["detail"]> {
    await this.until(
      () => this.all(type).length >= n,
      `${type} event number ${n}`,
    );
    return this.all(type)[n - 1];
  }

  /** What was published to a room and reached this client, in order. */
  room(room: string): RoomEvent[] {
    return this.all("publication")
      .filter((p) => p.topic === `room/${room}`)
      .map((p) => JSON.parse(p.data as string));
  }

  /** The room counts published to `rooms`, in order. */
  counts(): RoomCount[] {
    return this.all("publication")
      .filter((p) => p.topic === "rooms")
      .map((p) => JSON.parse(p.data as string));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const open = this.state === "connecting" || this.state === "connected";
    this.close();
    if (open) {
      await this.until(
        () => this.all("disconnected").some((d) => !d.willRetry),
        "the last disconnected event",
      );
    }
  }
}

/** Who connects to the chat: a secret, and a name and room to join. */
export interface Who {
  session: string;
  name?: string;
  room?: string;
}

/** A secret the chat takes (16-64 letters, digits, - or _), per label. */
export function session(label: string): string {
  return `test-session-${label}`.replace(/[^A-Za-z0-9_-]/g, "_")
    .padEnd(16, "_");
}

/** The chat's live protocol URL for `who`, on `origin` (http or ws). */
export function chatUrl(origin: string, who: Who): string {
  const url = new URL("/live", origin.replace(/^http/, "ws"));
  url.searchParams.set("session", who.session);
  if (who.name !== undefined) url.searchParams.set("name", who.name);
  if (who.room !== undefined) url.searchParams.set("room", who.room);
  return url.href;
}

/**
 * A member of a room, connected with Deno's LiveClient as the chat page
 * does: subscribed to `rooms` and to the room (its last lines, then
 * recovering; the room's name lower-cased, as the server does). Resolves
 * once subscribed to both.
 */
export async function member(
  origin: string,
  name: string,
  room: string,
  options: LiveClientOptions = CHAT,
): Promise<Recorder> {
  const client = new Recorder(
    chatUrl(origin, { session: session(name), name, room }),
    options,
  );
  try {
    client.subscribe("rooms");
    client.subscribe(`room/${room.trim().toLowerCase()}`, {
      last: 50,
      recover: true,
    });
    await client.until(
      () =>
        client.all("subscribed").length >= 2 ||
        client.all("error").length > 0 ||
        client.all("disconnected").some((d) => !d.willRetry),
      `${name} in ${room}`,
    );
    const refused = client.all("disconnected").find((d) => !d.willRetry);
    if (refused) {
      throw new Error(`${name} was refused: ${refused.code} ${refused.reason}`);
    }
    const error = client.all("error")[0];
    if (error) throw new Error(`${name} got an error: ${error.message}`);
    return client;
  } catch (error) {
    await client[Symbol.asyncDispose]();
    throw error;
  }
}

// --- The page in Chromium -------------------------------------------------------

type Browser = Awaited<ReturnType<typeof launchChromium>>;
/** A Chromium tab. */
export type Page = Awaited<ReturnType<Browser["newPage"]>>;

/** Waits until an element matching `selector` (with `text`) is there. */
export function see(
  page: Page,
  selector: string,
  text?: string | RegExp,
): Promise<void> {
  return page.locator(selector, text === undefined ? {} : { hasText: text })
    .first().waitFor({ timeout: STEP_LIMIT });
}

/** Opens the chat page at `origin` and joins `room` as `name`. */
export async function openChat(
  page: Page,
  origin: string,
  name: string,
  room = "lobby",
): Promise<void> {
  const response = await page.goto(`${origin}/`);
  if (response?.status() !== 200) {
    throw new Error(`The page answered ${response?.status()}`);
  }
  await see(page, "body[data-connection=online]");
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join");
  await see(page, "#room-name", new RegExp(`^${room}$`));
  // Its own join: the room's history has reached the page.
  await see(page, "#log .notice", `${name} joined`);
}

/** Says a line on the page (typed, then Send). */
export async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.click("#send");
}

/** The lines the page shows, as `name: text`, in order. */
export function linesOf(page: Page): Promise<string[]> {
  return page.locator("#log .message").evaluateAll((items) =>
    items.map((item) =>
      `${item.querySelector(".name")?.textContent}: ${
        item.querySelector(".text")?.textContent
      }`
    )
  );
}

/** The notices the page shows, in order. */
export function noticesOf(page: Page): Promise<string[]> {
  return page.locator("#log .notice").allTextContents();
}

/**
 * Collects a page's console errors and uncaught exceptions; `expected`
 * leaves out the messages a test causes on purpose (Chromium logs each
 * refused WebSocket connection as an error).
 */
export function watchConsole(
  page: Page,
  name: string,
  errors: string[],
  expected?: RegExp,
): void {
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (expected?.test(message.text())) return;
    errors.push(`${name}: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`));
}

/** What Chromium logs for a WebSocket connection that failed. */
export const FAILED_CONNECTION = /^WebSocket connection to .* failed/;
