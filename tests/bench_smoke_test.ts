/**
 * A quick run of the benchmark's load generator (bench/load.ts) and server
 * subprocesses, so that `deno task bench` keeps working. It asserts what the
 * generator counted, never how fast anything was.
 */
import assert from "node:assert/strict";
import { serve } from "../mod.ts";
import { IdleConnections, openSocket, runLoad } from "../bench/load.ts";
import { ServerProcess } from "../bench/_server_process.ts";

function echoServer() {
  return serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => socket.readable.pipeTo(socket.writable),
  );
}

Deno.test("load generator counts the echoes of 2 connections × 2 in flight", async () => {
  await using server = echoServer();
  const payload = new TextEncoder().encode("0123456789abcdef");
  const result = await runLoad({
    port: server.addr.port,
    connections: 2,
    inFlight: 2,
    payload,
    text: true,
    warmup: 50,
    duration: 300,
    latency: true,
  });
  assert.ok(result.messages > 0);
  assert.equal(result.bytes, result.messages * payload.length);
  assert.equal(result.latencies.length, result.messages);
  // Every message sent was echoed before the closing handshakes.
  assert.equal(result.totalEchoed, result.totalSent);
  assert.equal(result.totalBytes, result.totalSent * payload.length);
  assert.equal(result.unclean, 0);
});

Deno.test("load generator counts a 1 MiB binary round trip", async () => {
  await using server = echoServer();
  const payload = new Uint8Array(1024 * 1024).fill(7);
  const result = await runLoad({
    port: server.addr.port,
    connections: 1,
    inFlight: 1,
    payload,
    messages: 1,
  });
  assert.equal(result.totalSent, 1);
  assert.equal(result.messages, 1);
  assert.equal(result.bytes, payload.length);
  assert.equal(result.totalBytes, payload.length);
  assert.equal(result.unclean, 0);
});

Deno.test("load generator keeps the count of messages it was given", async () => {
  await using server = echoServer();
  const payload = new Uint8Array(300).fill(1);
  const result = await runLoad({
    port: server.addr.port,
    connections: 3,
    inFlight: 4,
    payload,
    messages: 25,
  });
  assert.equal(result.totalSent, 75);
  assert.equal(result.messages, 75);
  assert.equal(result.bytes, 75 * payload.length);
});

Deno.test("load generator handshake rejects a server that refuses the upgrade", async () => {
  await using server = serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    onUpgrade: () => new Response("No", { status: 403 }),
  }, () => {});
  await assert.rejects(
    openSocket("127.0.0.1", server.addr.port),
    /refused the upgrade: HTTP\/1\.1 403/,
  );
});

Deno.test("idle connections stay open on the server until closed", async () => {
  await using server = echoServer();
  const idle = await IdleConnections.open("127.0.0.1", server.addr.port, 20, 8);
  try {
    assert.equal(idle.size, 20);
    // The last handshakes finish on the server just after the client's.
    for (let i = 0; i < 50 && server.connections < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.connections, 20);
  } finally {
    idle.close();
  }
});

for (const name of ["ours", "deno"] as const) {
  Deno.test(`bench server subprocess "${name}" prints its port and echoes`, async () => {
    await using server = await ServerProcess.start(name);
    const result = await runLoad({
      port: server.port,
      connections: 2,
      inFlight: 2,
      payload: new Uint8Array(70_000).fill(3),
      messages: 5,
    });
    assert.equal(result.messages, 10);
    assert.equal(result.bytes, 10 * 70_000);
  });
}
