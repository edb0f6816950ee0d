// The heartbeat over TCP: a silent peer is pinged every pingInterval (RFC
// 6455 §5.5.2, a pong answers, §5.5.3) and closed with 1001 once it has sent
// nothing for idleTimeout; 0 turns either off; one timer checks every socket.
//
// Timings: the assertions hold whatever the scheduling delays (a loaded
// machine stalls this process, server and client alike, for 100s of ms): a
// close never comes before idleTimeout, and a live peer's longest silence
// (one ping interval plus a round trip) is far below idleTimeout.

import assert from "node:assert/strict";
import { connect, type WebSocketCloseResult } from "../mod.ts";
import { RawClient, text } from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import {
  deadline,
  DeadlineError,
  shiftClock,
  start,
  WAIT_LIMIT,
  withFastIntervals,
} from "./_util.ts";

// Heartbeat timings: the assertions hold whatever the scheduling delays (a
// loaded machine stalls this process, server and client alike, for 100s of
// ms): a close never comes before idleTimeout, and a live peer's longest
// silence (one ping interval plus a round trip) is far below idleTimeout.

Deno.test("§5.5.2 a peer that never answers pings is closed with 1001 after idleTimeout", async () => {
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

Deno.test("§5.5.3 a peer that answers pings stays open past idleTimeout", async () => {
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

Deno.test("idleTimeout 0 never closes a peer, even a silent one that answers no ping", async () => {
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

Deno.test("§5.5.2 pingInterval 0 sends no ping; idleTimeout still closes with 1001", async () => {
  await using server = start({ pingInterval: 0, idleTimeout: 400 });
  await using client = await RawClient.open(server.addr.port);
  // The heartbeat still runs (every 100 ms, for the idle timeout), so a
  // ping would come before the close.
  const first = await client.readFrame();
  assert.equal(first?.opcode, 8, `a close, not opcode ${first?.opcode}`);
  assert.equal((first!.payload[0] << 8) | first!.payload[1], 1001);
});

Deno.test("§5.5.2 pingInterval 0 never pings a peer, however long it is silent", async () => {
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

Deno.test("the heartbeat's check runs every idleTimeout / 4, or every pingInterval when shorter, on a server and on a client", async () => {
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
