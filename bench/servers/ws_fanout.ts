/**
 * The benchmark's fan-out server on `npm:ws` (run by Deno's Node.js
 * compatibility layer): every message of the `/pub` connection goes to every
 * other client of the server, the `/sub` ones, as ws's broadcast example does.
 * A connection to `/idle` (scenario (i)) is such a subscriber too: being in
 * `server.clients` is all it takes.
 *
 * @module
 */
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import { WebSocket, WebSocketServer } from "npm:ws@8";
import { handleSignals, portFlag } from "./_common.ts";

const server = new WebSocketServer({ port: portFlag(), host: "127.0.0.1" });
server.on("listening", () => {
  console.log((server.address() as { port: number }).port);
});
server.on("connection", (socket, request) => {
  if (request.url === "/sub" || request.url === "/idle") return;
  socket.on("message", (data, isBinary) => {
    for (const client of server.clients) {
      if (client !== socket && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
});

handleSignals();
