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
import { WebSocketServer } from "npm:ws@8";
import {
  connect,
  type PerMessageDeflateOptions,
  type WebSocketConnection,
} from "../mod.ts";
import {
  assertClosedWith,
  assertEchoes,
  assertWireEchoes,
  exchangeInPage,
  launchChromium,
  nodeWsClient,
  type PeerMessage,
  PYTHON,
  PYTHON_PEER,
  requirePeer,
  runPythonClient,
  startEcho,
  STEP_LIMIT,
  within,
} from "./_peer_helpers.ts";
import { pseudoBytes, pseudoText, stopChild } from "./_util.ts";

const MIB = 1024 * 1024;

/** What every peer sends, in order; each must come back exactly. */
const MESSAGES: PeerMessage[] = [
  { label: "short text", data: "Hello, peer: héllo ✓ 🌍" },
  { label: "2 KiB text", data: pseudoText(2048, 1) },
  // The same again: with context takeover, a back-reference.
  { label: "2 KiB text again", data: pseudoText(2048, 1) },
  { label: "binary", data: Uint8Array.from({ length: 256 }, (_, i) => i) },
  { label: "1 MiB text", data: pseudoText(MIB, 2) },
  { label: "1 MiB binary", data: pseudoBytes(MIB, 0) },
  { label: "empty text", data: "" },
  { label: "empty binary", data: new Uint8Array(0) },
];

const CLOSE = { code: 4000, reason: "Done, thanks ✓" };

Deno.test({
  name:
    "RFC 7692 headless Chromium negotiates permessage-deflate with the echo example and exchanges every kind of message",
  async fn() {
    // The echo example with its default compression on.
    await using echo = startEcho();
    const origin = `http://127.0.0.1:${echo.server.addr.port}`;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      assert.equal((await page.goto(`${origin}/`))?.status(), 200);
      // The page shows what its own socket negotiated.
      await page.locator("#extensions", { hasText: "permessage-deflate" })
        .waitFor({ timeout: STEP_LIMIT });
      assert.equal(
        (await within(echo.socket("/"), "the page's socket")).extensions,
        "permessage-deflate",
      );
      const result = await exchangeInPage(
        page,
        `${origin.replace(/^http/, "ws")}/chromium`,
        MESSAGES,
        CLOSE,
      );
      assert.equal(result.extensions, "permessage-deflate");
      const { code, wasClean } = result.close;
      assert.deepEqual({ code, wasClean }, {
        code: CLOSE.code,
        wasClean: true,
      });
      const server = await within(
        echo.socket("/chromium"),
        "the server's socket",
      );
      assert.equal(server.extensions, "permessage-deflate");
      await assertClosedWith(server, CLOSE);
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
      await using echo = startEcho();
      const path = `/ws-${configs.findIndex(([l]) => l === label)}`;
      await using client = nodeWsClient(`${echo.url.slice(0, -1)}${path}`, {
        perMessageDeflate,
      });
      const { ws, inbox } = client;
      await within(client.opened, "the connection to open");
      assert.equal(ws.extensions, "permessage-deflate");
      const server = await within(echo.socket(path), "the server socket");
      assert.equal(server.extensions, extensions);
      await assertEchoes(MESSAGES, (data) => ws.send(data), () => inbox.next());
      ws.close(CLOSE.code, CLOSE.reason);
      assert.equal((await within(client.closed, "the close")).code, CLOSE.code);
      await assertClosedWith(server, CLOSE);
      assert.deepEqual(client.errors, []);
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
        await assertClosedWith(socket, CLOSE, "the close");
        assert.deepEqual(errors, []);
      } finally {
        for (const client of server.clients) client.terminate();
        await new Promise((resolve) => server.close(resolve));
      }
    });
  }
});

Deno.test("RFC 7692 Python websockets client negotiates permessage-deflate with the echo example and exchanges every kind of message", async () => {
  await using echo = startEcho();
  const result = await runPythonClient(`${echo.url}python`, MESSAGES, CLOSE);
  assert.equal(result.extensions, "permessage-deflate");
  assertWireEchoes(result.echoes, MESSAGES);
  assert.equal(result.close_code, CLOSE.code);
  const server = await within(echo.socket("/python"), "the server socket");
  assert.equal(server.extensions, "permessage-deflate");
  await assertClosedWith(server, CLOSE);
});

Deno.test("RFC 7692 connect() with perMessageDeflate against a Python websockets server, whose windows are 12 bits", async () => {
  requirePeer(PYTHON, "python3 (Debian package python3-websockets)");
  const child = new Deno.Command(PYTHON, {
    args: [PYTHON_PEER.pathname, "server"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = new Response(child.stderr).text();
  let status: Deno.CommandStatus | undefined;
  try {
    const first = await within(lines.read(), "the Python server's port");
    const port = Number(first.value?.trim());
    if (!(port > 0)) {
      await child.stdin.close().catch(() => {});
      status = await stopChild(child);
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
    assert.equal((await within(socket.closed, "the close")).closeCode, 4000);
  } finally {
    // Closing stdin stops the server; it is killed if it does not stop.
    await child.stdin.close().catch(() => {});
    status ??= await stopChild(child, STEP_LIMIT);
    // Canceling the reader cancels the stdout it reads through.
    await lines.cancel().catch(() => {});
    await stderr;
  }
  assert.equal(status.code, 0, "the Python server stopped by itself");
});

/** Sends each message on `socket` and checks its echo. */
async function _echoEach(socket: WebSocketConnection): Promise<void> {
  const writer = socket.writable.getWriter();
  const reader = socket.readable.getReader();
  await assertEchoes(
    MESSAGES,
    (data) => writer.write(data),
    async () => (await reader.read()).value,
  );
  writer.releaseLock();
  reader.releaseLock();
}
