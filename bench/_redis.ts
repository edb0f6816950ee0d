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
    const child = new Deno.Command("redis-server", {
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
      stderr: "inherit",
    }).spawn();
    const redis = new RedisProcess(port, child);
    const deadline = performance.now() + 10_000;
    while (!(await _ping(port))) {
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

async function _ping(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buffer = new Uint8Array(7);
      const n = await conn.read(buffer);
      return n !== null &&
        new TextDecoder().decode(buffer.subarray(0, n)).startsWith("+PONG");
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}
