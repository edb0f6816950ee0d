/**
 * Redis PUB/SUB for the topics of `@scope/ws`: {@linkcode RedisPubSub}
 * shares them between processes and machines. It lives in its own entry
 * point so that the core module has no dependency; this one depends on
 * node-redis (`npm:@redis/client`).
 *
 * @example Topics shared by every process that runs this
 * ```ts ignore
 * import { serve } from "@scope/ws";
 * import { RedisPubSub } from "@scope/ws/redis";
 *
 * serve({
 *   port: 8080,
 *   pubsub: new RedisPubSub({ url: "redis://127.0.0.1:6379", prefix: "chat:" }),
 * }, async (socket) => {
 *   socket.subscribe("lobby");
 *   for await (const message of socket.readable) socket.publish("lobby", message);
 * });
 * ```
 *
 * @module
 */
export {
  type RedisClientLike,
  RedisPubSub,
  type RedisPubSubOptions,
} from "./src/pubsub/redis.ts";
export type { PubSubStats } from "./src/pubsub/topic_hub.ts";
export type {
  PubSubEvent,
  PubSubEventKind,
} from "./src/pubsub/pubsub_event.ts";
