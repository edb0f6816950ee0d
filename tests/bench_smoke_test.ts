/**
 * A quick run of the benchmark's load generators (bench/load.ts and, where
 * `cc` is installed, bench/loadgen.c) and server subprocesses, so that
 * `deno task bench` keeps working. It asserts what the generators counted,
 * never how fast anything was.
 */
import assert from "node:assert/strict";
import { LiveTopics, serve, TopicHub, type WebSocketHandler } from "../mod.ts";
import { IdleConnections, openSocket, runLoad } from "../bench/load.ts";
import { ServerProcess } from "../bench/_server_process.ts";
import { runFloodPing } from "../bench/_flood_ping.ts";
import { removeLoadgen, runLoadgen } from "../bench/_loadgen.ts";
import { waitFor } from "./_util.ts";

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

Deno.test("flood-ping generator (j) times an innocent client's pings while another floods, and stops at a ping left unanswered", async () => {
  await using server = echoServer();
  const result = await runFloodPing({
    port: server.addr.port,
    warmup: 50,
    duration: 300,
  });
  assert.ok(result.latencies.length > 0);
  assert.equal(result.unanswered, 0);
  assert.ok(result.floodMessages > 0);
  // A server that echoes data but answers no ping (the floor, say).
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = (async () => {
    const conns: Deno.Conn[] = [];
    try {
      for await (const conn of listener) {
        conns.push(conn);
        const head = new Uint8Array(4096);
        await conn.read(head);
        await conn.write(new TextEncoder().encode(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
            "Connection: Upgrade\r\n" +
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        ));
        // Reads and drops everything.
        (async () => {
          try {
            while ((await conn.read(head)) !== null) { /* dropped */ }
          } catch { /* closed */ }
        })();
      }
    } finally {
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  })();
  try {
    const silent = await runFloodPing({
      port: (listener.addr as Deno.NetAddr).port,
      warmup: 0,
      duration: 300,
      pingTimeout: 200,
    });
    assert.equal(silent.unanswered, 1);
    assert.deepEqual(silent.latencies, [200]);
  } finally {
    listener.close();
    await accepted;
  }
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
    await waitFor(() => server.connections >= 20, "20 connections");
    assert.equal(server.connections, 20);
  } finally {
    idle.close();
  }
});

Deno.test("idle connections open the path they are given", async () => {
  const paths: string[] = [];
  await using server = serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (socket) => {
      paths.push(new URL(socket.request.url).pathname);
    },
  );
  const idle = await IdleConnections.open(
    "127.0.0.1",
    server.addr.port,
    3,
    2,
    "/idle",
  );
  try {
    await waitFor(() => paths.length >= 3, "3 connections");
    assert.deepEqual(paths, ["/idle", "/idle", "/idle"]);
  } finally {
    idle.close();
  }
  await assert.rejects(
    openSocket("127.0.0.1", server.addr.port, "/a b"),
    RangeError,
  );
});

for (
  const name of [
    "ours",
    "deno",
    "floor",
    "floorstreams",
    "floorwebcrypto",
  ] as const
) {
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

const hasCc = await new Deno.Command("cc", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
}).output().then((output) => output.success, () => false);

/** A server on 127.0.0.1 that answers every upgrade with `head`. */
function rawServer(head: string): Deno.TcpListener & { done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answer = new TextEncoder().encode(head);
  const conns = new Set<Deno.Conn>();
  const done = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buffer = new Uint8Array(4096);
        let text = "";
        while (!text.includes("\r\n\r\n")) {
          const n = await conn.read(buffer);
          if (n === null) return;
          text += new TextDecoder().decode(buffer.subarray(0, n));
        }
        await conn.write(answer);
        // Wait for the client to go away.
        while ((await conn.read(buffer)) !== null) {
          // Discard.
        }
      })().catch(() => {}).finally(() => {
        conns.delete(conn);
        conn.close();
      });
    }
  })().catch(() => {}).finally(() => {
    for (const conn of conns) conn.close();
  });
  return Object.assign(listener, { done });
}

/**
 * bench/loadgen.c's arguments for a fan-out run on `port` (and `port2`):
 * a window of 4, a 20 s timeout, a 50 ms warm-up and a 300 ms run unless
 * told otherwise.
 */
function fanoutArgs(options: {
  port: number;
  port2?: number;
  subscribers: number;
  warmup?: number;
  duration?: number;
  drain?: number;
}): string[] {
  const { port, port2, subscribers, warmup = 50, duration = 300, drain } =
    options;
  return [
    "--port",
    String(port),
    ...(port2 === undefined ? [] : ["--port2", String(port2)]),
    "--mode",
    "fanout",
    "--subscribers",
    String(subscribers),
    "--window",
    "4",
    "--warmup",
    String(warmup),
    "--duration",
    String(duration),
    ...(drain === undefined ? [] : ["--drain", String(drain)]),
    "--timeout",
    "20000",
  ];
}

/**
 * bench/loadgen.c's arguments for a recovery run on `port`: 20 live clients
 * missing 10 publications, reconnecting all at once, a 20 s timeout.
 */
function recoverArgs(port: number): string[] {
  return [
    "--port",
    String(port),
    "--mode",
    "recover",
    "--subscribers",
    "20",
    "--missed",
    "10",
    "--concurrency",
    "20",
    "--settle",
    "100",
    "--timeout",
    "20000",
  ];
}

Deno.test({
  name:
    "C load generator (bench/loadgen.c) counts echoes, handshakes, fan-out deliveries and recoveries",
  ignore: !hasCc,
}, async (t) => {
  try {
    await t.step(
      "echo: 8 connections × 2 in flight, every one closed cleanly",
      async () => {
        await using server = echoServer();
        const result = await runLoadgen([
          "--port",
          String(server.addr.port),
          "--mode",
          "echo",
          "--connections",
          "8",
          "--inflight",
          "2",
          "--warmup",
          "50",
          "--duration",
          "300",
          "--timeout",
          "20000",
        ]);
        assert.equal(result.mode, "echo");
        assert.ok((result.messages as number) > 0);
        assert.equal(result.errors, 0);
        assert.equal(result.unclean, 0);
        assert.ok(
          result.connMinMsgs as number <= (result.connMaxMsgs as number),
        );
      },
    );

    await t.step("handshake: 20 kept open, then 50 more verified", async () => {
      await using server = echoServer();
      const result = await runLoadgen([
        "--port",
        String(server.addr.port),
        "--mode",
        "handshake",
        "--open",
        "20",
        "--handshakes",
        "50",
        "--concurrency",
        "8",
        "--timeout",
        "20000",
      ]);
      assert.equal(result.open, 20);
      assert.equal(result.handshakes, 50);
      assert.equal(result.errors, 0);
      assert.equal(result.idleErrors, 0);
      assert.equal(result.dropped, 0);
    });

    await t.step(
      "handshake: a wrong Sec-WebSocket-Accept fails every one",
      async () => {
        const listener = rawServer(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
            "Connection: Upgrade\r\n" +
            // The RFC 6455 §1.3 sample's accept, for a key the client never sent.
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        try {
          const result = await runLoadgen([
            "--port",
            String((listener.addr as Deno.NetAddr).port),
            "--mode",
            "handshake",
            "--open",
            "0",
            "--handshakes",
            "3",
            "--timeout",
            "20000",
          ]);
          assert.equal(result.handshakes, 0);
          assert.equal(result.errors, 3);
        } finally {
          listener.close();
          await listener.done;
        }
      },
    );

    await t.step(
      "fan-out: 20 subscribers get every message in order",
      async () => {
        await using server = await ServerProcess.start("deno", {
          kind: "fanout",
        });
        const result = await runLoadgen(
          fanoutArgs({ port: server.port, subscribers: 20 }),
        );
        assert.equal(result.subscribers, 20);
        assert.ok((result.deliveries as number) > 0);
        assert.equal(result.missing, 0);
        assert.equal(result.outOfOrder, 0);
        assert.equal(result.malformed, 0);
        assert.equal(result.undelivered, 0);
        // A stall is at least the wait for one delivery, at most the run.
        const stall = result.maxStallUs as number;
        assert.ok(stall > 0 && stall <= 300_000 * 1.01, `stall ${stall} µs`);
        assert.ok((result.p50StallUs as number) <= stall);
      },
    );

    await t.step(
      "storm: 20 subscribers drop at once and every one comes back",
      async () => {
        await using server = await ServerProcess.start("deno", {
          kind: "fanout",
        });
        const result = await runLoadgen([
          "--port",
          String(server.port),
          "--mode",
          "storm",
          "--subscribers",
          "20",
          "--concurrency",
          "20",
          "--timeout",
          "20000",
        ]);
        assert.equal(result.mode, "storm");
        assert.equal(result.back, 20);
        assert.equal(result.errors, 0);
        assert.ok(
          (result.allOpenMs as number) <= (result.allBackMs as number),
        );
      },
    );

    await t.step(
      "recover: 20 live clients drop, miss 10 publications and each gets them back once, in order",
      async () => {
        await using server = await ServerProcess.start("ours", {
          kind: "fanout",
          args: ["--history"],
        });
        const result = await runLoadgen(recoverArgs(server.port));
        assert.equal(result.mode, "recover");
        assert.equal(result.recovered, 20);
        for (
          const key of [
            "notRecovered",
            "failedOpen",
            "liveErrors",
            "unfinished",
            "missing",
            "duplicates",
            "wrongData",
          ]
        ) {
          assert.equal(result[key], 0, key);
        }
        assert.ok(
          (result.allOpenMs as number) <= (result.allRecoveredMs as number),
        );
      },
    );

    await t.step(
      "recover: a topic without history fails the run with a clear message",
      async () => {
        await using server = await ServerProcess.start("ours", {
          kind: "fanout",
        });
        await assert.rejects(
          runLoadgen(recoverArgs(server.port)),
          /a topic without history\?\): \{"t":"subscribed"/,
        );
      },
    );

    await t.step(
      "recover: clients whose history no longer reaches back are counted, not recovered",
      async () => {
        // History of 5 publications: the 10 missed ones are not all there.
        const live = new LiveTopics();
        await using server = serve({
          port: 0,
          hostname: "127.0.0.1",
          history: { size: 5, ttl: 60_000 },
          onListen() {},
        }, async (socket) => {
          const path = new URL(socket.request.url).pathname;
          if (path === "/live") return live.handle(socket);
          if (path === "/sub") socket.subscribe("t");
          for await (const message of socket.readable) {
            if (path === "/pub") socket.publish("t", message);
          }
        });
        const notes: string[] = [];
        const result = await runLoadgen(recoverArgs(server.addr.port), {
          onNote: (line) => notes.push(line),
        });
        assert.equal(result.recovered, 0);
        assert.equal(result.notRecovered, 20);
        assert.match(
          notes.join("\n"),
          /was not recovered: .*"recovered":false/,
        );
      },
    );

    await t.step(
      "fan-out with --port2: every other subscriber on a second server sharing the topic",
      async () => {
        const hub = new TopicHub();
        const subscribers = [0, 0];
        const handler = (index: number): WebSocketHandler => async (socket) => {
          const path = new URL(socket.request.url).pathname;
          if (path === "/sub") {
            subscribers[index]++;
            socket.subscribe("t");
          }
          for await (const message of socket.readable) {
            if (path === "/pub") socket.publish("t", message);
          }
        };
        const local = { port: 0, hostname: "127.0.0.1", hub, onListen() {} };
        await using first = serve(local, handler(0));
        await using second = serve(local, handler(1));
        const result = await runLoadgen(fanoutArgs({
          port: first.addr.port,
          port2: second.addr.port,
          subscribers: 20,
        }));
        assert.deepEqual(subscribers, [10, 10]);
        assert.ok((result.deliveries as number) > 0);
        assert.equal(result.missing, 0);
        assert.equal(result.outOfOrder, 0);
        assert.equal(result.undelivered, 0);
      },
    );

    await t.step(
      "fan-out: a server that skips messages is caught",
      async () => {
        // Drops every third message for the first subscriber.
        const subscribers: WebSocket[] = [];
        let published = 0;
        await using server = Deno.serve({
          hostname: "127.0.0.1",
          port: 0,
          onListen() {},
        }, (request) => {
          const { socket, response } = Deno.upgradeWebSocket(request);
          if (new URL(request.url).pathname === "/sub") {
            socket.onopen = () => subscribers.push(socket);
          } else {
            socket.onmessage = (event) => {
              const skip = String(event.data).startsWith("0") &&
                published++ % 3 === 2;
              subscribers.forEach((s, i) => {
                if (!(skip && i === 0)) s.send(event.data);
              });
            };
          }
          return response;
        });
        const notes: string[] = [];
        const result = await runLoadgen(
          fanoutArgs({
            port: server.addr.port,
            subscribers: 3,
            warmup: 0,
            duration: 200,
            drain: 500,
          }),
          { onNote: (line) => notes.push(line) },
        );
        // A message skipped last is never followed: it stays undelivered.
        assert.ok((result.missing as number) > 0);
        assert.ok((result.undelivered as number) <= 1);
        assert.match(notes.join("\n"), /expected \d+, got \d+ \(1 missing\)/);
      },
    );
  } finally {
    await removeLoadgen();
  }
});
