// What a busy socket costs in memory beside an idle one: the ticker example
// (`startTickerServer()` of examples/ticker.ts: every symbol published every
// 100 ms) in a server subprocess, N clients in this process, each
// subscribed to every symbol, and the server's memory read before they
// connect, with them connected and idle, and while they receive.
//
//   deno run -A bench/busy_memory.ts [--sockets 1000] [--seconds 30]
//
// The server's RSS is read from /proc (Linux only) once a second; at the
// end of each phase the server also reports its V8 heap after a full
// collection (`--expose-gc`), which tells live memory from garbage not yet
// collected. The run says how many quotes the server queued (publish()'s
// return values) and how many the clients received, so that clients that
// fell behind (and made the server hold messages for them) show.

import { parseArgs } from "node:util";
import { freePort } from "../tests/_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sockets: { type: "string", default: "1000" },
    seconds: { type: "string", default: "30" },
    serve: { type: "string" },
  },
});

/** What the server reports of itself, on a `measure` line on its stdin. */
interface ServerReport {
  /** After a full collection, in bytes. */
  heapUsed: number;
  external: number;
  /** Subscriber deliveries queued so far (the sum of publish()'s returns). */
  queued: number;
}

if (values.serve !== undefined) await serve(Number(values.serve));
else await measure(Number(values.sockets), Number(values.seconds));

/** A byte stream's lines. */
function lines(bytes: ReadableStream<Uint8Array>): ReadableStream<string> {
  let rest = "";
  return bytes.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TransformStream<string, string>({
      transform(text, controller) {
        const parts = (rest + text).split("\n");
        rest = parts.pop()!;
        for (const part of parts) controller.enqueue(part);
      },
    }),
  );
}

/** The server side: the ticker, counting what it queues, and its heap. */
async function serve(port: number): Promise<void> {
  const { startTickerServer } = await import("../examples/ticker.ts");
  const server = startTickerServer({ port, onListen() {} });
  let queued = 0;
  const publish = server.publish.bind(server);
  server.publish = (topic, message) => {
    const reached = publish(topic, message);
    queued += reached;
    return reached;
  };
  for await (const line of lines(Deno.stdin.readable)) {
    if (line !== "measure") continue;
    (globalThis as { gc?: () => void }).gc?.();
    const { heapUsed, external } = Deno.memoryUsage();
    console.log(JSON.stringify({ heapUsed, external, queued }));
  }
  await server.shutdown();
}

/** The client side: N sockets, and the server's memory phase by phase. */
async function measure(sockets: number, seconds: number): Promise<void> {
  const port = freePort();
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL(import.meta.url).pathname,
      "--serve",
      String(port),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = server.stdin.getWriter();
  const reports = lines(server.stdout).getReader();
  const ask = async (): Promise<ServerReport> => {
    await writer.write(new TextEncoder().encode("measure\n"));
    return JSON.parse((await reports.read()).value!);
  };
  const rss = async () => {
    const status = await Deno.readTextFile(`/proc/${server.pid}/status`);
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[xs.length >> 1];
  const kib = (bytes: number) => (bytes / 1024).toFixed(1);
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

  let quotes = 0;
  let symbols: string[] = [];
  const clients: WebSocket[] = [];
  try {
    for (let i = 0;; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch (error) {
        if (i > 100) throw error;
        await sleep(100);
      }
    }
    await sleep(2000);
    const base = { rss: await rss(), ...await ask() };
    const baseRss = await rss(); // after the collection

    for (let i = 0; i < sockets; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      ws.onmessage = (event) => {
        const data = event.data as string;
        if (data.startsWith('{"type":"quote"')) quotes++;
        else if (data.startsWith('{"type":"symbols"') && !symbols.length) {
          symbols = JSON.parse(data).symbols.map((s: { symbol: string }) =>
            s.symbol
          );
        }
      };
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      clients.push(ws);
    }
    await sleep(5000);
    const idle = { rss: await rss(), ...await ask() };
    const idleRss = await rss(); // after the collection

    for (const ws of clients) {
      for (const symbol of symbols) {
        ws.send(JSON.stringify({ type: "subscribe", symbol }));
      }
    }
    await sleep(5000); // warm-up
    const samples: number[] = [];
    const start = { quotes, queued: (await ask()).queued };
    const started = performance.now();
    for (let i = 0; i < seconds; i++) {
      await sleep(1000);
      samples.push(await rss());
    }
    const elapsed = (performance.now() - started) / 1000;
    const busy = await ask();
    const busyRss = await rss(); // after the collection
    const received = quotes - start.quotes;
    const per = (bytes: number) => kib(bytes / sockets);
    const heap = (r: ServerReport) => r.heapUsed + r.external;
    console.log([
      `${sockets} sockets; ${symbols.length} symbols every 100 ms, ${
        Math.round((busy.queued - start.queued) / elapsed)
      } quotes/s queued, ${Math.round(received / elapsed)} received`,
      `server RSS:  none ${mib(base.rss)} MiB, idle ${mib(idle.rss)} MiB (${
        per(idle.rss - base.rss)
      } KiB per socket), busy median ${mib(median(samples))} MiB, max ${
        mib(Math.max(...samples))
      } MiB (${per(median(samples) - base.rss)} KiB per socket)`,
      `server RSS after a full collection: none ${mib(baseRss)} MiB, idle ${
        mib(idleRss)
      } MiB (${per(idleRss - baseRss)} KiB per socket), busy ${
        mib(busyRss)
      } MiB (${per(busyRss - baseRss)} KiB per socket)`,
      `server heap after a full collection: none ${mib(heap(base))} MiB, idle ${
        mib(heap(idle))
      } MiB (${per(heap(idle) - heap(base))} KiB per socket), busy ${
        mib(heap(busy))
      } MiB (${per(heap(busy) - heap(base))} KiB per socket)`,
    ].join("\n"));
  } finally {
    for (const ws of clients) ws.close();
    await sleep(500);
    await writer.close();
    await reports.cancel();
    await server.status;
  }
}
