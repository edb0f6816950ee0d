/**
 * Helpers of the scale-out tests: a real redis-server on a free port, the
 * server processes and workers that share topics, and the probes that tell
 * when their subscriptions are in place.
 */
import { pingRedis, spawnRedis } from "../bench/_redis.ts";
import type {
  HistoryOptions,
  PresenceMember,
  PubSubStats,
  StreamPosition,
} from "../mod.ts";
import type { SharedMessage } from "../src/pubsub/_shared_message.ts";
import type { Subscriber } from "../src/pubsub/topic_hub.ts";
import { freePort, waitFor } from "./_util.ts";
import { PROBE, type TestClient } from "./_ws_client.ts";

/** The longest any single wait of these tests may take. */
export const DEADLINE = 20_000;

/**
 * A real `redis-server` on 127.0.0.1, with nothing saved to disk; it can be
 * stopped and started again on the same port.
 */
export class RedisServer implements AsyncDisposable {
  readonly port: number;
  #child: Deno.ChildProcess | undefined;

  private constructor(port: number) {
    this.port = port;
  }

  /** Starts one on a free port and waits until it answers PING. */
  static async start(): Promise<RedisServer> {
    const server = new RedisServer(freePort());
    await server.restart();
    return server;
  }

  /** Its `redis://` URL. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it (again) on its port and waits until it answers PING. */
  async restart(): Promise<void> {
    if (this.#child) throw new Error("redis-server is already running");
    const child = this.#child = spawnRedis(this.port, "null");
    let exited = false;
    child.status.then(() => exited = true);
    await waitFor(
      async () => {
        if (exited) throw new Error(`redis-server exited on port ${this.port}`);
        return await pingRedis(this.port);
      },
      "redis-server to answer PING",
      DEADLINE,
    );
  }

  /** Stops it (SIGTERM) and waits for its exit. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await child.status;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** What a node reports about its adapter. */
export interface NodeReport {
  stats: PubSubStats;
  errors: string[];
}

/**
 * A server process running tests/_fixtures/redis_node.ts: `serve()` with a
 * `RedisPubSub` over the given Redis.
 */
export class RedisNode implements AsyncDisposable {
  readonly port: number;
  /** Its adapter's id. */
  readonly id: string;
  #child: Deno.ChildProcess;
  #drained: Promise<void>;

  private constructor(
    port: number,
    id: string,
    child: Deno.ChildProcess,
    drained: Promise<void>,
  ) {
    this.port = port;
    this.id = id;
    this.#child = child;
    this.#drained = drained;
  }

  /** Starts one and waits until it listens and has reached Redis. */
  static async start(
    url: string,
    prefix: string,
    options: {
      history?: HistoryOptions;
      presence?: boolean;
      presenceTtl?: number;
    } = {},
  ): Promise<RedisNode> {
    const fixture = new URL("./_fixtures/redis_node.ts", import.meta.url);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        fixture.pathname,
        url,
        prefix,
        JSON.stringify(options),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), DEADLINE);
    try {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("The Redis node exited before listening");
        text += value;
      }
    } catch (error) {
      reader.releaseLock();
      await child.stdout.cancel();
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const { port, id } = JSON.parse(text.slice(0, text.indexOf("\n")));
    const drained = (async () => {
      while (!(await reader.read()).done) {
        // Discard.
      }
    })();
    return new RedisNode(port, id, child, drained);
  }

  /** A WebSocket URL on this node. */
  url(path: string): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** The adapter's counters and the errors reported so far. */
  async report(): Promise<NodeReport> {
    const response = await fetch(`http://127.0.0.1:${this.port}/stats`);
    return await response.json();
  }

  /** Kills it at once (SIGKILL), as a crash would: nothing is cleaned up. */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.#child.status;
    await this.#drained;
  }

  /** Shuts it down (SIGTERM; SIGKILL if it takes too long). */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }, DEADLINE);
    try {
      await this.#child.status;
      await this.#drained;
    } finally {
      clearTimeout(timer);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * A Web Worker running tests/_fixtures/worker_server.ts: `serve()` with a
 * `BroadcastChannelPubSub` of the given channel name.
 */
export class WorkerNode implements AsyncDisposable {
  readonly port: number;
  readonly id: string;
  #worker: Worker;

  private constructor(port: number, id: string, worker: Worker) {
    this.port = port;
    this.id = id;
    this.#worker = worker;
  }

  /** Starts one and waits until it listens. */
  static async start(name: string): Promise<WorkerNode> {
    const worker = new Worker(
      new URL("./_fixtures/worker_server.ts", import.meta.url),
      { type: "module" },
    );
    try {
      const ready = WorkerNode.#answer<{ port: number; id: string }>(worker);
      worker.postMessage({ name });
      const { port, id } = await ready;
      return new WorkerNode(port, id, worker);
    } catch (error) {
      worker.terminate();
      throw error;
    }
  }

  static #answer<T>(worker: Worker): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("The worker did not answer in time")),
        DEADLINE,
      );
      worker.addEventListener("message", (event) => {
        clearTimeout(timer);
        resolve(event.data);
      }, { once: true });
    });
  }

  /** A WebSocket URL on this worker's server. */
  url(path: string): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  /** The adapter's counters and the errors reported so far. */
  report(): Promise<NodeReport> {
    const answer = WorkerNode.#answer<NodeReport>(this.#worker);
    this.#worker.postMessage("stats");
    return answer;
  }

  /** Shuts its server down, then terminates it. */
  async stop(): Promise<void> {
    try {
      const stopped = WorkerNode.#answer<string>(this.#worker);
      this.#worker.postMessage("stop");
      await stopped;
    } finally {
      this.#worker.terminate();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Sends probes from each publisher until every subscriber has received a
 * probe from each: then every subscription is in place on the bus.
 */
export async function untilConnected(
  publishers: TestClient[],
  subscribers: TestClient[],
): Promise<void> {
  let round = 0;
  await waitFor(
    () => {
      round++;
      publishers.forEach((publisher, i) =>
        publisher.send(`${PROBE}${i}:${round}`)
      );
      return subscribers.every((subscriber) =>
        publishers.every((_, i) =>
          subscriber.probes.some((probe) => probe.startsWith(`${PROBE}${i}:`))
        )
      );
    },
    "every subscription to be in place",
    DEADLINE,
  );
}

/**
 * The messages of one publisher (those starting with `prefix`), in the
 * order received: text as it is, binary as `#` and its bytes as text.
 */
export function fromPublisher(
  received: (string | Uint8Array)[],
  prefix: string,
): string[] {
  return received
    .map((message) =>
      typeof message === "string"
        ? message
        : `#${new TextDecoder().decode(message)}`
    )
    .filter((message) =>
      message.startsWith(prefix) || message.startsWith(`#${prefix}`)
    );
}

/** A subscriber that keeps what it is offered and the gaps it is told of. */
export class Recorder implements Subscriber {
  offered: SharedMessage[] = [];
  gaps: StreamPosition[] = [];
  readonly member?: PresenceMember;

  constructor(member?: PresenceMember) {
    this.member = member;
  }

  offer(shared: SharedMessage): boolean {
    this.offered.push(shared);
    return true;
  }

  gap(_topic: string, position: StreamPosition): void {
    this.gaps.push(position);
  }

  /** The messages offered, in order. */
  get messages(): (string | Uint8Array)[] {
    return this.offered.map((shared) => shared.message);
  }

  /** The offsets offered, in order. */
  get offsets(): number[] {
    return this.offered.map((shared) => shared.position!.offset);
  }
}
