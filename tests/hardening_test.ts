import assert from "node:assert/strict";
import { connect, type WebSocketCloseResult } from "../mod.ts";
import { RawClient, text, upgradeRequest } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import { makeCertificates } from "./_tls.ts";
import {
  deadline,
  DeadlineError,
  mulberry32,
  shiftClock,
  sleep,
  start,
  stopChild,
  WAIT_LIMIT,
  withFastIntervals,
} from "./_util.ts";

async function roundTrip(client: RawClient, message: string): Promise<string> {
  await client.write(frame(1, message));
  return text((await client.readFrame())!.payload);
}

Deno.test("200 stalled half handshakes do not block a normal client, and are closed", async () => {
  await using server = start({ handshakeTimeout: 1000 });
  const stalled: RawClient[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      const client = await RawClient.connect(server.addr.port);
      await client.write("GET / HTTP/1.1\r\nHost: x\r\n");
      stalled.push(client);
    }
    await using good = await RawClient.open(server.addr.port);
    assert.equal(await roundTrip(good, "still served"), "still served");
    for (const client of stalled) assert.equal(await client.readEof(), true);
  } finally {
    for (const client of stalled) client.close();
  }
});

Deno.test("a head that grows past maxHeadSize without ending gets 431", async () => {
  await using server = start({ maxHeadSize: 2048 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\n" + "X-Long: a\r\n".repeat(400));
  assert.equal((await client.readHead()).status, 431);
});

// Heartbeat timings: the assertions hold whatever the scheduling delays (a
// loaded machine stalls this process, server and client alike, for 100s of
// ms): a close never comes before idleTimeout, and a live peer's longest
// silence (one ping interval plus a round trip) is far below idleTimeout.

Deno.test("heartbeat: a peer that never answers pings is closed with 1001 after idleTimeout", async () => {
  const closes: WebSocketCloseResult[] = [];
  await using server = start({
    pingInterval: 50,
    idleTimeout: 800,
    onClose: (_socket, info) => closes.push(info),
  });
  // Taken before the connection exists, so the server's count of silence
  // starts after it.
  const started = Date.now();
  await using client = await RawClient.open(server.addr.port);
  const ping = await client.readFrame();
  assert.equal(ping?.opcode, 9, "the server pings an idle peer");
  let close = await client.readFrame();
  while (close?.opcode === 9) {
    assert.ok(Date.now() - started < WAIT_LIMIT, "no close in 10 s");
    close = await client.readFrame();
  }
  assert.equal(close?.opcode, 8);
  assert.equal((close!.payload[0] << 8) | close!.payload[1], 1001);
  assert.equal(text(close!.payload.subarray(2)), "Idle timeout");
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 800, `closed after ${elapsed} ms, before idleTimeout`);
  client.close();
  await deadline(server.shutdown(), "the shutdown");
  assert.equal(closes[0].closeCode, 1001);
  assert.equal(closes[0].wasClean, false);
});

Deno.test("heartbeat: a peer that answers pings stays open past idleTimeout", async () => {
  // 800 ms of idleTimeout against a longest silence of ~100 ms: stalls of
  // up to ~700 ms cannot close it; running twice idleTimeout shows that
  // pongs count as activity.
  await using server = start({ pingInterval: 50, idleTimeout: 800 });
  await using client = await RawClient.open(server.addr.port);
  const until = Date.now() + 1600;
  let pings = 0;
  while (Date.now() < until) {
    const ping = await client.readFrame();
    assert.equal(ping?.opcode, 9, "a ping, not a close");
    pings++;
    await client.write(frame(10, ping!.payload));
  }
  assert.ok(pings >= 3, `${pings} pings`);
  await client.write(frame(1, "alive"));
  // A ping may still come before the echo.
  let echoed = await client.readFrame();
  while (echoed?.opcode === 9) echoed = await client.readFrame();
  assert.equal(echoed?.opcode, 1, "the echo, not a close");
  assert.equal(text(echoed!.payload), "alive");
});

Deno.test("heartbeat: idleTimeout 0 never closes a peer, even a silent one that answers no ping", async () => {
  await using server = start({ pingInterval: 50, idleTimeout: 0 });
  await using client = await RawClient.open(server.addr.port);
  // An hour passes for the heartbeat (it compares Date.now() readings):
  // any idle timeout at all would close the connection at its next tick.
  using _clock = shiftClock(3_600_000);
  const until = performance.now() + 500;
  let pings = 0;
  while (performance.now() < until) {
    const next = await client.readFrame();
    assert.equal(next?.opcode, 9, "a ping, never a close");
    pings++;
  }
  assert.ok(pings >= 2, `${pings} pings`);
});

Deno.test("heartbeat: pingInterval 0 sends no ping; idleTimeout still closes with 1001", async () => {
  await using server = start({ pingInterval: 0, idleTimeout: 400 });
  await using client = await RawClient.open(server.addr.port);
  // The heartbeat still runs (every 100 ms, for the idle timeout), so a
  // ping would come before the close.
  const first = await client.readFrame();
  assert.equal(first?.opcode, 8, `a close, not opcode ${first?.opcode}`);
  assert.equal((first!.payload[0] << 8) | first!.payload[1], 1001);
});

Deno.test("heartbeat: pingInterval 0 never pings a peer, however long it is silent", async () => {
  // The idle check's timer ticks every 50 ms rather than every 15 minutes,
  // and 10 minutes pass for the heartbeat: any ping interval at all would
  // send a ping at the next tick.
  await using server = withFastIntervals(
    50,
    () => start({ pingInterval: 0, idleTimeout: 3_600_000 }),
  );
  await using client = await RawClient.open(server.addr.port);
  using _clock = shiftClock(600_000);
  client.timeout = 500;
  const next = await client.readFrame().catch((error) => error);
  assert.ok(
    next instanceof DeadlineError,
    `nothing in 500 ms, not ${next?.opcode ?? next}`,
  );
});

/**
 * Runs `make` with `setInterval` spied: the delays of the interval timers
 * started meanwhile (awaits included) are pushed to `delays`.
 */
async function spyIntervals<T>(
  delays: number[],
  make: () => T | Promise<T>,
): Promise<T> {
  const setInterval = globalThis.setInterval;
  globalThis.setInterval = ((fn: () => void, ms?: number) => {
    delays.push(ms ?? 0);
    return setInterval(fn, ms);
  }) as typeof setInterval;
  try {
    return await make();
  } finally {
    globalThis.setInterval = setInterval;
  }
}

Deno.test("heartbeat: the check runs every idleTimeout / 4, or every pingInterval when shorter, on a server and on a client", async () => {
  const cases = [
    // pingInterval, idleTimeout, the check's interval
    [0, 4_000, 1_000],
    [30_000, 60_000, 15_000],
    [500, 4_000, 500],
    [2_000, 0, 2_000],
  ];
  for (const [pingInterval, idleTimeout, every] of cases) {
    const what = `pingInterval ${pingInterval}, idleTimeout ${idleTimeout}`;
    const serverDelays: number[] = [];
    await using server = await spyIntervals(
      serverDelays,
      () => start({ pingInterval, idleTimeout }),
    );
    assert.deepEqual(serverDelays, [every], `the server's, ${what}`);
    const clientDelays: number[] = [];
    const client = await spyIntervals(
      clientDelays,
      () =>
        connect(`ws://127.0.0.1:${server.addr.port}/`, {
          pingInterval,
          idleTimeout,
        }),
    );
    // The server in this process may start timers of its own meanwhile.
    assert.ok(
      clientDelays.includes(every),
      `the client's, ${what}: ${clientDelays}`,
    );
    client.close();
    await deadline(client.closed, "the client's close");
  }
  // Both off: no timer at all.
  const none: number[] = [];
  await using quiet = await spyIntervals(
    none,
    () => start({ pingInterval: 0, idleTimeout: 0 }),
  );
  assert.ok(quiet.addr.port > 0);
  assert.deepEqual(none, []);
});

Deno.test("§10.4 a frame header announcing 16 MiB commits no memory by itself: 32 connections that announce 16 MiB - 1 and send 10 bytes cost little", async () => {
  const MiB = 1024 * 1024;
  await using server = start(); // maxMessageSize: 16 MiB
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 32; i++) {
      clients.push(await RawClient.open(server.addr.port));
    }
    const probe = await RawClient.open(server.addr.port);
    clients.push(probe);
    // A masked binary frame of 16 MiB - 1 bytes (a 64-bit length), cut off
    // after its first 10 bytes of payload.
    const announced = frame(2, new Uint8Array(10), { length: 16 * MiB - 1 });
    // Memory outside the JavaScript heap: ArrayBuffers, even untouched ones.
    const before = Deno.memoryUsage().external;
    for (const client of clients.slice(0, -1)) await client.write(announced);
    // Once the probe's ping is answered, the server has read what came
    // before it; a little longer, for good measure.
    await probe.write(frame(9, "probe"));
    assert.equal((await probe.readFrame())?.opcode, 10);
    let growth = 0;
    for (let i = 0; i < 10 && growth < 64 * MiB; i++) {
      await sleep(20);
      growth = Deno.memoryUsage().external - before;
    }
    // What the connections hold for 10 bytes each is 64 KiB (a message
    // buffer's least size): 2 MiB in all; a buffer of the announced size
    // would be 512 MiB.
    assert.ok(growth < 64 * MiB, `memory grew by ${growth >> 20} MiB`);
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("a message split into more than maxFragments frames fails with 1008", async () => {
  await using server = start({ maxFragments: 4 });
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(1, "a", { fin: false }));
  for (let i = 0; i < 4; i++) await client.write(frame(0, "b", { fin: false }));
  assert.equal((await client.readUntilClose()).code, 1008);
  await using other = await RawClient.open(server.addr.port);
  assert.equal(await roundTrip(other, "server still up"), "server still up");
});

Deno.test("upgrades beyond maxConnections are refused with 503 and Retry-After: 1", async () => {
  await using server = start({ maxConnections: 2 });
  await using a = await RawClient.open(server.addr.port);
  await using b = await RawClient.open(server.addr.port);
  await using c = await RawClient.connect(server.addr.port);
  await c.write(upgradeRequest(server.addr.port));
  const answer = await c.readHead();
  assert.equal(answer.status, 503);
  assert.equal(answer.headers.get("retry-after"), "1");
  assert.equal(server.connections, 2);
  assert.equal(await roundTrip(a, "a"), "a");
  // Once one closes, a new upgrade is accepted again.
  await b.write(frame(8, closePayload(1000)));
  await b.readUntilClose();
  for (const until = Date.now() + WAIT_LIMIT; server.connections > 1;) {
    assert.ok(Date.now() < until, "the closed connection is still counted");
    await sleep(5);
  }
  await using d = await RawClient.open(server.addr.port);
  assert.equal(await roundTrip(d, "d"), "d");
});

Deno.test("onOpen and onClose report each socket with its close code", async () => {
  const events: string[] = [];
  await using server = start({
    onOpen: () => events.push("open"),
    onClose: (_socket, info) =>
      events.push(`close ${info.closeCode} ${info.reason} ${info.wasClean}`),
  });
  await using client = await RawClient.open(server.addr.port);
  await client.write(frame(8, closePayload(4321, "gone")));
  await client.readUntilClose();
  await deadline(server.shutdown(), "the shutdown");
  assert.deepEqual(events, ["open", "close 4321 gone true"]);
});

Deno.test("wss: serve() with cert and key round trips over TLS trusting a private CA", async () => {
  const { ca, cert, key } = await makeCertificates();
  const seen = Promise.withResolvers<string>();
  await using server = start({ cert, key }, (socket) => {
    seen.resolve(socket.request.url);
    return socket.readable.pipeTo(socket.writable);
  });
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: server.addr.port,
    caCerts: [ca],
  });
  await using client = await RawClient.open(server.addr.port, {}, conn);
  assert.equal(await roundTrip(client, "over TLS"), "over TLS");
  assert.match(
    await deadline(seen.promise, "what the server saw"),
    /^https:\/\/127\.0\.0\.1:\d+\/chat\?x=1$/,
  );
  await client.write(frame(8, closePayload(1000)));
  assert.equal((await client.readUntilClose()).code, 1000);
});

Deno.test("fuzz: random and mutated bytes after the handshake never crash the server or disturb a good client", async () => {
  const errors: unknown[] = [];
  await using server = start({
    closeTimeout: 500,
    onError: (e) => errors.push(e),
  });
  await using good = await RawClient.open(server.addr.port);
  const next = mulberry32(0x5eed);
  const valid = [
    frame(1, "hello"),
    frame(2, new Uint8Array(300)),
    frame(9, "p"),
    frame(1, "frag", { fin: false }),
    frame(0, "ment"),
    frame(8, closePayload(1000, "bye")),
  ];
  const outcomes: string[] = [];
  for (let round = 0; round < 6; round++) {
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => RawClient.open(server.addr.port)),
    );
    await Promise.all(clients.map(async (client) => {
      try {
        const parts: Uint8Array[] = [];
        for (let i = 0; i < 1 + Math.floor(next() * 6); i++) {
          const base = valid[Math.floor(next() * valid.length)].slice();
          if (next() < 0.5) {
            for (let m = 0; m < 1 + Math.floor(next() * 4); m++) {
              base[Math.floor(next() * base.length)] = Math.floor(next() * 256);
            }
          }
          // Every byte comes from the seeded generator, so a failing run
          // replays exactly.
          parts.push(
            next() < 0.2
              ? Uint8Array.from({ length: 64 }, () => (next() * 256) | 0)
              : base,
          );
        }
        for (const part of parts) await client.write(part);
        // Then stop sending: the server must end the connection itself,
        // with a close frame, or be waiting for more (then we close).
        const timer = setTimeout(
          () => client.conn.closeWrite().catch(() => {}),
          300,
        );
        try {
          let f = await client.readFrame();
          while (f && f.opcode !== 8) f = await client.readFrame();
          outcomes.push(
            f ? `close ${(f.payload[0] << 8) | f.payload[1]}` : "tcp close",
          );
        } finally {
          clearTimeout(timer);
        }
      } catch (error) {
        if (
          !(error instanceof Deno.errors.ConnectionReset ||
            error instanceof Deno.errors.BrokenPipe)
        ) throw error;
        outcomes.push("reset");
      } finally {
        client.close();
      }
    }));
    assert.equal(await roundTrip(good, `round ${round}`), `round ${round}`);
  }
  assert.equal(outcomes.length, 120);
  for (const outcome of outcomes) {
    assert.match(
      outcome,
      /^(close (1000|1002|1005|1007|1008|1009)|tcp close|reset)$/,
    );
  }
  assert.ok(
    outcomes.some((o) => o === "close 1002"),
    "some inputs were rejected with 1002",
  );
  assert.deepEqual(errors, [], "nothing reached onError");
});

Deno.test("shutdown() does not wait for a handler that never settles", async () => {
  const server = start({}, () => new Promise<void>(() => {}));
  await using client = await RawClient.open(server.addr.port);
  const done = server.shutdown();
  const close = await client.readFrame();
  assert.equal(close?.opcode, 8);
  await client.write(frame(8, close!.payload));
  assert.equal(await client.readEof(), true);
  client.close();
  await deadline(done, "the shutdown");
});

Deno.test("running out of file descriptors is reported and the server keeps accepting", async () => {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n 64 && exec "${Deno.execPath()}" run -A tests/_fixtures/fd_limited_server.ts`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = lineReader(child.stdout);
  const conns: Deno.Conn[] = [];
  try {
    const port = Number(await lines.next());
    // More connections than descriptors: accept fails with EMFILE.
    for (let i = 0; i < 100; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    assert.match(await lines.next(), /^error: /);
    for (const conn of conns.splice(0)) conn.close();
    // Once descriptors are free again, a client is served as usual (the
    // server retries accepting every 100 ms; RawClient waits 10 s at most).
    await using client = await RawClient.open(port);
    assert.equal(await roundTrip(client, "back"), "back");
  } finally {
    for (const conn of conns) conn.close();
    // Closing stdin asks the server to shut down; it is killed if it does not.
    await child.stdin.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await stopChild(child);
  }
});

/** Reads a byte stream line by line. */
function lineReader(stream: ReadableStream<Uint8Array>) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return {
    async next(): Promise<string> {
      while (!buffered.includes("\n")) {
        const { value, done } = await deadline(
          reader.read(),
          "a line from the child process",
        );
        if (done) throw new Error("The server exited");
        buffered += value;
      }
      const end = buffered.indexOf("\n");
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      return line;
    },
    cancel: () => reader.cancel(),
  };
}
