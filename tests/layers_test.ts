// The folders of src/ are the layers of the code: a module imports only from
// its own folder or from a folder below it in LAYERS, and no import cycle
// exists. Read from `deno info --json` of the package's entry points (and of
// every module of src/ they do not reach yet), so that type-only and
// dynamic imports count too.

import assert from "node:assert/strict";
import { runCommand } from "./_util.ts";

/**
 * The layers, from the top (may import any below it) to the bottom (imports
 * nothing of src/). The one place the order is written down; the table of
 * the code's layers in docs/design.md follows it.
 */
const LAYERS = [
  "server", // serve(), its options and their resolver, plain HTTP on its port
  "client", // connect(), WebSocketStream, ReconnectingWebSocket
  "deno", // upgradeWebSocket() on Deno.serve
  "live", // the live topics protocol and its browser/Deno client
  "engine", // a connection's I/O: transport, write queue, deflate, options
  "socket", // the public socket, its inbox, the direct pipe
  "pubsub", // the topic hub, shared frames, the bus and its adapters
  "streams", // the ./frames TransformStream shells
  "protocol", // RFC 6455 and 7692 without I/O: frames to handshakes
  "http", // HTTP/1.1 heads, bodies and responses without I/O
] as const;

/** The package's entry points (deno.json's exports). */
const ENTRY_POINTS = ["mod.ts", "frames.ts", "redis.ts", "src/live/client.js"];

const ROOT = new URL("../", import.meta.url);

/** One import: `from` imports `to` (both paths from the package's root). */
interface Edge {
  from: string;
  to: string;
}

interface DenoInfo {
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier?: string };
      type?: { specifier?: string };
    }[];
    typesDependency?: { dependency?: { specifier?: string } };
  }[];
}

/** `deno info --json` of one module: the modules it reaches. */
async function info(path: string): Promise<DenoInfo> {
  const { code, stdout, stderr } = await runCommand(Deno.execPath(), {
    args: ["info", "--json", path],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "piped",
  });
  const decoder = new TextDecoder();
  assert.equal(code, 0, `deno info ${path} failed: ${decoder.decode(stderr)}`);
  return JSON.parse(decoder.decode(stdout));
}

/**
 * The package's own path of a file URL, or undefined for any other module
 * (npm packages too, which `nodeModulesDir` puts inside the checkout).
 */
function local(specifier: string | undefined): string | undefined {
  if (specifier === undefined || !specifier.startsWith(ROOT.href)) return;
  const path = specifier.slice(ROOT.href.length);
  return path.startsWith("node_modules/") ? undefined : path;
}

/** Every module of src/ (not its type declarations), as paths. */
async function sourceModules(dir = "src"): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(new URL(`${dir}/`, ROOT))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...await sourceModules(path));
    else if (/(?<!\.d)\.(ts|js)$/.test(entry.name)) found.push(path);
  }
  return found;
}

/** Every import between the package's modules, and the modules seen. */
async function importGraph(): Promise<{ edges: Edge[]; modules: string[] }> {
  const edges = new Map<string, Edge>();
  const modules = new Set<string>();
  const add = async (root: string) => {
    for (const module of (await info(root)).modules) {
      const from = local(module.specifier);
      if (from === undefined) continue;
      modules.add(from);
      const targets = [
        ...(module.dependencies ?? []).flatMap((dependency) => [
          dependency.code?.specifier,
          dependency.type?.specifier,
        ]),
        module.typesDependency?.dependency?.specifier,
      ];
      for (const target of targets) {
        const to = local(target);
        if (to !== undefined) edges.set(`${from} ${to}`, { from, to });
      }
    }
  };
  for (const entry of ENTRY_POINTS) await add(entry);
  // Modules no entry point imports yet are held to the order all the same.
  for (const path of await sourceModules()) {
    if (!modules.has(path)) await add(path);
  }
  return { edges: [...edges.values()], modules: [...modules] };
}

let graph: ReturnType<typeof importGraph> | undefined;

/** The import graph, read once for the tests of this file. */
function theGraph(): ReturnType<typeof importGraph> {
  return graph ??= importGraph();
}

/** The layer of a module of src/ (its folder), or undefined outside src/. */
function layerOf(path: string): string | undefined {
  const match = /^src\/(?:([^/]+)\/)?/.exec(path);
  if (!match) return undefined;
  return match[1] ?? "(src/ itself)";
}

/** What is wrong with one import, or undefined when it points down or across. */
function upwardImport({ from, to }: Edge): string | undefined {
  const fromLayer = layerOf(from);
  if (fromLayer === undefined) return; // The entry points are above all.
  const toLayer = layerOf(to);
  if (toLayer === undefined) {
    return `${from} imports ${to}, which is outside src/`;
  }
  const above = LAYERS.indexOf(fromLayer as typeof LAYERS[number]);
  const below = LAYERS.indexOf(toLayer as typeof LAYERS[number]);
  if (above === -1) return `${from} is in ${fromLayer}, not one of the layers`;
  if (below === -1) return `${to} is in ${toLayer}, not one of the layers`;
  if (below < above) {
    return `${from} imports ${to}: ${fromLayer} is below ${toLayer}, so it may not import it`;
  }
}

/**
 * The import cycles among `edges` (Tarjan's strongly connected components),
 * each as the modules on it.
 */
function cycles(edges: Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) {
    next.set(from, [...(next.get(from) ?? []), to]);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (module: string) => {
    index.set(module, index.size);
    low.set(module, index.get(module)!);
    stack.push(module);
    onStack.add(module);
    for (const target of next.get(module) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(module, Math.min(low.get(module)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(module, Math.min(low.get(module)!, index.get(target)!));
      }
    }
    if (low.get(module) !== index.get(module)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== module);
    const selfImport = next.get(module)?.includes(module);
    if (component.length > 1 || selfImport) found.push(component.reverse());
  };
  for (const module of next.keys()) if (!index.has(module)) visit(module);
  return found;
}

/** The imports that close a cycle: those between two of its modules. */
function cycleEdges(cycle: string[], edges: Edge[]): string {
  const members = new Set(cycle);
  return edges
    .filter(({ from, to }) => members.has(from) && members.has(to))
    .map(({ from, to }) => `${from} imports ${to}`)
    .join("; ");
}

Deno.test("every folder of src/ is a layer, and an import never points to a layer above", async () => {
  const { edges, modules } = await theGraph();
  // The graph is real: the entry points reach the bottom layers.
  assert.ok(
    modules.includes("src/protocol/frame.ts"),
    "the graph has frame.ts",
  );
  assert.ok(modules.includes("src/http/_http1.ts"), "the graph has _http1.ts");
  const folders = new Set(
    (await sourceModules()).map((path) => layerOf(path)!),
  );
  assert.deepEqual(
    [...folders].filter((folder) => !LAYERS.includes(folder as never)),
    [],
    "folders of src/ that are not layers",
  );
  assert.deepEqual(
    edges.map(upwardImport).filter((problem) => problem !== undefined),
    [],
    "imports that point up the layers",
  );
});

Deno.test("no import cycle among the modules of the package", async () => {
  const { edges } = await theGraph();
  assert.deepEqual(
    cycles(edges).map((cycle) => cycleEdges(cycle, edges)),
    [],
    "import cycles",
  );
});

Deno.test("the layer check names an upward import, and the cycle check a cycle", () => {
  assert.equal(
    upwardImport({ from: "src/pubsub/x.ts", to: "src/socket/socket.ts" }),
    "src/pubsub/x.ts imports src/socket/socket.ts: pubsub is below socket, so it may not import it",
  );
  assert.equal(
    upwardImport({ from: "src/socket/socket.ts", to: "src/pubsub/x.ts" }),
    undefined,
  );
  assert.equal(
    upwardImport({ from: "src/pubsub/a.ts", to: "src/pubsub/b.ts" }),
    undefined,
  );
  assert.equal(
    upwardImport({ from: "src/x.ts", to: "src/protocol/frame.ts" }),
    "src/x.ts is in (src/ itself), not one of the layers",
  );
  const loop = [
    { from: "src/http/a.ts", to: "src/http/b.ts" },
    { from: "src/http/b.ts", to: "src/http/a.ts" },
    { from: "src/http/b.ts", to: "src/http/c.ts" },
  ];
  assert.deepEqual(
    cycles(loop).map((cycle) => cycleEdges(cycle, loop)),
    ["src/http/a.ts imports src/http/b.ts; src/http/b.ts imports src/http/a.ts"],
  );
});
