/**
 * A `redis-server` for the scenarios that use Redis ((h), (l), (m)): on a
 * free port of 127.0.0.1, nothing saved to disk, stopped after the run.
 *
 * @module
 */

/** One command's line of `INFO commandstats`. */
export interface CommandStat {
  /** How many times it ran. */
  calls: number;
  /** The time it took in all, µs. */
  usec: number;
}

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

  /**
   * Redis's own count and time of each command so far (`INFO
   * commandstats`): a script's commands count both inside it and as the
   * `evalsha` that ran it. Time spent reading and writing the sockets is not
   * in it (the process's CPU time is).
   */
  async commandStats(): Promise<Map<string, CommandStat>> {
    const port = Number(new URL(this.url).port);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    let text = "";
    try {
      await conn.write(new TextEncoder().encode("INFO commandstats\r\n"));
      const decoder = new TextDecoder();
      const buffer = new Uint8Array(65536);
      // A bulk string: `$<length>\r\n<text>\r\n`.
      let length = -1;
      while (length < 0 || text.length < length) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("redis-server closed the connection");
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
        if (length < 0 && text.includes("\r\n")) {
          const head = text.slice(0, text.indexOf("\r\n"));
          if (!head.startsWith("$")) throw new Error(`INFO failed: ${head}`);
          length = Number(head.slice(1)) + head.length + 4;
        }
      }
    } finally {
      conn.close();
    }
    const stats = new Map<string, CommandStat>();
    for (
      const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)
    ) {
      stats.set(match[1], { calls: Number(match[2]), usec: Number(match[3]) });
    }
    return stats;
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
