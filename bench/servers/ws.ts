/**
 * The benchmark's echo server on `npm:ws` (run by Deno's Node.js
 * compatibility layer, not by Node.js).
 *
 * @module
 */
// @ts-types="npm:@types/ws@8"
// deno-lint-ignore no-import-prefix
import { WebSocketServer } from "npm:ws@8";
import { handleSignals, portFlag } from "./_common.ts";

const server = new WebSocketServer({ port: portFlag(), host: "127.0.0.1" });
server.on("listening", () => {
  console.log((server.address() as { port: number }).port);
});
server.on("connection", (socket) => {
  socket.on(
    "message",
    (data, isBinary) => socket.send(data, { binary: isBinary }),
  );
});

handleSignals();
