/**
 * One server process of the Redis tests: `serve()` with a `RedisPubSub`
 * (`deno run -A redis_node.ts <redis url> <prefix> [options]`, where
 * `options` is JSON of `history`, `presence` and `presenceTtl`). It prints one JSON
 * line, `{ "port", "id" }`, once listening and connected to Redis, then:
 *
 * - `/sub?topic=T` subscribes its socket to T;
 * - `/pub?topic=T` publishes each message its socket sends to T (not back
 *   to that socket);
 * - a plain `GET /stats` answers with `{ "stats", "errors" }`: the adapter's
 *   counters and the messages reported to `onError` so far.
 *
 * SIGTERM shuts the server down (which closes the adapter) and exits.
 */
import { serve } from "../../mod.ts";
import { RedisPubSub } from "../../redis.ts";

const [url, prefix, json] = Deno.args;
const { history, presence, presenceTtl } = JSON.parse(json ?? "{}");
const errors: string[] = [];
const note = (error: unknown) =>
  errors.push(error instanceof Error ? error.message : String(error));
const pubsub = new RedisPubSub({ url, prefix, presenceTtl, onError: note });
await pubsub.ready;

const server = serve({
  port: 0,
  hostname: "127.0.0.1",
  pubsub,
  history,
  presence,
  onListen() {},
  onError: note,
  fetch: () => Response.json({ stats: pubsub.stats, errors }),
}, async (socket) => {
  const url = new URL(socket.request.url);
  const topic = url.searchParams.get("topic") ?? "";
  if (url.pathname === "/sub") socket.subscribe(topic);
  for await (const message of socket.readable) {
    if (url.pathname === "/pub") socket.publish(topic, message);
  }
});

Deno.addSignalListener("SIGTERM", async () => {
  await server.shutdown();
  Deno.exit(0);
});
console.log(JSON.stringify({ port: server.addr.port, id: pubsub.id }));
