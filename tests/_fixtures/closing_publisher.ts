/**
 * A Web Worker of the BroadcastChannel tests: given `{ name, messages }`, it
 * publishes each message to topic "news" through a `BroadcastChannelPubSub`
 * of that name and closes the adapter in the same turn of the event loop.
 * In a later turn it posts the string `"fence"` on a bare channel of the
 * same name (what was posted before it arrives before it), then posts
 * `"done"` to its parent. The message `"stop"` closes the bare channel and
 * gets `"stopped"` back.
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { BroadcastChannelPubSub } from "../../mod.ts";

const { name, messages } = await new Promise<
  { name: string; messages: string[] }
>((resolve) =>
  self.addEventListener(
    "message",
    (event: MessageEvent) => resolve(event.data),
    { once: true },
  )
);
const pubsub = new BroadcastChannelPubSub({ name });
pubsub.open(() => {});
for (const message of messages) pubsub.publish("news", message);
await pubsub.close();
await new Promise((resolve) => setTimeout(resolve, 0));
const fence = new BroadcastChannel(name);
fence.postMessage("fence");
self.addEventListener("message", (event: MessageEvent) => {
  if (event.data !== "stop") return;
  fence.close();
  self.postMessage("stopped");
});
self.postMessage("done");
