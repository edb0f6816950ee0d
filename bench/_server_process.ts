/**
 * Echo servers as subprocesses, one per run, so that memory and CPU are
 * measured per server (Linux `/proc`).
 *
 * @module
 */

/** The echo servers the benchmark compares. */
export const SERVERS = {
  ours: { label: "@scope/ws", file: "ours.ts" },
  deno: { label: "Deno.upgradeWebSocket", file: "deno.ts" },
  ws: { label: "npm:ws", file: "ws.ts" },
} as const;

/** The name of one of {@linkcode SERVERS}. */
export type ServerName = keyof typeof SERVERS;

/** Options for {@linkcode ServerProcess.start}. */
export interface StartOptions {
  /** Write a V8 CPU profile of the server into this directory. */
  profileDir?: string;
  /** The profile's file name. */
  profileName?: string;
}

/** CPU time used by a process so far, in seconds (user + system). */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces: count fields after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / CLOCK_TICKS;
}

/** `sysconf(_SC_CLK_TCK)`: 100 on every Linux that Deno runs on. */
const CLOCK_TICKS = 100;

/** A process's resident memory (VmRSS), in bytes. */
export function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`No VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

/** One running echo server. */
export class ServerProcess implements AsyncDisposable {
  /** The server's name. */
  readonly name: ServerName;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Its process id (the `deno` process itself). */
  readonly pid: number;
  #child: Deno.ChildProcess;
  #drained: Promise<void>;

  private constructor(
    name: ServerName,
    port: number,
    child: Deno.ChildProcess,
    drained: Promise<void>,
  ) {
    this.name = name;
    this.port = port;
    this.pid = child.pid;
    this.#child = child;
    this.#drained = drained;
  }

  /**
   * Starts `bench/servers/<name>.ts --port 0` and waits for the port it
   * prints.
   *
   * @param name Which server.
   * @param options Profiling options.
   * @returns The running server.
   */
  static async start(
    name: ServerName,
    options: StartOptions = {},
  ): Promise<ServerProcess> {
    const file = new URL(`./servers/${SERVERS[name].file}`, import.meta.url);
    const args = ["run", "-A", "--v8-flags=--expose-gc"];
    if (options.profileDir) {
      args.push("--cpu-prof", `--cpu-prof-dir=${options.profileDir}`);
      if (options.profileName) {
        args.push(`--cpu-prof-name=${options.profileName}`);
      }
    }
    args.push(file.pathname, "--port", "0");
    const child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    try {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`The ${name} server exited before listening`);
        text += value;
      }
    } catch (error) {
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      _kill(child);
      await child.status;
      throw error;
    }
    const port = Number(text.slice(0, text.indexOf("\n")).trim());
    // Keep reading so that a chatty server never blocks on a full pipe.
    const drained = (async () => {
      while (!(await reader.read()).done) {
        // Discard.
      }
    })().catch(() => {});
    return new ServerProcess(name, port, child, drained);
  }

  /** CPU time used so far, in seconds. */
  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  /** Resident memory now, in bytes. */
  rssBytes(): number {
    return rssBytes(this.pid);
  }

  /** Asks the server for a full garbage collection (it runs soon after). */
  collectGarbage(): void {
    Deno.kill(this.pid, "SIGUSR2");
  }

  /** Stops the server (SIGTERM: it exits at once, writing any profile). */
  async stop(): Promise<void> {
    _kill(this.#child);
    await this.#child.status;
    await this.#drained;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function _kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
}
