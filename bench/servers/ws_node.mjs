/**
 * The benchmark's echo server on `npm:ws` under Node.js itself (bench/servers
 * /ws.ts runs the same package on Deno): `NODE_PATH=<dir>/node_modules node
 * --expose-gc bench/servers/ws_node.mjs --port 0`, with ws installed there by
 * the benchmark.
 *
 * @module
 */
import { createRequire } from "node:module";
import { handleSignals, portFlag } from "./_node_common.mjs";

// Found through NODE_PATH: the benchmark installs ws outside the repository.
const { WebSocketServer } = createRequire(import.meta.url)("ws");

const server = new WebSocketServer({ port: portFlag(), host: "127.0.0.1" });
server.on("listening", () => console.log(server.address().port));
server.on("connection", (socket) => {
  socket.on(
    "message",
    (data, isBinary) => socket.send(data, { binary: isBinary }),
  );
});

handleSignals(globalThis.gc);
