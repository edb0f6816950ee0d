/**
 * The benchmark's fan-out server on this module's topics: `/sub` connections
 * subscribe to one topic and the `/pub` connection publishes every message
 * to it (`socket.publish`, which leaves out the publisher). `/idle`
 * connections (scenario (i)) are subscribed and never read from or written
 * to; `/live` connections speak the live protocol (`LiveTopics`, scenario
 * (m)) and subscribe to the same topic themselves. With `--redis URL`, it
 * shares the topic with the other servers on that Redis through
 * `RedisPubSub` (scenario (h)). With `--history`, the topic keeps its last
 * 1,000 publications for 10 minutes (scenarios (l) and (m)): in this
 * process, or with `--redis` in Redis.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { LiveTopics, serve } from "../../mod.ts";
import { RedisPubSub } from "../../redis.ts";
import { handleSignals, portFlag } from "./_common.ts";

const { redis: redisUrl, history } = parseArgs({
  args: Deno.args,
  options: { redis: { type: "string" }, history: { type: "boolean" } },
  strict: false,
}).values;
const pubsub = typeof redisUrl === "string"
  ? new RedisPubSub({ url: redisUrl, prefix: "bench:" })
  : undefined;
await pubsub?.ready;

const TOPIC = "t";
/**
 * Room for the 100 publications a client misses in (m), with margin: a
 * topic in Redis is a stream of at most this many entries.
 */
const HISTORY = { size: 1000, ttl: 600_000 };
const live = new LiveTopics();

serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  pubsub,
  history: history === true ? HISTORY : undefined,
  onListen: (addr) => console.log(addr.port),
}, async (socket) => {
  const path = new URL(socket.request.url).pathname;
  if (path === "/idle") {
    // Subscribed and left alone: what an idle subscriber costs by itself.
    socket.subscribe(TOPIC);
    return;
  }
  if (path === "/live") return live.handle(socket);
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

handleSignals();
