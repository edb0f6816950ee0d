/**
 * The benchmark's echo server on Bun (`Bun.serve` with its WebSocket
 * handlers, uWebSockets underneath): `bun bench/servers/bun_echo.ts --port 0`.
 *
 * @module
 */
/// <reference path="./_bun.d.ts" />
import { handleSignals, portFlag } from "./_node_common.mjs";

const server = Bun.serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  fetch(request, server) {
    if (server.upgrade(request)) return undefined;
    return new Response("Upgrade Required", { status: 426 });
  },
  websocket: {
    message(ws, message) {
      ws.send(message);
    },
  },
});
console.log(server.port);

handleSignals(() => Bun.gc(true));
