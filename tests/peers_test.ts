/**
 * Real peers we did not write, each against our server (the echo example,
 * started in-process): Deno's built-in `WebSocket`, `npm:ws`, Python's
 * `websockets` and headless Chromium. Each exchanges text, binary, 1 MiB and
 * empty messages, checks every echo byte for byte, then closes with a code
 * that the server must see (§7.1.5) and whose echo the client must see
 * (§5.5.1).
 *
 * The peers are the machine's own: `/usr/bin/python3` with the Debian package
 * `python3-websockets`, and `/usr/bin/chromium` (Debian package `chromium`),
 * which `.ci/run` installs. A missing peer fails its test; it never passes
 * silently.
 */

import assert from "node:assert/strict";
// The test-only peers are pinned here, inline, rather than in deno.json,
// whose imports would otherwise be the published module's too.
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import NodeWebSocket from "npm:ws@8";
import type { WebSocketConnection } from "../mod.ts";
import { startEchoServer } from "../examples/echo.ts";

const PYTHON = "/usr/bin/python3";
const CHROMIUM = "/usr/bin/chromium";
const PYTHON_CLIENT = new URL("./_peers/python_client.py", import.meta.url);

/** A message as it crosses a process boundary: binary data in base64. */
interface WireMessage {
  type: "text" | "binary";
  data: string;
}

const MIB = 1024 * 1024;

/** What every peer sends, in order; each must come back exactly. */
const MESSAGES: { label: string; data: string | Uint8Array }[] = [
  { label: "text", data: "Hello, peer: héllo ✓ 🌍" },
  { label: "binary", data: Uint8Array.from({ length: 256 }, (_, i) => i) },
  { label: "1 MiB binary", data: _pseudoRandomBytes(MIB) },
  // 349,525 three-byte characters and one ASCII byte: exactly 1 MiB of UTF-8.
  { label: "1 MiB text", data: "✓".repeat(349_525) + "a" },
  { label: "empty text", data: "" },
  { label: "empty binary", data: new Uint8Array(0) },
];

/** The close every peer sends; the reason has multi-byte UTF-8 too. */
const CLOSE = { code: 4000, reason: "Done, thanks ✓" };
/**
 * The close the server answers with: §5.5.1 has it echo the status code; it
 * sends no reason back (the reason was for the server).
 */
const CLOSE_ECHO = { code: 4000, reason: "" };

/** How long any one step may take before the test fails instead of hanging. */
const STEP_LIMIT = 20_000;

Deno.test("§7.1.5 Deno's WebSocket client exchanges every kind of message and closes with 4000", async () => {
  await using echo = _startEcho();
  const ws = new WebSocket(`${echo.url}deno`);
  ws.binaryType = "arraybuffer";
  const inbox = new _Inbox<string | ArrayBuffer>();
  ws.onmessage = (event) => inbox.push(event.data);
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  try {
    await _within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error("Deno's WebSocket failed to open"));
      }),
      "the connection to open",
    );
    const server = await _within(echo.socket("/deno"), "the server's socket");
    for (const { label, data } of MESSAGES) {
      ws.send(data);
      const echoed = await _within(inbox.next(), `the ${label} echo`);
      _assertSameMessage(
        typeof echoed === "string" ? echoed : new Uint8Array(echoed),
        data,
        label,
      );
    }
    ws.close(CLOSE.code, CLOSE.reason);
    const event = await _within(closed, "the client's close event");
    assert.deepEqual(
      { code: event.code, reason: event.reason, wasClean: event.wasClean },
      { ...CLOSE_ECHO, wasClean: true },
    );
    assert.deepEqual(await _within(server.closed, "the server's close"), {
      closeCode: CLOSE.code,
      reason: CLOSE.reason,
    });
  } finally {
    ws.close();
    await closed;
  }
});

Deno.test("§7.1.5 npm:ws client exchanges every kind of message and closes with 4000", async () => {
  await using echo = _startEcho();
  // The default options offer permessage-deflate, which the server declines
  // by not answering it (§9.1): ws must then speak plain frames.
  const ws = new NodeWebSocket(`${echo.url}ws`);
  const inbox = new _Inbox<string | Uint8Array>();
  ws.on("message", (data, isBinary) => {
    const buffer = data as Uint8Array;
    inbox.push(
      isBinary
        ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        : new TextDecoder().decode(buffer),
    );
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: `${reason}` }))
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
    assert.equal(ws.extensions, "", "no extension is negotiated");
    const server = await _within(echo.socket("/ws"), "the server's socket");
    for (const { label, data } of MESSAGES) {
      ws.send(data);
      _assertSameMessage(
        await _within(inbox.next(), `the ${label} echo`),
        data,
        label,
      );
    }
    ws.close(CLOSE.code, CLOSE.reason);
    assert.deepEqual(
      await _within(closed, "the client's close event"),
      CLOSE_ECHO,
    );
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

Deno.test("§7.1.5 Python websockets client exchanges every kind of message and closes with 4000", async () => {
  _requirePeer(PYTHON, "python3 (Debian package python3-websockets)");
  await using echo = _startEcho();
  const child = new Deno.Command(PYTHON, {
    args: [PYTHON_CLIENT.pathname, `${echo.url}python`],
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
    // A client that dies at start (no websockets module) breaks this pipe:
    // its stderr, checked below, says why.
    await ReadableStream.from([new TextEncoder().encode(plan)])
      .pipeTo(child.stdin).catch(() => {});
    const { code, stdout, stderr } = await _within(output, "the Python client");
    const errorText = new TextDecoder().decode(stderr);
    if (errorText.includes("No module named 'websockets'")) {
      throw new Error(
        `${PYTHON} cannot import websockets: install the Debian package python3-websockets (.ci/run does)`,
      );
    }
    assert.equal(code, 0, `The Python client failed:\n${errorText}`);
    const result = JSON.parse(new TextDecoder().decode(stdout)) as {
      echoes: WireMessage[];
      close_code: number;
      close_reason: string;
      version: string;
    };
    assert.equal(result.echoes.length, MESSAGES.length);
    MESSAGES.forEach(({ label, data }, i) =>
      _assertSameMessage(_fromWire(result.echoes[i]), data, label)
    );
    assert.deepEqual(
      { code: result.close_code, reason: result.close_reason },
      CLOSE_ECHO,
      "the client saw the echo of its close",
    );
    const server = await _within(echo.socket("/python"), "the server's socket");
    assert.deepEqual(await _within(server.closed, "the server's close"), {
      closeCode: CLOSE.code,
      reason: CLOSE.reason,
    });
  } finally {
    if (!exited) child.kill("SIGKILL");
    await output.catch(() => {});
  }
});

Deno.test({
  name:
    "§7.1.5 headless Chromium loads the echo page, uses it, and exchanges every kind of message then closes with 4000",
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
      const response = await page.goto(`${origin}/`);
      assert.equal(response?.status(), 200);
      assert.equal(await page.title(), "WebSocket echo");
      assert.equal(await page.locator("h1").textContent(), "WebSocket echo");

      // The page's own script connects back to the origin it came from.
      await page.locator("#status", { hasText: "open" }).waitFor({
        timeout: STEP_LIMIT,
      });
      const pageSocket = await _within(echo.socket("/"), "the page's socket");
      await page.fill("#message", "Typed in the page ✓");
      await page.click("#send");
      await page.locator("#log li", {
        hasText: "echo (text): Typed in the page ✓",
      }).waitFor({ timeout: STEP_LIMIT });
      await page.click("#send-binary");
      await page.locator("#log li", { hasText: "echo (binary, 8 bytes)" })
        .waitFor({ timeout: STEP_LIMIT });
      await page.click("#close");
      // The server echoes the code, not the reason (§5.5.1).
      await page.locator("#status", { hasText: /^closed \(1000\)$/ })
        .waitFor({ timeout: STEP_LIMIT });
      assert.deepEqual(
        await _within(pageSocket.closed, "the page socket's close"),
        { closeCode: 1000, reason: "Bye" },
      );

      // The full exchange, from a socket the test opens inside the page.
      const result = await page.evaluate(_browserExchange, {
        url: `${origin.replace(/^http/, "ws")}/chromium`,
        messages: MESSAGES.map(({ data }) => _toWire(data)),
        close: CLOSE,
        limit: STEP_LIMIT,
      });
      assert.equal(result.echoes.length, MESSAGES.length);
      MESSAGES.forEach(({ label, data }, i) =>
        _assertSameMessage(_fromWire(result.echoes[i]), data, label)
      );
      assert.deepEqual(result.close, { ...CLOSE_ECHO, wasClean: true });
      const server = await _within(
        echo.socket("/chromium"),
        "the server's socket",
      );
      assert.deepEqual(await _within(server.closed, "the server's close"), {
        closeCode: CLOSE.code,
        reason: CLOSE.reason,
      });
    } finally {
      await browser.close();
    }
  },
});

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
  echoes: WireMessage[];
  close: { code: number; reason: string; wasClean: boolean };
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
    echoes,
    close: { code: event.code, reason: event.reason, wasClean: event.wasClean },
  };
}

/**
 * The echo example on a free port, telling the test about its sockets. Its
 * compression is off here, so that these peers test plain frames;
 * tests/deflate_peers_test.ts runs them with it on.
 */
function _startEcho() {
  const sockets = new Map<string, WebSocketConnection>();
  const waiting = new Map<string, (socket: WebSocketConnection) => void>();
  const server = startEchoServer({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    perMessageDeflate: false,
    onSocket(socket) {
      const path = new URL(socket.request.url).pathname;
      sockets.set(path, socket);
      waiting.get(path)?.(socket);
    },
  });
  return {
    server,
    url: `ws://127.0.0.1:${server.addr.port}/`,
    /** The server's socket for the connection made on `path`. */
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

/**
 * Asserts that an echo is the message sent: same kind, same length, same
 * bytes (reporting the first difference rather than printing 1 MiB).
 */
function _assertSameMessage(
  actual: string | Uint8Array,
  expected: string | Uint8Array,
  label: string,
): void {
  if (typeof expected === "string") {
    assert.equal(typeof actual, "string", `the ${label} echo is text`);
    assert.equal(
      (actual as string).length,
      expected.length,
      `the ${label} echo's length`,
    );
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

/** Bytes that repeat no short pattern (xorshift32), the same every run. */
function _pseudoRandomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/**
 * Loads playwright-core only for the test that needs it: on load it probes
 * `/proc/sys/fs/binfmt_misc/WSLInterop`, which Deno allows only with
 * `--allow-all`, and a static import would fail every test in this file.
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
