/**
 * The benchmark's fan-out server on this module's topic API (DESIGN.md, "Many
 * sockets: topics and scale-out"): `/sub` connections subscribe to one topic
 * and the `/pub` connection publishes every message to it. Until that API
 * lands, it prints `unsupported: …` instead of a port and exits, and the
 * benchmark leaves it out.
 *
 * @module
 */
import { serve, type WebSocketConnection } from "../../mod.ts";
import { handleSignals, portFlag } from "./_common.ts";

/**
 * The planned topic methods (Bun's vocabulary), named here so that this file
 * type-checks before they exist; once they do, the intersection is a no-op.
 */
type TopicSocket = WebSocketConnection & {
  subscribe(topic: string): void;
  publish(topic: string, message: string | Uint8Array): void;
};

const TOPIC = "t";
let port = 0;

const server = serve({
  port: portFlag(),
  hostname: "127.0.0.1",
  // The port is printed only once the topic API is known to be there.
  onListen: (addr) => port = addr.port,
}, async (connection) => {
  const socket = connection as TopicSocket;
  if (new URL(socket.request.url).pathname === "/sub") {
    socket.subscribe(TOPIC);
    // Read on, so that pongs and the closing handshake are handled.
    for await (const _ of socket.readable) {
      // A subscriber sends nothing else.
    }
    return;
  }
  for await (const message of socket.readable) socket.publish(TOPIC, message);
});

const publish = (server as { publish?: unknown }).publish;
if (typeof publish !== "function") {
  console.log("unsupported: serve() has no topic API (server.publish) yet");
  Deno.exit(3);
}
console.log(port);

handleSignals();
