import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import { type WebSocket as WsSocket, WebSocketServer } from "npm:ws@8";
import { connect, serve, WebSocketError } from "../mod.ts";
import { computeAccept } from "../src/engine/_accept_value.ts";
import { ClientHandshake } from "../src/protocol/_client_handshake.ts";
import type { RequestHead } from "../src/http/_http.ts";
import { takeRequestHead } from "../src/http/_http1.ts";
import { RawClient } from "./_raw_client.ts";
import {
  badFrames,
  closePayload,
  frame as wireFrame,
  type WireFrame,
} from "./_wire.ts";
import {
  assertSameMessages,
  concat,
  deadline,
  isCloseError,
  pseudoRandomBytes,
  runCommand,
  settled,
  shiftClock,
  sleep,
  WAIT_LIMIT,
} from "./_util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LOCAL = { port: 0, hostname: "127.0.0.1", onListen() {} };

// ---------------------------------------------------------------------------
// Helpers: peers to test against.

/**
 * One accepted TCP connection, read and written byte by byte through a
 * RawClient (whose every wait has a deadline, so that a missing frame fails
 * the test quickly): the client's request head, then frames in the wire
 * format of _wire.ts.
 */
class RawPeer {
  readonly raw: RawClient;

  constructor(conn: Deno.Conn) {
    this.raw = new RawClient(conn);
  }

  /** Reads the client's request head. */
  async readHead(): Promise<RequestHead> {
    // The server's own strict parser: the client's head must pass it.
    const taken = takeRequestHead(await this.raw.readHeadBytes());
    if (taken === undefined) throw new Error("The request head is cut off");
    return taken.head;
  }

  /** Reads the client's handshake and accepts it with a valid 101. */
  async accept(extra = "", after?: Uint8Array): Promise<RequestHead> {
    const head = await this.readHead();
    const key = head.headers.get("sec-websocket-key")!;
    const answer = encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n${extra}\r\n`,
    );
    await this.write(after ? concat([answer, after]) : answer);
    return head;
  }

  /** Reads one frame, unmasking its payload. */
  async readFrame(): Promise<WireFrame> {
    const frame = await this.raw.readFrame();
    if (!frame) throw new Error("The client closed early");
    return frame;
  }

  write(bytes: Uint8Array): Promise<void> {
    return this.raw.write(bytes);
  }

  /** Resolves once the client has closed its side (after discarding data). */
  async eof(): Promise<void> {
    await this.raw.readAll();
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * A hand-written TCP server on 127.0.0.1:0 that runs `handle` for each
 * connection; disposing of it waits for the handlers and rethrows their
 * failures.
 */
function rawServer(handle: (peer: RawPeer) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<unknown>[] = [];
  const failures: unknown[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const peer = new RawPeer(conn);
        tasks.push(
          handle(peer).catch((error) => failures.push(error)).finally(() =>
            peer.close()
          ),
        );
      }
    } catch {
      // The listener was closed.
    }
  })();
  const port = listener.addr.port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
      if (failures.length > 0) throw failures[0];
    },
  };
}

/** Deno's own server (`Deno.serve` + `Deno.upgradeWebSocket`). */
function denoServer(
  onSocket: (socket: WebSocket) => void,
  options: {
    choose?: (offered: string[]) => string | undefined;
    cert?: string;
    key?: string;
  } = {},
) {
  const closes: Promise<void>[] = [];
  const sockets: WebSocket[] = [];
  const tls = options.cert ? { cert: options.cert, key: options.key! } : {};
  const server = Deno.serve({ ...LOCAL, ...tls }, (request) => {
    const offered = (request.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((token) => token.trim()).filter((token) => token);
    const protocol = options.choose?.(offered);
    const { socket, response } = Deno.upgradeWebSocket(
      request,
      protocol ? { protocol } : {},
    );
    socket.binaryType = "arraybuffer";
    sockets.push(socket);
    closes.push(
      new Promise((resolve) =>
        socket.addEventListener("close", () => resolve())
      ),
    );
    onSocket(socket);
    return response;
  });
  const scheme = options.cert ? "wss" : "ws";
  return {
    url: `${scheme}://127.0.0.1:${server.addr.port}/`,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) {
        if (socket.readyState === WebSocket.OPEN) socket.close();
      }
      await deadline(Promise.all(closes), "Deno's sockets to close");
      await deadline(server.shutdown(), "Deno's server to shut down");
    },
  };
}

function denoEcho(socket: WebSocket): void {
  socket.onmessage = (event) => socket.send(event.data);
}

/** An `npm:ws` server on 127.0.0.1:0. */
async function wsServer(
  onSocket: (socket: WsSocket) => void,
  choose?: (offered: string[]) => string | false,
) {
  const server = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    ...(choose
      ? { handleProtocols: (offered: Set<string>) => choose([...offered]) }
      : {}),
  });
  await new Promise((resolve) => server.once("listening", resolve));
  const closes: Promise<void>[] = [];
  server.on("connection", (socket: WsSocket) => {
    closes.push(new Promise((resolve) => socket.once("close", resolve)));
    onSocket(socket);
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}/`,
    async [Symbol.asyncDispose]() {
      for (const socket of server.clients) socket.terminate();
      await deadline(Promise.all(closes), "npm:ws's sockets to close");
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function wsEcho(socket: WsSocket): void {
  socket.on("message", (data: Buffer, isBinary: boolean) => {
    socket.send(data, { binary: isBinary });
  });
}

/** A server's frame (unmasked), in the wire format of _wire.ts. */
function frame(opcode: number, payload: Uint8Array | string, fin = true) {
  return wireFrame(opcode, payload, { fin, mask: false });
}

/** Sends each message and reads its echo, in order. */
async function roundTrip(
  url: string,
  messages: (string | Uint8Array)[],
  options: Parameters<typeof connect>[1] = {},
): Promise<(string | Uint8Array)[]> {
  const socket = await deadline(connect(url, options), "the connection");
  const writer = socket.writable.getWriter();
  const reader = socket.readable.getReader();
  const echoes: (string | Uint8Array)[] = [];
  try {
    for (const [i, message] of messages.entries()) {
      await deadline(writer.write(message), `message ${i} to be taken`);
      const { value } = await deadline(reader.read(), `the echo of ${i}`);
      echoes.push(value!);
    }
  } finally {
    reader.releaseLock();
    socket.close({ closeCode: 1000 });
    await deadline(socket.closed, "the closing handshake");
  }
  return echoes;
}

const MESSAGES = [
  "Hello, world",
  "ünïcödé ✓ 🎉",
  new Uint8Array([0, 1, 2, 254, 255]),
  "",
  new Uint8Array(0),
  pseudoRandomBytes(1024 * 1024, 1),
  "x".repeat(1024 * 1024),
];

// ---------------------------------------------------------------------------
// Against Deno's own server.

Deno.test("client against Deno.upgradeWebSocket: text, binary, empty and 1 MiB messages echo unchanged", async () => {
  await using server = denoServer(denoEcho);
  assertSameMessages(await roundTrip(server.url, MESSAGES), MESSAGES);
});

Deno.test("client against Deno.upgradeWebSocket: the subprotocol the server picks is negotiated", async () => {
  await using server = denoServer(denoEcho, {
    choose: (offered) => offered.find((token) => token === "chat.v1"),
  });
  const socket = await connect(server.url, {
    protocols: ["chat.v2", "chat.v1"],
  });
  assert.equal(socket.protocol, "chat.v1");
  assert.equal(socket.extensions, "");
  socket.close();
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1005,
    reason: "",
    wasClean: true,
  });
});

Deno.test("client against Deno.upgradeWebSocket: a client close sends its code and reason", async () => {
  const seen = Promise.withResolvers<{ code: number; reason: string }>();
  await using server = denoServer((socket) => {
    socket.onclose = (event) =>
      seen.resolve({ code: event.code, reason: event.reason });
  });
  const socket = await connect(server.url);
  socket.close({ closeCode: 4001, reason: "Client bye" });
  assert.deepEqual(await deadline(seen.promise, "what the server saw"), {
    code: 4001,
    reason: "Client bye",
  });
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4001,
    reason: "Client bye",
    wasClean: true,
  });
});

Deno.test("client against Deno.upgradeWebSocket: a server close ends readable and resolves closed with its code and reason", async () => {
  await using server = denoServer((socket) => {
    socket.onopen = () => socket.close(4002, "Server bye");
  });
  const socket = await connect(server.url);
  const messages = await deadline(
    Array.fromAsync(socket.readable),
    "the end of readable",
  );
  assert.deepEqual(messages, []);
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4002,
    reason: "Server bye",
    wasClean: true,
  });
});

// ---------------------------------------------------------------------------
// Against npm:ws.

Deno.test("client against npm:ws: text, binary, empty and 1 MiB messages echo unchanged", async () => {
  await using server = await wsServer(wsEcho);
  assertSameMessages(await roundTrip(server.url, MESSAGES), MESSAGES);
});

Deno.test("client against npm:ws: the subprotocol the server picks is negotiated", async () => {
  await using server = await wsServer(
    wsEcho,
    (offered) => offered.includes("chat.v1") ? "chat.v1" : false,
  );
  const socket = await connect(server.url, {
    protocols: ["chat.v2", "chat.v1"],
  });
  assert.equal(socket.protocol, "chat.v1");
  socket.close();
  await deadline(socket.closed, "the socket to close");
});

Deno.test("client against npm:ws: a server ping is answered by a pong with the same payload", async () => {
  const pong = Promise.withResolvers<Uint8Array>();
  await using server = await wsServer((socket) => {
    socket.on("pong", (data: Buffer) => pong.resolve(new Uint8Array(data)));
    socket.ping(Buffer.from("are you there?"));
  });
  const socket = await connect(server.url);
  assert.equal(
    decoder.decode(await deadline(pong.promise, "the pong")),
    "are you there?",
  );
  socket.close();
  await deadline(socket.closed, "the socket to close");
});

Deno.test("client against npm:ws: a client close sends its code and reason", async () => {
  const seen = Promise.withResolvers<[number, string]>();
  await using server = await wsServer((socket) => {
    socket.on("close", (code: number, reason: Buffer) => {
      seen.resolve([code, reason.toString()]);
    });
  });
  const socket = await connect(server.url);
  socket.close({ closeCode: 4001, reason: "Client bye" });
  assert.deepEqual(await deadline(seen.promise, "what the server saw"), [
    4001,
    "Client bye",
  ]);
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4001,
    reason: "Client bye",
    wasClean: true,
  });
});

Deno.test("client against npm:ws: a server close ends readable and resolves closed with its code and reason", async () => {
  await using server = await wsServer((socket) => {
    socket.send("last words");
    socket.close(4002, "Server bye");
  });
  const socket = await connect(server.url);
  assert.deepEqual(
    await deadline(
      Array.fromAsync(socket.readable),
      "the end of readable",
    ),
    ["last words"],
  );
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4002,
    reason: "Server bye",
    wasClean: true,
  });
});

Deno.test("client against npm:ws: a server that drops the connection rejects closed with 1006", async () => {
  await using server = await wsServer((socket) => socket.terminate());
  const socket = await connect(server.url);
  await assert.rejects(socket.readable.getReader().read(), WebSocketError);
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => error instanceof WebSocketError && error.closeCode === 1006,
  );
});

// ---------------------------------------------------------------------------
// Against our own server.

function ourEcho() {
  return serve(LOCAL, (socket) => socket.readable.pipeTo(socket.writable));
}

Deno.test("client against serve(): text, binary, empty and 1 MiB messages echo unchanged", async () => {
  await using server = ourEcho();
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  assertSameMessages(await roundTrip(url, MESSAGES), MESSAGES);
});

Deno.test("client against serve(): an http: URL is taken as ws:", async () => {
  await using server = ourEcho();
  const url = `http://127.0.0.1:${server.addr.port}/`;
  assert.deepEqual(await roundTrip(url, ["via http:"]), ["via http:"]);
});

Deno.test("client against serve(): the subprotocol and the request are those of the handshake", async () => {
  const seen = Promise.withResolvers<Request>();
  await using server = serve(
    { ...LOCAL, protocols: ["chat.v1"] },
    (socket) => {
      seen.resolve(socket.request);
      socket.close({ closeCode: 1000 });
    },
  );
  const url = `ws://127.0.0.1:${server.addr.port}/room/7?user=ada`;
  const socket = await connect(url, {
    protocols: ["chat.v2", "chat.v1"],
    headers: { origin: "https://example.com", "x-token": "t0k3n" },
  });
  assert.equal(socket.protocol, "chat.v1");
  assert.equal(socket.request.url, url);
  assert.equal(socket.remoteAddr.port, server.addr.port);
  const request = await deadline(seen.promise, "what the server saw");
  assert.equal(new URL(request.url).pathname, "/room/7");
  assert.equal(new URL(request.url).search, "?user=ada");
  assert.equal(request.headers.get("origin"), "https://example.com");
  assert.equal(request.headers.get("x-token"), "t0k3n");
  assert.equal(
    request.headers.get("sec-websocket-protocol"),
    "chat.v2, chat.v1",
  );
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("client against serve(): close codes and reasons travel in both directions", async (t) => {
  await t.step("client closes", async () => {
    const seen = Promise.withResolvers<unknown>();
    await using server = serve(LOCAL, async (socket) => {
      await deadline(
        Array.fromAsync(socket.readable),
        "the end of readable",
      );
      seen.resolve(await deadline(socket.closed, "the socket to close"));
    });
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
    socket.close({ closeCode: 4100, reason: "Client done" });
    assert.deepEqual(await deadline(seen.promise, "what the server saw"), {
      closeCode: 4100,
      reason: "Client done",
      wasClean: true,
    });
    assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
      closeCode: 4100,
      reason: "",
      wasClean: true,
    });
  });
  await t.step("server closes", async () => {
    await using server = serve(LOCAL, (socket) => {
      socket.close({ closeCode: 4200, reason: "Server done" });
    });
    const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`);
    assert.deepEqual(
      await deadline(
        Array.fromAsync(socket.readable),
        "the end of readable",
      ),
      [],
    );
    assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
      closeCode: 4200,
      reason: "Server done",
      wasClean: true,
    });
  });
});

Deno.test("client against serve(): a message over maxMessageSize fails the connection with 1009", async () => {
  await using server = serve(LOCAL, async (socket) => {
    await socket.writable.getWriter().write("x".repeat(100));
    await deadline(socket.closed, "the socket to close").catch(() => {});
  });
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    maxMessageSize: 99,
  });
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => error instanceof WebSocketError && error.closeCode === 1009,
  );
});

Deno.test("§5.4 a message in more than maxFragments frames fails the client connection with 1008", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(concat([
      frame(1, "a", false),
      frame(0, "b", false),
      frame(0, "c", false),
    ]));
    const close = await peer.readFrame();
    assert.equal(close.opcode, 8);
    assert.equal((close.payload[0] << 8) | close.payload[1], 1008);
  });
  const socket = await connect(server.url, { maxFragments: 2 });
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => error instanceof WebSocketError && error.closeCode === 1008,
  );
});

Deno.test("client aborting its signal after the handshake closes the open socket", async () => {
  await using server = ourEcho();
  const controller = new AbortController();
  const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
    signal: controller.signal,
  });
  controller.abort();
  assert.deepEqual(
    await deadline(
      Array.fromAsync(socket.readable),
      "the end of readable",
    ),
    [],
  );
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

// ---------------------------------------------------------------------------
// wss: with a certificate made for the test.

async function makeCertificate(
  dir: string,
): Promise<{ cert: string; key: string }> {
  const { success, stderr } = await runCommand("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  });
  assert.ok(success, decoder.decode(stderr));
  return {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
}

Deno.test("client over wss: trusts a self-signed certificate given in caCerts, and only then", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { cert, key } = await makeCertificate(dir);
    await using server = denoServer(denoEcho, { cert, key });
    assert.ok(server.url.startsWith("wss://"));
    const messages = ["over TLS", pseudoRandomBytes(256 * 1024, 2)];
    assertSameMessages(
      await roundTrip(server.url, messages, { caCerts: [cert] }),
      messages,
    );
    await assert.rejects(
      connect(server.url),
      (error) =>
        error instanceof WebSocketError &&
        /^The TLS handshake with wss:\/\/127\.0\.0\.1:\d+\/ failed: /.test(
          error.message,
        ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client over wss: talks to serve() with cert and key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { cert, key } = await makeCertificate(dir);
    await using server = serve(
      { ...LOCAL, cert, key },
      (socket) => socket.readable.pipeTo(socket.writable),
    );
    const url = `wss://127.0.0.1:${server.addr.port}/`;
    const messages = ["over TLS", "", pseudoRandomBytes(1024 * 1024, 3)];
    assertSameMessages(
      await roundTrip(url, messages, { caCerts: [cert] }),
      messages,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// §4.1 the opening handshake, as the client sends it.

Deno.test("§4.1 the client sends GET with the path and query, Host with the port, Upgrade, Connection, version 13 and a fresh 16-byte key", async () => {
  const heads: RequestHead[] = [];
  await using server = rawServer(async (peer) => {
    heads.push(await peer.accept());
    await peer.write(frame(8, closePayload(1000)));
    await peer.readFrame();
  });
  for (let i = 0; i < 2; i++) {
    const socket = await connect(`${server.url}chat/room?id=${i}&x=%20y`, {
      protocols: ["a", "b"],
    });
    await deadline(socket.closed, "the socket to close");
  }
  assert.equal(heads.length, 2);
  for (const [i, head] of heads.entries()) {
    assert.equal(head.method, "GET");
    assert.equal(head.target, `/chat/room?id=${i}&x=%20y`);
    assert.equal(head.version, "HTTP/1.1");
    assert.equal(head.headers.get("host"), `127.0.0.1:${server.port}`);
    assert.equal(head.headers.get("upgrade"), "websocket");
    assert.equal(head.headers.get("connection"), "Upgrade");
    assert.equal(head.headers.get("sec-websocket-version"), "13");
    assert.equal(head.headers.get("sec-websocket-protocol"), "a, b");
    assert.equal(head.headers.has("sec-websocket-extensions"), false);
    const key = head.headers.get("sec-websocket-key")!;
    assert.match(key, /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(Uint8Array.fromBase64(key).length, 16);
  }
  assert.notEqual(
    heads[0].headers.get("sec-websocket-key"),
    heads[1].headers.get("sec-websocket-key"),
  );
});

Deno.test("§4.1 Host leaves out the port only when it is the scheme's default", () => {
  const host = (url: string) => {
    const head = requestHead(new URL(url));
    return /\r\nHost: ([^\r]*)\r\n/.exec(decoder.decode(head))![1];
  };
  assert.equal(host("ws://example.com/"), "example.com");
  assert.equal(host("ws://example.com:80/"), "example.com");
  assert.equal(host("wss://example.com:443/"), "example.com");
  assert.equal(host("ws://example.com:443/"), "example.com:443");
  assert.equal(host("wss://example.com:8443/"), "example.com:8443");
  assert.equal(host("ws://[::1]:8080/"), "[::1]:8080");
  const head = requestHead(new URL("ws://h"));
  assert.match(decoder.decode(head), /^GET \/ HTTP\/1\.1\r\n/);
});

function requestHead(url: URL): Uint8Array {
  return new ClientHandshake(url, {
    protocols: [],
    headers: new Headers(),
    deflate: null,
    key: "k",
  }).request;
}

Deno.test("§4.1 invalid URLs and options reject with a TypeError before connecting", async () => {
  const cases: [string, Parameters<typeof connect>[1], RegExp][] = [
    ["not a url", {}, /^Invalid WebSocket URL/],
    ["ftp://127.0.0.1/", {}, /must use ws: or wss:/],
    ["ws://127.0.0.1/#top", {}, /must not have a fragment/],
    ["ws://127.0.0.1/", { protocols: ["a", "a"] }, /offered twice/],
    ["ws://127.0.0.1/", { protocols: ["a b"] }, /Invalid subprotocol name/],
    ["ws://127.0.0.1/", { protocols: [""] }, /Invalid subprotocol name/],
    [
      "ws://127.0.0.1/",
      { headers: { "sec-websocket-key": "x" } },
      /is set by the WebSocket handshake/,
    ],
    ["ws://127.0.0.1/", { headers: { upgrade: "h2c" } }, /is set by/],
  ];
  for (const [url, options, message] of cases) {
    await assert.rejects(connect(url, options), (error) => {
      assert.ok(error instanceof TypeError, `${url}: ${error}`);
      assert.match(error.message, message);
      return true;
    });
  }
});

// ---------------------------------------------------------------------------
// §4.1 the client's checks of the server's answer. Each failure rejects with
// a WebSocketError (1006) and closes the TCP connection: the raw server sees
// the client's FIN.

async function rejectsHandshake(
  answer: (key: string) => Promise<string> | string,
  message: RegExp,
  options: Parameters<typeof connect>[1] = {},
  hangUp = false,
): Promise<void> {
  const server = rawServer(async (peer) => {
    const head = await peer.readHead();
    const text = await answer(head.headers.get("sec-websocket-key")!);
    await peer.write(encoder.encode(text));
    // Unless the server hangs up, the client must close the connection.
    if (!hangUp) await peer.eof();
  });
  // Not `await using`: when the client wrongly accepts the answer, the raw
  // server's wait for its close fails too, and the SuppressedError that
  // `using` makes of the two would hide which check is missing.
  try {
    const outcome = await connect(server.url, options).then(
      (socket) => socket,
      (error: unknown) => ({ error }),
    );
    if (!("error" in outcome)) {
      outcome.close();
      assert.fail(
        `connect() accepted an answer it must refuse (expected ${message})`,
      );
    }
    const { error } = outcome;
    assert.ok(error instanceof WebSocketError, String(error));
    assert.equal(error.closeCode, 1006);
    assert.match(error.message, message);
  } catch (error) {
    // The first failure is the one to see; the server's is secondary.
    await server[Symbol.asyncDispose]().catch(() => {});
    throw error;
  }
  await server[Symbol.asyncDispose]();
}

const ok101 = async (key: string, extra = "") =>
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
  `Connection: Upgrade\r\nSec-WebSocket-Accept: ${await computeAccept(
    key,
  )}\r\n` +
  `${extra}\r\n`;

Deno.test("§4.1 a non-101 answer rejects with its HTTP status in the message", async () => {
  await rejectsHandshake(
    () =>
      "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nForbidden",
    /^The server answered the WebSocket handshake with HTTP 403 Forbidden instead of 101 Switching Protocols$/,
  );
  await rejectsHandshake(
    () => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    /HTTP 200 OK instead of 101/,
  );
  await rejectsHandshake(
    () => "HTTP/1.1 426 \r\n\r\n",
    /HTTP 426 instead of 101/,
  );
});

Deno.test("§4.1 a 101 without Upgrade: websocket or Connection: Upgrade rejects", async () => {
  await rejectsHandshake(
    async (key) =>
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n\r\n`,
    /lacks an Upgrade: websocket header/,
  );
  await rejectsHandshake(
    async (key) =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n\r\n`,
    /lacks an Upgrade: websocket header/,
  );
  await rejectsHandshake(
    async (key) =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n\r\n`,
    /lacks a Connection: Upgrade header/,
  );
  await rejectsHandshake(
    async (key) => (await ok101(key)).replace("HTTP/1.1", "HTTP/1.0"),
    /with HTTP\/1\.0 instead of HTTP\/1\.1/,
  );
});

Deno.test("§4.1 a wrong or missing Sec-WebSocket-Accept rejects", async () => {
  await rejectsHandshake(
    async () => await ok101("dGhlIHNhbXBsZSBub25jZQ=="),
    /wrong Sec-WebSocket-Accept/,
  );
  await rejectsHandshake(
    () =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    /lacks Sec-WebSocket-Accept/,
  );
});

Deno.test("§4.1 a subprotocol the client did not offer rejects", async () => {
  await rejectsHandshake(
    (key) => ok101(key, "Sec-WebSocket-Protocol: chat.v3\r\n"),
    /^The server chose the subprotocol "chat\.v3", which the client did not offer$/,
    { protocols: ["chat.v1", "chat.v2"] },
  );
  await rejectsHandshake(
    (key) => ok101(key, "Sec-WebSocket-Protocol: chat.v1\r\n"),
    /subprotocol "chat\.v1", which the client did not offer/,
  );
  await rejectsHandshake(
    (key) => ok101(key, "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"),
    /which the client did not offer/,
    { protocols: ["chat.v1", "chat.v2"] },
  );
});

Deno.test("§4.1 an extension the client did not offer rejects", async () => {
  await rejectsHandshake(
    (key) => ok101(key, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
    /^The server chose the extension "permessage-deflate", which the client did not offer$/,
  );
});

Deno.test("§4.1 a malformed, truncated or oversized answer rejects", async () => {
  await rejectsHandshake(
    () => "HTTP/1.1 101\r\nbad header\r\n\r\n",
    /^Invalid handshake response: Malformed header line$/,
  );
  await rejectsHandshake(
    () => "SSH-2.0-OpenSSH\r\n\r\n",
    /^Invalid handshake response: Malformed status line$/,
  );
  await rejectsHandshake(
    () => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
    /^The server closed the connection before answering the WebSocket handshake$/,
    {},
    true,
  );
  await rejectsHandshake(
    async (key) => await ok101(key, `X-Padding: ${"x".repeat(2000)}\r\n`),
    /response head is larger than 1024 bytes/,
    { maxHeadSize: 1024 },
  );
});

Deno.test("§4.1 a refused TCP connection rejects with a WebSocketError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(
    connect(`ws://127.0.0.1:${port}/`),
    (error) => {
      assert.ok(error instanceof WebSocketError);
      assert.equal(error.closeCode, 1006);
      assert.match(
        error.message,
        new RegExp(`^Cannot connect to ws://127\\.0\\.0\\.1:${port}/: `),
      );
      assert.ok(error.cause instanceof Deno.errors.ConnectionRefused);
      return true;
    },
  );
});

Deno.test("§4.1 a server that never answers rejects after handshakeTimeout and the connection is closed", async () => {
  await using server = rawServer(async (peer) => {
    await peer.readHead();
    await peer.eof();
  });
  await assert.rejects(
    connect(server.url, { handshakeTimeout: 100 }),
    (error) =>
      error instanceof WebSocketError &&
      /^The WebSocket handshake with ws:\/\/127\.0\.0\.1:\d+\/ timed out after 100 ms$/
        .test(error.message),
  );
});

Deno.test("§4.1 aborting the signal during the handshake rejects with its reason and closes the connection", async () => {
  const controller = new AbortController();
  const reason = new Error("Changed my mind");
  await using server = rawServer(async (peer) => {
    await peer.readHead();
    controller.abort(reason);
    await peer.eof();
  });
  await assert.rejects(
    connect(server.url, { signal: controller.signal }),
    (error) => error === reason,
  );
});

Deno.test("§4.1 an already aborted signal rejects with its reason", async () => {
  const reason = new Error("Too late");
  await assert.rejects(
    connect("ws://127.0.0.1:1/", { signal: AbortSignal.abort(reason) }),
    (error) => error === reason,
  );
});

// ---------------------------------------------------------------------------
// §5 framing as a client.

Deno.test("§5.3 every client frame is masked, each with a fresh key", async () => {
  const frames = Promise.withResolvers<WireFrame[]>();
  await using server = rawServer(async (peer) => {
    await peer.accept();
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push(await peer.readFrame());
    frames.resolve(seen);
    // Answer the close and close TCP first, as a server does (§7.1.1).
    await peer.write(frame(8, closePayload(1000)));
  });
  const socket = await connect(server.url);
  const writer = socket.writable.getWriter();
  for (const message of ["same", "same", new Uint8Array([1, 2, 3])]) {
    await deadline(writer.write(message), "the write to be taken");
  }
  socket.close({ closeCode: 4000, reason: "bye" });
  const [a, b, c, close] = await deadline(
    frames.promise,
    "the client's frames",
  );
  for (const each of [a, b, c, close]) {
    assert.ok(each.key, "frame is masked");
    assert.equal(each.fin, true);
  }
  assert.deepEqual([a.opcode, b.opcode, c.opcode, close.opcode], [1, 1, 2, 8]);
  assert.equal(decoder.decode(a.payload), "same");
  assert.equal(decoder.decode(b.payload), "same");
  assert.deepEqual(c.payload, new Uint8Array([1, 2, 3]));
  assert.deepEqual(close.payload, closePayload(4000, "bye"));
  const keys = new Set([a, b, c, close].map((each) => each.key!.toHex()));
  assert.equal(keys.size, 4);
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("§5.1 a masked frame from the server fails the connection with 1002", async () => {
  const closeFrame = Promise.withResolvers<WireFrame>();
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(
      wireFrame(1, "masked", { key: [1, 2, 3, 4] }),
    );
    closeFrame.resolve(await peer.readFrame());
  });
  const socket = await connect(server.url);
  await assert.rejects(
    socket.readable.getReader().read(),
    (error) => error instanceof WebSocketError && error.closeCode === 1002,
  );
  const close = await deadline(closeFrame.promise, "the client's close frame");
  assert.equal(close.opcode, 8);
  assert.equal((close.payload[0] << 8) | close.payload[1], 1002);
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => error instanceof WebSocketError && error.closeCode === 1002,
  );
});

Deno.test("§5.5.2 a ping between fragments is answered with a masked pong with the same payload", async () => {
  const pong = Promise.withResolvers<WireFrame>();
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(concat([
      frame(1, "Hel", false),
      frame(9, "ping payload"),
      frame(0, "lo", true),
    ]));
    pong.resolve(await peer.readFrame());
    await peer.write(frame(8, closePayload(1000)));
    await peer.readFrame();
  });
  const socket = await connect(server.url);
  const reader = socket.readable.getReader();
  assert.deepEqual(await deadline(reader.read(), "a message from readable"), {
    value: "Hello",
    done: false,
  });
  const answer = await deadline(pong.promise, "the pong");
  assert.equal(answer.opcode, 10);
  assert.ok(answer.key);
  assert.equal(decoder.decode(answer.payload), "ping payload");
  assert.deepEqual(await deadline(reader.read(), "a message from readable"), {
    value: undefined,
    done: true,
  });
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("§4.1 frames sent right after the 101, in the same packet, are delivered", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept(
      "",
      concat([frame(1, "early"), frame(8, closePayload(1000, "done"))]),
    );
    await peer.readFrame();
  });
  const socket = await connect(server.url);
  assert.deepEqual(
    await deadline(
      Array.fromAsync(socket.readable),
      "the end of readable",
    ),
    ["early"],
  );
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "done",
    wasClean: true,
  });
});

// ---------------------------------------------------------------------------
// §7.1.1 the server closes TCP first.

Deno.test("§7.1.1 after the closing handshake the client waits for the server to close TCP", async () => {
  let settled = false;
  const waited = Promise.withResolvers<boolean>();
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(frame(8, closePayload(1000, "bye")));
    const echo = await peer.readFrame();
    assert.equal(echo.opcode, 8);
    assert.ok(echo.key);
    assert.deepEqual(echo.payload, closePayload(1000));
    // The client must keep TCP open: a read sees no FIN while we wait.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const eof = peer.eof().then(() => "closed by client", () => "closed");
    const verdict = await Promise.race([
      eof,
      new Promise((resolve) => timer = setTimeout(resolve, 200, "open")),
    ]);
    clearTimeout(timer);
    waited.resolve(verdict === "open" && !settled);
    peer.close();
    await eof;
  });
  const socket = await connect(server.url);
  socket.closed.finally(() => settled = true);
  assert.equal(
    await deadline(waited.promise, "the raw server's verdict"),
    true,
  );
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "bye",
    wasClean: true,
  });
});

Deno.test("§7.1.1 the client closes TCP itself after closeTimeout when the server does not", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.readFrame();
    await peer.write(frame(8, closePayload(4000)));
    await peer.eof();
  });
  const socket = await connect(server.url, { closeTimeout: 100 });
  socket.close({ closeCode: 4000 });
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 4000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("§7.1.1 a server that never answers the client's close is dropped after closeTimeout with 1006", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.readFrame();
    await peer.eof();
  });
  const socket = await connect(server.url, { closeTimeout: 100 });
  socket.close();
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => error instanceof WebSocketError && error.closeCode === 1006,
  );
});

// ---------------------------------------------------------------------------
// Heartbeat

// Heartbeat timings hold whatever the scheduling delays, as in
// tests/heartbeat_test.ts: a close never comes before idleTimeout, and a live
// server's longest silence is far below it.

Deno.test("client heartbeat: a server that never answers pings is closed with 1001 after idleTimeout", async () => {
  const opcodes: number[] = [];
  let closeCode = 0;
  await using server = rawServer(async (peer) => {
    await peer.accept();
    while (true) {
      const received = await peer.readFrame();
      opcodes.push(received.opcode);
      if (received.opcode === 8) {
        closeCode = (received.payload[0] << 8) | received.payload[1];
        return;
      }
    }
  });
  // Taken before the socket exists, so its count of silence starts after.
  const started = Date.now();
  const socket = await connect(server.url, {
    pingInterval: 50,
    idleTimeout: 800,
  });
  // Without a heartbeat nothing would end it: close it then, to fail fast.
  const guard = setTimeout(() => socket.close(), WAIT_LIMIT);
  const error = await socket.closed.then(() => null, (error) => error);
  clearTimeout(guard);
  const elapsed = Date.now() - started;
  assert.ok(error instanceof WebSocketError, "closed by the heartbeat");
  assert.equal(error.closeCode, 1001);
  assert.equal(closeCode, 1001);
  assert.equal(
    opcodes[0],
    9,
    `the client pings a silent server first: ${opcodes}`,
  );
  assert.ok(elapsed >= 800, `closed after ${elapsed} ms, before idleTimeout`);
});

Deno.test("client heartbeat: a server that answers pings keeps the socket open past idleTimeout", async () => {
  let pings = 0;
  await using server = rawServer(async (peer) => {
    await peer.accept();
    while (true) {
      const received = await peer.readFrame();
      if (received.opcode === 9) {
        pings++;
        await peer.write(frame(10, received.payload));
      } else if (received.opcode === 1) {
        await peer.write(frame(1, received.payload));
      } else if (received.opcode === 8) {
        await peer.write(frame(8, received.payload));
        return;
      }
    }
  });
  // 800 ms of idleTimeout against a longest silence of ~100 ms; waiting
  // twice idleTimeout shows that pongs count as activity.
  const socket = await connect(server.url, {
    pingInterval: 50,
    idleTimeout: 800,
  });
  try {
    await sleep(1600);
    const writer = socket.writable.getWriter();
    await deadline(writer.write("alive"), "the write to be taken");
    const reader = socket.readable.getReader();
    assert.deepEqual(await deadline(reader.read(), "the echo"), {
      value: "alive",
      done: false,
    });
    assert.ok(pings >= 3, `${pings} pings`);
  } finally {
    socket.close({ closeCode: 1000 });
  }
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
});

Deno.test("client heartbeat: idleTimeout 0 never closes a server that answers no ping", async () => {
  let pings = 0;
  await using server = rawServer(async (peer) => {
    await peer.accept();
    while (true) {
      const received = await peer.readFrame();
      if (received.opcode === 9) pings++;
      if (received.opcode === 8) {
        await peer.write(frame(8, received.payload));
        return;
      }
    }
  });
  const socket = await connect(server.url, {
    pingInterval: 50,
    idleTimeout: 0,
  });
  {
    // An hour passes for the heartbeat (it compares Date.now() readings):
    // any idle timeout at all would close the socket at its next tick.
    using _clock = shiftClock(3_600_000);
    await sleep(500);
  }
  socket.close({ closeCode: 1000 });
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
  assert.ok(pings >= 2, `${pings} pings`);
});

// ---------------------------------------------------------------------------
// §5.2 the messages before a protocol error.

for (const [name, bad] of badFrames(false)) {
  Deno.test(`§5.2 a client gets a valid message before readable errors with 1002 when ${name} follows it in the same TCP write`, async () => {
    const peerClose = Promise.withResolvers<number>();
    await using server = rawServer(async (peer) => {
      await peer.accept();
      await sleep(20);
      await peer.write(concat([frame(1, "hello"), bad]));
      const close = await peer.readFrame();
      assert.equal(close.opcode, 8);
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
  });
}

// ---------------------------------------------------------------------------
// RFC 9110 §5.5 header values beyond ASCII.

const UTF8_VALUE =
  "caf\u00e9 \u20ac 5 \u2014 \u041f\u0440\u0438\u0432\u0435\u0442";

Deno.test("RFC 9110 §5.5 connect() accepts a 101 whose header value is UTF-8", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept(`X-Greeting: ${UTF8_VALUE}\r\n`);
    // The client's close frame (code 1000), then ours and FIN.
    const close = await peer.readFrame();
    await peer.write(frame(8, close.payload));
  });
  const socket = await deadline(connect(server.url), "connect");
  socket.close({ closeCode: 1000 });
  assert.equal(
    (await deadline(socket.closed, "closed")).closeCode,
    1000,
  );
});
