/**
 * Benchmark servers as subprocesses, one per run, so that memory and CPU are
 * measured per server (Linux `/proc`).
 *
 * @module
 */
import { prepareRuntime, type Runtime } from "./_runtimes.ts";

/** What a benchmark server does: echo, or fan out `/pub` to `/sub`. */
export type ServerKind = "echo" | "fanout";

/** One contender: its runtime and its server file per kind. */
export interface ServerSpec {
  /** Its name in tables. */
  label: string;
  /** What runs the files. */
  runtime: "deno" | Runtime;
  /** The file under bench/servers/ for each kind it has. */
  files: Partial<Record<ServerKind, string>>;
  /**
   * Another checkout whose bench/servers/ files run instead (`--base`):
   * the module as it was, beside it as it is.
   */
  root?: string;
}

/** The servers the benchmark compares. */
export const SERVERS = {
  ours: {
    label: "@scope/ws",
    runtime: "deno",
    files: { echo: "ours.ts", fanout: "ours_fanout.ts" },
  },
  deno: {
    label: "Deno.upgradeWebSocket",
    runtime: "deno",
    files: { echo: "deno.ts", fanout: "deno_fanout.ts" },
  },
  ws: {
    label: "npm:ws",
    runtime: "deno",
    files: { echo: "ws.ts", fanout: "ws_fanout.ts" },
  },
  bun: {
    label: "Bun",
    runtime: "bun",
    files: { echo: "bun_echo.ts", fanout: "bun_fanout.ts" },
  },
  node: {
    label: "npm:ws on Node.js",
    runtime: "node",
    files: { echo: "ws_node.mjs" },
  },
  floor: {
    label: "floor (bare Deno.Conn)",
    runtime: "deno",
    files: { echo: "floor.ts", fanout: "floor_fanout.ts" },
  },
  floorstreams: {
    label: "floor + the echo's streams",
    runtime: "deno",
    files: { echo: "floor_streams.ts" },
  },
  floorwebcrypto: {
    label: "floor + streams + WebCrypto",
    runtime: "deno",
    files: { echo: "floor_webcrypto.ts" },
  },
  base: {
    label: "@scope/ws before",
    runtime: "deno",
    files: { echo: "ours.ts", fanout: "ours_fanout.ts" },
  },
} as Record<
  | "ours"
  | "deno"
  | "ws"
  | "bun"
  | "node"
  | "floor"
  | "floorstreams"
  | "floorwebcrypto"
  | "base",
  ServerSpec
>;

/**
 * Runs `base` (our own servers) from another checkout: `dir` is its root,
 * `label` names it in tables.
 */
export function setBase(dir: string, label: string): void {
  SERVERS.base.root = dir;
  SERVERS.base.label = label;
}

/** The name of one of {@linkcode SERVERS}. */
export type ServerName = keyof typeof SERVERS;

/** Whether a server has a file of this kind. */
export function hasKind(name: ServerName, kind: ServerKind): boolean {
  return (SERVERS[name] as ServerSpec).files[kind] !== undefined;
}

/** A server that said it cannot run here (`unsupported: …` on stdout). */
export class UnsupportedServerError extends Error {
  override name = "UnsupportedServerError";
}

/** Options for {@linkcode ServerProcess.start}. */
export interface StartOptions {
  /** Which of the server's files: `echo` (the default) or `fanout`. */
  kind?: ServerKind;
  /** Write a V8 CPU profile of the server into this directory (Deno only). */
  profileDir?: string;
  /** The profile's file name. */
  profileName?: string;
  /** More flags for the server file (after `--port 0`). */
  args?: string[];
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

/** One running benchmark server. */
export class ServerProcess implements AsyncDisposable {
  /** The server's name. */
  readonly name: ServerName;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Its process id (the runtime's process itself). */
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
   * Starts `bench/servers/<file> --port 0` on its runtime and waits for the
   * port it prints.
   *
   * @param name Which server.
   * @param options Which kind, and profiling options.
   * @returns The running server.
   * @throws {UnsupportedServerError} When the server says it cannot run.
   * @throws {RangeError} When the server has no file of that kind.
   */
  static async start(
    name: ServerName,
    options: StartOptions = {},
  ): Promise<ServerProcess> {
    const spec: ServerSpec = SERVERS[name];
    const kind = options.kind ?? "echo";
    const fileName = spec.files[kind];
    if (fileName === undefined) {
      throw new RangeError(`The ${name} server has no ${kind} variant`);
    }
    const file = spec.root
      ? `${spec.root}/bench/servers/${fileName}`
      : new URL(`./servers/${fileName}`, import.meta.url).pathname;
    let command = Deno.execPath();
    let args = ["run", "-A", "--v8-flags=--expose-gc"];
    let env: Record<string, string> = {};
    if (spec.runtime === "deno") {
      if (options.profileDir) {
        args.push("--cpu-prof", `--cpu-prof-dir=${options.profileDir}`);
        if (options.profileName) {
          args.push(`--cpu-prof-name=${options.profileName}`);
        }
      }
    } else {
      ({ command, args, env } = await prepareRuntime(spec.runtime));
    }
    const child = new Deno.Command(command, {
      args: [...args, file, "--port", "0", ...(options.args ?? [])],
      env,
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
    const line = text.slice(0, text.indexOf("\n")).trim();
    const port = Number(line);
    if (!/^\d+$/.test(line) || port === 0) {
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      _kill(child);
      await child.status;
      throw line.startsWith("unsupported:")
        ? new UnsupportedServerError(line.slice(12).trim())
        : new Error(`The ${name} server printed ${JSON.stringify(line)}`);
    }
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

  /**
   * Starts the peak of resident memory (VmHWM) again from what is resident
   * now (Linux's `/proc/PID/clear_refs`); false when that is refused.
   */
  resetPeakRss(): boolean {
    try {
      Deno.writeTextFileSync(`/proc/${this.pid}/clear_refs`, "5");
      return true;
    } catch {
      return false;
    }
  }

  /** The most resident memory since the start or `resetPeakRss()`, bytes. */
  peakRssBytes(): number {
    const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
    if (!match) throw new Error(`No VmHWM for process ${this.pid}`);
    return Number(match[1]) * 1024;
  }

  /**
   * Asks the server for a full garbage collection (it runs soon after); with
   * `settle`, for the one that also gives back spare memory as an idle
   * process does (`SETTLE` in servers/_node_common.mjs).
   */
  collectGarbage(settle = false): void {
    Deno.kill(this.pid, settle ? "SIGWINCH" : "SIGUSR2");
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
