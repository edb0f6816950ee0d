/**
 * A `redis-server` for the cross-process fan-out scenario: on a free port
 * of 127.0.0.1, nothing saved to disk, stopped after the run.
 *
 * @module
 */

/** One running redis-server. */
export class RedisProcess implements AsyncDisposable {
  /** Its `redis://` URL. */
  readonly url: string;
  /** Its process id, for its CPU time. */
  readonly pid: number;
  #child: Deno.ChildProcess;

  private constructor(port: number, child: Deno.ChildProcess) {
    this.url = `redis://127.0.0.1:${port}`;
    this.pid = child.pid;
    this.#child = child;
  }

  /** Whether `redis-server` is on the PATH. */
  static async available(): Promise<boolean> {
    try {
      const { success } = await new Deno.Command("redis-server", {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).output();
      return success;
    } catch {
      return false;
    }
  }

  /** Starts one and waits (10 s at most) until it answers PING. */
  static async start(): Promise<RedisProcess> {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const child = spawnRedis(port, "inherit");
    const redis = new RedisProcess(port, child);
    const deadline = performance.now() + 10_000;
    while (!(await pingRedis(port))) {
      if (performance.now() > deadline) {
        await redis.stop();
        throw new Error(`redis-server did not answer on port ${port}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return redis;
  }

  /** Stops it and waits for its exit. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await this.#child.status;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Spawns `redis-server` on 127.0.0.1 at `port`, saving nothing to disk
 * (the tests share it).
 */
export function spawnRedis(
  port: number,
  stderr: "inherit" | "null",
): Deno.ChildProcess {
  return new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    stdin: "null",
    stdout: "null",
    stderr,
  }).spawn();
}

/** Whether a Redis answers PING on the port of 127.0.0.1. */
export async function pingRedis(port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return false;
  }
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(16);
    const n = await conn.read(buffer);
    return n !== null &&
      new TextDecoder().decode(buffer.subarray(0, n)).startsWith("+PONG");
  } catch {
    return false;
  } finally {
    conn.close();
  }
}
