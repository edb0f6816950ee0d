/**
 * Real peers we did not write, with permessage-deflate (RFC 7692) on:
 * headless Chromium (which always offers it) against the echo example,
 * `npm:ws` as client and as server with `perMessageDeflate`, and Python's
 * `websockets` as client and as server (compression is on by default there).
 * Each exchanges small, repeated (context takeover), 1 MiB and empty
 * messages, checks every echo byte for byte and the negotiated extension on
 * both ends, then closes cleanly. A peer that misread a compressed frame
 * would fail the connection (1002 or 1007) and the test with it.
 *
 * The peers are the machine's own, as in tests/peers_test.ts:
 * `/usr/bin/python3` with `python3-websockets` and `/usr/bin/chromium`.
 */

import assert from "node:assert/strict";
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import NodeWebSocket, { WebSocketServer } from "npm:ws@8";
import {
  connect,
  type PerMessageDeflateOptions,
  type WebSocketConnection,
} from "../mod.ts";
import { startEchoServer } from "../examples/echo.ts";

const PYTHON = "/usr/bin/python3";
const CHROMIUM = "/usr/bin/chromium";
const PYTHON_PEER = new URL("./_peers/python_deflate.py", import.meta.url);
const MIB = 1024 * 1024;
/** How long any one step may take before the test fails instead of hanging. */
const STEP_LIMIT = 20_000;

/** A message as it crosses a process boundary: binary data in base64. */
interface WireMessage {
  type: "text" | "binary";
  data: string;
}

/** What every peer sends, in order; each must come back exactly. */
const MESSAGES: { label: string; data: string | Uint8Array }[] = [
  { label: "short text", data: "Hello, peer: héllo ✓ 🌍" },
  { label: "2 KiB text", data: _pseudoText(2048, 1) },
  // The same again: with context takeover, a back-reference.
  { label: "2 KiB text again", data: _pseudoText(2048, 1) },
  { label: "binary", data: Uint8Array.from({ length: 256 }, (_, i) => i) },
  { label: "1 MiB text", data: _pseudoText(MIB, 2) },
  { label: "1 MiB binary", data: _pseudoBytes(MIB) },
  { label: "empty text", data: "" },
  { label: "empty binary", data: new Uint8Array(0) },
];

const CLOSE = { code: 4000, reason: "Done, thanks ✓" };

Deno.test({
  name:
    "RFC 7692 headless Chromium negotiates permessage-deflate with the echo example and exchanges every kind of message",
  async fn() {
    _requirePeer(CHROMIUM, "chromium (Debian package chromium)");
    await using echo = _startEcho();
    const origin = `http://127.0.0.1:${echo.server.addr.port}`;
    const chromium = await _loadPlaywrightChromium();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
      ],
    });
    try {
      const page = await browser.newPage();
      assert.equal((await page.goto(`${origin}/`))?.status(), 200);
      // The page shows what its own socket negotiated.
      await page.locator("#extensions", { hasText: "permessage-deflate" })
        .waitFor({ timeout: STEP_LIMIT });
      assert.equal(
        (await _within(echo.socket("/"), "the page's socket")).extensions,
        "permessage-deflate",
      );
      const result = await page.evaluate(_browserExchange, {
        url: `${origin.replace(/^http/, "ws")}/chromium`,
        messages: MESSAGES.map(({ data }) => _toWire(data)),
        close: CLOSE,
        limit: STEP_LIMIT,
      });
      assert.equal(result.extensions, "permessage-deflate");
      assert.equal(result.echoes.length, MESSAGES.length);
      MESSAGES.forEach(({ label, data }, i) =>
        _assertSameMessage(_fromWire(result.echoes[i]), data, label)
      );
      assert.deepEqual(result.close, { code: CLOSE.code, wasClean: true });
      const server = await _within(
        echo.socket("/chromium"),
        "the server's socket",
      );
      assert.equal(server.extensions, "permessage-deflate");
      assert.deepEqual(await _within(server.closed, "the server's close"), {
        closeCode: CLOSE.code,
        reason: CLOSE.reason,
      });
    } finally {
      await browser.close();
    }
  },
});

Deno.test("RFC 7692 npm:ws client with perMessageDeflate against the echo example, context takeover on and off", async (t) => {
  const configs: [string, Record<string, unknown>, string][] = [
    ["defaults, threshold 0", { threshold: 0 }, "permessage-deflate"],
    [
      "no context takeover either way, small windows",
      {
        threshold: 0,
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11,
      },
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
    ],
  ];
  for (const [label, perMessageDeflate, extensions] of configs) {
    await t.step(label, async () => {
      await using echo = _startEcho();
      const path = `/ws-${configs.findIndex(([l]) => l === label)}`;
      const ws = new NodeWebSocket(`${echo.url.slice(0, -1)}${path}`, {
        perMessageDeflate,
      });
      const inbox = new _Inbox<string | Uint8Array>();
      ws.on("message", (data, isBinary) => {
        const buffer = data as Uint8Array;
        inbox.push(
          isBinary
            ? new Uint8Array(
              buffer.buffer,
              buffer.byteOffset,
              buffer.byteLength,
            )
            : new TextDecoder().decode(buffer),
        );
      });
      const closed = new Promise<{ code: number }>((resolve) =>
        ws.on("close", (code) => resolve({ code }))
      );
      const errors: Error[] = [];
      ws.on("error", (error) => errors.push(error));
      try {
        await _within(
          new Promise<void>((resolve, reject) => {
            ws.on("open", resolve);
            ws.on("error", reject);
          }),
          "the connection to open",
        );
        assert.equal(ws.extensions, "permessage-deflate");
        const server = await _within(echo.socket(path), "the server socket");
        assert.equal(server.extensions, extensions);
        for (const { label, data } of MESSAGES) {
          ws.send(data);
          _assertSameMessage(
            await _within(inbox.next(), `the ${label} echo`),
            data,
            label,
          );
        }
        ws.close(CLOSE.code, CLOSE.reason);
        assert.deepEqual(await _within(closed, "the close"), {
          code: CLOSE.code,
        });
        assert.deepEqual(await _within(server.closed, "the server's close"), {
          closeCode: CLOSE.code,
          reason: CLOSE.reason,
        });
        assert.deepEqual(errors, []);
      } finally {
        ws.terminate();
        await closed;
      }
    });
  }
});

Deno.test("RFC 7692 connect() with perMessageDeflate against an npm:ws server with perMessageDeflate, context takeover on and off", async (t) => {
  const configs: [string, Record<string, unknown>, PerMessageDeflateOptions][] =
    [
      ["defaults, threshold 0", { threshold: 0 }, { threshold: 0 }],
      [
        "no context takeover either way, small windows",
        { threshold: 0, serverNoContextTakeover: true },
        {
          threshold: 0,
          clientNoContextTakeover: true,
          serverMaxWindowBits: 9,
          clientMaxWindowBits: 10,
        },
      ],
    ];
  for (const [label, serverOptions, clientOptions] of configs) {
    await t.step(label, async () => {
      const server = new WebSocketServer({
        host: "127.0.0.1",
        port: 0,
        perMessageDeflate: serverOptions,
      });
      const errors: Error[] = [];
      server.on("connection", (socket) => {
        socket.on("error", (error) => errors.push(error));
        socket.on("message", (data, isBinary) => {
          socket.send(data, { binary: isBinary });
        });
      });
      await new Promise<void>((resolve) => server.on("listening", resolve));
      const { port } = server.address() as { port: number };
      try {
        const socket = await connect(`ws://127.0.0.1:${port}/`, {
          perMessageDeflate: clientOptions,
        });
        assert.match(socket.extensions, /^permessage-deflate/);
        await _echoEach(socket);
        socket.close({ closeCode: CLOSE.code, reason: CLOSE.reason });
        assert.deepEqual(await _within(socket.closed, "the close"), {
          closeCode: CLOSE.code,
          reason: CLOSE.reason,
        });
        assert.deepEqual(errors, []);
      } finally {
        for (const client of server.clients) client.terminate();
        await new Promise((resolve) => server.close(resolve));
      }
    });
  }
});

Deno.test("RFC 7692 Python websockets client negotiates permessage-deflate with the echo example and exchanges every kind of message", async () => {
  _requirePeer(PYTHON, "python3 (Debian package python3-websockets)");
  await using echo = _startEcho();
  const child = new Deno.Command(PYTHON, {
    args: [PYTHON_PEER.pathname, "client", `${echo.url}python`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const output = child.output().finally(() => exited = true);
  try {
    const plan = JSON.stringify({
      messages: MESSAGES.map(({ data }) => _toWire(data)),
      close: CLOSE,
    });
    await ReadableStream.from([new TextEncoder().encode(plan)])
      .pipeTo(child.stdin).catch(() => {});
    const { code, stdout, stderr } = await _within(output, "the Python client");
    assert.equal(
      code,
      0,
      `The Python client failed:\n${new TextDecoder().decode(stderr)}`,
    );
    const result = JSON.parse(new TextDecoder().decode(stdout)) as {
      echoes: WireMessage[];
      extensions: string;
      close_code: number;
    };
    assert.equal(result.extensions, "permessage-deflate");
    MESSAGES.forEach(({ label, data }, i) =>
      _assertSameMessage(_fromWire(result.echoes[i]), data, label)
    );
    assert.equal(result.close_code, CLOSE.code);
    const server = await _within(echo.socket("/python"), "the server socket");
    assert.equal(server.extensions, "permessage-deflate");
    assert.deepEqual(await _within(server.closed, "the server's close"), {
      closeCode: CLOSE.code,
      reason: CLOSE.reason,
    });
  } finally {
    if (!exited) child.kill("SIGKILL");
    await output.catch(() => {});
  }
});

Deno.test("RFC 7692 connect() with perMessageDeflate against a Python websockets server, whose windows are 12 bits", async () => {
  _requirePeer(PYTHON, "python3 (Debian package python3-websockets)");
  const child = new Deno.Command(PYTHON, {
    args: [PYTHON_PEER.pathname, "server"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  try {
    const first = await _within(lines.read(), "the Python server's port");
    const port = Number(first.value?.trim());
    if (!(port > 0)) {
      await child.stdin.close();
      throw new Error(`The Python server failed:\n${await stderr}`);
    }
    const socket = await connect(`ws://127.0.0.1:${port}/`, {
      perMessageDeflate: { threshold: 0 },
    });
    assert.equal(
      socket.extensions,
      "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    );
    await _echoEach(socket);
    socket.close({ closeCode: CLOSE.code, reason: CLOSE.reason });
    assert.equal((await _within(socket.closed, "the close")).closeCode, 4000);
  } finally {
    await child.stdin.close();
    lines.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const status = await _within(child.status, "the Python server to stop");
    await stderr;
    assert.equal(status.code, 0);
  }
});

/** Sends each message on `socket` and checks its echo. */
async function _echoEach(socket: WebSocketConnection): Promise<void> {
  const writer = socket.writable.getWriter();
  const reader = socket.readable.getReader();
  for (const { label, data } of MESSAGES) {
    await writer.write(data);
    const { value } = await _within(reader.read(), `the ${label} echo`);
    _assertSameMessage(value!, data, label);
  }
  writer.releaseLock();
  reader.releaseLock();
}

/**
 * Runs inside the page (Playwright serializes it): opens a WebSocket, sends
 * each message and waits for its echo, then closes.
 */
async function _browserExchange(
  plan: {
    url: string;
    messages: WireMessage[];
    close: { code: number; reason: string };
    limit: number;
  },
): Promise<{
  extensions: string;
  echoes: WireMessage[];
  close: { code: number; wasClean: boolean };
}> {
  const ws = new WebSocket(plan.url);
  ws.binaryType = "arraybuffer";
  const events: (MessageEvent | Event)[] = [];
  let wake = () => {};
  const next = () =>
    new Promise<MessageEvent | Event>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("Timed out in the page")),
        plan.limit,
      );
      const take = () => {
        clearTimeout(timer);
        resolve(events.shift()!);
      };
      if (events.length > 0) take();
      else wake = take;
    });
  const push = (event: MessageEvent | Event) => {
    events.push(event);
    wake();
    wake = () => {};
  };
  ws.onopen = push;
  ws.onmessage = push;
  ws.onerror = push;
  ws.onclose = push;
  const opened = await next();
  if (opened.type !== "open") throw new Error(`Got ${opened.type}, not open`);
  const echoes: WireMessage[] = [];
  for (const message of plan.messages) {
    ws.send(
      message.type === "text"
        ? message.data
        : Uint8Array.fromBase64(message.data),
    );
    const event = await next();
    if (!(event instanceof MessageEvent)) {
      throw new Error(`Got ${event.type}, not a message`);
    }
    echoes.push(
      typeof event.data === "string"
        ? { type: "text", data: event.data }
        : { type: "binary", data: new Uint8Array(event.data).toBase64() },
    );
  }
  ws.close(plan.close.code, plan.close.reason);
  const event = await next() as CloseEvent;
  if (event.type !== "close") throw new Error(`Got ${event.type}, not close`);
  return {
    extensions: ws.extensions,
    echoes,
    close: { code: event.code, wasClean: event.wasClean },
  };
}

/**
 * The echo example on a free port, with its default compression on, telling
 * the test about its sockets by path.
 */
function _startEcho() {
  const sockets = new Map<string, WebSocketConnection>();
  const waiting = new Map<string, (socket: WebSocketConnection) => void>();
  const server = startEchoServer({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    onSocket(socket) {
      const path = new URL(socket.request.url).pathname;
      sockets.set(path, socket);
      waiting.get(path)?.(socket);
    },
  });
  return {
    server,
    url: `ws://127.0.0.1:${server.addr.port}/`,
    socket(path: string): Promise<WebSocketConnection> {
      const socket = sockets.get(path);
      if (socket) return Promise.resolve(socket);
      return new Promise((resolve) => waiting.set(path, resolve));
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Fails (rather than hangs) when a peer never answers. */
async function _within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out waiting for ${what}`)),
          STEP_LIMIT,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Messages in arrival order, awaited one at a time. */
class _Inbox<T> {
  #items: T[] = [];
  #waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  next(): Promise<T> {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/** Asserts that an echo is the message sent: same kind, same bytes. */
function _assertSameMessage(
  actual: string | Uint8Array,
  expected: string | Uint8Array,
  label: string,
): void {
  if (typeof expected === "string") {
    assert.equal(typeof actual, "string", `the ${label} echo is text`);
    assert.ok(actual === expected, `the ${label} echo's text`);
    return;
  }
  assert.ok(actual instanceof Uint8Array, `the ${label} echo is binary`);
  assert.equal(actual.length, expected.length, `the ${label} echo's length`);
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  assert.equal(at, -1, `the ${label} echo differs at byte ${at}`);
}

function _toWire(data: string | Uint8Array): WireMessage {
  return typeof data === "string"
    ? { type: "text", data }
    : { type: "binary", data: data.toBase64() };
}

function _fromWire(message: WireMessage): string | Uint8Array {
  return message.type === "text"
    ? message.data
    : Uint8Array.fromBase64(message.data);
}

/** Printable pseudo-random text (xorshift32): compressible, not trivially. */
function _pseudoText(length: number, seed: number): string {
  let state = 0x9e3779b9 ^ seed;
  const codes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    codes[i] = 97 + ((state >>> 0) % 26);
  }
  return new TextDecoder().decode(codes);
}

/** Pseudo-random bytes in short runs: compressible binary. */
function _pseudoBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = 0x12345678;
  for (let i = 0; i < length;) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const run = 1 + ((state >>> 8) & 15);
    bytes.fill(state & 0xff, i, i + run);
    i += run;
  }
  return bytes;
}

/**
 * Loads playwright-core only for the test that needs it (on load it probes
 * `/proc/sys/fs/binfmt_misc/WSLInterop`, which Deno allows only with
 * `--allow-all`).
 */
async function _loadPlaywrightChromium() {
  try {
    // deno-lint-ignore no-import-prefix
    return (await import("npm:playwright-core@1")).chromium;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new Error(
        "playwright-core needs --allow-all (on load it probes /proc/sys/fs/binfmt_misc/WSLInterop): run deno test -A",
        { cause: error },
      );
    }
    throw error;
  }
}

/** Fails with what to install when a peer is missing from the machine. */
function _requirePeer(path: string, what: string): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(
      `${path} is missing: this test needs ${what}, which .ci/run installs`,
    );
  }
}
