/**
 * examples/cluster.ts as a person runs it, over a real redis-server
 * started here: the supervisor starts the chat's nodes on one port
 * (reusePort); a node killed while its pages are in a room is replaced, the
 * other node serves throughout, and its pages (Chromium, and Deno running
 * the page's LiveClient) come back on another node with each line said
 * meanwhile once; nodes that keep dying are replaced only so often; SIGINT
 * (Ctrl+C) stops every process.
 */
import assert from "node:assert/strict";
import type { LiveClientOptions } from "../src/live/client.js";
import {
  CHAT,
  FAILED_CONNECTION,
  linesOf,
  member,
  noticesOf,
  openChat,
  type Recorder,
  say,
  see,
  watchConsole,
} from "./_chat_helpers.ts";
import { startChatServer } from "../examples/chat.ts";
import { launchChromium, STEP_LIMIT } from "./_peer_helpers.ts";
import { DEADLINE, RedisServer } from "./_pubsub_helpers.ts";
import { deadline, freePort, stopChild, waitFor as poll } from "./_util.ts";

/** Waits with the Redis tests' deadline. */
const waitFor = (check: () => boolean | Promise<boolean>, what: string) =>
  poll(check, what, DEADLINE);

const CLUSTER = new URL("../examples/cluster.ts", import.meta.url).pathname;

/** The supervisor, as `deno task cluster` runs it, and what it printed. */
class Supervisor implements AsyncDisposable {
  readonly port: number;
  readonly child: Deno.ChildProcess;
  /** stdout and stderr, as they come. */
  output = "";
  #reading: Promise<unknown>;

  constructor(args: string[], port = freePort()) {
    this.port = port;
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-run",
        "--allow-read",
        "--allow-sys",
        CLUSTER,
        "--port",
        String(this.port),
        ...args,
      ],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reading = Promise.all(
      [this.child.stdout, this.child.stderr].map(async (stream) => {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          this.output += chunk;
        }
      }),
    );
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The nodes that said they serve, in order. */
  serving(): string[] {
    return [...this.output.matchAll(/^node (\d+) serves$/gm)].map((m) => m[1]);
  }

  /** Ctrl+C (SIGKILL if that does not stop it); its exit status. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGINT");
    } catch {
      // It exited already: its status says how.
    }
    const status = await stopChild(this.child, STEP_LIMIT);
    await this.#reading;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Empties the Redis on 127.0.0.1:`port` (FLUSHALL). */
async function flushRedis(port: number): Promise<void> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode("FLUSHALL\r\n"));
  const answer = new Uint8Array(5);
  assert.equal(await conn.read(answer), 5);
  assert.equal(new TextDecoder().decode(answer), "+OK\r\n");
}

/** The node that serves a member's connection, from the room's presence. */
async function nodeOf(client: Recorder, room = "lobby"): Promise<string> {
  const { members } = await client.presence(`room/${room}`);
  const own = members.find((m) => m.client === client.client);
  return (own?.info as { node: string }).node;
}

/**
 * Members of the lobby with Deno's LiveClient, one after the other, until
 * one is served by a node that `wanted` takes (Linux spreads connections
 * over the nodes by their addresses); the others are closed.
 */
async function memberOn(
  origin: string,
  name: string,
  wanted: (node: string) => boolean,
  options: LiveClientOptions = CHAT,
): Promise<Recorder> {
  for (let i = 0; i < 40; i++) {
    const client = await member(origin, `${name}${i}`, "lobby", options);
    if (wanted(await nodeOf(client))) return client;
    await client[Symbol.asyncDispose]();
  }
  throw new Error(`No connection of ${name} reached the node wanted`);
}

Deno.test("cluster example: a node killed while its pages are in a room is replaced, the other node serves throughout, and its pages come back on the other node with each line said meanwhile once; SIGINT stops every node", async () => {
  await using redis = await RedisServer.start();
  const supervisor = new Supervisor(["--nodes", "2", "--redis", redis.url]);
  const errors: string[] = [];
  const clients: Recorder[] = [];
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let talking: ReturnType<typeof setInterval> | undefined;
  let status: Deno.CommandStatus;
  let drops: number[];
  try {
    await waitFor(() => supervisor.serving().length === 2, "two nodes");
    const [first, second] = supervisor.serving();
    // The page of `deno task chat`, byte for byte.
    {
      await using chat = startChatServer({ port: 0, onListen() {} });
      const [ours, theirs] = await Promise.all(
        [supervisor.origin, `http://127.0.0.1:${chat.addr.port}`].map((at) =>
          fetch(`${at}/`).then((response) => response.text())
        ),
      );
      assert.equal(ours, theirs);
    }
    browser = await launchChromium();
    const page = await browser.newPage();
    watchConsole(page, "Ada", errors, FAILED_CONNECTION);
    // The page's jitter fixed: it waits 225 ms before its first retry.
    await page.addInitScript({ content: "Math.random = () => 0.9;" });
    await openChat(page, supervisor.origin, "Ada");
    await see(page, "#status", /^Online · served by node \d+$/);
    const victim = (await page.locator("#status").textContent())!.match(
      /node (\d+)/,
    )![1];
    assert.ok([first, second].includes(victim));
    const survivor = victim === first ? second : first;
    // Dee on the same node as the page (waiting 1 s before its retry), Bob
    // on the other.
    const dee = await memberOn(
      supervisor.origin,
      "Dee",
      (n) => n === victim,
      { ...CHAT, initialDelay: 1000, random: () => 0.99 },
    ).then((client) => (clients.push(client), client));
    const bob = await memberOn(supervisor.origin, "Bob", (n) => n === survivor)
      .then((client) => (clients.push(client), client));
    await see(page, "#members", /^3 members$/);

    // Bob talks on and on, from before the kill until the pages are back.
    let said = 0;
    const sent: Promise<void>[] = [];
    const speak = () => {
      const publishing = bob.publish("room/lobby", `line ${++said}`);
      publishing.catch(() => {}); // awaited below, all at once
      sent.push(publishing);
    };
    talking = setInterval(speak, 25);
    await waitFor(() => said >= 5, "Bob talking");
    const deeBefore = dee.all("publication").at(-1)!.offset!;
    Deno.kill(Number(victim), "SIGKILL");
    await see(page, "body[data-connection=offline]");
    await see(page, "#log .notice.warn", /^Connection lost at .* \(1006\)/);
    await dee.nth("disconnected", 1);

    // The page comes back, on the other node, on its own.
    await see(page, "body[data-connection=online]");
    await see(
      page,
      "#log .notice",
      /^Back in lobby: \d+ messages? from while you were away follows?\.$/,
    );
    await see(page, "#status", new RegExp(`served by node (?!${victim}\\b)`));
    await dee.nth("connected", 2);
    const recovered = dee.all("subscribed").at(-1)!;
    assert.equal(recovered.recovering, true);
    assert.equal(recovered.recovered, true);
    // Missed while away, and recovered: there were lines to recover.
    assert.ok(recovered.position!.offset > deeBefore);
    assert.notEqual(await nodeOf(dee), victim);

    // A few more lines, then quiet: everything said reached everyone once.
    const back = said;
    await waitFor(() => said >= back + 5, "Bob talking on");
    clearInterval(talking);
    talking = undefined;
    await Promise.all(sent);
    const lines = Array.from({ length: said }, (_, i) => `line ${i + 1}`);
    await waitFor(
      async () => (await linesOf(page)).length >= said,
      "every line on the page",
    );
    // Bob is "Bob" and the number of his connection that reached the node.
    const name = bob.room("lobby").find((e) => e.type === "message")!.name;
    assert.deepEqual(await linesOf(page), lines.map((l) => `${name}: ${l}`));
    for (const client of [dee, bob]) {
      await client.until(
        () =>
          client.room("lobby").filter((e) => e.type === "message").length >=
            said,
        "every line",
      );
      assert.deepEqual(
        client.room("lobby").flatMap((e) =>
          e.type === "message" ? [e.text] : []
        ),
        lines,
      );
    }
    // The page said it was away, and back; nobody saw Ada leave and come
    // back: her join (in the room's history) is all.
    const notices = await noticesOf(page);
    assert.equal(
      notices.filter((n) => n.startsWith("Connection lost")).length,
      1,
    );
    assert.equal(notices.filter((n) => n.startsWith("Back online")).length, 1);
    assert.deepEqual(
      bob.room("lobby").filter((e) => e.type !== "message" && e.name === "Ada")
        .map((e) => e.type),
      ["join"],
    );
    // The node that was not killed served Bob throughout.
    assert.deepEqual(bob.all("disconnected"), []);
    // The page talks again, through its new node.
    await say(page, "Back through another node");
    await bob.until(
      () =>
        bob.room("lobby").some((e) =>
          e.type === "message" && e.text === "Back through another node"
        ),
      "Ada's line",
    );

    // Redis loses the room's history (FLUSHALL): the page says lines may
    // have been lost, and shows the next one once.
    await flushRedis(redis.port);
    await bob.publish("room/lobby", "After the flush");
    await see(
      page,
      "#log .notice.warn",
      /^Some lines of lobby were lost on their way and could not be recovered\.$/,
    );
    await see(page, "#log .message .text", "After the flush");
    assert.deepEqual((await linesOf(page)).slice(-2), [
      `Ada: Back through another node`,
      `${name}: After the flush`,
    ]);

    // The supervisor said so and started another node in the dead one's
    // place.
    await waitFor(() => supervisor.serving().length === 3, "a new node");
    assert.match(
      supervisor.output,
      new RegExp(
        `^Node ${victim} died \\(signal SIGKILL\\), 1 other serving: starting another$`,
        "m",
      ),
    );
    const replacement = supervisor.serving()[2];
    assert.ok(![first, second].includes(replacement));
    // No console errors: no favicon request, nothing failed but the
    // reconnection attempts.
    assert.deepEqual(errors, []);
  } finally {
    clearInterval(talking);
    drops = clients.map((client) => client.all("disconnected").length);
    status = await supervisor.stop();
    await browser?.close();
    for (const client of clients) await client[Symbol.asyncDispose]();
  }
  // Ctrl+C stopped every node: their sockets were closed with 1001.
  clients.forEach((client, i) => {
    assert.equal(client.all("disconnected")[drops[i]]?.code, 1001);
  });
  assert.equal(status.code, 0);
});

Deno.test("cluster example: nodes that keep dying are replaced at most 5 times a minute; then the supervisor says so, and ends once none is left", async () => {
  await using redis = await RedisServer.start();
  // Held without reusePort: every node fails to listen on it.
  using held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using supervisor = new Supervisor(
    ["--nodes", "1", "--redis", redis.url],
    (held.addr as Deno.NetAddr).port,
  );
  const status = await deadline(
    supervisor.child.status,
    "the supervisor's end",
    60_000,
  );
  assert.equal(status.code, 1);
  assert.equal(supervisor.output.match(/: starting another$/gm)?.length, 5);
  assert.match(
    supervisor.output,
    /^Node \d+ died \(exit code 1\), 0 others serving: not replaced, nodes died 5 times within 60 s$/m,
  );
  assert.deepEqual(supervisor.serving(), []);
});
