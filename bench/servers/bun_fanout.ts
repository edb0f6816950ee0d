/**
 * The benchmark's fan-out server on Bun: `/sub` connections subscribe to one
 * topic (`ws.subscribe`), and every message of the `/pub` connection goes out
 * through `server.publish`. A connection to `/idle` (scenario (i)) is
 * subscribed the same way and does nothing else.
 *
 * @module
 */
/// <reference path="./_bun.d.ts" />
import { handleSignals, portFlag } from "./_node_common.mjs";

const TOPIC = "t";

const server = Bun.serve<{ subscriber: boolean }>({
  port: portFlag(),
  hostname: "127.0.0.1",
  fetch(request, server) {
    const path = new URL(request.url).pathname;
    const subscriber = path === "/sub" || path === "/idle";
    if (server.upgrade(request, { data: { subscriber } })) return undefined;
    return new Response("Upgrade Required", { status: 426 });
  },
  websocket: {
    open(ws) {
      if (ws.data.subscriber) ws.subscribe(TOPIC);
    },
    message(ws, message) {
      if (!ws.data.subscriber) server.publish(TOPIC, message);
    },
  },
});
console.log(server.port);

handleSignals(() => Bun.gc(true));
