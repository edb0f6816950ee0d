/**
 * A chat served by several processes on one port, sharing its rooms
 * through Redis: every process runs `serve()` with `reusePort` (Linux
 * spreads the connections over them) and a `RedisPubSub`, so a message
 * sent to any process reaches the room's sockets in all of them.
 *
 * ```sh
 * deno task cluster                       # one process per core, on 127.0.0.1:8080
 * deno task cluster --nodes 4 --port 9000 --hostname 0.0.0.0
 * deno task cluster --redis redis://10.0.0.5:6379   # or REDIS_URL=…
 * ```
 *
 * Without `--redis` (or `REDIS_URL`), it starts a `redis-server` of its own
 * on a free port of 127.0.0.1 (Debian: `apt-get install redis-server`) and
 * stops it at the end. Open the printed address in several browser tabs:
 * each says which process serves its WebSocket, and every tab of a room
 * sees every message. Ctrl+C stops every process (and that Redis).
 *
 * `reusePort` needs `--unstable-net` in Deno 2.9; this script passes it to
 * the server processes it starts. On several machines, run the same
 * command on each with the same `--redis` and `--hostname 0.0.0.0`, and
 * put a load balancer that passes WebSocket upgrades in front (README,
 * "Scaling out").
 *
 * The page is a small chat of its own; `startChatNode` is the whole server
 * of one process.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve, type WebSocketServer } from "../mod.ts";
import { RedisPubSub } from "../redis.ts";
import { servePage } from "./_app.ts";

/** Options for {@linkcode startChatNode}. */
export interface ChatNodeOptions {
  /** The port every process shares. */
  port: number;
  /** The address to listen on. */
  hostname: string;
  /** Redis, shared by every process of the cluster. */
  redis: string;
  /** Called once listening and connected to Redis. */
  onListen?: (addr: Deno.NetAddr) => void;
}

/**
 * Runs one process's chat server: `serve()` on the shared port with
 * `reusePort`, its rooms shared through Redis (channels `chat:<room>`).
 * `/` is the page; a WebSocket on `/chat?room=R&name=N` joins room R and
 * gets `{ "type": "hello", "node" }`, then each message sent to the room as
 * `{ "type": "message", "from", "text", "node" }` (the sender's too).
 *
 * @example One node on a port of its own (`--unstable-net`)
 * ```ts ignore
 * import { startChatNode } from "./examples/cluster.ts";
 *
 * const server = await startChatNode({
 *   port: 8080,
 *   hostname: "127.0.0.1",
 *   redis: "redis://127.0.0.1:6379",
 * });
 * await server.finished;
 * ```
 */
export async function startChatNode(
  options: ChatNodeOptions,
): Promise<WebSocketServer> {
  const pubsub = new RedisPubSub({ url: options.redis, prefix: "chat:" });
  try {
    await pubsub.ready;
  } catch (error) {
    await pubsub.close();
    throw error;
  }
  const node = Deno.pid;
  const server = serve({
    port: options.port,
    hostname: options.hostname,
    reusePort: true,
    pubsub,
    onListen: options.onListen,
    fetch: servePage(CHAT_PAGE.replace("{node}", String(node))),
  }, async (socket) => {
    const url = new URL(socket.request.url);
    if (url.pathname !== "/chat") {
      socket.close({ closeCode: 4004, reason: "Connect to /chat" });
      return;
    }
    const room = (url.searchParams.get("room") || "lobby").slice(0, 64);
    const from = (url.searchParams.get("name") || "guest").slice(0, 32);
    socket.subscribe(room);
    socket.send(JSON.stringify({ type: "hello", node }));
    for await (const message of socket.readable) {
      if (typeof message !== "string") continue;
      // To the room's sockets here (the sender's too) and in every process.
      server.publish(
        room,
        JSON.stringify({ type: "message", from, text: message, node }),
      );
    }
  });
  return server;
}

const CHAT_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cluster chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: 0.5rem; }
  #text { flex: 1; }
  #log { list-style: none; padding: 0; }
  #log li { border-bottom: 1px solid #ddd; padding: 0.25rem 0; }
  small { color: #666; }
</style>
</head>
<body>
<h1>Cluster chat</h1>
<p>Page from process {node}; WebSocket: <output id="status">connecting</output></p>
<form id="form">
  <input id="room" value="lobby" size="10" aria-label="Room">
  <input id="name" size="10" aria-label="Name">
  <input id="text" autocomplete="off" placeholder="A message" aria-label="Message">
  <button>Send</button>
</form>
<ul id="log"></ul>
<script>
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const name = document.getElementById("name");
  const room = document.getElementById("room");
  name.value = "guest-" + Math.floor(Math.random() * 1000);
  let socket;
  const show = (text, note) => {
    const item = document.createElement("li");
    item.textContent = text + " ";
    const small = document.createElement("small");
    small.textContent = note;
    item.append(small);
    log.prepend(item);
  };
  const join = () => {
    socket?.close();
    const url = new URL("/chat", location.href.replace(/^http/, "ws"));
    url.searchParams.set("room", room.value);
    url.searchParams.set("name", name.value);
    socket = new WebSocket(url);
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.type === "hello") status.value = "open, process " + data.node + ", room " + room.value;
      else show(data.from + ": " + data.text, "(through process " + data.node + ")");
    };
    socket.onclose = (event) => status.value = "closed (" + event.code + ")";
  };
  room.onchange = name.onchange = join;
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const text = document.getElementById("text");
    if (socket.readyState === WebSocket.OPEN && text.value) socket.send(text.value);
    text.value = "";
  };
  join();
</script>
</body>
</html>
`;

/** Waits until a Redis answers PING on 127.0.0.1:`port`, for up to 10 s. */
async function waitForRedis(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(new TextEncoder().encode("PING\r\n"));
        const buffer = new Uint8Array(7);
        const n = await conn.read(buffer);
        if (
          n !== null && new TextDecoder().decode(buffer).startsWith("+PONG")
        ) {
          return;
        }
      } finally {
        conn.close();
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server did not answer on port ${port}`);
}

/** Starts a `redis-server` of the cluster's own on a free port. */
async function startRedis(): Promise<
  { url: string; process: Deno.ChildProcess }
> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    throw new Error(
      "No redis-server to start: install it (apt-get install redis-server) or pass --redis URL",
      { cause: error },
    );
  }
  try {
    await waitForRedis(port);
  } catch (error) {
    process.kill("SIGTERM");
    await process.status;
    throw error;
  }
  return { url: `redis://127.0.0.1:${port}`, process };
}

function stop(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
}

/** The supervisor: starts Redis if needed and the nodes; Ctrl+C stops all. */
async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      node: { type: "boolean", default: false },
      nodes: { type: "string" },
      port: { type: "string" },
      hostname: { type: "string" },
      redis: { type: "string" },
    },
  });
  const port = Number(values.port ?? Deno.env.get("PORT") ?? 8080);
  const hostname = values.hostname ?? "127.0.0.1";
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`The port must be 1 to 65535, got ${values.port}`);
  }

  if (values.node) {
    // One server process, started by the supervisor below.
    const server = await startChatNode({
      port,
      hostname,
      redis: values.redis!,
      onListen: () => console.log(`process ${Deno.pid} serves`),
    });
    const shutdown = () => server.shutdown();
    Deno.addSignalListener("SIGINT", shutdown);
    Deno.addSignalListener("SIGTERM", shutdown);
    await server.finished;
    Deno.removeSignalListener("SIGINT", shutdown);
    Deno.removeSignalListener("SIGTERM", shutdown);
    return 0;
  }

  const nodes = Number(values.nodes ?? navigator.hardwareConcurrency);
  if (!Number.isInteger(nodes) || nodes < 1) {
    throw new RangeError(`--nodes must be 1 or more, got ${values.nodes}`);
  }
  const given = values.redis ?? (Deno.env.get("REDIS_URL") || undefined);
  const redis = given === undefined ? await startRedis() : undefined;
  const redisUrl = given ?? redis!.url;
  const children = Array.from(
    { length: nodes },
    () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--unstable-net",
          "--allow-net",
          "--allow-env",
          "--allow-read",
          "--allow-sys",
          new URL(import.meta.url).pathname,
          "--node",
          "--port",
          String(port),
          "--hostname",
          hostname,
          "--redis",
          redisUrl,
        ],
        stdin: "null",
      }).spawn(),
  );
  let stopping = false;
  const stopAll = () => {
    stopping = true;
    children.forEach(stop);
  };
  // Ctrl+C reaches the whole process group; SIGTERM only this process.
  Deno.addSignalListener("SIGINT", stopAll);
  Deno.addSignalListener("SIGTERM", stopAll);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(
    `Cluster chat: ${nodes} process(es) on http://${host}:${port}/, rooms shared through ${redisUrl}${
      redis ? " (started here)" : ""
    }; Ctrl+C stops them`,
  );
  // One process ending on its own (it failed) stops the others.
  let failed = false;
  await Promise.all(children.map(async (child) => {
    const status = await child.status;
    if (!stopping) {
      failed = true;
      console.error(`Process ${child.pid} exited (${status.code}): stopping`);
      stopAll();
    }
  }));
  Deno.removeSignalListener("SIGINT", stopAll);
  Deno.removeSignalListener("SIGTERM", stopAll);
  if (redis) {
    stop(redis.process);
    await redis.process.status;
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
