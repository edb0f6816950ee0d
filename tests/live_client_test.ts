/**
 * The live topics client (src/live/client.js) in Deno and in headless
 * Chromium, against a scripted test double of the server: `Deno.serve` and
 * `Deno.upgradeWebSocket`, checking each command the client sends with the
 * protocol codec and answering with the codec's events, step by step as
 * each test says. Covers the handshake, resubscription from the last
 * position after a drop, the offline queue going out after it, the backoff
 * (injected randomness, short delays, no timing asserted), stopping, and
 * publish/presence answers.
 */

import { WatchedClient } from "./_live_events.ts";
import assert from "node:assert/strict";
import {
  type Command,
  connectedEvent,
  errorEvent,
  gapEvent,
  okEvent,
  parseCommand,
  presenceEvent,
  publicationEvent,
  subscribedEvent,
  unsubscribedEvent,
} from "../src/live/_protocol.ts";
import {
  LiveClient,
  type LiveClientOptions,
  LiveError,
  type Presence,
} from "../src/live/client.js";
import { Inbox, launchChromium, STEP_LIMIT, within } from "./_peer_helpers.ts";
import { assertBytesEqual, sleep } from "./_util.ts";

const CLIENT_JS = new URL("../src/live/client.js", import.meta.url);

// --- The scripted server ------------------------------------------------------

/** One accepted connection, as the server's script sees it. */
class Peer {
  #inbox = new Inbox<Command | Error>();
  /** Resolves with the close code and reason the server saw. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** The handshake's Sec-WebSocket-Protocol header, if any. */
  offered: string | null = null;

  constructor(readonly socket: WebSocket, readonly index: number) {
    socket.onmessage = (event) => {
      const result = parseCommand(event.data);
      this.#inbox.push(
        result.ok
          ? result.command
          : new Error(`Bad command: ${result.message}`),
      );
    };
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => {
        this.#inbox.push(new Error(`Closed (${event.code}) before a command`));
        resolve({ code: event.code, reason: event.reason });
      };
    });
  }

  /** The next command, of type `t`. */
  async expect<T extends Command["t"]>(
    t: T,
  ): Promise<Extract<Command, { t: T }>> {
    const command = await within(this.#inbox.next(), `a ${t} command`);
    if (command instanceof Error) throw command;
    assert.equal(command.t, t, `Got ${JSON.stringify(command)}`);
    return command as Extract<Command, { t: T }>;
  }

  /** Expects `connect` v1 and answers `connected`. */
  async accept(): Promise<void> {
    assert.deepEqual(await this.expect("connect"), { t: "connect", v: 1 });
    this.send(connectedEvent(`c${this.index}`));
  }

  send(event: string): void {
    this.socket.send(event);
  }

  close(code: number, reason = ""): void {
    this.socket.close(code, reason);
  }
}

interface ScriptedServer extends AsyncDisposable {
  /** `ws://…/live`. */
  url: string;
  origin: string;
  /** Upgrade requests so far, refused ones included. */
  attempts: number;
  /** Rejects with the first script's failure. */
  readonly failed: Promise<never>;
  /**
   * Set once a wait has thrown the script's failure: disposal then does not
   * throw it again (that would hide it in a SuppressedError).
   */
  reported: boolean;
}

/**
 * Runs `script` on each accepted connection (refusing the attempts
 * `refuse` picks with HTTP 503), serves the client at /client.js and a
 * page that loads it at /. Disposal closes what is still open, waits for
 * every script and fails the test with the first script's error.
 */
function startServer(
  script: (peer: Peer) => Promise<void> | void,
  refuse: (attempt: number) => boolean = () => false,
): ScriptedServer {
  const peers: Peer[] = [];
  const runs: Promise<unknown>[] = [];
  const failures: unknown[] = [];
  const failed = Promise.withResolvers<never>();
  failed.promise.catch(() => {}); // awaited only by what waits for the client
  const server = {
    url: "",
    origin: "",
    attempts: 0,
    failed: failed.promise,
    reported: false,
  } as ScriptedServer;
  const http = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (request) => {
      const { pathname } = new URL(request.url);
      if (pathname === "/client.js") {
        return new Response(await Deno.readFile(CLIENT_JS), {
          headers: { "content-type": "text/javascript; charset=utf-8" },
        });
      }
      if (pathname === "/") {
        return new Response(PAGE, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      if (pathname !== "/live") return new Response(null, { status: 404 });
      const attempt = server.attempts++;
      if (refuse(attempt)) return new Response("Busy", { status: 503 });
      // Read before the upgrade, which closes the request.
      const offered = request.headers.get("sec-websocket-protocol");
      const { socket, response } = Deno.upgradeWebSocket(request);
      const peer = new Peer(socket, attempt);
      peer.offered = offered;
      peers.push(peer);
      // A failing script fails the test at disposal, not as an unhandled
      // rejection in between.
      runs.push(
        new Promise((resolve) => socket.addEventListener("open", resolve))
          .then(() => script(peer))
          .then(() => undefined, (error) => {
            failures.push(error);
            failed.reject(error);
          }),
      );
      return response;
    },
  );
  server.origin = `http://127.0.0.1:${http.addr.port}`;
  server.url = `ws://127.0.0.1:${http.addr.port}/live`;
  server[Symbol.asyncDispose] = async () => {
    try {
      await within(Promise.all(runs), "the scripts");
      if (failures.length > 0 && !server.reported) throw failures[0];
    } finally {
      for (const peer of peers) {
        if (peer.socket.readyState < WebSocket.CLOSING) peer.close(1001);
      }
      await within(Promise.all(peers.map((p) => p.closed)), "the sockets");
      await within(http.shutdown(), "the server's shutdown");
    }
  };
  return server;
}

// --- The client's events ------------------------------------------------------

/**
 * A client whose events the test takes one at a time, per type, and whose
 * waits fail at once if the server's script fails meanwhile.
 */
class Recorded extends WatchedClient {
  #server: ScriptedServer;

  constructor(server: ScriptedServer, options?: LiveClientOptions) {
    super(server.url, options);
    this.#server = server;
  }

  /** Publishes, failing at once if the server's script fails meanwhile. */
  override publish(
    topic: string,
    data: string | Uint8Array | ArrayBuffer | ArrayBufferView,
  ): Promise<void> {
    return this.answer(super.publish(topic, data), "a publish answer");
  }

  /** Asks for presence, failing at once if the server's script fails meanwhile. */
  override presence(topic: string): Promise<Presence> {
    return this.answer(super.presence(topic), "a presence answer");
  }

  protected override async answer<T>(
    promise: Promise<T>,
    what: string,
  ): Promise<T> {
    const server = this.#server;
    const outcome = await within(
      Promise.race([
        promise.then((value) => ({ value })),
        server.failed.then(undefined, (failure) => ({ failure })),
      ]),
      what,
    );
    if ("value" in outcome) return outcome.value;
    server.reported = true;
    throw outcome.failure;
  }
}

/** The options of most test clients: quick retries, fixed "randomness". */
const FAST: LiveClientOptions = {
  initialDelay: 20,
  multiplier: 2,
  random: () => 0.5,
};

// --- Connecting ---------------------------------------------------------------

Deno.test("live client: connects with connect v1 and says connected (not reconnected) with the server's client id", async () => {
  await using server = startServer(async (peer) => {
    assert.equal(peer.offered, "live.v1, other");
    await peer.accept();
  });
  await using client = new Recorded(server, {
    ...FAST,
    protocols: ["live.v1", "other"],
  });
  assert.equal(client.state, "connecting");
  assert.equal(client.client, "");
  assert.deepEqual(await client.next("connected"), {
    reconnected: false,
    client: "c0",
  });
  assert.equal(client.state, "connected");
  assert.equal(client.client, "c0");
});

Deno.test("live client: subscribes with an id, reports subscribed with its position, then publications with data, offset and epoch (text and bytes)", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    const sub = await peer.expect("sub");
    assert.deepEqual(sub, { t: "sub", id: sub.id, topic: "room" });
    peer.send(
      subscribedEvent(sub.id, "room", false, { offset: 3, epoch: "e" }),
    );
    peer.send(publicationEvent("room", "hi", { offset: 4, epoch: "e" }));
    peer.send(publicationEvent("room", new Uint8Array([0, 1, 255])));
    // The next command is the unsub: the second subscribe sent nothing.
    const unsub = await peer.expect("unsub");
    assert.deepEqual(unsub, { t: "unsub", id: unsub.id, topic: "room" });
  });
  await using client = new Recorded(server, FAST);
  client.subscribe("room");
  assert.deepEqual(await client.next("subscribed"), {
    topic: "room",
    recovered: false,
    recovering: false,
    position: { offset: 3, epoch: "e" },
  });
  client.subscribe("room"); // already subscribed: nothing is sent
  assert.deepEqual(await client.next("publication"), {
    topic: "room",
    data: "hi",
    offset: 4,
    epoch: "e",
  });
  assert.deepEqual(await client.next("publication"), {
    topic: "room",
    data: new Uint8Array([0, 1, 255]),
    offset: undefined,
    epoch: undefined,
  });
  client.unsubscribe("room");
});

// --- Recovery -----------------------------------------------------------------

Deno.test("live client: after a drop it resubscribes every topic from its last position (last N where asked), THEN sends the publications queued offline", async () => {
  const e = "e1";
  await using server = startServer(async (peer) => {
    await peer.accept();
    if (peer.index === 0) {
      // room: recovers; ticker: the last price each time; plain: no history;
      // news: its epoch will change.
      const room = await peer.expect("sub");
      assert.equal(room.since, undefined);
      peer.send(
        subscribedEvent(room.id, "room", false, { offset: 3, epoch: e }),
      );
      peer.send(publicationEvent("room", "4", { offset: 4, epoch: e }));
      peer.send(publicationEvent("room", "5", { offset: 5, epoch: e }));
      const ticker = await peer.expect("sub");
      assert.equal(ticker.last, 1);
      peer.send(
        subscribedEvent(ticker.id, "ticker", false, { offset: 9, epoch: e }),
      );
      peer.send(publicationEvent("ticker", "1.10", { offset: 9, epoch: e }));
      const plain = await peer.expect("sub");
      peer.send(subscribedEvent(plain.id, "plain", false));
      peer.send(publicationEvent("plain", "p"));
      const news = await peer.expect("sub");
      peer.send(
        subscribedEvent(news.id, "news", false, { offset: 1, epoch: e }),
      );
      peer.send(gapEvent("news", { offset: 8, epoch: e }));
      peer.close(1001, "Going away");
      return;
    }
    if (peer.index === 1) {
      const subs = [
        await peer.expect("sub"),
        await peer.expect("sub"),
        await peer.expect("sub"),
        await peer.expect("sub"),
      ];
      assert.deepEqual(subs.map(({ id: _, ...rest }) => rest), [
        { t: "sub", topic: "room", since: { offset: 5, epoch: e } },
        { t: "sub", topic: "ticker", last: 1 },
        { t: "sub", topic: "plain" },
        { t: "sub", topic: "news", since: { offset: 8, epoch: e } },
      ]);
      // Only now the publications made while offline, in order.
      const a = await peer.expect("pub");
      const b = await peer.expect("pub");
      assert.deepEqual([a.topic, a.data, b.topic, b.data], [
        "room",
        "a",
        "room",
        "b",
      ]);
      const [room, ticker, plain, news] = subs;
      // Recovered up to 7, but the connection drops before 6 and 7 come.
      peer.send(
        subscribedEvent(room.id, "room", true, { offset: 7, epoch: e }),
      );
      peer.send(
        subscribedEvent(ticker.id, "ticker", false, { offset: 12, epoch: e }),
      );
      peer.send(subscribedEvent(plain.id, "plain", false));
      // The news history was lost: a new epoch, not recovered.
      peer.send(
        subscribedEvent(news.id, "news", false, { offset: 2, epoch: "e2" }),
      );
      peer.send(okEvent(a.id!));
      peer.send(errorEvent("forbidden", "Not in this room", b.id));
      peer.close(1012, "Restart");
      return;
    }
    // room stays at 5 (none of what it recovered came); news starts again
    // from its new epoch.
    const subs = [
      await peer.expect("sub"),
      await peer.expect("sub"),
      await peer.expect("sub"),
      await peer.expect("sub"),
    ];
    assert.deepEqual(subs.map((s) => [s.topic, s.since, s.last]), [
      ["room", { offset: 5, epoch: e }, undefined],
      ["ticker", undefined, 1],
      ["plain", undefined, undefined],
      ["news", { offset: 2, epoch: "e2" }, undefined],
    ]);
  });
  await using client = new Recorded(server, FAST);
  client.subscribe("room");
  client.subscribe("ticker", { last: 1 });
  client.subscribe("plain");
  client.subscribe("news");
  await client.next("connected");
  for (let i = 0; i < 4; i++) await client.next("subscribed");
  assert.deepEqual(
    [await client.next("publication"), await client.next("publication")].map(
      (p) => p.data,
    ),
    ["4", "5"],
  );
  assert.deepEqual(await client.next("gap"), {
    topic: "news",
    position: { offset: 8, epoch: e },
  });

  const drop = await client.next("disconnected");
  assert.deepEqual(drop, {
    code: 1001,
    reason: "Going away",
    willRetry: true,
    delay: 10,
  });
  assert.equal(client.state, "disconnected");
  // Published while offline: queued, sent after the resubscriptions.
  const a = client.publish("room", "a");
  const b = client.publish("room", "b");
  // Awaited below; handled now in case the test fails before.
  a.catch(() => {});
  b.catch(() => {});
  assert.deepEqual(await client.next("connected"), {
    reconnected: true,
    client: "c1",
  });
  const again = [];
  for (let i = 0; i < 4; i++) again.push(await client.next("subscribed"));
  assert.deepEqual(again, [
    {
      topic: "room",
      recovered: true,
      recovering: true,
      position: { offset: 7, epoch: e },
    },
    {
      topic: "ticker",
      recovered: false,
      recovering: false,
      position: { offset: 12, epoch: e },
    },
    {
      topic: "plain",
      recovered: false,
      recovering: false,
      position: undefined,
    },
    {
      topic: "news",
      recovered: false,
      recovering: true,
      position: { offset: 2, epoch: "e2" },
    },
  ]);
  await a;
  await assert.rejects(b, (error) => {
    assert.ok(error instanceof LiveError);
    assert.equal(error.code, "forbidden");
    assert.equal(error.message, "Not in this room");
    return true;
  });
  await client.next("disconnected");
  await client.next("connected");
});

// --- Backoff ------------------------------------------------------------------

Deno.test("live client: the delay grows on drops of unstable connections, faster on 1013, and on refused handshakes", async () => {
  await using server = startServer(
    async (peer) => {
      await peer.accept();
      if (peer.index === 0) peer.close(1001);
      if (peer.index === 1) peer.close(1013, "Try again later");
      if (peer.index === 3) peer.close(1001);
    },
    (attempt) => attempt === 2,
  );
  // The connections never stay up 60 s, so the delay never resets.
  await using client = new Recorded(server, {
    ...FAST,
    minUptime: 60_000,
  });
  const ends = [];
  for (let i = 0; i < 4; i++) {
    const { code, delay, willRetry } = await client.next("disconnected");
    assert.equal(willRetry, true);
    ends.push([code, delay]);
  }
  // Ceilings 20 * 2^n, halved by the injected randomness: 1013 counts one
  // more; a refused handshake is seen as 1006.
  assert.deepEqual(ends, [[1001, 10], [1013, 40], [1006, 80], [1001, 160]]);
  await client.next("connected");
});

Deno.test("live client: the delay resets only after a connection stayed up minUptime ms, and a 1013 then still waits longer", async () => {
  // The connections that stay up until the test lets them go.
  const releases = new Map([2, 3].map((i) => [i, Promise.withResolvers()]));
  await using server = startServer(
    async (peer) => {
      await peer.accept();
      const release = releases.get(peer.index);
      if (release) {
        await release.promise;
        peer.close(peer.index === 2 ? 1001 : 1013);
      }
    },
    (attempt) => attempt < 2,
  );
  await using client = new Recorded(server, { ...FAST, minUptime: 50 });
  assert.deepEqual((await client.next("disconnected")).delay, 10);
  assert.deepEqual((await client.next("disconnected")).delay, 20);
  for (const [index, expected] of [[2, 10], [3, 20]]) {
    await client.next("connected");
    await sleep(500); // well past minUptime
    releases.get(index)!.resolve(undefined);
    const { delay } = await client.next("disconnected");
    assert.equal(delay, expected);
  }
  await client.next("connected");
});

Deno.test("live client: gives up after maxAttempts attempts in a row, rejecting what was queued", async () => {
  await using server = startServer(() => {}, () => true);
  await using client = new Recorded(server, {
    ...FAST,
    maxAttempts: 3,
    random: () => 0,
  });
  const queued = client.publish("room", "x");
  const ends = [];
  for (let i = 0; i < 3; i++) {
    const { code, willRetry } = await client.next("disconnected");
    ends.push([code, willRetry]);
  }
  assert.deepEqual(ends, [[1006, true], [1006, true], [1006, false]]);
  assert.equal(client.state, "closed");
  await assert.rejects(queued, { name: "LiveError", code: "closed" });
  await sleep(50);
  assert.equal(server.attempts, 3);
});

Deno.test("live client: 1008 from the server (another protocol version) stops it after the error event", async () => {
  await using server = startServer(async (peer) => {
    await peer.expect("connect");
    peer.send(errorEvent("bad-request", "Unsupported protocol version"));
    peer.close(1008, "Unsupported protocol version");
  });
  await using client = new Recorded(server, FAST);
  assert.deepEqual(await client.next("error"), {
    code: "bad-request",
    message: "Unsupported protocol version",
  });
  assert.deepEqual(await client.next("disconnected"), {
    code: 1008,
    reason: "Unsupported protocol version",
    willRetry: false,
    delay: 0,
  });
  assert.equal(client.state, "closed");
  await sleep(50);
  assert.equal(server.attempts, 1);
});

Deno.test("live client: a close code in stopCodes stops it; any other reconnects", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    peer.close(peer.index === 0 ? 4002 : 4001, "Session expired");
  });
  await using client = new Recorded(server, { ...FAST, stopCodes: [4001] });
  assert.deepEqual(
    [await client.next("disconnected"), await client.next("disconnected")]
      .map(({ code, willRetry }) => [code, willRetry]),
    [[4002, true], [4001, false]],
  );
  assert.equal(client.state, "closed");
});

Deno.test("live client: an attempt the server does not answer within connectTimeout is closed and retried", async () => {
  await using server = startServer(async (peer) => {
    if (peer.index === 0) {
      await peer.expect("connect"); // and no answer
      await peer.closed;
      return;
    }
    await peer.accept();
  });
  await using client = new Recorded(server, {
    ...FAST,
    connectTimeout: 100,
  });
  const { willRetry } = await client.next("disconnected");
  assert.equal(willRetry, true);
  assert.deepEqual(await client.next("connected"), {
    reconnected: false,
    client: "c1",
  });
});

// --- Stopping -----------------------------------------------------------------

Deno.test("live client: close() closes with 1000, rejects what awaits an answer and never reconnects", async () => {
  let closed: Promise<{ code: number; reason: string }> | undefined;
  const published = Promise.withResolvers<void>();
  await using server = startServer(async (peer) => {
    closed = peer.closed;
    await peer.accept();
    await peer.expect("pub"); // and no answer
    published.resolve();
  });
  const client = new Recorded(server, { ...FAST, initialDelay: 1 });
  await client.next("connected");
  const pending = client.publish("room", "x");
  await within(published.promise, "the publication");
  client.close();
  assert.equal(client.state, "closed");
  await assert.rejects(pending, { name: "LiveError", code: "closed" });
  await assert.rejects(client.publish("room", "y"), { code: "closed" });
  await assert.rejects(client.presence("room"), { code: "closed" });
  assert.throws(() => client.subscribe("room"), { code: "closed" });
  assert.deepEqual(await client.next("disconnected"), {
    code: 1000,
    reason: "",
    willRetry: false,
    delay: 0,
  });
  assert.deepEqual(await closed, { code: 1000, reason: "" });
  await sleep(50);
  assert.equal(server.attempts, 1);
  client.close(); // again: nothing
});

Deno.test("live client: close() while waiting to retry ends at once, leaving no timer", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    peer.close(1012);
  });
  // A retry 15 s away: the test's sanitizer fails if close() leaves its timer.
  const client = new Recorded(server, {
    initialDelay: 30_000,
    random: () => 0.5,
  });
  assert.equal((await client.next("disconnected")).delay, 15_000);
  client.close();
  assert.equal(client.state, "closed");
  assert.equal(server.attempts, 1);
});

// --- Requests -----------------------------------------------------------------

Deno.test("live client: publish resolves on ok and rejects with the server's code on error; bytes go in base64", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    const text = await peer.expect("pub");
    assert.deepEqual(text, {
      t: "pub",
      id: text.id,
      topic: "room",
      data: "hi ✓",
    });
    peer.send(okEvent(text.id!));
    const bytes = await peer.expect("pub");
    assert.deepEqual(bytes.data, new Uint8Array([0, 1, 2, 255]));
    peer.send(errorEvent("forbidden", "Publishing is off", bytes.id));
    const view = await peer.expect("pub");
    assert.deepEqual(view.data, new Uint8Array([2, 3]));
    peer.send(okEvent(view.id!));
    const buffer = await peer.expect("pub");
    assert.deepEqual(buffer.data, new Uint8Array([4, 5]));
    peer.send(okEvent(buffer.id!));
  });
  await using client = new Recorded(server, FAST);
  await client.next("connected");
  assert.equal(await client.publish("room", "hi ✓"), undefined);
  await assert.rejects(
    client.publish("room", new Uint8Array([0, 1, 2, 255])),
    { name: "LiveError", code: "forbidden", message: "Publishing is off" },
  );
  await client.publish(
    "room",
    new DataView(new Uint8Array([1, 2, 3]).buffer, 1, 2),
  );
  await client.publish("room", new Uint8Array([4, 5]).buffer);
  await assert.rejects(client.publish("", "x"), TypeError);
  await assert.rejects(client.publish("room", 42 as never), TypeError);
});

Deno.test("live client: without Uint8Array's base64 methods (older browsers) bytes still go out and come in whole", async () => {
  // 100,000 bytes: more than one chunk of the fallback's binary string.
  const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256);
  const send = Promise.withResolvers<void>();
  await using server = startServer(async (peer) => {
    await peer.accept();
    const pub = await peer.expect("pub");
    assertBytesEqual(pub.data, bytes);
    peer.send(okEvent(pub.id!));
    const sub = await peer.expect("sub");
    peer.send(subscribedEvent(sub.id, "files", false));
    const event = publicationEvent("files", bytes);
    await send.promise;
    peer.send(event);
  });
  await using client = new Recorded(server, FAST);
  await client.next("connected");
  const { toBase64 } = Uint8Array.prototype;
  const { fromBase64 } = Uint8Array;
  let published;
  try {
    // deno-lint-ignore no-explicit-any
    delete (Uint8Array.prototype as any).toBase64;
    published = client.publish("files", bytes); // encodes at once
  } finally {
    Uint8Array.prototype.toBase64 = toBase64;
  }
  await published;
  client.subscribe("files");
  await client.next("subscribed");
  // The server parses nothing more: only the client decodes meanwhile.
  // deno-lint-ignore no-explicit-any
  delete (Uint8Array as any).fromBase64;
  try {
    send.resolve();
    const { data } = await client.next("publication");
    assertBytesEqual(data, bytes);
  } finally {
    Uint8Array.fromBase64 = fromBase64;
  }
});

Deno.test("live client: presence resolves with count and members, rejects with the server's code, and with disconnected when offline", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    const first = await peer.expect("presence");
    assert.equal(first.topic, "room");
    peer.send(presenceEvent(first.id, "room", {
      count: 2,
      members: [{ client: "c0", info: { name: "Ada" } }, { client: "c9" }],
    }));
    const second = await peer.expect("presence");
    peer.send(
      errorEvent("not-subscribed", "Not subscribed to secret", second.id),
    );
    peer.close(1001);
  });
  await using client = new Recorded(server, {
    ...FAST,
    initialDelay: 60_000,
  });
  await client.next("connected");
  assert.deepEqual(await client.presence("room"), {
    count: 2,
    members: [{ client: "c0", info: { name: "Ada" } }, { client: "c9" }],
  });
  await assert.rejects(client.presence("secret"), { code: "not-subscribed" });
  await client.next("disconnected");
  await assert.rejects(client.presence("room"), { code: "disconnected" });
});

Deno.test("live client: the offline queue keeps maxQueued publications and refuses the newest beyond it", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    for (const data of ["1", "2"]) {
      const pub = await peer.expect("pub");
      assert.equal(pub.data, data);
      peer.send(okEvent(pub.id!));
    }
  });
  await using client = new Recorded(server, { ...FAST, maxQueued: 2 });
  const first = client.publish("room", "1");
  const second = client.publish("room", "2");
  await assert.rejects(client.publish("room", "3"), { code: "queue-full" });
  await Promise.all([first, second]);
});

Deno.test("live client: a topic the server refused or ended, or the app left, is not resubscribed", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    if (peer.index === 0) {
      const secret = await peer.expect("sub");
      peer.send(errorEvent("forbidden", "No", secret.id));
      const kicked = await peer.expect("sub");
      peer.send(subscribedEvent(kicked.id, "kicked", false));
      peer.send(unsubscribedEvent("kicked", { reason: "Kicked" }));
      const left = await peer.expect("sub");
      const unsub = await peer.expect("unsub");
      assert.equal(unsub.topic, "left");
      // Answered late, after the app left: ignored.
      peer.send(subscribedEvent(left.id, "left", false));
      peer.send(publicationEvent("left", "late"));
      peer.send(unsubscribedEvent("left", { id: unsub.id }));
      const kept = await peer.expect("sub");
      peer.send(subscribedEvent(kept.id, "kept", false));
      peer.close(1001);
      return;
    }
    const sub = await peer.expect("sub");
    assert.equal(sub.topic, "kept");
    peer.send(subscribedEvent(sub.id, "kept", false));
  });
  await using client = new Recorded(server, FAST);
  client.subscribe("secret");
  client.subscribe("kicked");
  await client.next("connected");
  assert.deepEqual(await client.next("error"), {
    code: "forbidden",
    message: "No",
    topic: "secret",
  });
  assert.equal((await client.next("subscribed")).topic, "kicked");
  assert.deepEqual(await client.next("unsubscribed"), {
    topic: "kicked",
    reason: "Kicked",
  });
  client.subscribe("left");
  client.unsubscribe("left");
  client.unsubscribe("never"); // nothing
  client.subscribe("kept");
  // The next subscribed is "kept": "left"'s late answer made no event.
  assert.equal((await client.next("subscribed")).topic, "kept");
  await client.next("disconnected");
  await client.next("connected");
  assert.equal((await client.next("subscribed")).topic, "kept");
  assert.equal(client.log.includes("publication"), false);
});

Deno.test("live client: a frame that is not a JSON object is a protocol error event; an unknown event is ignored", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    peer.send("not JSON");
    peer.socket.send(new Uint8Array([123, 125])); // "{}", but binary
    peer.send("[]");
    peer.send('{"t":"from-v2","topic":"room"}');
    peer.send(errorEvent("unavailable", "Last"));
  });
  await using client = new Recorded(server, FAST);
  const errors = [];
  for (let i = 0; i < 4; i++) errors.push(await client.next("error"));
  const protocol = {
    code: "protocol",
    message: "The server sent a frame that is not a JSON object",
  };
  assert.deepEqual(errors, [protocol, protocol, protocol, {
    code: "unavailable",
    message: "Last",
  }]);
  assert.deepEqual(client.log, [
    "connected",
    "error",
    "error",
    "error",
    "error",
  ]);
});

Deno.test("live client: bad options and a bad URL throw at construction", () => {
  assert.throws(
    () => new LiveClient("ws://127.0.0.1:1/", { maxDelay: -1 }),
    RangeError,
  );
  assert.throws(
    () => new LiveClient("ws://127.0.0.1:1/", { multiplier: 0.5 }),
    RangeError,
  );
  assert.throws(
    () => new LiveClient("ws://127.0.0.1:1/", { maxAttempts: 0 }),
    RangeError,
  );
  assert.throws(() => new LiveClient("not a url"), { name: "SyntaxError" });
});

// --- In a browser page --------------------------------------------------------

/** What the page keeps on its window. */
interface InPage {
  live: LiveClient;
  events: { type: string; detail: Record<string, unknown> }[];
}

/** The page: loads /client.js as a module and records the client's events. */
const PAGE = `<!doctype html>
<title>live client</title>
<script type="module">
  import { LiveClient } from "/client.js";
  const events = [];
  const live = new LiveClient(\`ws://\${location.host}/live\`, { initialDelay: 50 });
  for (const type of ["connected", "disconnected", "subscribed", "publication", "gap", "error"]) {
    live.addEventListener(type, ({ detail }) => {
      events.push({
        type,
        detail: detail.data instanceof Uint8Array ? { ...detail, data: { bytes: [...detail.data] } } : detail,
      });
    });
  }
  live.subscribe("room");
  Object.assign(window, { live, events });
</script>
`;

Deno.test("live client: in headless Chromium it loads as a page module, connects, recovers after a drop and publishes", async () => {
  await using server = startServer(async (peer) => {
    await peer.accept();
    const sub = await peer.expect("sub");
    if (peer.index === 0) {
      assert.equal(sub.since, undefined);
      peer.send(
        subscribedEvent(sub.id, "room", false, { offset: 1, epoch: "e" }),
      );
      peer.send(publicationEvent("room", "hello", { offset: 2, epoch: "e" }));
      peer.send(
        publicationEvent("room", new Uint8Array([0, 255]), {
          offset: 3,
          epoch: "e",
        }),
      );
      const pub = await peer.expect("pub");
      assert.equal(pub.data, "from the page");
      peer.send(okEvent(pub.id!));
      peer.close(1012, "Restart");
      return;
    }
    assert.deepEqual(sub.since, { offset: 3, epoch: "e" });
    peer.send(subscribedEvent(sub.id, "room", true, { offset: 4, epoch: "e" }));
    peer.send(publicationEvent("room", "missed", { offset: 4, epoch: "e" }));
  });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    assert.equal((await page.goto(`${server.origin}/`))?.status(), 200);
    const count = (type: string, n: number) =>
      page.waitForFunction(
        ([type, n]) =>
          (globalThis as unknown as InPage).events.filter((e) =>
            e.type === type
          )
            .length >= (n as number),
        [type, n],
        { timeout: STEP_LIMIT },
      );
    await count("publication", 2);
    await page.evaluate(() =>
      (globalThis as unknown as InPage).live.publish("room", "from the page")
    );
    await count("publication", 3);
    const events = await page.evaluate(() =>
      (globalThis as unknown as InPage).events
    );
    assert.deepEqual(events, [
      { type: "connected", detail: { reconnected: false, client: "c0" } },
      {
        type: "subscribed",
        detail: {
          topic: "room",
          recovered: false,
          recovering: false,
          position: { offset: 1, epoch: "e" },
        },
      },
      {
        type: "publication",
        detail: { topic: "room", data: "hello", offset: 2, epoch: "e" },
      },
      {
        type: "publication",
        detail: {
          topic: "room",
          data: { bytes: [0, 255] },
          offset: 3,
          epoch: "e",
        },
      },
      {
        type: "disconnected",
        detail: {
          code: 1012,
          reason: "Restart",
          willRetry: true,
          delay: events[4]?.detail.delay,
        },
      },
      { type: "connected", detail: { reconnected: true, client: "c1" } },
      {
        type: "subscribed",
        detail: {
          topic: "room",
          recovered: true,
          recovering: true,
          position: { offset: 4, epoch: "e" },
        },
      },
      {
        type: "publication",
        detail: { topic: "room", data: "missed", offset: 4, epoch: "e" },
      },
    ]);
    // 1012 asks for time: below 50 * 2 ms.
    const delay = events[4].detail.delay as number;
    assert.ok(delay >= 0 && delay < 100, `delay ${delay}`);
    await page.evaluate(() => (globalThis as unknown as InPage).live.close());
    await count("disconnected", 2);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
