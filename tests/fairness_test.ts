// Fairness between connections (RFC 6455 §10.4): one connection that floods,
// bursts, stalls its handshake or sends garbage never keeps the server from
// the others, nor takes it down.

import assert from "node:assert/strict";
import { RawClient, roundTrip, text, tinyFrames } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import {
  concat,
  deadline,
  mulberry32,
  serveLocal,
  sleep,
  start,
} from "./_util.ts";

Deno.test("§10.4 a burst of 300,000 one-byte messages in one write to an idle echo server is echoed without timer waits between batches", async () => {
  await using local = serveLocal();
  await using client = await RawClient.open(local.port);
  const count = 300_000;
  const one = frame(1, "x");
  const burst = concat(Array.from({ length: count }, () => one));
  const sink = new Uint8Array(64 * 1024);
  let received = 0;
  const readEchoes = async () => {
    // Each echo is an unmasked 3-byte frame.
    while (received < count * 3) {
      const n = await client.conn.read(sink);
      if (n === null) throw new Error(`EOF after ${received} bytes`);
      received += n;
    }
  };
  const started = performance.now();
  // The socket takes 64 messages at a time, resuming on the next turn of
  // the event loop: about 0.2 s here. A timer per batch (1 ms at least)
  // would take 4.7 s at best (10 s measured).
  await deadline(
    Promise.all([client.write(burst), readEchoes()]),
    "echo of the whole burst",
    3_000,
  );
  console.log(
    `burst of ${count} one-byte messages echoed in ${
      (performance.now() - started).toFixed(0)
    } ms`,
  );
  assert.equal(received, count * 3);
});

/** What an innocent client saw while another flooded. */
interface Latencies {
  /** Round-trip times of the pings answered, in ms. */
  answered: number[];
  /** How long the unanswered ping had waited when the budget ran out. */
  unanswered?: number;
}

/**
 * The round-trip times of up to `pings` pings, one at a time, from an
 * innocent raw client while another floods tiny frames at the echo server
 * on `port` (and reads the echoes, so that the flood goes on); it stops
 * when `budget` ms have passed. bench/_flood_ping.ts measures the same for
 * every server, scenario (j).
 */
async function pingLatencies(
  port: number,
  pings: number,
  budget: number,
): Promise<Latencies> {
  const flooder = await RawClient.open(port);
  const innocent = await RawClient.open(port);
  const burst = tinyFrames();
  let flooding = true;
  const sink = new Uint8Array(256 * 1024);
  const drain = (async () => {
    try {
      while ((await flooder.conn.read(sink)) !== null) {
        // The echoes are read so that the flood goes on.
      }
    } catch {
      // Closed below.
    }
  })();
  const flood = (async () => {
    try {
      while (flooding) await flooder.write(burst);
    } catch {
      // Closed below.
    }
  })();
  const answered: number[] = [];
  let unanswered: number | undefined;
  try {
    await sleep(100);
    const end = Date.now() + budget;
    for (let i = 0; i < pings; i++) {
      const sent = performance.now();
      await innocent.write(frame(9, `ping ${i}`));
      const pong = innocent.readFrame();
      pong.catch(() => {});
      const outcome = await deadline(
        pong,
        "pong",
        Math.max(end - Date.now(), 0),
      )
        .catch(() => null);
      if (outcome === null) {
        unanswered = performance.now() - sent;
        break;
      }
      answered.push(performance.now() - sent);
      assert.equal(outcome.opcode, 10);
      assert.equal(text(outcome.payload), `ping ${i}`);
    }
  } finally {
    flooding = false;
    flooder.close();
    innocent.close();
    await deadline(flood, "end of the flood");
    await deadline(drain, "end of the drain");
  }
  return { answered, unanswered };
}

Deno.test("§10.4 an innocent client's 200 pings are all answered while another floods tiny frames (the latency is measured by bench scenario (j))", async () => {
  await using local = serveLocal();
  const { answered, unanswered } = await pingLatencies(local.port, 200, 20_000);
  // A generous budget (20 s for what takes about 1 s): every ping answered.
  assert.equal(unanswered, undefined, "no ping left unanswered");
  assert.equal(answered.length, 200);
});

Deno.test("§10.4 200 stalled half handshakes do not block a normal client, and are closed", async () => {
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

Deno.test("§10.4 random and mutated bytes after the handshake never crash the server or disturb a good client", async () => {
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
