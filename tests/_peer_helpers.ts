/**
 * Helpers shared by the tests against real peers we did not write
 * (tests/peers_test.ts, and tests/deflate_peers_test.ts with
 * permessage-deflate on): the echo example that tells a test about its
 * sockets, the machine's own peers (`/usr/bin/python3` with the Debian package
 * `python3-websockets`, `/usr/bin/chromium` with Playwright driving it, both
 * installed by `.ci/run`), and checks that every echo came back byte for byte.
 * A missing peer fails its test; it never passes silently.
 */

import assert from "node:assert/strict";
// The test-only peers are pinned here, inline, rather than in deno.json,
// whose imports would otherwise be the published module's too.
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import NodeWebSocket, { type ClientOptions } from "npm:ws@8";
import type { WebSocketConnection } from "../mod.ts";
import { startEchoServer } from "../examples/echo.ts";
import { assertSameMessage, deadline, DeadlineError } from "./_util.ts";

export const PYTHON = "/usr/bin/python3";
export const CHROMIUM = "/usr/bin/chromium";
/** The Python peer: `client URL` (plan on stdin) or `server`. */
export const PYTHON_PEER = new URL("./_peers/python_peer.py", import.meta.url);
/** How long any one step may take before the test fails instead of hanging. */
export const STEP_LIMIT = 20_000;

/** A message a peer sends, with what the test calls it. */
export interface PeerMessage {
  label: string;
  data: string | Uint8Array;
}

/** A close code and reason, as a peer sends them. */
export interface PeerClose {
  code: number;
  reason: string;
}

/** A message as it crosses a process boundary: binary data in base64. */
export interface WireMessage {
  type: "text" | "binary";
  data: string;
}

/** What the Python client prints: what came back, and how it closed. */
export interface PythonClientResult {
  echoes: WireMessage[];
  /** The server's Sec-WebSocket-Extensions answer, `""` for none. */
  extensions: string;
  close_code: number;
  close_reason: string;
  version: string;
}

/**
 * The echo example on a free port, telling the test about its sockets by
 * path. `perMessageDeflate: false` makes the peers speak plain frames.
 */
export function startEcho(options: { perMessageDeflate?: boolean } = {}) {
  const sockets = new Map<string, WebSocketConnection>();
  const waiting = new Map<string, (socket: WebSocketConnection) => void>();
  const server = startEchoServer({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    ...options,
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
export function within<T>(promise: Promise<T>, what: string): Promise<T> {
  return deadline(promise, what, STEP_LIMIT);
}

/** Messages in arrival order, awaited one at a time. */
export class Inbox<T> {
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

/** Sends each message in turn and checks that its echo comes back the same. */
export async function assertEchoes(
  messages: readonly PeerMessage[],
  send: (data: string | Uint8Array) => unknown,
  receive: () => Promise<string | Uint8Array | undefined>,
): Promise<void> {
  for (const { label, data } of messages) {
    await send(data);
    assertSameMessage(
      await within(receive(), `the ${label} echo`),
      data,
      `the ${label} echo`,
    );
  }
}

/** Checks echoes that crossed a process boundary against what was sent. */
export function assertWireEchoes(
  echoes: readonly WireMessage[],
  messages: readonly PeerMessage[],
): void {
  assert.equal(echoes.length, messages.length);
  messages.forEach(({ label, data }, i) =>
    assertSameMessage(fromWire(echoes[i]), data, `the ${label} echo`)
  );
}

/** Asserts that `socket` closed with the peer's code and reason (§7.1.5). */
export async function assertClosedWith(
  socket: WebSocketConnection,
  close: PeerClose,
  what = "the server's close",
): Promise<void> {
  assert.deepEqual(await within(socket.closed, what), {
    closeCode: close.code,
    reason: close.reason,
    wasClean: true,
  });
}

export function toWire(data: string | Uint8Array): WireMessage {
  return typeof data === "string"
    ? { type: "text", data }
    : { type: "binary", data: data.toBase64() };
}

export function fromWire(message: WireMessage): string | Uint8Array {
  return message.type === "text"
    ? message.data
    : Uint8Array.fromBase64(message.data);
}

/**
 * An `npm:ws` client on `url` that collects what it receives; disposing it
 * terminates the connection and waits for its close.
 */
export function nodeWsClient(
  url: string,
  options?: ClientOptions,
) {
  const ws = new NodeWebSocket(url, options);
  const inbox = new Inbox<string | Uint8Array>();
  ws.on("message", (data, isBinary) => {
    const buffer = data as Uint8Array;
    inbox.push(
      isBinary
        ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        : new TextDecoder().decode(buffer),
    );
  });
  const closed = new Promise<PeerClose>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: `${reason}` }))
  );
  const errors: Error[] = [];
  ws.on("error", (error) => errors.push(error));
  const opened = new Promise<void>((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("error", reject);
  });
  // A client that fails to open fails the test where it awaits `opened`.
  opened.catch(() => {});
  return {
    ws,
    inbox,
    opened,
    closed,
    errors,
    async [Symbol.asyncDispose]() {
      ws.terminate();
      await closed;
    },
  };
}

/**
 * Runs the Python client against `url`: it sends each message, checks
 * nothing itself, and reports what came back.
 */
export async function runPythonClient(
  url: string,
  messages: readonly PeerMessage[],
  close: PeerClose,
): Promise<PythonClientResult> {
  requirePeer(PYTHON, "python3 (Debian package python3-websockets)");
  const child = new Deno.Command(PYTHON, {
    args: [PYTHON_PEER.pathname, "client", url],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const output = child.output().finally(() => exited = true);
  try {
    const plan = JSON.stringify({
      messages: messages.map(({ data }) => toWire(data)),
      close,
    });
    // A client that dies at start (no websockets module) breaks this pipe:
    // its stderr, checked below, says why.
    // A client that never reads it fails the test here, in time.
    await within(
      ReadableStream.from([new TextEncoder().encode(plan)]).pipeTo(
        child.stdin,
      ),
      "the Python client to read its plan",
    ).catch((error) => {
      if (error instanceof DeadlineError) throw error;
    });
    const { code, stdout, stderr } = await within(output, "the Python client");
    const errorText = new TextDecoder().decode(stderr);
    if (errorText.includes("No module named 'websockets'")) {
      throw new Error(
        `${PYTHON} cannot import websockets: install the Debian package python3-websockets (.ci/run does)`,
      );
    }
    assert.equal(code, 0, `The Python client failed:\n${errorText}`);
    return JSON.parse(new TextDecoder().decode(stdout));
  } finally {
    if (!exited) child.kill("SIGKILL");
    await output.catch(() => {});
  }
}

/** Headless Chromium, launched by Playwright; the caller closes it. */
export async function launchChromium() {
  requirePeer(CHROMIUM, "chromium (Debian package chromium)");
  const chromium = await _loadPlaywrightChromium();
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--no-first-run",
    ],
  });
}

type Page = Awaited<
  ReturnType<Awaited<ReturnType<typeof launchChromium>>["newPage"]>
>;

/**
 * Opens a WebSocket on `url` inside `page`, exchanges each message, checks
 * the echoes and closes; returns what the page's socket negotiated and the
 * close it saw.
 */
export async function exchangeInPage(
  page: Page,
  url: string,
  messages: readonly PeerMessage[],
  close: PeerClose,
): Promise<
  { extensions: string; close: PeerClose & { wasClean: boolean } }
> {
  const result = await page.evaluate(_browserExchange, {
    url,
    messages: messages.map(({ data }) => toWire(data)),
    close,
    limit: STEP_LIMIT,
  });
  assertWireEchoes(result.echoes, messages);
  return { extensions: result.extensions, close: result.close };
}

/** Fails with what to install when a peer is missing from the machine. */
export function requirePeer(path: string, what: string): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(
      `${path} is missing: this test needs ${what}, which .ci/run installs`,
    );
  }
}

/**
 * Runs inside the page (Playwright serializes it, so it uses nothing from
 * outside): opens a WebSocket, sends each message and waits for its echo,
 * then closes.
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
    extensions: ws.extensions,
    echoes,
    close: { code: event.code, reason: event.reason, wasClean: event.wasClean },
  };
}

/**
 * Loads playwright-core only for the tests that need it: on load it probes
 * `/proc/sys/fs/binfmt_misc/WSLInterop`, which Deno allows only with
 * `--allow-all`, and a static import would fail every test that imports
 * this module.
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
