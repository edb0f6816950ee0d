/**
 * The benchmark's fan-out server on this module's topics: `/sub` connections
 * subscribe to one topic and the `/pub` connection publishes every message
 * to it (`socket.publish`, which leaves out the publisher). `/idle`
 * connections (scenario (i)) are subscribed and never read from or written
 * to. With
 * `--redis URL`, it shares the topic with the other servers on that Redis
 * through `RedisPubSub` (scenario (h)).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { serve } from "../../mod.ts";
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

const TOPIC = "t";

serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  pubsub,
  onListen: (addr) => console.log(addr.port),
}, async (socket) => {
  const path = new URL(socket.request.url).pathname;
  if (path === "/idle") {
    // Subscribed and left alone: what an idle subscriber costs by itself.
    socket.subscribe(TOPIC);
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

handleSignals();
