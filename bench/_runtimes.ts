/**
 * The runtimes other than Deno that the benchmark's servers run on: Bun (the
 * npm package `bun`, which ships the binary) and Node.js with `npm:ws`. Both
 * are installed with npm into a cache directory outside the repository,
 * `$XDG_CACHE_HOME/scope-ws-bench` or `<temp dir>/scope-ws-bench-cache`, once.
 *
 * @module
 */
import { tmpdir } from "node:os";

/** The Bun release measured (pinned, so that runs compare). */
export const BUN_VERSION = "1.4.5";

/** A runtime a server may need besides Deno. */
export type Runtime = "bun" | "node";

/** How to start a program on one runtime. */
export interface RuntimeCommand {
  /** The executable. */
  command: string;
  /** Arguments before the server's file. */
  args: string[];
  /** Extra environment. */
  env: Record<string, string>;
  /** What it is, for the report (e.g. `Bun 1.4.5`). */
  version: string;
}

/** A runtime that cannot be used here, with why. */
export class RuntimeUnavailableError extends Error {
  override name = "RuntimeUnavailableError";
}

/** The directory the runtimes are installed into. */
export function cacheDir(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  return xdg ? `${xdg}/scope-ws-bench` : `${tmpdir()}/scope-ws-bench-cache`;
}

const prepared = new Map<Runtime, Promise<RuntimeCommand>>();

/**
 * Finds or installs a runtime, once per process.
 *
 * @param runtime Which one.
 * @param wsVersion The `npm:ws` version to install for Node.js (the one
 *   Deno's lock file has, so that ws on Deno and on Node.js is one code).
 * @returns How to run programs on it.
 * @throws {RuntimeUnavailableError} When it cannot be installed or run.
 */
export function prepareRuntime(
  runtime: Runtime,
  wsVersion = "8",
): Promise<RuntimeCommand> {
  let promise = prepared.get(runtime);
  if (!promise) {
    promise = runtime === "bun" ? _prepareBun() : _prepareNode(wsVersion);
    prepared.set(runtime, promise);
  }
  return promise;
}

async function _prepareBun(): Promise<RuntimeCommand> {
  const prefix = `${cacheDir()}/bun-${BUN_VERSION}`;
  // The package's postinstall puts the platform binary at bin/bun.exe; where
  // install scripts do not run, the platform package still has it.
  const candidates = [
    `${prefix}/node_modules/bun/bin/bun.exe`,
    `${prefix}/node_modules/@oven/bun-linux-x64/bin/bun`,
  ];
  let found = await _firstRunning(candidates, BUN_VERSION);
  if (!found) {
    await _npmInstall(prefix, `bun@${BUN_VERSION}`);
    found = await _firstRunning(candidates, BUN_VERSION);
  }
  if (!found) {
    throw new RuntimeUnavailableError(
      `npm's bun@${BUN_VERSION} installed into ${prefix} but does not run`,
    );
  }
  return { command: found, args: [], env: {}, version: `Bun ${BUN_VERSION}` };
}

async function _prepareNode(wsVersion: string): Promise<RuntimeCommand> {
  const node = await _output("node", ["--version"]);
  if (node === undefined) {
    throw new RuntimeUnavailableError("node is not on PATH");
  }
  const prefix = `${cacheDir()}/ws-${wsVersion}`;
  const modules = `${prefix}/node_modules`;
  const installed = async () =>
    JSON.parse(
      await Deno.readTextFile(`${modules}/ws/package.json`).catch(() => "{}"),
    ).version as string | undefined;
  let version = await installed();
  if (version === undefined) {
    await _npmInstall(prefix, `ws@${wsVersion}`);
    version = await installed();
  }
  if (version === undefined) {
    throw new RuntimeUnavailableError(`ws did not install into ${prefix}`);
  }
  return {
    command: "node",
    args: ["--expose-gc"],
    env: { NODE_PATH: modules },
    version: `Node.js ${node}, npm:ws ${version}`,
  };
}

async function _firstRunning(
  paths: string[],
  version: string,
): Promise<string | undefined> {
  for (const path of paths) {
    if ((await _output(path, ["--version"])) === version) return path;
  }
  return undefined;
}

async function _npmInstall(prefix: string, spec: string): Promise<void> {
  console.log(`Installing ${spec} into ${prefix} (npm)`);
  await Deno.mkdir(prefix, { recursive: true });
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("npm", {
      args: [
        "install",
        "--prefix",
        prefix,
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        spec,
      ],
      stdin: "null",
    }).output();
  } catch (error) {
    throw new RuntimeUnavailableError(`npm could not run: ${error}`);
  }
  if (!output.success) {
    const text = new TextDecoder().decode(output.stderr).trim();
    throw new RuntimeUnavailableError(
      `npm install ${spec} failed: ${text.split("\n").slice(-3).join(" ")}`,
    );
  }
}

/** A command's trimmed stdout, or undefined when it fails or is missing. */
async function _output(
  command: string,
  args: string[],
): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(command, {
      args,
      stdin: "null",
      stderr: "null",
    }).output();
    return output.success
      ? new TextDecoder().decode(output.stdout).trim()
      : undefined;
  } catch {
    return undefined;
  }
}
