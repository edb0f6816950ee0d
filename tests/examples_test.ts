/**
 * The browser examples (examples/chat.ts, examples/ticker.ts): their
 * protocols over real TCP with Deno's WebSocket, their pages in headless
 * Chromium (two tabs of the chat; the ticker's picks), and their command
 * line (one command starts each and prints the address).
 */

import assert from "node:assert/strict";
import type { WebSocketServer } from "../mod.ts";
import { type ChatEvent, startChatServer } from "../examples/chat.ts";
import {
  startTickerServer,
  SYMBOLS,
  type TickerEvent,
} from "../examples/ticker.ts";
import { launchChromium, STEP_LIMIT, within } from "./_peer_helpers.ts";
import { RawClient, upgradeRequest } from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import { concat, waitFor } from "./_util.ts";
import { TestClient } from "./_ws_client.ts";

const quiet = { port: 0, hostname: "127.0.0.1", onListen() {} };

function wsUrl(server: WebSocketServer): string {
  return `ws://127.0.0.1:${server.addr.port}/`;
}

function origin(server: WebSocketServer): string {
  return `http://127.0.0.1:${server.addr.port}`;
}

/** Sends a JSON command. */
function command(client: TestClient, value: unknown): void {
  client.ws.send(JSON.stringify(value));
}

/** The next chat event of `type`, skipping others (room lists, say). */
function nextChat<T extends ChatEvent["type"]>(
  client: TestClient,
  type: T,
): Promise<Extract<ChatEvent, { type: T }>> {
  return client.nextJson<ChatEvent>(
    (event) => event.type === type,
    `a "${type}" event`,
  ) as Promise<Extract<ChatEvent, { type: T }>>;
}

/**
 * The rooms a chat page knows: the list it got on connecting, with every
 * change since applied, by name.
 */
function roomsSeen(client: TestClient): { room: string; members: number }[] {
  const rooms = new Map<string, number>();
  for (const message of client.received) {
    if (typeof message !== "string") continue;
    const event = JSON.parse(message) as ChatEvent;
    if (event.type === "rooms") {
      rooms.clear();
      for (const { room, members } of event.rooms) rooms.set(room, members);
    } else if (event.type === "room") {
      if (event.members > 0) rooms.set(event.room, event.members);
      else rooms.delete(event.room);
    }
  }
  return [...rooms].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([room, members]) => ({ room, members }));
}

/** The next ticker event that `accept` takes. */
function nextTicker(
  client: TestClient,
  accept: (event: TickerEvent) => boolean,
  what: string,
): Promise<TickerEvent> {
  return client.nextJson<TickerEvent>(accept, what);
}

/** Collects a page's console errors and uncaught exceptions. */
function watchConsole(
  page: {
    on(event: "console", listener: (m: ConsoleLike) => void): unknown;
    on(event: "pageerror", listener: (e: Error) => void): unknown;
  },
  name: string,
  errors: string[],
): void {
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`${name}: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`${name}: ${error.message}`));
}

interface ConsoleLike {
  type(): string;
  text(): string;
}

/**
 * Run in the page before its own script: records every message a
 * WebSocket receives in `receivedMessages`, so that a test sees what
 * crossed the network rather than what the page drew.
 */
const RECORD_MESSAGES = `
  const Native = WebSocket;
  const received = [];
  Object.defineProperty(globalThis, "receivedMessages", { value: received });
  globalThis.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("message", (event) => received.push(String(event.data)));
    }
  };
`;

// --- Chat over WebSockets ------------------------------------------------------

Deno.test("chat: a room hears joins with the member count, a message reaches everyone in the room and no one outside it, and a leave or close is announced", async () => {
  await using server = startChatServer(quiet);
  await using ada = await TestClient.open(wsUrl(server));
  await using bob = await TestClient.open(wsUrl(server));
  await using cy = await TestClient.open(wsUrl(server));
  // Each page first gets the rooms in use: none yet.
  assert.deepEqual(await nextChat(ada, "rooms"), { type: "rooms", rooms: [] });

  command(ada, { type: "join", name: "Ada", room: "lobby" });
  assert.deepEqual(await nextChat(ada, "joined"), {
    type: "joined",
    room: "lobby",
    name: "Ada",
    members: 1,
  });
  command(bob, { type: "join", name: " Bob ", room: "Lobby" });
  assert.deepEqual(await nextChat(bob, "joined"), {
    type: "joined",
    room: "lobby",
    name: "Bob",
    members: 2,
  });
  assert.deepEqual(await nextChat(ada, "presence"), {
    type: "presence",
    event: "join",
    room: "lobby",
    name: "Bob",
    members: 2,
  });
  command(cy, { type: "join", name: "Cy", room: "garden" });
  await nextChat(cy, "joined");
  // Every page follows the rooms and their counts: the list it got on
  // connecting (empty here), then each change.
  const bothRooms = [
    { room: "garden", members: 1 },
    { room: "lobby", members: 2 },
  ];
  await cy.until(
    () => JSON.stringify(roomsSeen(cy)) === JSON.stringify(bothRooms),
    "the room list with both rooms",
  );
  await ada.until(
    () => JSON.stringify(roomsSeen(ada)) === JSON.stringify(bothRooms),
    "the first page's room list with both rooms",
  );
  assert.equal(server.subscriberCount("room/lobby"), 2);
  assert.equal(server.subscriberCount("rooms"), 3);

  const text = "Hello <b>lobby</b> ✓";
  command(bob, { type: "say", text });
  for (const client of [ada, bob]) {
    const message = await nextChat(client, "message");
    assert.equal(message.name, "Bob");
    assert.equal(message.room, "lobby");
    assert.equal(message.text, text);
  }
  // Cy's next message is its own: nothing from the lobby came before it.
  command(cy, { type: "say", text: "Anyone?" });
  const own = await nextChat(cy, "message");
  assert.equal(own.text, "Anyone?");
  assert.ok(
    !cy.received.some((m) => typeof m === "string" && m.includes(text)),
  );

  // Leaving: the one who left is told, the room hears it with the count.
  command(ada, { type: "leave" });
  assert.deepEqual(await nextChat(ada, "left"), {
    type: "left",
    room: "lobby",
  });
  assert.deepEqual(await nextChat(bob, "presence"), {
    type: "presence",
    event: "leave",
    room: "lobby",
    name: "Ada",
    members: 1,
  });
  // Joining another room leaves the current one.
  command(cy, { type: "join", name: "Cy", room: "lobby" });
  assert.equal((await nextChat(bob, "presence")).name, "Cy");
  assert.equal(server.subscriberCount("room/garden"), 0);
  assert.deepEqual(server.topics().sort(), ["room/lobby", "rooms"]);

  // Closing the connection is a leave too.
  cy.ws.close(1000);
  await within(cy.closed, "Cy's close");
  assert.deepEqual(await nextChat(bob, "presence"), {
    type: "presence",
    event: "leave",
    room: "lobby",
    name: "Cy",
    members: 1,
  });
  assert.equal(server.subscriberCount("room/lobby"), 1);
});

Deno.test("chat: a malformed command gets an error and the connection stays open", async () => {
  await using server = startChatServer(quiet);
  await using client = await TestClient.open(wsUrl(server));
  const cases: [string | Uint8Array, string][] = [
    ["not json", "Commands are JSON text"],
    [new Uint8Array([1, 2]), "Commands are JSON text"],
    ['"a string"', "Unknown command"],
    ['{"type":"dance"}', "Unknown command"],
    ['{"type":"say","text":"Hi"}', "Join a room first"],
    ['{"type":"join","name":"","room":"lobby"}', "A name is 1-24 characters"],
    [
      '{"type":"join","name":"Ada","room":"a/b"}',
      "A room is 1-24 letters, digits, - or _",
    ],
    [
      '{"type":"join","name":"Ada","room":"room/../x"}',
      "A room is 1-24 letters, digits, - or _",
    ],
  ];
  for (const [data, message] of cases) {
    client.ws.send(data);
    assert.deepEqual(await nextChat(client, "error"), {
      type: "error",
      message,
    }, String(data));
  }
  command(client, { type: "join", name: "Ada", room: "ok" });
  assert.equal((await nextChat(client, "joined")).members, 1);
  command(client, { type: "say", text: "x".repeat(501) });
  assert.equal(
    (await nextChat(client, "error")).message,
    "A message is 1-500 characters",
  );
});

Deno.test("chat: a name with control, format or line separator characters is refused, and the page stays out of the room", async () => {
  await using server = startChatServer(quiet);
  await using client = await TestClient.open(wsUrl(server));
  const names = [
    "Ada\u202E", // right-to-left override: turns what follows around
    "A\u200Bda", // zero-width space
    "Ad\u200Da", // zero-width joiner
    "A\uFEFFda", // zero-width no-break space (a byte order mark)
    "Ada\u2028Bob", // line separator
    "Ada\u2029Bob", // paragraph separator
    "Ada\u0007", // a control character
    "Ada\uD800", // a lone surrogate
    "Ada\uE000", // private use
  ];
  for (const name of names) {
    command(client, { type: "join", name, room: "lobby" });
    assert.deepEqual(await nextChat(client, "error"), {
      type: "error",
      message:
        "A name cannot hold control, format or line separator characters",
    }, JSON.stringify(name));
  }
  assert.equal(server.subscriberCount("room/lobby"), 0);
  // Letters of any script, marks and spaces between words are names.
  command(client, { type: "join", name: "Zoë Ünal 李", room: "lobby" });
  assert.equal((await nextChat(client, "joined")).name, "Zoë Ünal 李");
});

Deno.test("chat: a name already used in the room, in any case or width, is refused and the page stays where it was", async () => {
  await using server = startChatServer(quiet);
  await using ada = await TestClient.open(wsUrl(server));
  await using bob = await TestClient.open(wsUrl(server));
  command(ada, { type: "join", name: "Ada", room: "lobby" });
  await nextChat(ada, "joined");
  command(bob, { type: "join", name: "Bob", room: "garden" });
  await nextChat(bob, "joined");
  for (const name of ["Ada", "ada", "ADA", "\uFF21\uFF44\uFF41"]) {
    command(bob, { type: "join", name, room: "lobby" });
    assert.deepEqual(await nextChat(bob, "error"), {
      type: "error",
      message: `The name ${name} is taken in lobby`,
    });
  }
  // Bob is still Bob, in the garden; the lobby has Ada alone.
  assert.ok(bob.ws.readyState === WebSocket.OPEN);
  assert.equal(server.subscriberCount("room/garden"), 1);
  assert.equal(server.subscriberCount("room/lobby"), 1);
  // The same name in another room is another person.
  command(ada, { type: "join", name: "Bob", room: "lobby" });
  assert.equal((await nextChat(ada, "joined")).name, "Bob");
  // Ada renamed herself Bob: "Ada" is free in the lobby again.
  command(bob, { type: "join", name: "ADA", room: "lobby" });
  assert.deepEqual(await nextChat(bob, "joined"), {
    type: "joined",
    room: "lobby",
    name: "ADA",
    members: 2,
  });
  // A member may change the case of its own name.
  command(bob, { type: "join", name: "Ada", room: "lobby" });
  assert.equal((await nextChat(bob, "joined")).name, "Ada");
});

/**
 * A raw page of the chat: it joins `room` as `name`, then reads everything
 * it is sent as fast as it comes; `closed` resolves with the close code if
 * the server closes it, null at the end of TCP.
 */
async function rawChatPage(port: number, name: string, room: string) {
  const client = await RawClient.open(port);
  await client.write(frame(1, JSON.stringify({ type: "join", name, room })));
  // Quiet for long stretches: no read deadline while it is left open.
  client.timeout = 600_000;
  const closed = (async () => {
    while (true) {
      const read = await client.readFrame().catch(() => null);
      if (read === null) return null;
      if (read.opcode === 8) return (read.payload[0] << 8) | read.payload[1];
    }
  })();
  return { client, closed };
}

Deno.test("chat: 64 joins in one TCP write, with 300 pages each in its own room, close no page: each hears the changes", async () => {
  await using server = startChatServer(quiet);
  const port = server.addr.port;
  const pages = [];
  try {
    for (let i = 0; i < 300; i++) {
      pages.push(await rawChatPage(port, `Page ${i}`, `room-of-page-${i}`));
    }
    await using reader = await TestClient.open(wsUrl(server));
    const burster = await rawChatPage(port, "Burst", "start");
    pages.push(burster);
    await waitFor(
      () => server.subscriberCount("rooms") === 302,
      "every page connected",
    );
    await waitFor(
      () => server.topics().length === 302,
      "every page in its room",
    );
    // One write: 64 joins, each leaving the room before.
    const joins = Array.from(
      { length: 64 },
      (_, i) =>
        frame(
          1,
          JSON.stringify({ type: "join", name: "Burst", room: `b${i}` }),
        ),
    );
    await burster.client.write(concat(joins));
    await waitFor(
      () =>
        server.subscriberCount("room/b63") === 1 ||
        server.subscriberCount("rooms") < 302,
      "the last join, or a page's close",
    );
    // No page was closed: a socket leaves its topics as its close starts.
    assert.equal(server.subscriberCount("rooms"), 302, "pages left open");
    // The reader that was left open sees the last join.
    const expected = [
      { room: "b63", members: 1 },
      ...Array.from({ length: 300 }, (_, i) => ({
        room: `room-of-page-${i}`,
        members: 1,
      })),
    ].sort((a, b) => a.room < b.room ? -1 : a.room > b.room ? 1 : 0);
    await reader.until(
      () => JSON.stringify(roomsSeen(reader)) === JSON.stringify(expected),
      "the room list after the burst",
    );
    assert.equal(reader.ws.readyState, WebSocket.OPEN);
    assert.equal(server.subscriberCount("rooms"), 302);
    for (const [i, page] of pages.entries()) {
      const closed = await Promise.race([page.closed, "open" as const]);
      assert.equal(closed, "open", `page ${i}`);
    }
  } finally {
    for (const page of pages) page.client.close();
    await Promise.all(pages.map((page) => page.closed));
  }
});

Deno.test("chat: the page is served at /, other paths get 404, and a WebSocket from another site's page gets 403", async () => {
  await using server = startChatServer(quiet);
  const page = await fetch(`${origin(server)}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(await page.text(), /<title>Chat<\/title>/);
  const missing = await fetch(`${origin(server)}/favicon.ico`);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();

  await using raw = await RawClient.connect(server.addr.port);
  await raw.write(
    upgradeRequest(server.addr.port, { Origin: "http://evil.example" }),
  );
  assert.equal((await within(raw.readHead(), "the answer")).status, 403);
  // The page's own origin is welcome.
  await using _same = await RawClient.open(server.addr.port, {
    Origin: origin(server),
  });
});

// --- Ticker over WebSockets ------------------------------------------------------

Deno.test("ticker: a client gets quotes only for the symbols it subscribed to, in sequence, and none after unsubscribed", async () => {
  await using server = startTickerServer(quiet);
  await using client = await TestClient.open(wsUrl(server));
  const hello = await nextTicker(
    client,
    (e) => e.type === "symbols",
    "symbols",
  );
  assert.deepEqual(
    hello.type === "symbols" && hello.symbols.map((s) => s.symbol),
    SYMBOLS.map((s) => s.symbol),
  );
  const picked = new Set(["EURUSD", "BTCUSD"]);
  for (const symbol of picked) {
    command(client, { type: "subscribe", symbol });
    const subscribed = await nextTicker(
      client,
      (e) => e.type === "subscribed",
      `${symbol} subscribed`,
    );
    assert.ok(subscribed.type === "subscribed");
    assert.equal(subscribed.symbol, symbol);
    assert.ok(subscribed.history.length >= 1);
  }
  assert.deepEqual(server.topics().sort(), ["quote/BTCUSD", "quote/EURUSD"]);

  /** Quotes from now on, by symbol. */
  const quotes = async (count: number, symbols: Set<string>) => {
    const seen = new Map<string, number[]>();
    while ([...symbols].some((s) => (seen.get(s)?.length ?? 0) < count)) {
      const event = await nextTicker(
        client,
        (e) => e.type === "quote",
        "a quote",
      );
      assert.ok(event.type === "quote");
      assert.ok(symbols.has(event.symbol), `a quote for ${event.symbol}`);
      seen.set(event.symbol, [...seen.get(event.symbol) ?? [], event.seq]);
    }
    return seen;
  };
  const first = await quotes(5, picked);
  // Nothing dropped: each symbol's quotes come one after the other.
  for (const seqs of first.values()) {
    seqs.forEach((seq, i) => i > 0 && assert.equal(seq, seqs[i - 1] + 1));
  }

  command(client, { type: "unsubscribe", symbol: "BTCUSD" });
  await nextTicker(
    client,
    (e) => e.type === "unsubscribed" && e.symbol === "BTCUSD",
    "BTCUSD unsubscribed",
  );
  assert.equal(server.subscriberCount("quote/BTCUSD"), 0);
  // After the answer, only EURUSD: a BTCUSD quote would fail `quotes`.
  await quotes(5, new Set(["EURUSD"]));
});

Deno.test("ticker: an unknown symbol or command gets an error", async () => {
  await using server = startTickerServer(quiet);
  await using client = await TestClient.open(wsUrl(server));
  for (
    const [data, message] of [
      ['{"type":"subscribe","symbol":"NOPE"}', "Unknown symbol"],
      ['{"type":"subscribe","symbol":"quote/EURUSD"}', "Unknown symbol"],
      ['{"type":"buy","symbol":"EURUSD"}', "Unknown command"],
      ["null", "Unknown command"],
      ["{", "Unknown command"],
    ]
  ) {
    client.ws.send(data);
    assert.deepEqual(
      await nextTicker(client, (e) => e.type === "error", "an error"),
      { type: "error", message },
      data,
    );
  }
  assert.deepEqual(server.topics(), []);
});

// --- The pages in Chromium ---------------------------------------------------

Deno.test({
  name:
    "Chromium: two tabs of the chat page see each other join, exchange messages (shown as text) and see a leave",
  async fn() {
    await using server = startChatServer(quiet);
    const errors: string[] = [];
    const browser = await launchChromium();
    try {
      const context = await browser.newContext();
      const tabs = [];
      for (const name of ["Ada", "Bob"]) {
        const page = await context.newPage();
        watchConsole(page, name, errors);
        assert.equal((await page.goto(`${origin(server)}/`))?.status(), 200);
        assert.equal(await page.title(), "Chat");
        await page.locator("#status", { hasText: /^open$/ }).waitFor({
          timeout: STEP_LIMIT,
        });
        await page.fill("#name", name);
        await page.fill("#room", "lobby");
        await page.click("#join");
        await page.locator("#room-name", { hasText: /^lobby$/ }).waitFor({
          timeout: STEP_LIMIT,
        });
        tabs.push(page);
      }
      const [ada, bob] = tabs;
      const waitForText = (
        page: typeof ada,
        selector: string,
        text: string | RegExp,
      ) =>
        page.locator(selector, { hasText: text }).first().waitFor({
          timeout: STEP_LIMIT,
        });

      // Ada sees Bob join, and both see 2 members.
      await waitForText(ada, "#log .notice", "Bob joined");
      await waitForText(ada, "#members", /^2$/);
      await waitForText(bob, "#members", /^2$/);
      await waitForText(ada, "#rooms li[data-room=lobby] .count", /^2$/);

      // Bob's message reaches Ada as text, not markup.
      const text = "<img src=x onerror=alert(1)> Hello Ada ✓";
      await bob.fill("#text", text);
      await bob.click("#send");
      await waitForText(ada, "#log .message .text", "Hello Ada ✓");
      assert.equal(
        await ada.locator("#log .message .text").last().textContent(),
        text,
      );
      assert.equal(
        await ada.locator("#log .message .name").last().textContent(),
        "Bob",
      );
      assert.equal(await ada.locator("#log img").count(), 0);
      // Bob sees his own message too: the room has it.
      await waitForText(bob, "#log .message .text", "Hello Ada ✓");

      await ada.fill("#text", "Hi Bob");
      await ada.press("#text", "Enter");
      await waitForText(bob, "#log .message .text", /^Hi Bob$/);

      // Bob closes his tab: Ada hears it, and the count drops.
      await bob.close();
      await waitForText(ada, "#log .notice", "Bob left");
      await waitForText(ada, "#members", /^1$/);
      await waitForText(ada, "#rooms li[data-room=lobby] .count", /^1$/);
      assert.equal(server.subscriberCount("room/lobby"), 1);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name:
    "Chromium: the ticker page receives and shows updates only for the symbols it picked, and none for a symbol once unpicked",
  async fn() {
    await using server = startTickerServer(quiet);
    const errors: string[] = [];
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      watchConsole(page, "ticker", errors);
      // Records every message the page's WebSocket receives, before the
      // page's own script runs: what crossed the network, not what it drew.
      await page.addInitScript({ content: RECORD_MESSAGES });
      assert.equal((await page.goto(`${origin(server)}/`))?.status(), 200);
      assert.equal(await page.title(), "Price ticker");
      await page.locator("#status", { hasText: /^open$/ }).waitFor({
        timeout: STEP_LIMIT,
      });
      await page.locator("#picker input").nth(SYMBOLS.length - 1).waitFor({
        timeout: STEP_LIMIT,
      });
      /** The quotes the page received, by symbol. */
      const receivedQuotes = () =>
        page.evaluate(() => {
          const received = (globalThis as unknown as {
            receivedMessages: string[];
          }).receivedMessages;
          return received.map((text) => JSON.parse(text)).filter((event) =>
            event.type === "quote"
          ).map((event) => event.symbol as string);
        });
      /** Waits until the row of `symbol` shows at least `count` updates. */
      const updates = (symbol: string, count: number) =>
        page.waitForFunction(
          `Number(document.querySelector('tr[data-symbol="${symbol}"] .updates')?.textContent) >= ${count}`,
          undefined,
          { timeout: STEP_LIMIT },
        );

      await page.check("#picker input[value=EURUSD]");
      await page.check("#picker input[value=BTCUSD]");
      await updates("EURUSD", 5);
      await updates("BTCUSD", 5);
      assert.deepEqual(
        await page.locator("#quotes tbody tr").evaluateAll((rows) =>
          rows.map((row) => row.getAttribute("data-symbol"))
        ),
        ["EURUSD", "BTCUSD"],
      );
      // The sparklines are drawn, and the rate counts what arrives.
      assert.ok(
        ((await page.locator("tr[data-symbol=EURUSD] polyline").getAttribute(
          "points",
        )) ?? "").split(" ").length >= 5,
      );
      await page.waitForFunction(
        `Number(document.getElementById("rate").textContent) > 0`,
        undefined,
        { timeout: STEP_LIMIT },
      );
      const before = await receivedQuotes();
      assert.deepEqual(
        [...new Set(before)].sort(),
        ["BTCUSD", "EURUSD"],
        "quotes arrived for the picked symbols only",
      );

      // Unpick BTCUSD: its row goes, and once the server's answer is in, no
      // BTCUSD quote arrives while EURUSD goes on.
      await page.uncheck("#picker input[value=BTCUSD]");
      await page.locator("tr[data-symbol=BTCUSD]").waitFor({
        state: "detached",
        timeout: STEP_LIMIT,
      });
      await page.waitForFunction(
        () =>
          (globalThis as unknown as { receivedMessages: string[] })
            .receivedMessages.includes(
              JSON.stringify({ type: "unsubscribed", symbol: "BTCUSD" }),
            ),
        undefined,
        { timeout: STEP_LIMIT },
      );
      const atAnswer = await page.evaluate(() =>
        (globalThis as unknown as { receivedMessages: string[] })
          .receivedMessages.indexOf(
            JSON.stringify({ type: "unsubscribed", symbol: "BTCUSD" }),
          )
      );
      const shown = Number(
        await page.locator("tr[data-symbol=EURUSD] .updates").textContent(),
      );
      await updates("EURUSD", shown + 5);
      const after = await page.evaluate(
        (from) =>
          (globalThis as unknown as { receivedMessages: string[] })
            .receivedMessages.slice(from + 1).map((text) => JSON.parse(text))
            .filter((event) => event.type === "quote").map((event) =>
              event.symbol as string
            ),
        atAnswer,
      );
      assert.ok(after.length >= 5);
      assert.deepEqual([...new Set(after)], ["EURUSD"]);
      assert.equal(server.subscriberCount("quote/BTCUSD"), 0);
      assert.equal(server.subscriberCount("quote/EURUSD"), 1);
      assert.deepEqual(await page.locator("#quotes tbody tr").count(), 1);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  },
});

// --- The command line ----------------------------------------------------------

for (
  const [task, file, title] of [
    ["chat", "examples/chat.ts", "Chat"],
    ["ticker", "examples/ticker.ts", "Price ticker"],
  ] as const
) {
  Deno.test(`deno task ${task}: one command starts it, prints the address to open, and Ctrl+C stops it`, async () => {
    // What the task runs (deno.json), on a free port given by the flag.
    const tasks = JSON.parse(
      await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    ).tasks;
    assert.equal(
      tasks[task],
      `deno run --allow-net --allow-env ${file}`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", file, "--port", "0"],
      cwd: new URL("..", import.meta.url),
      env: { HOSTNAME: "127.0.0.1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let exited = false;
    const status = child.status.finally(() => exited = true);
    const stderr = new Response(child.stderr).text();
    const lines = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    try {
      let printed = "";
      let match: RegExpMatchArray | null = null;
      while (
        (match = printed.match(
          /listening on (http:\/\/127\.0\.0\.1:\d+\/)/,
        )) ===
          null
      ) {
        const { value, done } = await within(lines.read(), "the address");
        if (done) throw new Error(`It exited: ${await stderr}`);
        printed += value;
      }
      const page = await fetch(match[1]);
      assert.equal(page.status, 200);
      assert.match(await page.text(), new RegExp(`<title>${title}</title>`));
      child.kill("SIGINT");
      const { code } = await within(status, "the exit after Ctrl+C");
      assert.equal(code, 0);
    } finally {
      if (!exited) child.kill("SIGKILL");
      await status;
      await lines.cancel();
      await stderr;
    }
  });
}
