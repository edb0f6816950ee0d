/**
 * A Web Worker of the BroadcastChannel tests: runs `serve()` on 127.0.0.1
 * and port 0 with a `BroadcastChannelPubSub` named by the first message it
 * gets (`{ name }`), then posts `{ port, id }`. `/sub?topic=T` subscribes
 * its socket to T; `/pub?topic=T` publishes each message its socket sends
 * to T. The message `"stats"` gets `{ stats, errors }` back; `"stop"` shuts
 * the server down (closing the adapter) and gets `"stopped"` back.
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { BroadcastChannelPubSub, serve } from "../../mod.ts";

const { name } = await new Promise<{ name: string }>((resolve) =>
  self.addEventListener(
    "message",
    (event: MessageEvent) => resolve(event.data),
    {
      once: true,
    },
  )
);
const errors: string[] = [];
const note = (error: unknown) =>
  errors.push(error instanceof Error ? error.message : String(error));
const pubsub = new BroadcastChannelPubSub({ name, onError: note });
const server = serve({
  port: 0,
  hostname: "127.0.0.1",
  pubsub,
  onListen() {},
  onError: note,
}, async (socket) => {
  const url = new URL(socket.request.url);
  const topic = url.searchParams.get("topic") ?? "";
  if (url.pathname === "/sub") socket.subscribe(topic);
  for await (const message of socket.readable) {
    if (url.pathname === "/pub") socket.publish(topic, message);
  }
});

self.onmessage = async (event) => {
  if (event.data === "stats") {
    self.postMessage({ stats: pubsub.stats, errors });
  } else if (event.data === "stop") {
    await server.shutdown();
    self.postMessage("stopped");
  }
};
self.postMessage({ port: server.addr.port, id: pubsub.id });
