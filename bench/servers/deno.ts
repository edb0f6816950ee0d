/**
 * The benchmark's echo server on Deno's built-in (Rust) WebSocket:
 * `Deno.serve` with `Deno.upgradeWebSocket`, echoing in `onmessage`.
 *
 * @module
 */
import { handleSignals, portFlag } from "./_common.ts";

Deno.serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  onListen: (addr) => console.log(addr.port),
}, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => socket.send(event.data);
  return response;
});

handleSignals();
