/**
 * The chat of examples/chat.ts served by several processes on one port,
 * sharing its rooms through Redis: every process (a node) runs the same
 * chat server with `reusePort` (Linux spreads the connections over them)
 * and a `RedisPubSub`, which keeps the rooms' history and presence in
 * Redis. A line said on any node reaches the room's pages on all of them,
 * with the same positions everywhere, so a page that moves to another node
 * recovers what it missed from Redis.
 *
 * ```sh
 * deno task cluster                       # one node per core, on 127.0.0.1:8080
 * deno task cluster --nodes 4 --port 9000 --hostname 0.0.0.0
 * deno task cluster --redis redis://10.0.0.5:6379   # or REDIS_URL=…
 * ```
 *
 * Without `--redis` (or `REDIS_URL`), it starts a `redis-server` of its own
 * on a free port of 127.0.0.1 (Debian: `apt-get install redis-server`) and
 * stops it at the end. Open the printed address in several browser tabs:
 * each says which node serves its connection, and every tab of a room sees
 * every line and the same members.
 *
 * The supervisor (this script without `--node`) starts the nodes and keeps
 * them running: when one dies, the others go on serving and it starts a
 * new one in its place, at most 5 times a minute (past that it stops
 * replacing them and says so). Kill a node (`kill -9 <pid>`): its pages
 * reconnect to another node on their own and get what was said meanwhile.
 * A dead node's connections stay in the rooms' presence for up to 15 s
 * (`presenceTtl`), unless they came back. Ctrl+C stops every node (and that
 * Redis).
 *
 * `reusePort` needs `--unstable-net` in Deno 2.9; this script passes it to
 * the nodes it starts. On several machines, run the same command on each
 * with the same `--redis` and `--hostname 0.0.0.0`, and put a load balancer
 * that passes WebSocket upgrades in front (docs/topics.md, "Several
 * machines behind a load balancer").
 *
 * @module
 */

import { parseArgs } from "node:util";
import { RedisPubSub } from "../redis.ts";
import { startChatServer } from "./chat.ts";

/** Restarts allowed within `RESTART_WINDOW` before the supervisor stops replacing nodes. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW = 60_000;

/** One node: the chat server on the shared port, its rooms in Redis. */
async function runNode(
  port: number,
  hostname: string,
  redis: string,
): Promise<number> {
  const pubsub = new RedisPubSub({ url: redis, prefix: "chat:" });
  try {
    await pubsub.ready;
  } catch (error) {
    await pubsub.close();
    console.error(`Node ${Deno.pid}: no Redis at ${redis}:`, error);
    return 1;
  }
  const node = String(Deno.pid);
  const server = startChatServer({
    port,
    hostname,
    reusePort: true,
    pubsub,
    node,
    onListen: () => console.log(`node ${node} serves`),
  });
  const shutdown = () => server.shutdown();
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  await server.finished;
  Deno.removeSignalListener("SIGINT", shutdown);
  Deno.removeSignalListener("SIGTERM", shutdown);
  return 0;
}

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

/** How a process ended, for a person. */
function ending(status: Deno.CommandStatus): string {
  return status.signal === null
    ? `exit code ${status.code}`
    : `signal ${status.signal}`;
}

/**
 * The supervisor: starts Redis if needed and the nodes, replaces a node
 * that dies (within the restart limit); Ctrl+C stops all.
 */
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
  if (values.node) return await runNode(port, hostname, values.redis!);

  const count = Number(values.nodes ?? navigator.hardwareConcurrency);
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`--nodes must be 1 or more, got ${values.nodes}`);
  }
  const given = values.redis ?? (Deno.env.get("REDIS_URL") || undefined);
  const redis = given === undefined ? await startRedis() : undefined;
  const redisUrl = given ?? redis!.url;
  const spawn = () =>
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
    }).spawn();

  const nodes = new Set<Deno.ChildProcess>();
  /** When nodes were replaced, within the last `RESTART_WINDOW`. */
  const restarts: number[] = [];
  let stopping = false;
  const { promise: done, resolve: allDone } = Promise.withResolvers<void>();
  const stopAll = () => {
    stopping = true;
    nodes.forEach(stop);
  };
  /** Starts a node, and watches it: one that dies is replaced. */
  const start = () => {
    const child = spawn();
    nodes.add(child);
    child.status.then((status) => {
      nodes.delete(child);
      if (!stopping) replace(child, status);
      if (nodes.size === 0) allDone();
    });
  };
  const replace = (child: Deno.ChildProcess, status: Deno.CommandStatus) => {
    const now = Date.now();
    while (restarts.length > 0 && restarts[0] <= now - RESTART_WINDOW) {
      restarts.shift();
    }
    const others = `${nodes.size} other${nodes.size === 1 ? "" : "s"} serving`;
    if (restarts.length >= MAX_RESTARTS) {
      console.error(
        `Node ${child.pid} died (${
          ending(status)
        }), ${others}: not replaced, nodes died ${MAX_RESTARTS} times within ${
          RESTART_WINDOW / 1000
        } s`,
      );
      return;
    }
    restarts.push(now);
    console.error(
      `Node ${child.pid} died (${ending(status)}), ${others}: starting another`,
    );
    start();
  };

  for (let i = 0; i < count; i++) start();
  // Ctrl+C reaches the whole process group; SIGTERM only this process.
  Deno.addSignalListener("SIGINT", stopAll);
  Deno.addSignalListener("SIGTERM", stopAll);
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(
    `Chat cluster: ${count} node(s) on http://${host}:${port}/, rooms in ${redisUrl}${
      redis ? " (started here)" : ""
    }; Ctrl+C stops them`,
  );
  await done;
  Deno.removeSignalListener("SIGINT", stopAll);
  Deno.removeSignalListener("SIGTERM", stopAll);
  if (redis) {
    stop(redis.process);
    await redis.process.status;
  }
  // Every node ended: on Ctrl+C, or because they all died.
  return stopping ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
