/**
 * Summarizes V8 CPU profiles (`deno run --cpu-prof`, or `deno task bench
 * --profile DIR`): the functions with the most self time, their total
 * (inclusive) time, and the time per script.
 *
 * ```sh
 * deno run -A bench/profile_summary.ts [--top 15] FILE.cpuprofile...
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

interface _CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface _Node {
  id: number;
  callFrame: _CallFrame;
  children?: number[];
}

/** The parts of a `.cpuprofile` file this summary reads. */
export interface CpuProfile {
  nodes: _Node[];
  samples: number[];
  timeDeltas: number[];
}

/** Time attributed to one function or script, in microseconds. */
export interface ProfileEntry {
  name: string;
  self: number;
  total: number;
}

/** What {@linkcode summarize} finds. */
export interface ProfileSummary {
  /** Sampled time, in microseconds, without `(idle)`. */
  busy: number;
  /** Sampled `(idle)` time, in microseconds. */
  idle: number;
  functions: ProfileEntry[];
  scripts: ProfileEntry[];
}

function _shortUrl(url: string): string {
  if (url === "") return "";
  const src = url.lastIndexOf("/src/");
  if (src !== -1) return url.slice(src + 1);
  const bench = url.lastIndexOf("/bench/");
  if (bench !== -1) return url.slice(bench + 1);
  const npm = url.indexOf("/node_modules/");
  if (npm !== -1) return url.slice(npm + 14);
  return url.replace(/^file:\/\/\/.*\/registry\.npmjs\.org\//, "npm:");
}

function _functionKey(frame: _CallFrame): string {
  const name = frame.functionName || "(anonymous)";
  const url = _shortUrl(frame.url);
  return url ? `${name} ${url}:${frame.lineNumber + 1}` : name;
}

function _scriptKey(frame: _CallFrame): string {
  return _shortUrl(frame.url) || frame.functionName || "(unknown)";
}

/**
 * Adds up self and total time per function and per script over profiles.
 *
 * @param profiles The parsed `.cpuprofile` files.
 * @returns The time per function and per script, largest self time first.
 */
export function summarize(profiles: CpuProfile[]): ProfileSummary {
  const functions = new Map<string, ProfileEntry>();
  const scripts = new Map<string, ProfileEntry>();
  let busy = 0;
  let idle = 0;
  const entry = (map: Map<string, ProfileEntry>, name: string) => {
    let found = map.get(name);
    if (!found) map.set(name, found = { name, self: 0, total: 0 });
    return found;
  };
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((node) => [node.id, node]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) {
      for (const child of node.children ?? []) parent.set(child, node.id);
    }
    const selfTime = new Map<number, number>();
    const { samples, timeDeltas } = profile;
    for (let i = 0; i < samples.length; i++) {
      // A sample lasts until the next one.
      const delta = timeDeltas[i + 1] ?? timeDeltas[i] ?? 0;
      selfTime.set(samples[i], (selfTime.get(samples[i]) ?? 0) + delta);
    }
    for (const [id, time] of selfTime) {
      const node = byId.get(id)!;
      const name = node.callFrame.functionName;
      if (name === "(idle)") {
        idle += time;
        continue;
      }
      busy += time;
      entry(functions, _functionKey(node.callFrame)).self += time;
      entry(scripts, _scriptKey(node.callFrame)).self += time;
      // Total time: once per function and script on the stack (recursion).
      const seenFunctions = new Set<string>();
      const seenScripts = new Set<string>();
      for (
        let at: number | undefined = id;
        at !== undefined;
        at = parent.get(at)
      ) {
        const frame = byId.get(at)!.callFrame;
        if (frame.functionName === "(root)") break;
        const functionKey = _functionKey(frame);
        if (!seenFunctions.has(functionKey)) {
          seenFunctions.add(functionKey);
          entry(functions, functionKey).total += time;
        }
        const scriptKey = _scriptKey(frame);
        if (!seenScripts.has(scriptKey)) {
          seenScripts.add(scriptKey);
          entry(scripts, scriptKey).total += time;
        }
      }
    }
  }
  const bySelf = (a: ProfileEntry, b: ProfileEntry) => b.self - a.self;
  return {
    busy,
    idle,
    functions: [...functions.values()].sort(bySelf),
    scripts: [...scripts.values()].sort(bySelf),
  };
}

/**
 * The summary as markdown tables, with times in % of busy (non-idle) time.
 *
 * @param summary What {@linkcode summarize} found.
 * @param top How many functions and scripts to list.
 * @returns The tables.
 */
export function formatSummary(summary: ProfileSummary, top: number): string {
  const percent = (time: number) =>
    `${(summary.busy > 0 ? (time / summary.busy) * 100 : 0).toFixed(1)}%`;
  const table = (title: string, entries: ProfileEntry[]) =>
    [
      `| ${title} | Self | Total |`,
      "| --- | --- | --- |",
      ...entries.slice(0, top).map((entry) =>
        `| \`${entry.name}\` | ${percent(entry.self)} | ${
          percent(entry.total)
        } |`
      ),
    ].join("\n");
  const all = summary.busy + summary.idle;
  return [
    `Busy ${(summary.busy / 1000).toFixed(0)} ms of ${
      (all / 1000).toFixed(0)
    } ms sampled (${
      (all > 0 ? (summary.busy / all) * 100 : 0).toFixed(0)
    }%); percentages are of busy time.`,
    "",
    table("Function", summary.functions),
    "",
    table("Script", summary.scripts),
  ].join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { top: { type: "string", default: "15" } },
    allowPositionals: true,
  });
  if (positionals.length === 0) {
    console.error(
      "deno run -A bench/profile_summary.ts [--top N] FILE.cpuprofile...",
    );
    Deno.exit(2);
  }
  const profiles = await Promise.all(
    positionals.map(async (file) =>
      JSON.parse(await Deno.readTextFile(file)) as CpuProfile
    ),
  );
  console.log(formatSummary(summarize(profiles), Number(values.top)));
}
