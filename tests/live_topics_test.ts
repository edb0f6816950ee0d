/**
 * The live topics handler (src/live/live_topics.ts) over real TCP: `serve()`
 * (and `upgradeWebSocket()` on `Deno.serve`) with the handler, against two
 * independent clients: Deno's built-in `WebSocket` speaking raw JSON, and
 * the real `LiveClient` of src/live/client.js. Every command and its
 * answers, the first command's rules (1008), malformed commands, limits,
 * hooks (refusing, rewriting, failing), recovery after a dropped connection
 * and after a server restart, the offline queue after resubscription,
 * presence, and the publication's JSON made once for all subscribers.
 */

import { WatchedClient } from "./_live_events.ts";
import assert from "node:assert/strict";
import {
  type HistoryOptions,
  LiveTopics,
  type LiveTopicsOptions,
  type ServeOptions,
  TopicHub,
  upgradeWebSocket,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import { type LiveClientOptions, LiveError } from "../src/live/client.js";
import { SharedMessage } from "../src/pubsub/_shared_message.ts";
import { Inbox, within } from "./_peer_helpers.ts";
import { serveLocal, sleep, start } from "./_util.ts";

const HISTORY: HistoryOptions = { size: 100, ttl: 600_000 };
const CLIENT_JS = new URL("../src/live/client.js", import.meta.url);

// --- The server ---------------------------------------------------------------

interface LiveServer extends AsyncDisposable {
  server: WebSocketServer;
  /** The server's hub (made here unless `history` was given to serve()). */
  hub: TopicHub | undefined;
  url: string;
  /** The server's sockets, in the order they were accepted. */
  sockets: Inbox<WebSocketConnection>;
  /** While true, upgrades are refused with 503 (a server that is down). */
  refusing: boolean;
  /** What each `handle()` returned. */
  handled: Promise<void>[];
}

/**
 * A `serve()` server whose handler is `live.handle(socket, { info })`, the
 * info `{ name }` from the URL's `?name=` if any, on a hub with `HISTORY`
 * for every topic (or serve()'s own, given `history`). Disposal shuts it
 * down and checks that every `handle()` resolved.
 */
function startLive<Info>(
  live: LiveTopics<Info>,
  serveOptions: ServeOptions = {},
): LiveServer {
  const hub = serveOptions.history === undefined
    ? new TopicHub({ history: HISTORY })
    : undefined;
  const handled: Promise<void>[] = [];
  const state = {
    sockets: new Inbox<WebSocketConnection>(),
    refusing: false,
    handled,
  } as LiveServer;
  state.hub = hub;
  const server = start({
    hub,
    ...serveOptions,
    onUpgrade: () =>
      state.refusing ? new Response("Down", { status: 503 }) : undefined,
  }, (socket) => {
    state.sockets.push(socket);
    const name = new URL(socket.request.url).searchParams.get("name");
    const done = live.handle(
      socket,
      name === null ? {} : { info: { name } as Info },
    );
    handled.push(done);
    return done;
  });
  state.server = server;
  state.url = `ws://127.0.0.1:${server.addr.port}/live`;
  state[Symbol.asyncDispose] = async () => {
    await within(server.shutdown(), "the server's shutdown");
    await within(Promise.all(handled), "every handle() to resolve");
  };
  return state;
}

/** Hook options whose faults are kept in `errors`. */
function recording(
  errors: unknown[],
  options: LiveTopicsOptions<{ name: string }> = {},
): LiveTopicsOptions<{ name: string }> {
  return { onError: (error) => errors.push(error), ...options };
}

// --- A raw JSON client on Deno's WebSocket -----------------------------------

// deno-lint-ignore no-explicit-any
type Event = Record<string, any>;

/** Deno's own WebSocket, sending and reading the protocol's JSON by hand. */
class JsonClient implements AsyncDisposable {
  readonly ws: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
  #inbox = new Inbox<Event | Error>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onmessage = ({ data }) => {
      this.#inbox.push(
        typeof data === "string"
          ? JSON.parse(data)
          : new Error("The server sent a binary frame"),
      );
    };
    this.closed = new Promise((resolve) => {
      ws.onclose = ({ code, reason }) => {
        this.#inbox.push(new Error(`Closed (${code} ${reason})`));
        resolve({ code, reason });
      };
    });
  }

  static async open(url: string): Promise<JsonClient> {
    const ws = new WebSocket(url);
    const client = new JsonClient(ws);
    await within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error("The connection failed"));
      }),
      "the connection",
    );
    return client;
  }

  /** Opens a connection and says `connect` v1; resolves with the client id. */
  static async connected(url: string): Promise<JsonClient> {
    const client = await JsonClient.open(url);
    client.send({ t: "connect", v: 1 });
    const event = await client.next();
    assert.equal(event.t, "connected");
    return client;
  }

  /** Sends a command (an object as JSON) or a raw frame. */
  send(command: object | string | Uint8Array): void {
    this.ws.send(
      typeof command === "string" || command instanceof Uint8Array
        ? command
        : JSON.stringify(command),
    );
  }

  /** The next event. */
  async next(): Promise<Event> {
    const event = await within(this.#inbox.next(), "an event");
    if (event instanceof Error) throw event;
    return event;
  }

  /** Sends a command and returns the next event (its answer). */
  ask(command: object | string | Uint8Array): Promise<Event> {
    this.send(command);
    return this.next();
  }

  async [Symbol.asyncDispose]() {
    if (this.ws.readyState < WebSocket.CLOSING) this.ws.close(1000);
    await within(this.closed, "the close");
  }
}

// --- The real LiveClient ------------------------------------------------------

/** Quick retries, fixed jitter, a short ceiling. */
const FAST: LiveClientOptions = {
  initialDelay: 20,
  maxDelay: 200,
  random: () => 0.5,
};

/** A LiveClient whose events the test takes one at a time, per type. */
class Watched extends WatchedClient {
  constructor(url: string, options: LiveClientOptions = FAST) {
    super(url, options);
  }

  /** The data of the next `n` publications. */
  async data(n: number): Promise<(string | Uint8Array)[]> {
    const data = [];
    for (let i = 0; i < n; i++) {
      data.push((await this.next("publication")).data);
    }
    return data;
  }
}

/**
 * Drops the server's side of the connection while the server refuses new
 * ones; resolves once the client said it is disconnected. `back()` lets it
 * in again.
 */
async function dropConnection(
  live: LiveServer,
  socket: WebSocketConnection,
  client: Watched,
): Promise<void> {
  live.refusing = true;
  socket.close({ closeCode: 4000, reason: "Dropped by the test" });
  const { code, willRetry } = await client.next("disconnected");
  assert.equal(code, 4000);
  assert.equal(willRetry, true);
}

// --- connect ------------------------------------------------------------------

Deno.test("live topics: connect v1 is answered connected with a client id of its own per connection", async () => {
  await using live = startLive(new LiveTopics());
  await using a = await JsonClient.open(live.url);
  await using b = await JsonClient.open(live.url);
  const ca = await a.ask({ t: "connect", v: 1 });
  const cb = await b.ask({ t: "connect", v: 1 });
  assert.equal(ca.t, "connected");
  assert.equal(ca.v, 1);
  assert.match(ca.client, /^[A-Za-z0-9_-]{16}$/);
  assert.match(cb.client, /^[A-Za-z0-9_-]{16}$/);
  assert.notEqual(ca.client, cb.client);
});

Deno.test("live topics: a first command other than connect gets a bad-request error, then a close with 1008", async () => {
  await using live = startLive(new LiveTopics());
  for (
    const first of [
      { t: "sub", id: 3, topic: "room" },
      "not json",
      new Uint8Array([1, 2]),
    ]
  ) {
    await using client = await JsonClient.open(live.url);
    const error = await client.ask(first);
    assert.equal(error.t, "error");
    assert.equal(
      error.id,
      first === "not json" ? undefined : (first as { id?: number }).id,
    );
    assert.equal(error.code, "bad-request");
    assert.equal(
      error.message,
      'The first command must be {"t":"connect","v":1}',
    );
    assert.deepEqual(await client.closed, {
      code: 1008,
      reason: "Expected a connect command",
    });
  }
});

Deno.test("live topics: connect with another version gets an error naming the version, then a close with 1008", async () => {
  await using live = startLive(new LiveTopics());
  await using client = await JsonClient.open(live.url);
  assert.deepEqual(await client.ask({ t: "connect", v: 2 }), {
    t: "error",
    code: "bad-request",
    message: "Unsupported protocol version 2: this server speaks 1",
  });
  assert.deepEqual(await client.closed, {
    code: 1008,
    reason: "Unsupported protocol version",
  });
});

Deno.test("live topics: a second connect is a bad-request and the socket stays open", async () => {
  await using live = startLive(new LiveTopics());
  await using client = await JsonClient.connected(live.url);
  assert.deepEqual(await client.ask({ t: "connect", v: 1 }), {
    t: "error",
    code: "bad-request",
    message: "Already connected",
  });
  assert.equal(
    (await client.ask({ t: "sub", id: 1, topic: "a" })).t,
    "subscribed",
  );
});

// --- sub, unsub ---------------------------------------------------------------

Deno.test("live topics: sub is answered subscribed with the topic's position, then publications come as pub events (text and bytes)", async () => {
  await using live = startLive(new LiveTopics(), {
    history: (topic) => topic.startsWith("room/") ? HISTORY : undefined,
  });
  await using client = await JsonClient.connected(live.url);
  live.server.publish("room/1", "before");
  const subscribed = await client.ask({ t: "sub", id: 1, topic: "room/1" });
  assert.equal(typeof subscribed.position.epoch, "string");
  const epoch = subscribed.position.epoch;
  assert.deepEqual(subscribed, {
    t: "subscribed",
    id: 1,
    topic: "room/1",
    recovered: false,
    position: { offset: 1, epoch },
  });
  live.server.publish("room/1", "hi");
  live.server.publish("room/1", new Uint8Array([0, 1, 255]));
  assert.deepEqual(await client.next(), {
    t: "pub",
    topic: "room/1",
    data: "hi",
    offset: 2,
    epoch,
  });
  assert.deepEqual(await client.next(), {
    t: "pub",
    topic: "room/1",
    data: "AAH/",
    binary: true,
    offset: 3,
    epoch,
  });
  // A topic without history: no position, no offsets.
  assert.deepEqual(await client.ask({ t: "sub", id: 2, topic: "news" }), {
    t: "subscribed",
    id: 2,
    topic: "news",
    recovered: false,
  });
  live.server.publish("news", "extra");
  assert.deepEqual(await client.next(), {
    t: "pub",
    topic: "news",
    data: "extra",
  });
});

Deno.test("live topics: sub since a position gets recovered: true and exactly the publications after it, then live ones", async () => {
  await using live = startLive(new LiveTopics());
  for (const text of ["1", "2", "3", "4"]) live.server.publish("room", text);
  const { position } = await live.hub!.history("room");
  await using client = await JsonClient.connected(live.url);
  const since = { offset: 2, epoch: position.epoch };
  assert.deepEqual(
    await client.ask({ t: "sub", id: 1, topic: "room", since }),
    {
      t: "subscribed",
      id: 1,
      topic: "room",
      recovered: true,
      position: { offset: 4, epoch: position.epoch },
    },
  );
  assert.deepEqual(await client.next(), {
    t: "pub",
    topic: "room",
    data: "3",
    offset: 3,
    epoch: position.epoch,
  });
  assert.equal((await client.next()).data, "4");
  live.server.publish("room", "5");
  assert.deepEqual((await client.next()).offset, 5);
});

Deno.test("live topics: sub since another epoch gets recovered: false, the current position and nothing from history", async () => {
  await using live = startLive(new LiveTopics());
  live.server.publish("room", "1");
  await using client = await JsonClient.connected(live.url);
  const subscribed = await client.ask({
    t: "sub",
    id: 1,
    topic: "room",
    since: { offset: 0, epoch: "another" },
  });
  assert.equal(subscribed.recovered, false);
  assert.equal(subscribed.position.offset, 1);
  assert.notEqual(subscribed.position.epoch, "another");
  live.server.publish("room", "2");
  assert.equal((await client.next()).data, "2"); // not "1"
});

Deno.test("live topics: sub with last: 1 gets the latest publication after subscribed, then live ones", async () => {
  await using live = startLive(new LiveTopics());
  for (const price of ["1.08", "1.09", "1.10"]) {
    live.server.publish("ticker/EURUSD", price);
  }
  await using client = await JsonClient.connected(live.url);
  const subscribed = await client.ask({
    t: "sub",
    id: 1,
    topic: "ticker/EURUSD",
    last: 1,
  });
  assert.equal(subscribed.recovered, false);
  assert.equal(subscribed.position.offset, 3);
  const latest = await client.next();
  assert.equal(latest.data, "1.10");
  assert.equal(latest.offset, 3);
  live.server.publish("ticker/EURUSD", "1.11");
  assert.equal((await client.next()).data, "1.11");
});

Deno.test("live topics: unsub is answered unsubscribed and ends the publications; unsub of a topic not subscribed is not-subscribed", async () => {
  await using live = startLive(new LiveTopics());
  await using client = await JsonClient.connected(live.url);
  await client.ask({ t: "sub", id: 1, topic: "a" });
  await client.ask({ t: "sub", id: 2, topic: "b" });
  assert.deepEqual(await client.ask({ t: "unsub", id: 3, topic: "a" }), {
    t: "unsubscribed",
    id: 3,
    topic: "a",
  });
  assert.equal(live.server.subscriberCount("a"), 0);
  live.server.publish("a", "not for you");
  live.server.publish("b", "for you");
  assert.equal((await client.next()).topic, "b");
  assert.deepEqual(await client.ask({ t: "unsub", id: 4, topic: "a" }), {
    t: "error",
    id: 4,
    code: "not-subscribed",
    message: 'Not subscribed to "a"',
  });
});

Deno.test("live topics: subscribing twice to a topic is a bad-request, and the first subscription stays", async () => {
  await using live = startLive(new LiveTopics());
  await using client = await JsonClient.connected(live.url);
  await client.ask({ t: "sub", id: 1, topic: "room" });
  assert.deepEqual(await client.ask({ t: "sub", id: 2, topic: "room" }), {
    t: "error",
    id: 2,
    code: "bad-request",
    message: 'Already subscribed to "room"',
  });
  assert.equal(live.server.subscriberCount("room"), 1);
  live.server.publish("room", "once");
  assert.equal((await client.next()).data, "once");
});

Deno.test("live topics: more topics than maxTopicsPerSocket are refused with too-many-topics, and unsub frees a place", async () => {
  await using live = startLive(new LiveTopics({ maxTopicsPerSocket: 2 }));
  await using client = await JsonClient.connected(live.url);
  await client.ask({ t: "sub", id: 1, topic: "a" });
  await client.ask({ t: "sub", id: 2, topic: "b" });
  assert.deepEqual(await client.ask({ t: "sub", id: 3, topic: "c" }), {
    t: "error",
    id: 3,
    code: "too-many-topics",
    message: "At most 2 topics per connection",
  });
  await client.ask({ t: "unsub", id: 4, topic: "a" });
  assert.equal(
    (await client.ask({ t: "sub", id: 5, topic: "c" })).t,
    "subscribed",
  );
});

Deno.test("live topics: malformed commands are answered bad-request (with their id when valid) and the socket stays open", async () => {
  await using live = startLive(new LiveTopics({ maxTopicLength: 8 }));
  await using client = await JsonClient.connected(live.url);
  const cases: [
    frame: string | Uint8Array,
    id: number | undefined,
    message: string,
  ][] = [
    ["{not json", undefined, "A command must be JSON"],
    ["[1,2]", undefined, "A command must be a JSON object"],
    [
      new Uint8Array([123, 125]),
      undefined,
      "Commands are JSON text frames, not binary frames",
    ],
    ['{"t":"dance","id":1}', 1, 'Unknown command "dance"'],
    ['{"t":"sub","id":2,"topic":42}', 2, "The topic must be a string"],
    [
      '{"t":"sub","id":3,"topic":"123456789"}',
      3,
      "The topic is longer than 8 characters",
    ],
    ['{"t":"sub","topic":"a"}', undefined, 'The sub command needs an "id"'],
    [
      '{"t":"sub","id":4,"topic":"a","last":1,"since":{"offset":1,"epoch":"e"}}',
      4,
      '"since" and "last" cannot be combined',
    ],
    [
      '{"t":"pub","id":5,"topic":"a","data":"%%%","binary":true}',
      5,
      '"data" is not valid base64',
    ],
  ];
  for (const [frame, id, message] of cases) {
    const expected: Event = { t: "error", id, code: "bad-request", message };
    if (id === undefined) delete expected.id;
    assert.deepEqual(await client.ask(frame), expected, String(frame));
  }
  assert.equal(
    (await client.ask({ t: "sub", id: 6, topic: "12345678" })).t,
    "subscribed",
  );
  assert.equal(client.ws.readyState, WebSocket.OPEN);
});

// --- Authorization ------------------------------------------------------------

Deno.test("live topics: canSubscribe's refusal is answered forbidden, for sub and for presence", async () => {
  const asked: [string, unknown][] = [];
  await using live = startLive(
    new LiveTopics<{ name: string }>({
      canSubscribe: (socket, topic, info) => {
        assert.equal(typeof socket.send, "function");
        asked.push([topic, info]);
        return topic.startsWith("room/");
      },
    }),
  );
  await using client = await JsonClient.connected(`${live.url}?name=Ada`);
  assert.deepEqual(await client.ask({ t: "sub", id: 1, topic: "admin" }), {
    t: "error",
    id: 1,
    code: "forbidden",
    message: 'Not allowed to subscribe to "admin"',
  });
  assert.equal(live.server.subscriberCount("admin"), 0);
  assert.deepEqual(await client.ask({ t: "presence", id: 2, topic: "admin" }), {
    t: "error",
    id: 2,
    code: "forbidden",
    message: 'Not allowed to see the presence of "admin"',
  });
  assert.equal(
    (await client.ask({ t: "sub", id: 3, topic: "room/1" })).t,
    "subscribed",
  );
  assert.deepEqual(asked, [
    ["admin", { name: "Ada" }],
    ["admin", { name: "Ada" }],
    ["room/1", { name: "Ada" }],
  ]);
});

Deno.test("live topics: publishing from clients is refused by default (forbidden) and nothing is published", async () => {
  await using live = startLive(new LiveTopics());
  await using client = await JsonClient.connected(live.url);
  await client.ask({ t: "sub", id: 1, topic: "room" });
  assert.deepEqual(
    await client.ask({ t: "pub", id: 2, topic: "room", data: "hi" }),
    {
      t: "error",
      id: 2,
      code: "forbidden",
      message: 'Not allowed to publish to "room"',
    },
  );
  // Refused without an id too: an error, never a silent drop.
  assert.deepEqual(await client.ask({ t: "pub", topic: "room", data: "hi" }), {
    t: "error",
    code: "forbidden",
    message: 'Not allowed to publish to "room"',
  });
  assert.equal((await live.hub!.history("room")).position.offset, 0);
});

Deno.test("live topics: canPublish true publishes as sent (text and base64 bytes), a string publishes that instead; ok answers an id", async () => {
  const seen: unknown[] = [];
  await using live = startLive(
    new LiveTopics<{ name: string }>({
      canPublish: (_socket, topic, message, info) => {
        seen.push(message);
        return topic === "chat"
          ? JSON.stringify({ name: info?.name, text: message })
          : topic !== "closed";
      },
    }),
  );
  await using client = await JsonClient.connected(`${live.url}?name=Ada`);
  await client.ask({ t: "sub", id: 1, topic: "files" });
  await client.ask({ t: "sub", id: 2, topic: "chat" });
  // Publications reach their sender's own subscription too, before the ok.
  client.send({ t: "pub", id: 3, topic: "files", data: "AAEC", binary: true });
  assert.deepEqual(await client.next(), {
    t: "pub",
    topic: "files",
    data: "AAEC",
    binary: true,
    offset: 1,
    epoch: (await live.hub!.history("files")).position.epoch,
  });
  assert.deepEqual(await client.next(), { t: "ok", id: 3 });
  client.send({ t: "pub", id: 4, topic: "chat", data: "hi" });
  assert.equal((await client.next()).data, '{"name":"Ada","text":"hi"}');
  assert.deepEqual(await client.next(), { t: "ok", id: 4 });
  // Without an id: published, not answered (the next answer is the sub's).
  client.send({ t: "pub", topic: "chat", data: "quiet" });
  assert.equal((await client.next()).data, '{"name":"Ada","text":"quiet"}');
  assert.equal((await client.ask({ t: "sub", id: 5, topic: "x" })).id, 5);
  assert.deepEqual(seen, [new Uint8Array([0, 1, 2]), "hi", "quiet"]);
});

// --- Failing hooks ------------------------------------------------------------

Deno.test("live topics: a hook that throws, rejects or returns a wrong type is reported and answered unavailable; other sockets go on", async () => {
  const errors: unknown[] = [];
  await using live = startLive(
    new LiveTopics(recording(errors, {
      canSubscribe: (_socket, topic) => {
        if (topic === "throws") throw new Error("canSubscribe failed");
        return topic !== "odd" || ("yes" as unknown as boolean);
      },
      canPublish: () => Promise.reject(new Error("canPublish failed")),
    })),
  );
  await using client = await JsonClient.connected(live.url);
  await using other = await JsonClient.connected(live.url);
  await other.ask({ t: "sub", id: 1, topic: "room" });
  const unavailable = (id: number) => ({
    t: "error",
    id,
    code: "unavailable",
    message: "The server could not handle this command",
  });
  assert.deepEqual(
    await client.ask({ t: "sub", id: 1, topic: "throws" }),
    unavailable(1),
  );
  assert.deepEqual(
    await client.ask({ t: "pub", id: 2, topic: "room", data: "x" }),
    unavailable(2),
  );
  assert.deepEqual(
    await client.ask({ t: "sub", id: 3, topic: "odd" }),
    unavailable(3),
  );
  assert.equal(live.server.subscriberCount("throws"), 0);
  assert.equal(live.server.subscriberCount("odd"), 0);
  assert.deepEqual(
    errors.map((error) => (error as Error).message),
    [
      "canSubscribe failed",
      "canPublish failed",
      "canSubscribe returned a string: it must return a boolean",
    ],
  );
  assert.ok(errors[2] instanceof TypeError);
  // Both sockets are still served.
  assert.equal(
    (await client.ask({ t: "sub", id: 4, topic: "room" })).t,
    "subscribed",
  );
  live.server.publish("room", "still here");
  assert.equal((await other.next()).data, "still here");
  assert.equal((await client.next()).data, "still here");
});

// --- presence -----------------------------------------------------------------

Deno.test("live topics: presence counts two clients with their info, and drops one that leaves", async () => {
  await using live = startLive(new LiveTopics());
  const ada = await JsonClient.connected(`${live.url}?name=Ada`);
  await using bob = await JsonClient.connected(`${live.url}?name=Bob`);
  await ada.ask({ t: "sub", id: 1, topic: "room" });
  await bob.ask({ t: "sub", id: 1, topic: "room" });
  const presence = await bob.ask({ t: "presence", id: 2, topic: "room" });
  assert.equal(presence.t, "presence");
  assert.equal(presence.id, 2);
  assert.equal(presence.count, 2);
  const names = presence.members.map((m: Event) => m.info.name).sort();
  assert.deepEqual(names, ["Ada", "Bob"]);
  for (const member of presence.members) {
    assert.match(member.client, /^[A-Za-z0-9_-]{16}$/);
  }
  // A topic the client is not in, but may be: asked of the hub.
  assert.deepEqual(await bob.ask({ t: "presence", id: 3, topic: "empty" }), {
    t: "presence",
    id: 3,
    topic: "empty",
    count: 0,
    members: [],
  });
  // Ada's socket ends her subscriptions as it closes.
  const adaSocket = await live.sockets.next();
  await ada[Symbol.asyncDispose]();
  await within(adaSocket.closed, "Ada's socket to close");
  const after = await bob.ask({ t: "presence", id: 4, topic: "room" });
  assert.equal(after.count, 1);
  assert.deepEqual(after.members.map((m: Event) => m.info), [{ name: "Bob" }]);
});

// --- One JSON per publication -------------------------------------------------

Deno.test("live topics: a publication's pub JSON is made once for all its live subscribers", async () => {
  const derive = SharedMessage.prototype.derive;
  let made = 0;
  SharedMessage.prototype.derive = function (kind, make) {
    return derive.call(this, kind, (shared) => {
      made++;
      return make(shared);
    });
  };
  try {
    await using live = startLive(new LiveTopics());
    const clients = [
      await JsonClient.connected(live.url),
      await JsonClient.connected(live.url),
      await JsonClient.connected(live.url),
    ];
    try {
      for (const client of clients) {
        await client.ask({ t: "sub", id: 1, topic: "fan" });
      }
      made = 0;
      live.server.publish("fan", "to all");
      const received = await Promise.all(clients.map((c) => c.next()));
      for (const event of received) assert.equal(event.data, "to all");
      assert.equal(made, 1);
    } finally {
      for (const client of clients) await client[Symbol.asyncDispose]();
    }
  } finally {
    SharedMessage.prototype.derive = derive;
  }
});

// --- The socket's end ---------------------------------------------------------

Deno.test("live topics: a socket that closes while a hook decides leaves its topics at once and joins none after, and handle() resolves", async () => {
  const deciding = Promise.withResolvers<void>();
  const decide = Promise.withResolvers<boolean>();
  await using live = startLive(
    new LiveTopics({
      canSubscribe: (_socket, topic) => {
        if (topic !== "slow") return true;
        deciding.resolve();
        return decide.promise;
      },
    }),
  );
  const client = await JsonClient.connected(live.url);
  await client.ask({ t: "sub", id: 1, topic: "room" });
  client.send({ t: "sub", id: 2, topic: "slow" });
  await within(deciding.promise, "canSubscribe");
  await client[Symbol.asyncDispose]();
  const socket = await live.sockets.next();
  await within(socket.closed, "the server's socket to close");
  // Left while the hook still decides, not when it is done.
  assert.equal(live.server.subscriberCount("room"), 0);
  await within(live.handled[0], "handle() to resolve");
  decide.resolve(true);
  await sleep(0);
  assert.equal(live.server.subscriberCount("slow"), 0);
});

Deno.test("live topics: the server's unsubscribe() ends a subscription with a reason; isSubscribed() and subscriptions() tell them", async () => {
  const live = new LiveTopics();
  await using server = startLive(live);
  await using client = await JsonClient.connected(server.url);
  const socket = await server.sockets.next();
  await client.ask({ t: "sub", id: 1, topic: "a" });
  await client.ask({ t: "sub", id: 2, topic: "b" });
  assert.deepEqual(live.subscriptions(socket), ["a", "b"]);
  assert.equal(live.isSubscribed(socket, "a"), true);
  assert.deepEqual(socket.subscriptions, []); // the socket's own, not these
  assert.equal(live.unsubscribe(socket, "a", "Removed by a moderator"), true);
  assert.deepEqual(await client.next(), {
    t: "unsubscribed",
    topic: "a",
    reason: "Removed by a moderator",
  });
  assert.equal(live.unsubscribe(socket, "a"), false);
  assert.equal(live.isSubscribed(socket, "a"), false);
  assert.equal(server.server.subscriberCount("a"), 0);
});

// --- The LiveClient -----------------------------------------------------------

Deno.test("live topics with LiveClient: subscribe, publish (text and bytes) and presence", async () => {
  const live: LiveTopics<{ name: string }> = new LiveTopics({
    canPublish: (socket, topic) => live.isSubscribed(socket, topic),
  });
  await using server = startLive(live);
  await using client = new Watched(`${server.url}?name=Ada`);
  client.subscribe("room");
  assert.equal((await client.next("connected")).reconnected, false);
  assert.deepEqual(await client.next("subscribed"), {
    topic: "room",
    recovered: false,
    recovering: false,
    position: {
      offset: 0,
      epoch: (await server.hub!.history("room")).position.epoch,
    },
  });
  await client.publish("room", "hello");
  await client.publish("room", new Uint8Array([7, 8]));
  const [text, bytes] = await client.data(2);
  assert.equal(text, "hello");
  assert.deepEqual(bytes, new Uint8Array([7, 8]));
  await assert.rejects(
    client.publish("elsewhere", "x"),
    (error) => error instanceof LiveError && error.code === "forbidden",
  );
  assert.deepEqual(await client.presence("room"), {
    count: 1,
    members: [{ client: client.client, info: { name: "Ada" } }],
  });
});

Deno.test("live topics with LiveClient: after the server drops the connection, the client resubscribes from its position and gets exactly the missed publications, once", async () => {
  await using server = startLive(new LiveTopics());
  await using client = new Watched(server.url);
  client.subscribe("room");
  assert.equal((await client.next("connected")).reconnected, false);
  await client.next("subscribed");
  server.server.publish("room", "1");
  server.server.publish("room", "2");
  assert.deepEqual(await client.data(2), ["1", "2"]);
  await dropConnection(server, await server.sockets.next(), client);
  for (const text of ["3", "4", "5"]) server.server.publish("room", text);
  server.refusing = false;
  assert.equal((await client.next("connected")).reconnected, true);
  const subscribed = await client.next("subscribed");
  assert.equal(subscribed.recovering, true);
  assert.equal(subscribed.recovered, true);
  assert.equal(subscribed.position?.offset, 5);
  const missed = [];
  for (let i = 0; i < 3; i++) missed.push(await client.next("publication"));
  assert.deepEqual(missed.map((p) => [p.data, p.offset]), [
    ["3", 3],
    ["4", 4],
    ["5", 5],
  ]);
  // Live again, and nothing came twice: the next one is the next offset.
  server.server.publish("room", "6");
  assert.deepEqual(
    await client.next("publication").then((p) => [p.data, p.offset]),
    ["6", 6],
  );
});

Deno.test("live topics with LiveClient: after a server restart (in-memory history, a new epoch) the resubscription says recovered: false", async () => {
  const first = startLive(new LiveTopics());
  const port = first.server.addr.port;
  await using client = new Watched(first.url);
  let second: LiveServer | undefined;
  try {
    client.subscribe("room");
    assert.equal((await client.next("connected")).reconnected, false);
    await client.next("subscribed");
    first.server.publish("room", "a");
    const before = await client.next("publication");
    await first[Symbol.asyncDispose]();
    assert.equal((await client.next("disconnected")).code, 1001);
    second = startLive(new LiveTopics(), { port });
    // Published before the client is back (the listener accepts later).
    second.server.publish("room", "b");
    assert.equal((await client.next("connected")).reconnected, true);
    const subscribed = await client.next("subscribed");
    assert.equal(subscribed.recovering, true);
    assert.equal(subscribed.recovered, false);
    assert.equal(subscribed.position?.offset, 1);
    assert.notEqual(subscribed.position?.epoch, before.epoch);
    second.server.publish("room", "c");
    const after = await client.next("publication");
    assert.equal(after.data, "c"); // "b" is for the app's snapshot to show
    assert.equal(after.epoch, subscribed.position?.epoch);
  } finally {
    await client[Symbol.asyncDispose]();
    await second?.[Symbol.asyncDispose]();
  }
});

Deno.test("live topics with LiveClient: subscribe with last: 1 gets the latest publication first", async () => {
  await using server = startLive(new LiveTopics());
  server.server.publish("ticker/EURUSD", "1.08");
  server.server.publish("ticker/EURUSD", "1.09");
  await using client = new Watched(server.url);
  client.subscribe("ticker/EURUSD", { last: 1 });
  const subscribed = await client.next("subscribed");
  assert.equal(subscribed.recovered, false);
  assert.equal(subscribed.position?.offset, 2);
  const latest = await client.next("publication");
  assert.equal(latest.data, "1.09");
  assert.equal(latest.offset, 2);
});

Deno.test("live topics with LiveClient: a publication queued offline is handled after the resubscription (slow canSubscribe, canPublish that requires being subscribed)", async () => {
  let subscribing = 0;
  const live: LiveTopics = new LiveTopics({
    canSubscribe: async () => {
      subscribing++;
      // Slow: handled concurrently, the publication behind it would be
      // checked first, while the socket is in no topic, and refused.
      await sleep(100);
      return true;
    },
    canPublish: (socket, topic) => live.isSubscribed(socket, topic),
  });
  await using server = startLive(live);
  await using client = new Watched(server.url);
  client.subscribe("room");
  assert.equal((await client.next("connected")).reconnected, false);
  await client.next("subscribed");
  await dropConnection(server, await server.sockets.next(), client);
  const queued = client.publish("room", "typed while offline");
  queued.catch(() => {}); // awaited below; a failure must not go unhandled
  server.refusing = false;
  assert.equal((await client.next("connected")).reconnected, true);
  await within(queued, "the queued publication's ok");
  assert.equal(subscribing, 2);
  const subscribed = await client.next("subscribed");
  assert.equal(subscribed.recovered, true);
  const publication = await client.next("publication");
  assert.equal(publication.data, "typed while offline");
  assert.equal(publication.offset, 1);
});

// --- upgradeWebSocket() -------------------------------------------------------

Deno.test("live topics on Deno.serve with upgradeWebSocket({ hub }), and a TypeError for a socket without a hub", async () => {
  const hub = new TopicHub({ history: HISTORY });
  const live = new LiveTopics();
  const handled: Promise<void>[] = [];
  const refused: unknown[] = [];
  const http = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (request) => {
      const withHub = new URL(request.url).pathname === "/live";
      const { socket, response } = upgradeWebSocket(
        request,
        withHub ? { hub } : {},
      );
      try {
        handled.push(live.handle(socket));
      } catch (error) {
        refused.push(error);
        socket.close({ closeCode: 1000 });
      }
      return response;
    },
  );
  try {
    const base = `ws://127.0.0.1:${http.addr.port}`;
    {
      await using client = await JsonClient.connected(`${base}/live`);
      const subscribed = await client.ask({ t: "sub", id: 1, topic: "room" });
      assert.equal(subscribed.recovered, false);
      hub.publish("room", "over Deno's WebSocket");
      const pub = await client.next();
      assert.equal(pub.data, "over Deno's WebSocket");
      assert.equal(pub.offset, 1);
      assert.equal(
        (await client.ask({ t: "presence", id: 2, topic: "room" })).count,
        1,
      );
    }
    {
      await using client = await JsonClient.open(`${base}/nohub`);
      await within(client.closed, "the close");
    }
    assert.equal(refused.length, 1);
    assert.ok(refused[0] instanceof TypeError);
    assert.equal(
      (refused[0] as TypeError).message,
      "This socket has no topic hub: pass { hub } to upgradeWebSocket()",
    );
    await within(Promise.all(handled), "handle() to resolve");
    assert.equal(hub.subscriberCount("room"), 0);
  } finally {
    await http.shutdown();
  }
});

// --- Options ------------------------------------------------------------------

Deno.test("live topics: invalid options are refused; handle() refuses what is not a socket, info that is not JSON and a locked readable", async () => {
  assert.throws(() => new LiveTopics({ maxTopicsPerSocket: 0 }), RangeError);
  assert.throws(() => new LiveTopics({ maxTopicLength: 1.5 }), RangeError);
  assert.throws(
    () => new LiveTopics({ canPublish: true as never }),
    { name: "TypeError", message: "The canPublish option must be a function" },
  );
  const live = new LiveTopics();
  assert.throws(() => live.handle({} as WebSocketConnection), {
    name: "TypeError",
    message: "Live topics need a socket of serve() or upgradeWebSocket()",
  });
  const refused: unknown[] = [];
  await using server = serveLocal({}, (socket) => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    try {
      live.handle(socket, { info: cyclic });
    } catch (error) {
      refused.push(error);
    }
    // Refused before it took the readable: handled now.
    const handled = live.handle(socket);
    try {
      live.handle(socket);
    } catch (error) {
      refused.push(error);
    }
    return handled;
  });
  await using _client = await JsonClient.connected(
    `ws://127.0.0.1:${server.port}/`,
  );
  assert.equal(refused.length, 2);
  assert.ok(refused[0] instanceof TypeError);
  assert.equal(
    (refused[0] as Error).message,
    "The info must be JSON-serializable",
  );
  assert.ok(refused[1] instanceof TypeError); // the readable is locked
});

// --- Serving the client module ------------------------------------------------

Deno.test("live topics: clientScript() serves client.js as JavaScript with an ETag, 304 when it matches, no body for HEAD", async () => {
  const file = await Deno.readFile(CLIENT_JS);
  const response = await LiveTopics.clientScript();
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/javascript; charset=utf-8",
  );
  assert.equal(response.headers.get("cache-control"), "no-cache");
  const etag = response.headers.get("etag")!;
  assert.match(etag, /^"[A-Za-z0-9_-]{22}"$/);
  assert.deepEqual(await response.bytes(), file);
  const url = "http://localhost/live-client.js";
  const cached = await LiveTopics.clientScript(
    new Request(url, { headers: { "if-none-match": `"other", ${etag}` } }),
  );
  assert.equal(cached.status, 304);
  assert.equal(cached.body, null);
  const head = await LiveTopics.clientScript(
    new Request(url, { method: "HEAD" }),
  );
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  // Through a real server's fetch handler.
  await using server = startLive(new LiveTopics(), {
    fetch: (request) => LiveTopics.clientScript(request),
  });
  const served = await fetch(
    `http://127.0.0.1:${server.server.addr.port}/live-client.js`,
  );
  assert.equal(served.headers.get("etag"), etag);
  assert.deepEqual(await served.bytes(), file);
});
