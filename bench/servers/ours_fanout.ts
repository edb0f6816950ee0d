/**
 * The benchmark's fan-out server on this module's topic API (DESIGN.md, "Many
 * sockets: topics and scale-out"): `/sub` connections subscribe to one topic
 * and the `/pub` connection publishes every message to it. Until that API
 * lands, it prints `unsupported: …` instead of a port and exits, and the
 * benchmark leaves it out. With `--redis URL`, it shares the topic with the
 * other servers on that Redis through `RedisPubSub` (scenario (h)).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect, serve, type WebSocketConnection } from "../../mod.ts";
import { RedisPubSub } from "../../redis.ts";
import { handleSignals, portFlag } from "./_common.ts";

const redisUrl = parseArgs({
  args: Deno.args,
  options: { redis: { type: "string" } },
  strict: false,
}).values.redis;
const pubsub = typeof redisUrl === "string"
  ? new RedisPubSub({ url: redisUrl, prefix: "bench:" })
  : undefined;
await pubsub?.ready;

/**
 * The planned topic methods (Bun's vocabulary), named here so that this file
 * type-checks before they exist; once they do, the intersection is a no-op.
 */
type TopicSocket = WebSocketConnection & {
  subscribe(topic: string): void;
  publish(topic: string, message: string | Uint8Array): void;
};

const TOPIC = "t";
let port = 0;
/** Told by the handler whether a real socket has the topic methods. */
let probed: (supported: boolean) => void = () => {};

const server = serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  pubsub,
  // The port is printed only once the topic API is known to be there.
  onListen: (addr) => port = addr.port,
}, async (connection) => {
  const socket = connection as TopicSocket;
  const path = new URL(socket.request.url).pathname;
  if (path === "/probe") {
    probed(
      typeof socket.subscribe === "function" &&
        typeof socket.publish === "function",
    );
    socket.close();
    return;
  }
  if (path === "/sub") {
    socket.subscribe(TOPIC);
    // Read on, so that pongs and the closing handshake are handled.
    for await (const _ of socket.readable) {
      // A subscriber sends nothing else.
    }
    return;
  }
  for await (const message of socket.readable) socket.publish(TOPIC, message);
});

/** Whether the server and one of its sockets have the topic API. */
async function supported(): Promise<boolean> {
  if (typeof (server as { publish?: unknown }).publish !== "function") {
    return false;
  }
  const answer = new Promise<boolean>((resolve) => probed = resolve);
  const client = await connect(`ws://127.0.0.1:${port}/probe`);
  const result = await answer;
  await client.closed.catch(() => {});
  return result;
}

if (!(await supported())) {
  console.log("unsupported: serve() has no topic API (publish, subscribe) yet");
  Deno.exit(3);
}
console.log(port);

handleSignals();
