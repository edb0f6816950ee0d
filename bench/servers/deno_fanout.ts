/**
 * The benchmark's fan-out server on Deno's built-in (Rust) WebSocket: a
 * connection to `/sub` subscribes, every message of one to `/pub` is sent
 * to each subscriber (not back to the publisher). A connection to `/idle`
 * (scenario (i)) is a subscriber like `/sub`: Deno's WebSocket always reads,
 * and keeping a subscriber takes no less than adding it on `open` and
 * removing it on `close`.
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
  const path = new URL(request.url).pathname;
  if (path === "/sub" || path === "/idle") {
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
