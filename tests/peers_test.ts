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
import {
  assertClosedWith,
  assertEchoes,
  assertWireEchoes,
  exchangeInPage,
  Inbox,
  launchChromium,
  nodeWsClient,
  type PeerMessage,
  runPythonClient,
  startEcho,
  STEP_LIMIT,
  within,
} from "./_peer_helpers.ts";
import { pseudoRandomBytes } from "./_util.ts";

const MIB = 1024 * 1024;

/** What every peer sends, in order; each must come back exactly. */
const MESSAGES: PeerMessage[] = [
  { label: "text", data: "Hello, peer: héllo ✓ 🌍" },
  { label: "binary", data: Uint8Array.from({ length: 256 }, (_, i) => i) },
  { label: "1 MiB binary", data: pseudoRandomBytes(MIB) },
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

/**
 * The echo example with its compression off, so that these peers test plain
 * frames; tests/deflate_peers_test.ts runs them with it on.
 */
function _startEcho() {
  return startEcho({ perMessageDeflate: false });
}

Deno.test("§7.1.5 Deno's WebSocket client exchanges every kind of message and closes with 4000", async () => {
  await using echo = _startEcho();
  const ws = new WebSocket(`${echo.url}deno`);
  ws.binaryType = "arraybuffer";
  const inbox = new Inbox<string | ArrayBuffer>();
  ws.onmessage = (event) => inbox.push(event.data);
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  try {
    await within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error("Deno's WebSocket failed to open"));
      }),
      "the connection to open",
    );
    const server = await within(echo.socket("/deno"), "the server's socket");
    await assertEchoes(MESSAGES, (data) => ws.send(data), async () => {
      const echoed = await inbox.next();
      return typeof echoed === "string" ? echoed : new Uint8Array(echoed);
    });
    ws.close(CLOSE.code, CLOSE.reason);
    const event = await within(closed, "the client's close event");
    assert.deepEqual(
      { code: event.code, reason: event.reason, wasClean: event.wasClean },
      { ...CLOSE_ECHO, wasClean: true },
    );
    await assertClosedWith(server, CLOSE);
  } finally {
    ws.close();
    await closed;
  }
});

Deno.test("§7.1.5 npm:ws client exchanges every kind of message and closes with 4000", async () => {
  await using echo = _startEcho();
  // The default options offer permessage-deflate, which the server declines
  // by not answering it (§9.1): ws must then speak plain frames.
  await using client = nodeWsClient(`${echo.url}ws`);
  const { ws, inbox } = client;
  await within(client.opened, "the connection to open");
  assert.equal(ws.extensions, "", "no extension is negotiated");
  const server = await within(echo.socket("/ws"), "the server's socket");
  await assertEchoes(MESSAGES, (data) => ws.send(data), () => inbox.next());
  ws.close(CLOSE.code, CLOSE.reason);
  assert.deepEqual(
    await within(client.closed, "the client's close event"),
    CLOSE_ECHO,
  );
  await assertClosedWith(server, CLOSE);
  assert.deepEqual(client.errors, []);
});

Deno.test("§7.1.5 Python websockets client exchanges every kind of message and closes with 4000", async () => {
  await using echo = _startEcho();
  const result = await runPythonClient(`${echo.url}python`, MESSAGES, CLOSE);
  assertWireEchoes(result.echoes, MESSAGES);
  assert.deepEqual(
    { code: result.close_code, reason: result.close_reason },
    CLOSE_ECHO,
    "the client saw the echo of its close",
  );
  const server = await within(echo.socket("/python"), "the server's socket");
  await assertClosedWith(server, CLOSE);
});

Deno.test({
  name:
    "§7.1.5 headless Chromium loads the echo page, uses it, and exchanges every kind of message then closes with 4000",
  async fn() {
    await using echo = _startEcho();
    const origin = `http://127.0.0.1:${echo.server.addr.port}`;
    const browser = await launchChromium();
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
      const pageSocket = await within(echo.socket("/"), "the page's socket");
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
      await assertClosedWith(
        pageSocket,
        { code: 1000, reason: "Bye" },
        "the page socket's close",
      );

      // The full exchange, from a socket the test opens inside the page.
      const result = await exchangeInPage(
        page,
        `${origin.replace(/^http/, "ws")}/chromium`,
        MESSAGES,
        CLOSE,
      );
      assert.deepEqual(result.close, { ...CLOSE_ECHO, wasClean: true });
      const server = await within(
        echo.socket("/chromium"),
        "the server's socket",
      );
      await assertClosedWith(server, CLOSE);
    } finally {
      await browser.close();
    }
  },
});
