// Reliability of the connection restructure, end to end over TCP: the cost
// of reassembly, sockets whose reader or peer is paused, fairness under a
// flood, faults in hooks, slow hooks, and `send()` and close order.

import assert from "node:assert/strict";
import { cpuUsage } from "node:process";
import {
  connect,
  type WebSocketConnection,
  WebSocketError,
  type WebSocketHandler,
} from "../mod.ts";
import { RawClient, text, upgradeRequest } from "./_raw_client.ts";
import { closePayload, fragments, frame, type WireFrame } from "./_wire.ts";
import {
  assertBytesEqual,
  capturingConsoleError,
  concat,
  deadline,
  echo,
  floodUntilStalled,
  fragmentPayload,
  isCloseError,
  pseudoRandomBytes,
  serveLocal,
  sleep,
  WAIT_LIMIT,
  waitFor,
} from "./_util.ts";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

// --- Helpers ------------------------------------------------------------------

/** What `closed` settled with: the result, or the `WebSocketError`. */
function settled(
  socket: WebSocketConnection,
): Promise<{ closeCode: number; reason: string; error: boolean }> {
  return deadline(
    socket.closed.then(
      ({ closeCode, reason }) => ({ closeCode, reason, error: false }),
      (error: unknown) => {
        assert.ok(error instanceof WebSocketError, `${error}`);
        return {
          closeCode: error.closeCode,
          reason: error.reason,
          error: true,
        };
      },
    ),
    "settled `closed`",
  );
}

/**
 * Runs `fn` while `Uint8Array.prototype.set` and `slice` count the bytes
 * they copy: a deterministic measure of reassembly work, unlike CPU time on
 * a shared machine. The prototype is restored whatever happens.
 */
async function countingCopies<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; copied: number; cpuMs: number }> {
  const proto = Uint8Array.prototype;
  const set = proto.set;
  const slice = proto.slice;
  let copied = 0;
  Object.defineProperty(proto, "set", {
    configurable: true,
    writable: true,
    value: function (
      this: Uint8Array,
      source: ArrayLike<number>,
      offset?: number,
    ): void {
      copied += source.length;
      set.call(this, source, offset);
    },
  });
  Object.defineProperty(proto, "slice", {
    configurable: true,
    writable: true,
    value: function (
      this: Uint8Array,
      begin?: number,
      end?: number,
    ): Uint8Array {
      const out = slice.call(this, begin, end);
      copied += out.length;
      return out;
    },
  });
  const before = cpuUsage();
  try {
    const result = await fn();
    const cpu = cpuUsage(before);
    return { result, copied, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    // Both are inherited from %TypedArray%.prototype: drop the own ones.
    Reflect.deleteProperty(proto, "set");
    Reflect.deleteProperty(proto, "slice");
  }
}

/** Sends `bytes` (a whole message) and reads the echoed frame. */
async function echoOver(
  client: RawClient,
  bytes: Uint8Array,
): Promise<WireFrame> {
  const [, echoed] = await Promise.all([
    client.write(bytes),
    client.readFrame(),
  ]);
  assert.ok(echoed, "an echo, not the end of the connection");
  return echoed;
}

/** A handler that never reads `readable`: it only sends a greeting. */
function pushOnly(sockets: WebSocketConnection[]): WebSocketHandler {
  return (socket) => {
    sockets.push(socket);
    socket.writable.getWriter().write("welcome").catch(() => {});
  };
}

/**
 * Sends three messages in separate writes (so that the server reads them
 * in separate reads), then a close frame and FIN, and reads the answer.
 */
async function sendThreeThenLeave(
  client: RawClient,
): Promise<{ code: number | null; reason: string }> {
  for (let i = 1; i <= 3; i++) {
    await client.write(frame(1, `message ${i}`));
    await sleep(30);
  }
  await client.write(frame(8, closePayload(1000, "done")));
  await client.conn.closeWrite();
  return await deadline(client.readUntilClose(), "close answer");
}

// --- 1 and 2: reassembly stays linear, however finely a message is cut ------

Deno.test("§5.4 a 16 MiB binary message in 1,024 fragments of 16 KiB is echoed over TCP with reassembly copies linear in its size", async () => {
  await using local = serveLocal();
  await using client = await RawClient.open(local.port);
  const message = pseudoRandomBytes(16 * MiB);
  const whole = frame(2, message);
  const pieces = fragments(2, message, 16 * 1024);

  const one = await countingCopies(() => echoOver(client, whole));
  const many = await countingCopies(() => echoOver(client, pieces));
  console.log(
    `16 MiB echo: one frame ${(one.copied / MiB).toFixed(1)} MiB copied, ` +
      `${one.cpuMs.toFixed(0)} ms CPU; 1,024 fragments ${
        (many.copied / MiB).toFixed(1)
      } MiB copied, ${many.cpuMs.toFixed(0)} ms CPU`,
  );
  for (const { result } of [one, many]) {
    assert.equal(result.opcode, 2);
    assert.equal(result.fin, true);
    assertBytesEqual(result.payload, message, "the echo");
  }
  // Quadratic reassembly copied ~8 GiB here (each fragment re-copied all
  // before it); linear reassembly copies each fragment once, plus a few
  // copies of the message as its buffer grows.
  assert.ok(
    many.copied <= 4 * message.length,
    `1,024 fragments copied ${many.copied} bytes, one frame ${one.copied}`,
  );
});

Deno.test("§5.4 a 4 MiB message in 64-byte fragments (65,536 of them) is echoed, text and binary (Autobahn 9.3.1, 9.4.1 style)", async () => {
  await using local = serveLocal();
  await using client = await RawClient.open(local.port);
  // Text with 2-, 3- and 4-byte characters, so that fragments cut them.
  const unit = "abcd\u00e9\u20ac\u{1F600}xyz"; // 16 bytes of UTF-8
  const textMessage = unit.repeat((4 * MiB) / 16);
  const textBytes = encoder.encode(textMessage);
  assert.equal(textBytes.length, 4 * MiB);
  const binary = pseudoRandomBytes(4 * MiB);

  const echoedText = await deadline(
    echoOver(client, fragments(1, textBytes, 64)),
    "text echo",
    60_000,
  );
  assert.equal(echoedText.opcode, 1);
  assertBytesEqual(echoedText.payload, textBytes, "the text echo");
  const echoedBinary = await deadline(
    echoOver(client, fragments(2, binary, 64)),
    "binary echo",
    60_000,
  );
  assert.equal(echoedBinary.opcode, 2);
  assertBytesEqual(echoedBinary.payload, binary, "the binary echo");
});

Deno.test("§5.4 maxFragments, when set, still fails a message with more fragments with 1008", async () => {
  await using local = serveLocal({ maxFragments: 1000 });
  await using client = await RawClient.open(local.port);
  const frames = fragments(2, pseudoRandomBytes(4 * MiB), 64);
  // The first 1,100 fragments (70 bytes each on the wire): one too many.
  await client.write(frames.subarray(0, 1100 * 70)).catch(() => {});
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1008);
  assert.equal(reason, "Too many fragments");
});

/**
 * Has another process send a `size`-byte message of `kind` (`text`,
 * `binary`, or `compressed` binary) in `fragment`-byte fragments (1-byte
 * ones are seven bytes of frame each) as fast as TCP takes them, and a
 * second client ping the server once the sender's first MiB is on its way. Returns whether the
 * message was still arriving when the pong came, and the message.
 *
 * Decoding a few million frames takes the server a second or more, and
 * the pong must not wait for it. The test's own code, the sender's progress
 * report included, only runs when the server lets the event loop go on: a
 * connection that kept it for the whole message makes the ping go out, and
 * the pong come back, only after the message is delivered. Also returns
 * how many `TextDecoder` calls the process made meanwhile.
 */
async function pingWhileFragmentsArrive(
  kind: "text" | "binary" | "compressed",
  size: number,
  fragment = 1,
): Promise<
  { inFlight: boolean; message: string | Uint8Array; decodes: number }
> {
  const messages: (string | Uint8Array)[] = [];
  await using local = serveLocal(
    { perMessageDeflate: kind === "compressed" },
    async (socket) => {
      for await (const message of socket.readable) messages.push(message);
    },
  );
  await using pinger = await RawClient.open(local.port);
  const fixture = new URL("./_fixtures/fragment_sender.ts", import.meta.url);
  const sender = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      fixture.pathname,
      `${local.port}`,
      kind,
      `${size}`,
      `${fragment}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = sender.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const decode = TextDecoder.prototype.decode;
  let decodes = 0;
  TextDecoder.prototype.decode = function (...args) {
    decodes++;
    return decode.apply(this, args);
  };
  try {
    const { value } = await deadline(lines.read(), "the sender's first MiB");
    assert.equal(value?.trim(), "sending");
    assert.equal(messages.length, 0, "the message is still arriving");
    await pinger.write(frame(9, "still there?"));
    const pong = await deadline(pinger.readFrame(), "the pong");
    const inFlight = messages.length === 0;
    assert.equal(pong?.opcode, 10);
    assert.equal(text(pong.payload), "still there?");
    await waitFor(() => messages.length > 0, "the message", 60_000);
    assert.equal(messages.length, 1);
    return { inFlight, message: messages[0], decodes };
  } finally {
    TextDecoder.prototype.decode = decode;
    await lines.cancel();
    try {
      sender.kill("SIGKILL");
    } catch {
      // It exited by itself.
    }
    await sender.status;
  }
}

Deno.test("§5.4 a 4 MiB text message in 1-byte fragments is delivered whole, and another client's ping is answered while it arrives", async () => {
  const { inFlight, message, decodes } = await pingWhileFragmentsArrive(
    "text",
    4 * MiB,
  );
  assert.equal(typeof message, "string");
  assert.equal(
    message,
    new TextDecoder().decode(fragmentPayload("text", 4 * MiB)),
  );
  assert.ok(inFlight, "the pong waited for the whole message");
  // Not a decoder call per fragment (4 million), nor a string piece each:
  // the text is decoded in pieces of up to 64 KiB.
  assert.ok(decodes <= 256, `${decodes} TextDecoder calls`);
});

for (
  const [kind, name] of [
    ["binary", "§5.4 a 4 MiB binary message"],
    // Random bytes hardly compress: about 4 million fragments.
    ["compressed", "RFC 7692 a 4 MiB compressed message"],
  ] as const
) {
  Deno.test(`${name} in 1-byte fragments is delivered whole, and another client's ping is answered while it arrives`, async () => {
    const { inFlight, message } = await pingWhileFragmentsArrive(kind, 4 * MiB);
    assert.ok(message instanceof Uint8Array);
    assertBytesEqual(message, fragmentPayload(kind, 4 * MiB), "the message");
    assert.ok(inFlight, "the pong waited for the whole message");
  });
}

Deno.test("§5.4 a 16 MiB binary message in 64-byte fragments is delivered whole, and another client's ping is answered while it arrives", async () => {
  // A read holds a few thousand of these frames and ends no message: the
  // frames are counted across reads.
  const { inFlight, message } = await pingWhileFragmentsArrive(
    "binary",
    16 * MiB,
    64,
  );
  assert.ok(message instanceof Uint8Array);
  assertBytesEqual(message, fragmentPayload("binary", 16 * MiB), "the message");
  assert.ok(inFlight, "the pong waited for the whole message");
});

// --- 3: paused sockets are reaped ---------------------------------------------

Deno.test("§7.1.2 a push-only handler's socket answers the peer's close after 3 unread messages; closed settles and connections drops to 0", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal({}, pushOnly(sockets));
  await using client = await RawClient.open(local.port);
  const { code } = await sendThreeThenLeave(client);
  assert.equal(code, 1000);
  await waitFor(() => sockets.length === 1, "handler called");
  assert.deepEqual(await settled(sockets[0]), {
    closeCode: 1000,
    reason: "done",
    error: false,
  });
  await waitFor(() => local.server.connections === 0, "0 connections");
});

Deno.test("§7.1.2 five push-only sockets whose peers left do not hold maxConnections: 5; a sixth connects", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal({ maxConnections: 5 }, pushOnly(sockets));
  const clients = await Promise.all(
    Array.from({ length: 5 }, () => RawClient.open(local.port)),
  );
  try {
    const answers = await Promise.all(clients.map(sendThreeThenLeave));
    assert.deepEqual(answers.map((answer) => answer.code), [
      1000,
      1000,
      1000,
      1000,
      1000,
    ]);
    await waitFor(() => local.server.connections === 0, "0 connections");
    // RawClient.open throws unless the answer is 101 (not 503).
    await using sixth = await RawClient.open(local.port);
    const greeting = await deadline(sixth.readFrame(), "greeting");
    assert.equal(text(greeting!.payload), "welcome");
  } finally {
    for (const client of clients) client.close();
  }
  for (const socket of sockets.slice(0, 5)) {
    assert.equal((await settled(socket)).closeCode, 1000);
  }
});

Deno.test("RFC 7692 a push-only server socket with permessage-deflate answers a connect() client's close after 3 compressed messages", async () => {
  const sockets: WebSocketConnection[] = [];
  await using local = serveLocal(
    { perMessageDeflate: true },
    pushOnly(sockets),
  );
  const client = await connect(`ws://127.0.0.1:${local.port}/`, {
    perMessageDeflate: true,
  });
  assert.match(client.extensions, /^permessage-deflate/);
  const writer = client.writable.getWriter();
  for (let i = 1; i <= 3; i++) {
    // Over the 1 KiB threshold: sent compressed.
    await deadline(writer.write(`message ${i} `.repeat(200)), "write");
    await sleep(30);
  }
  client.close({ closeCode: 1000, reason: "done" });
  assert.deepEqual(await settled(client), {
    closeCode: 1000,
    reason: "",
    error: false,
  });
  await waitFor(() => sockets.length === 1, "handler called");
  assert.deepEqual(await settled(sockets[0]), {
    closeCode: 1000,
    reason: "done",
    error: false,
  });
  await waitFor(() => local.server.connections === 0, "0 connections");
});

for (const perMessageDeflate of [false, true]) {
  Deno.test(
    `§7.1.2 a connect() client that never reads settles closed when the server sends 3 messages then closes${
      perMessageDeflate ? " (permessage-deflate)" : ""
    }`,
    async () => {
      const sockets: WebSocketConnection[] = [];
      await using local = serveLocal({ perMessageDeflate }, async (socket) => {
        sockets.push(socket);
        const writer = socket.writable.getWriter();
        for (let i = 1; i <= 3; i++) {
          await writer.write(`message ${i} `.repeat(200));
          await sleep(30);
        }
        socket.close({ closeCode: 1000, reason: "bye" });
      });
      const client = await connect(`ws://127.0.0.1:${local.port}/`, {
        perMessageDeflate,
      });
      assert.equal(client.extensions !== "", perMessageDeflate);
      assert.deepEqual(await settled(client), {
        closeCode: 1000,
        reason: "bye",
        error: false,
      });
      await waitFor(() => sockets.length === 1, "handler called");
      assert.equal((await settled(sockets[0])).closeCode, 1000);
    },
  );
}

Deno.test("§7.1.7 a socket whose application never reads what a flood brought is closed with 1011 after idleTimeout", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  await using local = serveLocal(
    { idleTimeout: 400, pingInterval: 100 },
    (socket) => opened.resolve(socket),
  );
  await using client = await RawClient.open(local.port);
  const socket = await deadline(opened.promise, "handler called");
  // 200 messages: more than the socket keeps before it stops reading.
  await client.write(
    concat(Array.from({ length: 200 }, (_, i) => frame(1, `flood ${i}`))),
  );
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1011);
  assert.equal(reason, "Messages not read");
  assert.deepEqual(await settled(socket), {
    closeCode: 1011,
    reason: "Messages not read",
    error: true,
  });
});

/**
 * A server with a 400 ms idleTimeout, whose handler `writes` (until the
 * socket closes); `opened` resolves with the first socket.
 */
function idleTimeoutServer(
  writes: (socket: WebSocketConnection) => Promise<void>,
) {
  const opened = Promise.withResolvers<WebSocketConnection>();
  const local = serveLocal(
    { idleTimeout: 400, pingInterval: 100, closeTimeout: 300 },
    async (socket) => {
      opened.resolve(socket);
      try {
        await writes(socket);
      } catch {
        // The socket closed.
      }
    },
  );
  return Object.assign(local, {
    opened: deadline(opened.promise, "handler called"),
  });
}

Deno.test("§7.1.7 a socket whose peer does not read what it is sent (a slow consumer) is closed with 1013 after idleTimeout", async () => {
  await using local = idleTimeoutServer(async (socket) => {
    const writer = socket.writable.getWriter();
    const chunk = new Uint8Array(64 * 1024);
    // Until write() waits for good: the peer's TCP window is full.
    while (true) await writer.write(chunk);
  });
  await using client = await RawClient.open(local.port);
  const socket = await local.opened;
  let ended = false;
  const end = settled(socket);
  end.then(() => ended = true, () => ended = true);
  // The peer keeps talking but never reads: once the server's queue is
  // full it stops reading, and only the peer not reading holds it.
  const giveUp = Date.now() + WAIT_LIMIT;
  while (!ended && Date.now() < giveUp) {
    await client.write(frame(1, "still here")).catch(() => {});
    await sleep(50);
  }
  assert.deepEqual(await end, {
    closeCode: 1013,
    reason: "Send queue stalled for 400 ms",
    error: true,
  });
});

Deno.test("§7.1.7 an echo that awaits its writes, whose peer floods and never reads, is closed with 1013 after idleTimeout, not 1011", async () => {
  await using local = idleTimeoutServer(async (socket) => {
    const writer = socket.writable.getWriter();
    for await (const message of socket.readable) await writer.write(message);
  });
  await using client = await RawClient.open(local.port);
  const socket = await local.opened;
  // The echoes fill the peer's TCP window, then the server's queue; the
  // handler waits in write(), so its inbox fills too: the peer is the
  // cause, the application only waits for it.
  const burst = concat(
    Array.from({ length: 64 }, () => frame(2, new Uint8Array(16 * 1024))),
  );
  await floodUntilStalled(client, burst, 300, 256 * 1024 * 1024);
  assert.deepEqual(await settled(socket), {
    closeCode: 1013,
    reason: "Send queue stalled for 400 ms",
    error: true,
  });
});

// --- 4: fairness ----------------------------------------------------------------

/** A 256 KiB buffer of masked 1-byte text frames (7 bytes each). */
function tinyFrames(): Uint8Array {
  const one = frame(1, "x");
  return concat(
    Array.from({ length: Math.floor(256 * 1024 / one.length) }, () => one),
  );
}

const BLOCKED = Symbol("blocked");

/** Resolves after `turns` microtask turns: no I/O or timer can run meanwhile. */
function microtaskTurns(turns: number): Promise<typeof BLOCKED> {
  let promise: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < turns; i++) promise = promise.then();
  return promise.then(() => BLOCKED);
}

/**
 * Reads every message the socket already holds, without letting the event
 * loop turn (so no more can be read off TCP); returns how many, and the
 * read left waiting for the next message.
 */
async function readHeld(
  reader: ReadableStreamDefaultReader<string | Uint8Array>,
): Promise<{ count: number; next: Promise<unknown> }> {
  let count = 0;
  while (true) {
    const read = reader.read();
    const outcome = await Promise.race([read, microtaskTurns(200)]);
    if (outcome === BLOCKED) return { count, next: read };
    assert.equal(outcome.done, false);
    count++;
  }
}

Deno.test("§10.4 a flood of tiny frames at a socket that does not read keeps at most 64 + 2 messages queued, and reading resumes", async () => {
  const opened = Promise.withResolvers<{
    socket: WebSocketConnection;
    reader: ReadableStreamDefaultReader<string | Uint8Array>;
  }>();
  await using local = serveLocal({}, (socket) => {
    // `readable` exists (its queue holds 2), but nobody reads yet.
    opened.resolve({ socket, reader: socket.readable.getReader() });
  });
  const client = await RawClient.open(local.port);
  const { socket, reader } = await deadline(opened.promise, "handler called");
  try {
    const limit = 256 * MiB;
    const sent = await floodUntilStalled(client, tinyFrames(), 500, limit);
    assert.ok(sent < limit, "TCP pushed back");
    let most = 0;
    let total = 0;
    for (let round = 0; round < 6; round++) {
      const { count, next } = await readHeld(reader);
      // INBOX_MAX_MESSAGES (64) + readable's high-water mark (2).
      assert.ok(count <= 66, `round ${round}: ${count} messages were held`);
      most = Math.max(most, count);
      total += count;
      // Reading resumes once the queue drained: a new message comes.
      await deadline(next, "message once reading resumed");
      total++;
      await sleep(100);
    }
    console.log(
      `flood: ${sent} bytes written before TCP stalled; at most ${most} messages held; ${total} read in 6 rounds`,
    );
    assert.ok(most >= 3, `only ${most} messages were held`);
  } finally {
    client.close();
    await reader.cancel();
  }
  await settled(socket);
});

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

// --- 6: messages before a protocol error are delivered ---------------------------

/** Bad frames that fail the connection with 1002, as a server or client sends them. */
function badFrames(mask: boolean): [string, Uint8Array][] {
  return [
    ["a frame with reserved bits set", frame(1, "x", { rsv: 2, mask })],
    ["a frame with a reserved opcode", frame(3, "x", { mask })],
    ["a continuation frame out of order", frame(0, "x", { mask })],
  ];
}

/** `Sec-WebSocket-Accept` for a key, computed here rather than by src/. */
async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
  );
  return new Uint8Array(digest).toBase64();
}

/** Reads an HTTP head a byte at a time, so that nothing after it is taken. */
async function readHeadText(conn: Deno.Conn): Promise<string> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  while (
    !(bytes.length >= 4 && bytes.at(-4) === 13 && bytes.at(-3) === 10 &&
      bytes.at(-2) === 13 && bytes.at(-1) === 10)
  ) {
    if (await conn.read(one) === null) throw new Error("EOF in a head");
    bytes.push(one[0]);
  }
  return String.fromCharCode(...bytes);
}

/**
 * A one-connection raw server: it answers the opening handshake with 101,
 * then lets `after` write what it likes; the connection is closed after.
 */
function rawServer(after: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const head = await readHeadText(conn);
      const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
      await conn.write(encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${await acceptFor(
            key,
          )}\r\n\r\n`,
      ));
      await after(conn);
    } finally {
      conn.close();
    }
  })();
  return {
    url: `ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    served,
    async [Symbol.asyncDispose]() {
      listener.close();
      await deadline(served.catch(() => {}), "raw server done");
    },
  };
}

for (const [name, bad] of badFrames(false)) {
  Deno.test(`§5.2 a client gets a valid message before readable errors with 1002 when ${name} follows it in the same TCP write`, async () => {
    const peerClose = Promise.withResolvers<number>();
    await using server = rawServer(async (conn) => {
      await sleep(20);
      await conn.write(concat([frame(1, "hello", { mask: false }), bad]));
      const close = await new RawClient(conn).readFrame();
      assert.equal(close?.opcode, 8);
      peerClose.resolve((close.payload[0] << 8) | close.payload[1]);
    });
    const client = await deadline(connect(server.url), "connect");
    const reader = client.readable.getReader();
    // Read only once the connection has ended: the message must still be there.
    const end = await settled(client);
    assert.equal(end.closeCode, 1002);
    assert.equal(end.error, true);
    assert.equal(await deadline(peerClose.promise, "close frame"), 1002);
    assert.deepEqual(await deadline(reader.read(), "read"), {
      value: "hello",
      done: false,
    });
    await assert.rejects(
      deadline(reader.read(), "read"),
      isCloseError(1002),
    );
    await server.served;
  });
}

for (const [name, bad] of badFrames(true)) {
  Deno.test(`§5.2 a server socket gets a valid message before readable errors with 1002 when ${name} follows it in the same TCP write`, async () => {
    const opened = Promise.withResolvers<{
      socket: WebSocketConnection;
      reader: ReadableStreamDefaultReader<string | Uint8Array>;
    }>();
    await using local = serveLocal({}, (socket) => {
      opened.resolve({ socket, reader: socket.readable.getReader() });
    });
    await using client = await RawClient.open(local.port);
    const { socket, reader } = await deadline(opened.promise, "handler called");
    await client.write(concat([frame(1, "hello"), bad]));
    const { code } = await deadline(client.readUntilClose(), "close frame");
    assert.equal(code, 1002);
    assert.equal((await settled(socket)).closeCode, 1002);
    assert.deepEqual(await deadline(reader.read(), "read"), {
      value: "hello",
      done: false,
    });
    await assert.rejects(
      deadline(reader.read(), "read"),
      isCloseError(1002),
    );
  });
}

// --- 7: faults in hooks -----------------------------------------------------------

async function roundTrip(client: RawClient, message: string): Promise<string> {
  await client.write(frame(1, message));
  const echoed = await deadline(client.readFrame(), "echo");
  return text(echoed!.payload);
}

Deno.test("§7.4.1 a handler that throws or rejects closes its socket with 1011 even when onError throws too; the server keeps serving", async () => {
  await capturingConsoleError(async (logged) => {
    await using local = serveLocal({
      onError() {
        throw new Error("onError fails too");
      },
    }, (socket) => {
      const fail = socket.request.headers.get("x-fail");
      if (fail === "throw") throw new Error("the handler throws");
      if (fail === "reject") {
        return Promise.reject(new Error("the handler rejects"));
      }
      return echo(socket);
    });
    for (const fail of ["throw", "reject"]) {
      await using client = await RawClient.open(local.port, {
        "X-Fail": fail,
      });
      const { code, reason } = await deadline(
        client.readUntilClose(),
        `close after "${fail}"`,
      );
      assert.equal(code, 1011, `after "${fail}"`);
      assert.equal(reason, "Internal error");
    }
    await waitFor(() => local.server.connections === 0, "0 connections");
    await using good = await RawClient.open(local.port);
    assert.equal(await roundTrip(good, "still served"), "still served");
    // Both faults, and onError's own, went to console.error.
    assert.equal(
      logged.filter((args) => args[0] === "onError threw").length,
      2,
    );
  });
});

Deno.test("§7.4.1 a throwing onOpen closes its socket with 1011 and a throwing onClose is reported; the server keeps serving", async () => {
  const errors: string[] = [];
  await using local = serveLocal({
    onOpen(socket) {
      if (socket.request.headers.get("x-fail") === "open") {
        throw new Error("onOpen fails");
      }
    },
    onClose() {
      throw new Error("onClose fails");
    },
    onError: (error) => errors.push((error as Error).message),
  });
  {
    await using client = await RawClient.open(local.port, { "X-Fail": "open" });
    const { code } = await deadline(client.readUntilClose(), "close");
    assert.equal(code, 1011);
  }
  {
    await using client = await RawClient.open(local.port);
    assert.equal(await roundTrip(client, "still served"), "still served");
    await client.write(frame(8, closePayload(1000)));
    assert.equal(
      (await deadline(client.readUntilClose(), "close")).code,
      1000,
    );
  }
  await waitFor(() => local.server.connections === 0, "0 connections");
  await waitFor(
    () => errors.filter((e) => e === "onClose fails").length === 2,
    "both onClose faults reported",
  );
  assert.deepEqual(errors.filter((e) => e !== "onClose fails"), [
    "onOpen fails",
  ]);
});

Deno.test("a throwing onListen is reported to onError and the server serves", async () => {
  const errors: string[] = [];
  await using local = serveLocal({
    onListen() {
      throw new Error("onListen fails");
    },
    onError: (error) => errors.push((error as Error).message),
  });
  assert.deepEqual(errors, ["onListen fails"]);
  await using client = await RawClient.open(local.port);
  assert.equal(await roundTrip(client, "served"), "served");
});

// --- 8: slow hooks ------------------------------------------------------------------

const NEVER = () => new Promise<never>(() => {});
const PLAIN_GET = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

for (const hook of ["onUpgrade", "fetch"] as const) {
  const request = (port: number) =>
    hook === "onUpgrade" ? upgradeRequest(port) : PLAIN_GET;

  if (hook === "onUpgrade") {
    Deno.test("§4.2.1 an onUpgrade that never settles: the connection is closed after handshakeTimeout", async () => {
      await using local = serveLocal({
        handshakeTimeout: 300,
        onUpgrade: NEVER,
      });
      await using client = await RawClient.connect(local.port);
      await client.write(request(local.port));
      // EOF with no byte before it: no 101, no answer.
      assert.equal(await deadline(client.readEof(), "EOF"), true);
    });
  } else {
    Deno.test("RFC 9110 §15.6.4 a fetch that does not answer within idleTimeout gets 503, then the connection closes", async () => {
      await using local = serveLocal({ idleTimeout: 300, fetch: NEVER });
      await using client = await RawClient.connect(local.port);
      await client.write(request(local.port));
      const answer = await deadline(client.readHead(), "the answer");
      assert.equal(answer.status, 503);
      assert.equal(await deadline(client.readEof(), "EOF"), true);
    });
  }

  Deno.test(`§4.2.1 shutdown() resolves promptly while the ${hook} hook is pending`, async () => {
    const called = Promise.withResolvers<void>();
    await using local = serveLocal({
      handshakeTimeout: 60_000,
      // A request in flight gets this long to answer once shutting down.
      closeTimeout: 500,
      [hook]: () => {
        called.resolve();
        return NEVER();
      },
    });
    await using client = await RawClient.connect(local.port);
    await client.write(request(local.port));
    await deadline(called.promise, `${hook} called`);
    await deadline(local.server.shutdown(), "shutdown", 3_000);
    assert.equal(await deadline(client.readEof(), "EOF"), true);
  });
}

// --- 11: a handler that throws inside `for await` -----------------------------------

Deno.test("§7.4.1 a handler that throws inside `for await (… of socket.readable)` closes the socket with 1011", async () => {
  const errors: unknown[] = [];
  await using local = serveLocal(
    { onError: (error) => errors.push(error) },
    async (socket) => {
      for await (const _message of socket.readable) {
        throw new Error("the handler fails on a message");
      }
    },
  );
  await using client = await RawClient.open(local.port);
  await client.write(frame(1, "hello"));
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1011);
  assert.equal(reason, "Internal error");
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as Error).message, "the handler fails on a message");
});

// --- 12: send(), bufferedAmount and the order of one outbound path ------------------

Deno.test("send() returns the bytes queued, 0 after close, and 0 (not a throw) for what is not a message", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  await using local = serveLocal({}, (socket) => opened.resolve(socket));
  await using client = await RawClient.open(local.port);
  const socket = await deadline(opened.promise, "handler called");
  assert.equal(socket.send("hello"), 2 + 5);
  assert.equal(socket.send(new Uint8Array(200)), 2 + 2 + 200);
  assert.equal(socket.send(new Uint8Array(70_000)), 2 + 8 + 70_000);
  for (const bad of [123, null, undefined, {}, new ArrayBuffer(3)]) {
    assert.equal(socket.send(bad as unknown as string), 0, `send(${bad})`);
  }
  assert.equal(socket.send(new Uint16Array(2) as unknown as Uint8Array), 0);
  socket.close({ closeCode: 1000, reason: "done" });
  assert.equal(socket.send("too late"), 0);
  const { frames, code } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.deepEqual(
    frames.map((f) => [f.opcode, f.payload.length]),
    [[1, 5], [2, 200], [2, 70_000]],
  );
  assert.equal(code, 1000);
});

Deno.test("bufferedAmount counts what waits in writable's queue, for a peer that does not read", async () => {
  const size = 100 * 1024;
  const measured = Promise.withResolvers<number>();
  await using local = serveLocal({}, async (socket) => {
    const writer = socket.writable.getWriter();
    await writer.ready;
    // Three writes not awaited: one reaches the connection, two wait in
    // writable's queue.
    for (let i = 0; i < 3; i++) {
      writer.write(new Uint8Array(size)).catch(() => {});
    }
    measured.resolve(socket.bufferedAmount);
  });
  await using _client = await RawClient.open(local.port);
  const buffered = await deadline(measured.promise, "bufferedAmount");
  // Payloads plus at most a 10-byte header each.
  assert.ok(
    buffered >= 3 * size && buffered <= 3 * (size + 10),
    `bufferedAmount ${buffered} for 3 writes of ${size} bytes`,
  );
});

Deno.test("§7.1.2 close() after writes that were not awaited sends them before the close frame", async () => {
  const writes: Promise<PromiseSettledResult<void>[]>[] = [];
  await using local = serveLocal({}, async (socket) => {
    const writer = socket.writable.getWriter();
    // "started": writable had started before the writes; "fresh": not yet.
    if (socket.request.headers.get("x-writable") === "started") {
      await writer.ready;
    }
    const pending = [writer.write("one"), writer.write("two")];
    socket.close({ closeCode: 1000, reason: "bye" });
    writes.push(Promise.allSettled(pending));
  });
  for (const state of ["fresh", "started"]) {
    await using client = await RawClient.open(local.port, {
      "X-Writable": state,
    });
    const { frames, code, reason } = await deadline(
      client.readUntilClose(),
      "close frame",
    );
    assert.deepEqual(frames.map((f) => text(f.payload)), ["one", "two"], state);
    assert.equal(code, 1000);
    assert.equal(reason, "bye");
  }
  for (const results of await Promise.all(writes)) {
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "fulfilled"]);
  }
});
