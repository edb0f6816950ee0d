/**
 * Micro benchmarks of the frame codec, the handshake and the topic hub's
 * publish with and without history: `deno bench bench/micro_bench.ts`
 * (or `deno task bench:micro`). `deno task bench` runs them too and reports
 * bytes per second.
 *
 * @module
 */
import { MICRO_CASES } from "./_micro_cases.ts";

for (const { name, group, fn } of MICRO_CASES) {
  Deno.bench({ name, group, fn });
}
