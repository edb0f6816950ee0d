/**
 * The benchmark's fan-out server on Deno's built-in (Rust) WebSocket: a
 * connection to `/sub` subscribes, every message of one to `/pub` is sent
 * to each subscriber (not back to the publisher).
 *
 * @module
 */
import { handleSignals, portFlag } from "./_common.ts";

const subscribers = new Set<WebSocket>();

Deno.serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  onListen: (addr) => console.log(addr.port),
}, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.binaryType = "arraybuffer";
  if (new URL(request.url).pathname === "/sub") {
    // `send` throws before `open`: subscribe then.
    socket.onopen = () => subscribers.add(socket);
    socket.onclose = () => subscribers.delete(socket);
  } else {
    socket.onmessage = (event) => {
      for (const subscriber of subscribers) subscriber.send(event.data);
    };
  }
  return response;
});

handleSignals();
