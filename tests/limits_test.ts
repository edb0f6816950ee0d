// The server's limits over TCP: what a frame header announces commits no
// memory (RFC 6455 §10.4), maxConnections, and running out of file
// descriptors. Each option's values are checked in options_test.ts.

import assert from "node:assert/strict";
import { RawClient, roundTrip, upgradeRequest } from "./_raw_client.ts";
import { closePayload, frame } from "./_wire.ts";
import { deadline, sleep, start, stopChild, WAIT_LIMIT } from "./_util.ts";

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
