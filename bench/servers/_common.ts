/**
 * What the benchmark's echo servers share: the `--port` flag, the signals that
 * end them and collect their garbage.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { SETTLE } from "./_node_common.mjs";

/** The `--port` flag; `0` picks a free port. Other flags are left alone. */
export function portFlag(): number {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "0" } },
    strict: false,
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid port: ${values.port}`);
  }
  return port;
}

/**
 * Exits at once on SIGTERM or SIGINT: a clean exit (rather than being killed)
 * lets `--cpu-prof` write its profile; open connections are simply dropped.
 * When started with `--v8-flags=--expose-gc`, runs a full garbage collection
 * on SIGUSR2, so that memory is measured without garbage, and on SIGWINCH
 * the one that {@linkcode SETTLE} names, so that it is measured as it
 * settles once the process is idle.
 */
export function handleSignals(): void {
  const exit = () => Deno.exit(0);
  Deno.addSignalListener("SIGTERM", exit);
  Deno.addSignalListener("SIGINT", exit);
  const gc = (globalThis as { gc?: (options?: object) => void }).gc;
  if (gc) {
    Deno.addSignalListener("SIGUSR2", () => gc());
    Deno.addSignalListener("SIGWINCH", () => gc(SETTLE));
  }
}
