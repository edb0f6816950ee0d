/**
 * What the benchmark's Bun and Node.js servers share (the Deno ones use
 * _common.ts): the `--port` flag and the signals that end them and collect
 * their garbage.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";

/**
 * The `--port` flag; `0` picks a free port.
 *
 * @returns {number}
 */
export function portFlag() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { port: { type: "string", default: "0" } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid port: ${values.port}`);
  }
  return port;
}

/**
 * What V8's `gc()` is asked for on SIGWINCH: the collection V8 itself runs
 * when a process has gone idle (its memory reducer), which also gives back
 * the young generation that a burst of allocation grew.
 */
export const SETTLE = Object.freeze({
  type: "major",
  execution: "sync",
  flavor: "last-resort",
});

/**
 * Exits at once on SIGTERM or SIGINT (open connections are dropped); runs
 * `gc` on SIGUSR2, so that memory is measured without garbage, and on
 * SIGWINCH with {@link SETTLE} (a runtime whose `gc` takes no options, as
 * Bun's, collects as on SIGUSR2).
 *
 * @param {((options?: object) => void) | undefined} gc A full garbage
 * collection, if any.
 */
export function handleSignals(gc) {
  const exit = () => process.exit(0);
  process.on("SIGTERM", exit);
  process.on("SIGINT", exit);
  if (gc) {
    process.on("SIGUSR2", () => gc());
    process.on("SIGWINCH", () => gc(SETTLE));
  }
}
