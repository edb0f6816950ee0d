// The echo example as a person uses it: its page in headless Chromium
// (order of the log, long messages, reconnecting, no console errors), and
// its quick start command on a machine with no npm packages cached.

import assert from "node:assert/strict";
import { startEchoServer } from "../examples/echo.ts";
import { launchChromium, STEP_LIMIT, within } from "./_peer_helpers.ts";
import { stopChild } from "./_util.ts";

Deno.test("the echo page logs oldest first, wraps long messages, reconnects after a close, and has no console errors", async () => {
  await using server = startEchoServer({ port: 0, onListen() {} });
  const origin = `http://127.0.0.1:${server.addr.port}`;
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(message.text());
    });
    page.on("pageerror", (error) => problems.push(String(error)));
    page.on("requestfailed", (request) => problems.push(request.url()));
    page.on("response", (response) => {
      if (response.status() >= 400) {
        problems.push(`${response.status()} ${response.url()}`);
      }
    });
    await page.goto(`${origin}/`);
    await page.locator("#status", { hasText: "open" }).waitFor({
      timeout: STEP_LIMIT,
    });
    // The page shows the server code that runs it.
    assert.match(
      await page.locator("pre").textContent() ?? "",
      /socket\.readable\.pipeTo\(socket\.writable\)/,
    );

    for (const message of ["one", "two"]) {
      await page.fill("#message", message);
      await page.click("#send");
      await page.locator("#log li", { hasText: `echo (text): ${message}` })
        .waitFor({ timeout: STEP_LIMIT });
    }
    assert.deepEqual(await page.locator("#log li").allTextContents(), [
      "connected",
      "sent (text): one",
      "echo (text): one",
      "sent (text): two",
      "echo (text): two",
    ]);

    // A message with no spaces wraps instead of widening the page.
    await page.fill("#message", "x".repeat(3000));
    await page.click("#send");
    const echo = page.locator("#log li", { hasText: "echo (text): xxx" });
    await echo.waitFor({ timeout: STEP_LIMIT });
    // The browser's document, which Deno's types do not know.
    const widths = await page.evaluate(
      "({ page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth })",
    ) as { page: number; window: number };
    assert.ok(widths.page <= widths.window, JSON.stringify(widths));

    // Closed, then connected again without reloading the page.
    await page.click("#close");
    await page.locator("#status", { hasText: /^closed \(1000\)$/ }).waitFor({
      timeout: STEP_LIMIT,
    });
    await page.click("#connect");
    await page.locator("#status", { hasText: "open" }).waitFor({
      timeout: STEP_LIMIT,
    });
    await page.fill("#message", "after reconnecting");
    await page.click("#send");
    await page.locator("#log li", {
      hasText: "echo (text): after reconnecting",
    }).waitFor({ timeout: STEP_LIMIT });
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});

Deno.test("the quick start's deno task echo starts with an empty Deno cache and no npm registry", async () => {
  const cache = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "echo", "--port", "0"],
    cwd: new URL("..", import.meta.url),
    env: {
      DENO_DIR: cache,
      // Nothing listens there: any download would fail.
      NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errors = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let status: Deno.CommandStatus;
  let stderr: string;
  try {
    let printed = "";
    while (!/listening on (http:\S+\/)/.test(printed)) {
      const { value, done } = await within(lines.read(), "the address");
      if (done) break;
      printed += value;
    }
    const address = /listening on (http:\S+\/)/.exec(printed)?.[1];
    assert.ok(address, `no address in: ${printed}`);
    const response = await within(fetch(address), "the page");
    assert.equal(response.status, 200);
    assert.match(await response.text(), /<title>WebSocket echo<\/title>/);
  } finally {
    // Ctrl+C, as a person stops it (killed if that does not stop it).
    try {
      child.kill("SIGINT");
    } catch {
      // It exited already: what it printed says why.
    }
    status = await stopChild(child, STEP_LIMIT);
    await lines.cancel().catch(() => {});
    try {
      stderr = await within(errors, "the end of its stderr");
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  }
  assert.doesNotMatch(stderr, /Download|npm:|error/i);
  assert.notEqual(status.signal, "SIGKILL", "Ctrl+C did not stop it");
});
