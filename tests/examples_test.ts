/**
 * The browser examples (examples/chat.ts, examples/ticker.ts): their
 * servers over real TCP with Deno running the LiveClient their pages use,
 * their pages in headless Chromium (two tabs of the chat; a chat page
 * through a dropped connection and through a server restart; the ticker's
 * picks, and the ticker through a dropped connection), and their command
 * line (one command starts each and prints the address).
 */

import assert from "node:assert/strict";
import type { WebSocketServer } from "../mod.ts";
import {
  INVALID,
  type RoomCount,
  type RoomEvent,
  startChatServer,
  TAKEN,
} from "../examples/chat.ts";
import {
  type Quote,
  startTickerServer,
  SYMBOLS,
  TOPIC_PREFIX,
} from "../examples/ticker.ts";
import {
  CHAT,
  chatUrl,
  FAILED_CONNECTION,
  linesOf,
  member,
  noticesOf,
  openChat,
  type Page,
  Recorder,
  say,
  see,
  session,
  watchConsole,
} from "./_chat_helpers.ts";
import { launchChromium, STEP_LIMIT, within } from "./_peer_helpers.ts";
import { RawClient, upgradeRequest } from "./_raw_client.ts";
import { CutProxy } from "./_tcp_proxy.ts";
import { waitFor } from "./_util.ts";

const quiet = { port: 0, hostname: "127.0.0.1", onListen() {} };

function origin(server: WebSocketServer): string {
  return `http://127.0.0.1:${server.addr.port}`;
}

/** The room's events as `type name` (`message Ada: text` for lines). */
function described(events: RoomEvent[]): string[] {
  return events.map((event) =>
    event.type === "message"
      ? `message ${event.name}: ${event.text}`
      : `${event.type} ${event.name}`
  );
}

/** Each room's count as a page knows it: the last change per room. */
function lastCounts(counts: RoomCount[]): Record<string, number> {
  const rooms: Record<string, number> = {};
  for (const { room, members } of counts) rooms[room] = members;
  return rooms;
}

/** Opens a connection that the chat closes at once; resolves with how. */
async function refused(
  server: WebSocketServer,
  who: { session: string; name?: string; room?: string },
): Promise<{ code: number; reason: string }> {
  await using client = new Recorder(chatUrl(origin(server), who), CHAT);
  const closed = await client.nth("disconnected", 1);
  assert.equal(closed.willRetry, false, "a refusal is final");
  assert.deepEqual(client.all("connected"), [], "never connected");
  return { code: closed.code, reason: closed.reason };
}

// --- Chat over the live protocol ---------------------------------------------

Deno.test("chat: a line reaches everyone in its room with the name checked at the handshake and no one outside; the room hears joins and leaves, and the rooms their counts", async () => {
  await using server = startChatServer(quiet);
  const at = origin(server);
  // Watches the rooms, in none.
  await using watcher = new Recorder(chatUrl(at, { session: session("w") }));
  watcher.subscribe("rooms");
  await watcher.nth("subscribed", 1);
  await using ada = await member(at, "Ada", "lobby");
  await using bob = await member(at, "Bob", "Lobby");
  await using cy = await member(at, "Cy", "garden");
  await watcher.until(
    () => watcher.counts().length === 3,
    "three count changes",
  );
  assert.deepEqual(watcher.counts(), [
    { room: "lobby", members: 1 },
    { room: "lobby", members: 2 },
    { room: "garden", members: 1 },
  ]);

  const text = "Hello <b>lobby</b> ✓";
  await ada.publish("room/lobby", `  ${text}  `);
  // A page cannot speak for someone else: what it sends is the text.
  await bob.publish("room/lobby", '{"type":"message","name":"Ada"}');
  for (const client of [ada, bob]) {
    await client.until(
      () =>
        client.room("lobby").filter((e) => e.type === "message").length === 2,
      "both lines",
    );
    assert.deepEqual(described(client.room("lobby")).slice(-2), [
      `message Ada: ${text}`,
      'message Bob: {"type":"message","name":"Ada"}',
    ]);
  }
  assert.deepEqual(described(ada.room("lobby")), [
    "join Ada",
    "join Bob",
    `message Ada: ${text}`,
    'message Bob: {"type":"message","name":"Ada"}',
  ]);
  // Cy's own line is the first line it gets: nothing came from the lobby.
  await cy.publish("room/garden", "Anyone?");
  await cy.until(() => cy.room("garden").length === 2, "Cy's own line");
  assert.deepEqual(described(cy.room("garden")), [
    "join Cy",
    "message Cy: Anyone?",
  ]);
  assert.deepEqual(cy.room("lobby"), []);

  // Presence lists who is in the room, with what the server checked.
  const presence = await ada.presence("room/lobby");
  assert.equal(presence.count, 2);
  assert.deepEqual(
    presence.members.map((m) => (m.info as { name: string }).name).sort(),
    ["Ada", "Bob"],
  );
  for (const { info } of presence.members) {
    assert.deepEqual(Object.keys(info as object).sort(), [
      "id",
      "name",
      "room",
    ]);
    assert.equal((info as { room: string }).room, "lobby");
  }

  // Bob leaves (his page closes the connection with 1000): at once, the
  // room hears it and everyone the count.
  await bob[Symbol.asyncDispose]();
  await ada.until(() => ada.room("lobby").length === 5, "Bob's leave");
  assert.deepEqual(described(ada.room("lobby")).at(-1), "leave Bob");
  await watcher.until(() => watcher.counts().length === 4, "the new count");
  assert.deepEqual(watcher.counts().at(-1), { room: "lobby", members: 1 });
  assert.equal(server.subscriberCount("room/lobby"), 1);
});

Deno.test("chat: a connection that drops and comes back within leaveGrace is announced neither leaving nor joining; one that stays away is announced leaving once", async () => {
  await using server = startChatServer({ ...quiet, leaveGrace: 3000 });
  await using proxy = new CutProxy(server.addr.port);
  await using ada = await member(proxy.origin, "Ada", "lobby");
  await using bob = await member(origin(server), "Bob", "lobby");
  await ada.until(() => ada.room("lobby").length === 2, "Bob's join");
  const before = bob.room("lobby").length;

  // A blip: cut, and back at the first refused attempt.
  proxy.cut();
  await ada.nth("disconnected", 1);
  await waitFor(() => proxy.refused > 0, "a refused attempt", STEP_LIMIT);
  proxy.restore();
  await ada.nth("connected", 2);
  assert.equal((await ada.nth("subscribed", 4)).recovered, true);
  // Away for good: the leave comes after the grace.
  const drops = ada.all("disconnected").length;
  proxy.cut();
  await ada.nth("disconnected", drops + 1);
  await bob.until(
    () => bob.room("lobby").length > before,
    "Ada's leave",
  );
  assert.deepEqual(described(bob.room("lobby").slice(before)), ["leave Ada"]);
  assert.deepEqual(lastCounts(bob.counts()), { lobby: 1 });
});

Deno.test("chat: a bad secret, name or room closes the connection with 4400 and the reason, before it is in any room", async () => {
  await using server = startChatServer(quiet);
  const invisible =
    "A name cannot hold control, format or line separator characters";
  const cases: [Record<string, string>, string][] = [
    [{ session: "short" }, "A session is 16-64 letters, digits, - or _"],
    [
      { session: "x".repeat(15) + "!" },
      "A session is 16-64 letters, digits, - or _",
    ],
    [{ name: "", room: "lobby" }, "A name is 1-24 characters"],
    [{ name: "x".repeat(25), room: "lobby" }, "A name is 1-24 characters"],
    [{ name: "Ada", room: "a/b" }, "A room is 1-24 letters, digits, - or _"],
    [
      { name: "Ada", room: "room/../x" },
      "A room is 1-24 letters, digits, - or _",
    ],
    [{ name: "Ada" }, "A room is 1-24 letters, digits, - or _"],
    ...[
      "Ada\u202E", // right-to-left override: turns what follows around
      "A\u200Bda", // zero-width space
      "Ad\u200Da", // zero-width joiner
      "A\uFEFFda", // zero-width no-break space (a byte order mark)
      "Ada\u2028Bob", // line separator
      "Ada\u2029Bob", // paragraph separator
      "Ada\u0007", // a control character
      "Ada\uE000", // private use
    ].map((name): [Record<string, string>, string] => [
      { name, room: "lobby" },
      invisible,
    ]),
  ];
  for (const [who, reason] of cases) {
    assert.deepEqual(
      await refused(server, { session: session("a"), ...who }),
      { code: INVALID, reason },
      JSON.stringify(who),
    );
  }
  assert.deepEqual(server.topics(), []);
  // Letters of any script, marks and spaces between words are names.
  await using zoe = await member(origin(server), "Zoë Ünal 李", "lobby");
  assert.deepEqual(described(zoe.room("lobby")), ["join Zoë Ünal 李"]);
});

Deno.test("chat: a name another person holds in the room, in any case or width, closes the connection with 4409; its holder may connect again; once it left, the name is free", async () => {
  await using server = startChatServer(quiet);
  const at = origin(server);
  await using ada = await member(at, "Ada", "lobby");
  for (const name of ["Ada", "ada", "ADA", "\uFF21\uFF44\uFF41"]) {
    assert.deepEqual(
      await refused(server, {
        session: session("someone else"),
        name,
        room: "lobby",
      }),
      { code: TAKEN, reason: `The name ${name} is taken in lobby` },
    );
  }
  // The same name in another room is another person.
  await using _other = await member(at, "Ada", "garden");
  // Ada's secret: Ada again, on a second connection (a page whose first
  // one the server has not seen drop yet).
  await using again = await member(at, "Ada", "lobby");
  assert.equal(server.subscriberCount("room/lobby"), 2);
  // Counted once, and not announced twice.
  assert.equal(ada.room("lobby").filter((e) => e.type === "join").length, 1);
  assert.deepEqual(lastCounts(ada.counts()).lobby, 1);
  await ada[Symbol.asyncDispose]();
  await again[Symbol.asyncDispose]();
  await waitFor(
    () => server.subscriberCount("room/lobby") === 0,
    "Ada gone",
  );
  await using bea = await member(at, "ADA", "lobby");
  assert.deepEqual(described(bea.room("lobby")).at(-1), "join ADA");
});

Deno.test("chat: a member may publish 1-500 characters of text to its own room only, and subscribe to rooms and its own room only; a watcher may publish nowhere", async () => {
  await using server = startChatServer(quiet);
  const at = origin(server);
  await using ada = await member(at, "Ada", "lobby");
  await using _bob = await member(at, "Bob", "garden");
  const refusals: [string, string | Uint8Array][] = [
    ["room/lobby", "x".repeat(501)],
    ["room/lobby", "   "],
    ["room/lobby", new Uint8Array([1, 2])],
    ["room/garden", "Hi garden"],
    ["rooms", '{"room":"lobby","members":99}'],
  ];
  for (const [topic, data] of refusals) {
    await assert.rejects(ada.publish(topic, data), { code: "forbidden" });
  }
  await ada.publish("room/lobby", "x".repeat(500));
  // Cy, made for the lobby, asks for the garden; a watcher for the lobby.
  await using cy = new Recorder(
    chatUrl(at, { session: session("Cy"), name: "Cy", room: "lobby" }),
    CHAT,
  );
  cy.subscribe("room/garden");
  await using watcher = new Recorder(chatUrl(at, { session: session("w") }));
  watcher.subscribe("rooms");
  watcher.subscribe("room/lobby");
  for (
    const [client, topic] of [[cy, "room/garden"], [
      watcher,
      "room/lobby",
    ]] as const
  ) {
    await client.until(() => client.all("error").length === 1, "a refusal");
    assert.deepEqual(
      client.all("error").map((e) => [e.topic, e.code]),
      [[topic, "forbidden"]],
    );
  }
  assert.equal(server.subscriberCount("room/garden"), 1);
  assert.equal(server.subscriberCount("room/lobby"), 1);
  await assert.rejects(watcher.publish("room/lobby", "Hi"), {
    code: "forbidden",
  });
  await assert.rejects(watcher.publish("rooms", "Hi"), { code: "forbidden" });
  // The lobby heard one line: the 500 characters.
  await ada.until(
    () => ada.room("lobby").some((e) => e.type === "message"),
    "the line",
  );
  assert.deepEqual(
    ada.room("lobby").filter((e) => e.type === "message").map((e) =>
      e.type === "message" && e.text.length
    ),
    [500],
  );
});

Deno.test("chat: 64 members joining at once, with 300 pages each in a room of its own, close no page: the counts arrive as changes, one short message each", async () => {
  await using server = startChatServer(quiet);
  const at = origin(server);
  const pages: WebSocket[] = [];
  /** Bytes and messages each page received. */
  const received = new Map<WebSocket, { bytes: number; messages: number }>();
  const closes: number[] = [];
  const opened = (ws: WebSocket) =>
    new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error("A page did not connect"));
    });
  /** A page that speaks the live protocol raw and joins its room. */
  const page = async (name: string, room: string) => {
    const ws = new WebSocket(
      chatUrl(at, { session: session(name), name, room }),
    );
    const counts = { bytes: 0, messages: 0 };
    received.set(ws, counts);
    ws.onmessage = ({ data }) => {
      counts.bytes += (data as string).length;
      counts.messages++;
    };
    ws.onclose = ({ code }) => closes.push(code);
    pages.push(ws);
    await opened(ws);
    ws.send(JSON.stringify({ t: "connect", v: 1 }));
    ws.send(JSON.stringify({ t: "sub", id: 1, topic: "rooms" }));
    ws.send(JSON.stringify({ t: "sub", id: 2, topic: `room/${room}` }));
  };
  try {
    for (let i = 0; i < 300; i++) await page(`Page ${i}`, `room-of-page-${i}`);
    await waitFor(
      () => server.subscriberCount("rooms") === 300,
      "every page in rooms",
      STEP_LIMIT,
    );
    await waitFor(
      () => server.topics().length === 301,
      "every page in its room",
      STEP_LIMIT,
    );
    await using reader = new Recorder(chatUrl(at, { session: session("r") }));
    reader.subscribe("rooms");
    await reader.nth("subscribed", 1);
    const before = new Map(
      [...received].map(([ws, counts]) => [ws, { ...counts }]),
    );
    // 64 joins at once.
    await Promise.all(
      Array.from({ length: 64 }, (_, i) => page(`Burst ${i}`, `b${i}`)),
    );
    await reader.until(
      () => reader.counts().length === 64,
      "the 64 count changes",
    );
    assert.deepEqual(
      lastCounts(reader.counts()),
      Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`b${i}`, 1])),
    );
    // No page was closed, and each got a few bytes per join.
    assert.deepEqual(closes, []);
    await waitFor(
      () =>
        [...before].every(([ws, { messages }]) =>
          received.get(ws)!.messages === messages + 64
        ),
      "the 64 changes on every page",
      STEP_LIMIT,
    );
    for (const [ws, { bytes }] of before) {
      const per = (received.get(ws)!.bytes - bytes) / 64;
      assert.ok(per < 100, `${per} bytes per join`);
    }
    assert.equal(server.subscriberCount("rooms"), 365);
  } finally {
    for (const ws of pages) ws.close();
    await waitFor(
      () => closes.length === pages.length,
      "every page closed",
      STEP_LIMIT,
    );
  }
});

Deno.test("chat: the page is served at /, the live client at /live-client.js, other paths get 404, and a WebSocket from another site's page gets 403", async () => {
  await using server = startChatServer(quiet);
  const page = await fetch(`${origin(server)}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  const html = await page.text();
  assert.match(html, /<title>Chat<\/title>/);
  // No request for an icon: the page names an empty one.
  assert.match(html, /<link rel="icon" href="data:,">/);
  assert.match(html, /import \{ LiveClient \} from "\/live-client.js"/);
  const client = await fetch(`${origin(server)}/live-client.js`);
  assert.equal(client.status, 200);
  assert.match(client.headers.get("content-type") ?? "", /^text\/javascript/);
  assert.match(await client.text(), /export class LiveClient/);
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

// --- Ticker over the live protocol -------------------------------------------

Deno.test("ticker: a subscription with last: 60 gets the symbol's latest quotes up to its position, then each new one; other topics and publishing are refused", async () => {
  await using server = startTickerServer(quiet);
  // A few quotes published before anyone subscribes.
  await waitFor(async () => {
    const { position } = await server.hub.history("quote/EURUSD");
    return position.offset >= 3;
  }, "three quotes");
  await using client = new Recorder(`ws://127.0.0.1:${server.addr.port}/live`);
  client.subscribe("quote/EURUSD", { last: 60 });
  const subscribed = await client.nth("subscribed", 1);
  const top = subscribed.position!.offset;
  assert.ok(top >= 3);
  await client.until(
    () => client.all("publication").length >= Math.min(top, 60) + 5,
    "the latest quotes and five new ones",
  );
  const offsets = client.all("publication").map((p) => p.offset!);
  // The latest first, up to the position, then the new ones: none missing.
  assert.equal(offsets[0], Math.max(1, top - 59));
  offsets.forEach((offset, i) =>
    i > 0 && assert.equal(offset, offsets[i - 1] + 1)
  );
  const quote: Quote = JSON.parse(
    client.all("publication").at(-1)!.data as string,
  );
  assert.equal(quote.symbol, "EURUSD");
  assert.equal(quote.open, SYMBOLS[0].price);

  client.subscribe("quote/NOPE");
  client.subscribe("room/lobby");
  await client.until(() => client.all("error").length === 2, "two refusals");
  assert.deepEqual(client.all("error").map((e) => [e.topic, e.code]), [
    ["quote/NOPE", "forbidden"],
    ["room/lobby", "forbidden"],
  ]);
  await assert.rejects(client.publish("quote/EURUSD", "1"), {
    code: "forbidden",
  });
  client.unsubscribe("quote/EURUSD");
  await waitFor(
    () => server.subscriberCount("quote/EURUSD") === 0,
    "the unsubscription",
  );
});

// --- The pages in Chromium ---------------------------------------------------

Deno.test("Chromium: two tabs of the chat page see each other join, exchange lines (shown as text), count members from presence in words and see a leave", async () => {
  await using server = startChatServer(quiet);
  const errors: string[] = [];
  const browser = await launchChromium();
  try {
    const context = await browser.newContext();
    const [ada, bob] = [await context.newPage(), await context.newPage()];
    watchConsole(ada, "Ada", errors);
    watchConsole(bob, "Bob", errors);
    await openChat(ada, origin(server), "Ada");
    assert.equal(await ada.title(), "Chat");
    await see(ada, "#members", /^1 member$/);
    await openChat(bob, origin(server), "Bob");

    // Ada sees Bob join; both count 2 members and list them.
    await see(ada, "#log .notice", "Bob joined");
    await see(ada, "#members", /^2 members$/);
    await see(bob, "#members", /^2 members$/);
    await see(ada, "#rooms li[data-room=lobby] .count", /^2$/);
    assert.deepEqual(
      await ada.locator("#member-list li").allTextContents(),
      ["Ada (you)", "Bob"],
    );

    // Bob's line reaches Ada as text, not markup; Bob sees it too.
    const text = "<img src=x onerror=alert(1)> Hello Ada ✓";
    await say(bob, text);
    await see(ada, "#log .message .text", "Hello Ada ✓");
    assert.deepEqual(await linesOf(ada), [`Bob: ${text}`]);
    assert.equal(await ada.locator("#log img").count(), 0);
    await see(bob, "#log .message .text", "Hello Ada ✓");
    await ada.fill("#text", "Hi Bob");
    await ada.press("#text", "Enter");
    await see(bob, "#log .message .text", /^Hi Bob$/);

    // Bob cannot take Ada's name; his page stays where it was.
    await bob.fill("#name", "ADA");
    await bob.click("#join");
    await see(
      bob,
      "#log .error",
      "Could not join: The name ADA is taken in lobby",
    );
    assert.equal(await bob.inputValue("#name"), "Bob");
    await say(bob, "Still Bob");
    await see(ada, "#log .message .text", /^Still Bob$/);
    assert.deepEqual((await linesOf(ada)).at(-1), "Bob: Still Bob");

    // Bob closes his tab: after the grace, Ada hears it; the count drops.
    await bob.close();
    await see(ada, "#log .notice", "Bob left");
    await see(ada, "#members", /^1 member$/);
    await see(ada, "#rooms li[data-room=lobby] .count", /^1$/);
    assert.equal(server.subscriberCount("room/lobby"), 1);

    // Ada moves to another room: the lobby is gone from the list.
    await ada.fill("#room", "garden");
    await ada.click("#join");
    await see(ada, "#room-name", /^garden$/);
    await see(ada, "#rooms li[data-room=garden] .count", /^1$/);
    await ada.locator("#rooms li[data-room=lobby]").waitFor({
      state: "detached",
      timeout: STEP_LIMIT,
    });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

/** Marks a page, to tell later that it was not reloaded. */
async function mark(page: Page): Promise<void> {
  await page.evaluate(() => {
    (globalThis as unknown as { notReloaded: boolean }).notReloaded = true;
  });
}

async function stillMarked(page: Page): Promise<boolean> {
  return await page.evaluate(() =>
    (globalThis as unknown as { notReloaded?: boolean }).notReloaded === true
  );
}

Deno.test("Chromium: a chat page cut off for a few seconds says so, comes back on its own and shows each line said meanwhile once; its line typed offline reaches the other page, and it talks again", async () => {
  await using server = startChatServer(quiet);
  await using proxy = new CutProxy(server.addr.port);
  const errors: string[] = [];
  const browser = await launchChromium();
  try {
    const context = await browser.newContext();
    const [ada, bob] = [await context.newPage(), await context.newPage()];
    watchConsole(ada, "Ada", errors, FAILED_CONNECTION);
    watchConsole(bob, "Bob", errors);
    // Ada's page goes through the proxy; Bob's does not.
    await openChat(ada, proxy.origin, "Ada");
    await openChat(bob, origin(server), "Bob");
    await say(bob, "Before the cut");
    await see(ada, "#log .message .text", "Before the cut");
    await mark(ada);

    proxy.cut();
    await see(ada, "body[data-connection=offline]");
    await see(ada, "#status", /^Offline since .*: connection lost \(1006\)\./);
    await see(
      ada,
      "#log .notice",
      /^Connection lost at .* \(1006\)\. Reconnecting…$/,
    );
    const meanwhile = ["Are you there?", "Still there?", "Third line"];
    for (const text of meanwhile) await say(bob, text);
    await ada.fill("#text", "Typed while offline");
    await ada.click("#send");
    await see(ada, "#log .pending", "waiting for the connection");
    await waitFor(
      async () => (await linesOf(bob)).length === 4,
      "Bob's lines on his page",
      STEP_LIMIT,
    );
    // Refused a while: back once the page has tried again and failed.
    await waitFor(() => proxy.refused > 0, "a refused attempt", STEP_LIMIT);
    proxy.restore();

    await see(ada, "body[data-connection=online]");
    await see(
      ada,
      "#log .notice",
      /^Back online at .*, after (less than a second|\d+ seconds?) offline\.$/,
    );
    await see(
      ada,
      "#log .notice",
      /^Back in lobby: \d+ messages from while you were away follow\.$/,
    );
    await see(bob, "#log .message .text", "Typed while offline");
    await see(ada, "#log .message .text", "Typed while offline");
    await ada.locator("#log .pending").waitFor({
      state: "detached",
      timeout: STEP_LIMIT,
    });
    await say(ada, "Talking again");
    await see(bob, "#log .message .text", "Talking again");
    await see(ada, "#log .message .text", "Talking again");

    // Every line once, in order, on both pages; no reload.
    const all = [
      "Bob: Before the cut",
      ...meanwhile.map((text) => `Bob: ${text}`),
      "Ada: Typed while offline",
      "Ada: Talking again",
    ];
    assert.deepEqual(await linesOf(ada), all);
    assert.deepEqual(await linesOf(bob), all);
    assert.ok(await stillMarked(ada), "the page was reloaded");
    const notices = await noticesOf(ada);
    assert.equal(
      notices.filter((n) => n.startsWith("Connection lost")).length,
      1,
    );
    assert.equal(notices.filter((n) => n.startsWith("Back online")).length, 1);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

Deno.test("Chromium: a chat page through a server restart (its room's history lost) says it could not recover, and shows the lines said since, without a reload", async () => {
  let server = startChatServer(quiet);
  const port = server.addr.port;
  const errors: string[] = [];
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    watchConsole(page, "Ada", errors, FAILED_CONNECTION);
    await openChat(page, origin(server), "Ada");
    await say(page, "Before the restart");
    await see(page, "#log .message .text", "Before the restart");
    await mark(page);

    await server.shutdown();
    await see(page, "body[data-connection=offline]");
    await see(
      page,
      "#log .notice.warn",
      /^Connection lost at .* \(1001 Server shutting down\)\. Reconnecting…$/,
    );
    await see(page, "#status", /connection lost \(1001 Server shutting down\)/);
    server = startChatServer({ ...quiet, port });
    // Said on the new server, whether the page is back yet or not.
    await using bob = await member(origin(server), "Bob", "lobby");
    await bob.publish("room/lobby", "After the restart");

    await see(page, "body[data-connection=online]");
    await see(
      page,
      "#log .notice.warn",
      /^Could not recover what was said in lobby while you were away: the room's history was lost \(the server restarted\)\. The last lines it has follow\.$/,
    );
    await see(page, "#log .message .text", "After the restart");
    assert.deepEqual(await linesOf(page), [
      "Ada: Before the restart",
      "Bob: After the restart",
    ]);
    await see(page, "#members", /^2 members$/);
    await say(page, "Hello again");
    await bob.until(
      () =>
        bob.room("lobby").some((e) =>
          e.type === "message" && e.text === "Hello again"
        ),
      "Ada's line",
    );
    assert.ok(await stillMarked(page), "the page was reloaded");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.shutdown();
  }
});

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
      this.addEventListener("message", (event) => received.push(JSON.parse(event.data)));
    }
  };
`;

/** What the ticker page received, as the protocol's events. */
function receivedOf(page: Page): Promise<Record<string, unknown>[]> {
  return page.evaluate(() =>
    (globalThis as unknown as { receivedMessages: Record<string, unknown>[] })
      .receivedMessages
  );
}

/** Waits until the row of `symbol` shows at least `count` updates. */
function updates(page: Page, symbol: string, count: number) {
  return page.waitForFunction(
    `Number(document.querySelector('tr[data-symbol="${symbol}"] .updates')?.textContent) >= ${count}`,
    undefined,
    { timeout: STEP_LIMIT },
  );
}

Deno.test("Chromium: the ticker page receives and shows quotes only for the symbols it picked, and none for a symbol once unpicked", async () => {
  await using server = startTickerServer(quiet);
  const errors: string[] = [];
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    watchConsole(page, "ticker", errors);
    await page.addInitScript({ content: RECORD_MESSAGES });
    assert.equal((await page.goto(`${origin(server)}/`))?.status(), 200);
    assert.equal(await page.title(), "Price ticker");
    await see(page, "body[data-connection=online]");
    await see(page, "#status", /^Online$/);
    assert.equal(await page.locator("#picker input").count(), SYMBOLS.length);

    await page.check("#picker input[value=EURUSD]");
    await page.check("#picker input[value=BTCUSD]");
    await updates(page, "EURUSD", 5);
    await updates(page, "BTCUSD", 5);
    assert.deepEqual(
      await page.locator("#quotes tbody tr").evaluateAll((rows) =>
        rows.map((row) => row.getAttribute("data-symbol"))
      ),
      ["EURUSD", "BTCUSD"],
    );
    // The sparklines start with the latest quotes, and the rate counts.
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
    const topics = (events: Record<string, unknown>[]) =>
      new Set(events.filter((e) => e.t === "pub").map((e) => e.topic));
    assert.deepEqual(
      [...topics(await receivedOf(page))].sort(),
      ["quote/BTCUSD", "quote/EURUSD"],
      "quotes arrived for the picked symbols only",
    );

    // Unpick BTCUSD: its row goes, and once the server's answer is in, no
    // BTCUSD quote arrives while EURUSD goes on.
    await page.uncheck("#picker input[value=BTCUSD]");
    await page.locator("tr[data-symbol=BTCUSD]").waitFor({
      state: "detached",
      timeout: STEP_LIMIT,
    });
    const answered = (events: Record<string, unknown>[]) =>
      events.findIndex((e) =>
        e.t === "unsubscribed" && e.topic === "quote/BTCUSD"
      );
    await waitFor(
      async () => answered(await receivedOf(page)) >= 0,
      "the unsubscription's answer",
      STEP_LIMIT,
    );
    const shown = Number(
      await page.locator("tr[data-symbol=EURUSD] .updates").textContent(),
    );
    await updates(page, "EURUSD", shown + 5);
    const events = await receivedOf(page);
    const after = events.slice(answered(events) + 1);
    assert.ok(after.filter((e) => e.t === "pub").length >= 5);
    assert.deepEqual([...topics(after)], ["quote/EURUSD"]);
    assert.equal(server.subscriberCount("quote/BTCUSD"), 0);
    assert.equal(server.subscriberCount("quote/EURUSD"), 1);
    assert.equal(await page.locator("#quotes tbody tr").count(), 1);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

Deno.test("Chromium: the ticker page cut off marks its prices stale and says so, then shows current prices again on its own", async () => {
  await using server = startTickerServer(quiet);
  await using proxy = new CutProxy(server.addr.port);
  const errors: string[] = [];
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    watchConsole(page, "ticker", errors, FAILED_CONNECTION);
    await page.goto(`${proxy.origin}/`);
    await see(page, "body[data-connection=online]");
    await page.check("#picker input[value=EURUSD]");
    await page.check("#picker input[value=AAPL]");
    await updates(page, "EURUSD", 3);
    await updates(page, "AAPL", 3);
    await mark(page);
    assert.equal(await page.locator("tr.stale").count(), 0);

    proxy.cut();
    await see(page, "body[data-connection=offline]");
    await see(
      page,
      "#status",
      /^Offline since .*: connection lost \(1006\)\. Prices are stale\./,
    );
    await see(page, "tr[data-symbol=EURUSD].stale .badge", /^stale$/);
    await see(page, "tr[data-symbol=AAPL].stale");
    await waitFor(() => proxy.refused > 0, "a refused attempt", STEP_LIMIT);
    // Where the quotes are when the page may come back.
    const { position } = await server.hub.history(`${TOPIC_PREFIX}EURUSD`);
    proxy.restore();

    await see(page, "body[data-connection=online]");
    await page.locator("tr.stale").first().waitFor({
      state: "detached",
      timeout: STEP_LIMIT,
    });
    // Current again: a quote published after the page came back.
    await page.waitForFunction(
      `Number(document.querySelector('tr[data-symbol="EURUSD"]').dataset.offset) > ${position.offset}`,
      undefined,
      { timeout: STEP_LIMIT },
    );
    assert.equal(await page.locator("#quotes tbody tr").count(), 2);
    assert.equal(await page.locator("tr.stale").count(), 0);
    assert.ok(await stillMarked(page), "the page was reloaded");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

// --- The command line ----------------------------------------------------------

for (
  const [task, file, title] of [
    ["chat", "examples/chat.ts", "Chat"],
    ["ticker", "examples/ticker.ts", "Price ticker"],
  ] as const
) {
  Deno.test(`deno task ${task}: one command starts it, prints the address to open, serves the page and its live client, and Ctrl+C stops it`, async () => {
    // What the task runs (deno.json), on a free port given by the flag.
    const tasks = JSON.parse(
      await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
    ).tasks;
    const flags = ["--allow-net", "--allow-env", "--allow-read"];
    assert.equal(tasks[task], `deno run ${flags.join(" ")} ${file}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, file, "--port", "0"],
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
      const client = await fetch(new URL("live-client.js", match[1]));
      assert.equal(client.status, 200);
      assert.match(await client.text(), /export class LiveClient/);
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
