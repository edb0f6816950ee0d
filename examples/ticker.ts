/**
 * A live price ticker that comes back on its own, built on live topics
 * (`LiveTopics` on the server, `LiveClient` in the page): a server task
 * makes up a quote for each symbol every 100 ms and publishes it on the
 * symbol's topic (`quote/EURUSD`, ...), which keeps its last 60 quotes. The
 * page lets a person pick symbols and shows a live table with a sparkline
 * per symbol and how many quotes per second arrive; only the picked
 * symbols' quotes cross the network.
 *
 * Run it with:
 *
 * ```sh
 * deno task ticker
 * # which is
 * deno run --allow-net --allow-env --allow-read examples/ticker.ts
 * # on another port or address (flags win over the environment)
 * deno run --allow-net --allow-env --allow-read examples/ticker.ts --port 9000 --hostname 0.0.0.0
 * PORT=9000 deno task ticker
 * ```
 *
 * It listens on `127.0.0.1:8082` by default and prints the address to open.
 * Ctrl+C shuts it down. The quotes are random walks, not market data. (It
 * reads one file: the live client module it serves to its pages,
 * `/live-client.js`.)
 *
 * When the connection drops, the page says so (the close code, and when it
 * tries again) and marks every price as stale; it reconnects on its own and
 * shows the current prices again at once: each symbol is subscribed with
 * `last: 60`, so every (re)subscription starts with the symbol's latest 60
 * quotes, the current price last, which also redraw the sparkline. (A
 * ticker wants the current price, not the quotes it missed: `last` rather
 * than recovery.)
 *
 * The protocol is the live protocol on `/live`: a page subscribes to
 * `quote/<symbol>` topics (others are refused) and gets each quote as
 * `{"symbol":"EURUSD","price":1.08512,"open":1.085,"time":…}`. Pages cannot
 * publish.
 *
 * @module
 */

import { LiveTopics, serve, type WebSocketServer } from "../mod.ts";
import {
  CONNECTION_STYLE,
  DEFAULT_HOSTNAME,
  printAddress,
  runMain,
  sameOriginOnly,
  servePage,
} from "./_app.ts";

/** Options for {@linkcode startTickerServer}. */
export interface TickerServerOptions {
  /** The port to listen on. Default `8082`; `0` picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Called once listening; default: prints the address to open. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down (and stops the quotes). */
  signal?: AbortSignal;
}

/** What the server publishes to `quote/<symbol>`, every 100 ms. */
export interface Quote {
  symbol: string;
  price: number;
  /** Where the price started, for the change. */
  open: number;
  /** When it was made, in ms since the epoch. */
  time: number;
}

/** The symbols on offer, with where their prices start and how they move. */
export const SYMBOLS: readonly {
  symbol: string;
  price: number;
  decimals: number;
  volatility: number;
}[] = [
  { symbol: "EURUSD", price: 1.085, decimals: 5, volatility: 0.0002 },
  { symbol: "GBPUSD", price: 1.27, decimals: 5, volatility: 0.0002 },
  { symbol: "USDJPY", price: 151.2, decimals: 3, volatility: 0.0002 },
  { symbol: "BTCUSD", price: 67_000, decimals: 2, volatility: 0.001 },
  { symbol: "ETHUSD", price: 3_500, decimals: 2, volatility: 0.0012 },
  { symbol: "AAPL", price: 190, decimals: 2, volatility: 0.0005 },
];

/** The topics' prefix: `quote/EURUSD`. */
export const TOPIC_PREFIX = "quote/";
const DEFAULT_PORT = 8082;
/** How often each symbol gets a quote, in ms. */
const TICK_INTERVAL = 100;
/** Quotes kept per symbol: a (re)subscribing page's sparkline. */
const POINTS = 60;

/** One symbol's moving price. */
interface Walk {
  symbol: string;
  volatility: number;
  decimals: number;
  open: number;
  price: number;
}

/**
 * Starts the ticker server and its quote task and returns the server;
 * `shutdown()` (or `await using`, or the signal) stops both.
 *
 * @example Starting it on a free port and following one symbol
 * ```ts ignore
 * import { startTickerServer } from "./examples/ticker.ts";
 * import { LiveClient } from "./src/live/client.js";
 *
 * await using server = startTickerServer({ port: 0, onListen() {} });
 * const live = new LiveClient(`ws://127.0.0.1:${server.addr.port}/live`);
 * live.addEventListener("publication", ({ detail }) => console.log(detail.data));
 * live.subscribe("quote/EURUSD", { last: 60 });
 * ```
 */
export function startTickerServer(
  options: TickerServerOptions = {},
): WebSocketServer {
  const walks = SYMBOLS.map(({ symbol, price, decimals, volatility }) => ({
    symbol,
    volatility,
    decimals,
    open: price,
    price,
  }));
  const topics = new Set(walks.map(({ symbol }) => TOPIC_PREFIX + symbol));
  const live = new LiveTopics({
    canSubscribe: (_socket, topic) => topics.has(topic),
    maxTopicsPerSocket: topics.size,
  });
  const server = serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    signal: options.signal,
    onListen: options.onListen ?? printAddress("Ticker"),
    fetch: servePage(TICKER_PAGE, {
      "/live-client.js": LiveTopics.clientScript,
    }),
    onUpgrade: sameOriginOnly,
    // The last quotes of each symbol: a page gets them on (re)subscribing.
    history: (topic) =>
      topics.has(topic) ? { size: POINTS, ttl: 60_000 } : undefined,
    maxMessageSize: 1024,
    // A quote is stale a moment later: a page that falls 256 KiB behind
    // misses quotes (counted in `droppedMessages`) rather than being closed.
    backpressure: "drop",
    maxBackpressure: 256 * 1024,
  }, (socket) => {
    if (new URL(socket.request.url).pathname !== "/live") {
      socket.close({ closeCode: 4404, reason: "Connect to /live" });
      return;
    }
    return live.handle(socket);
  });
  // The quote task: every symbol moves and is published, whether anyone
  // follows it or not (its history keeps the last quotes for who comes).
  const timer = setInterval(() => {
    for (const walk of walks) {
      move(walk);
      const quote: Quote = {
        symbol: walk.symbol,
        price: walk.price,
        open: walk.open,
        time: Date.now(),
      };
      server.publish(TOPIC_PREFIX + walk.symbol, JSON.stringify(quote));
    }
  }, TICK_INTERVAL);
  const stop = () => clearInterval(timer);
  server.finished.then(stop, stop);
  return server;
}

/** One step of a random walk, pulled gently back towards the open. */
function move(walk: Walk): void {
  const step = walk.volatility * gaussian();
  const pull = (walk.open - walk.price) * 0.002;
  const scale = 10 ** walk.decimals;
  walk.price = Math.round((walk.price * (1 + step) + pull) * scale) / scale;
}

/** A standard normal number (Box–Muller). */
function gaussian(): number {
  const u = 1 - Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

/**
 * The page served at `/`. Its module connects back to the origin it came
 * from with the live client served at `/live-client.js`; the table, the
 * sparklines (inline SVG) and the rate are drawn with DOM calls, no
 * external assets.
 */
const TICKER_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Price ticker</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 52rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { margin: 0 0 0.25rem; }
  .muted { color: #777; }
  #connection { margin: 0 0 0.75rem; padding: 0.35rem 0.6rem; border-radius: 0.25rem; background: #eee; }
${CONNECTION_STYLE}
  #picker { display: flex; gap: 1rem; flex-wrap: wrap; border: 1px solid #ddd; border-radius: 0.25rem; }
  #picker label { white-space: nowrap; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 0.3rem 0.6rem; border-bottom: 1px solid #eee; }
  th:first-child, td:first-child { text-align: left; }
  .up { color: #080; }
  .down { color: #b00; }
  tr.stale td { color: #999; }
  tr.stale polyline { stroke: #bbb; }
  .badge { display: none; margin-left: 0.4rem; padding: 0 0.3rem; border-radius: 0.2rem; background: #fff3e0; color: #8a4b00; font-size: 0.75em; font-weight: 600; text-transform: uppercase; }
  tr.stale .badge { display: inline-block; }
  svg { display: block; margin-left: auto; }
  polyline { fill: none; stroke: #36c; stroke-width: 1.5; }
</style>
</head>
<body data-connection="connecting">
<h1>Price ticker</h1>
<p id="connection" role="status"><output id="status">Connecting…</output><span id="rate-line" hidden> · <output id="rate">0</output> quotes/s</span></p>
<fieldset id="picker"><legend>Symbols</legend></fieldset>
<table id="quotes">
  <thead><tr><th>Symbol</th><th>Price</th><th>Change</th><th>Updates</th><th>As of</th><th>Last 60</th></tr></thead>
  <tbody></tbody>
</table>
<p id="empty" class="muted">Pick a symbol to see its quotes.</p>
<script type="module">
  import { LiveClient } from "/live-client.js";

  const SYMBOLS = ${
  JSON.stringify(SYMBOLS.map(({ symbol, decimals }) => ({ symbol, decimals })))
};
  const PREFIX = ${JSON.stringify(TOPIC_PREFIX)};
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 120;
  const HEIGHT = 28;
  const POINTS = ${POINTS};
  const byId = (id) => document.getElementById(id);
  const tbody = document.querySelector("#quotes tbody");
  const clock = (time) => new Date(time).toLocaleTimeString();
  const plural = (n, one, many) => n + " " + (n === 1 ? one : many);
  /** symbol -> what its row shows */
  const rows = new Map();
  /** When each quote arrived, for the last second's rate. */
  const arrivals = [];
  /** While offline: since when, why, and when the next attempt is. */
  let offline = null;

  const url = new URL("/live", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const live = new LiveClient(url, { maxDelay: 10000 });

  function cell(className) {
    const td = document.createElement("td");
    td.className = className;
    return td;
  }

  function addRow(symbol) {
    const { decimals } = SYMBOLS.find((s) => s.symbol === symbol);
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    const name = cell("symbol");
    name.textContent = symbol;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(WIDTH));
    svg.setAttribute("height", String(HEIGHT));
    svg.setAttribute("viewBox", "0 0 " + WIDTH + " " + HEIGHT);
    svg.setAttribute("aria-label", symbol + " over the last " + POINTS + " quotes");
    const line = document.createElementNS(SVG, "polyline");
    svg.append(line);
    const spark = cell("spark");
    spark.append(svg);
    const row = {
      tr, decimals, open: 0, prices: [], updates: 0, line, top: 0,
      price: cell("price"), change: cell("change"), count: cell("updates"), time: cell("time"),
    };
    tr.append(name, row.price, row.change, row.count, row.time, spark);
    // Keep the table in the picker's order.
    const order = SYMBOLS.map((s) => s.symbol);
    const after = [...tbody.children].find((other) => order.indexOf(other.dataset.symbol) > order.indexOf(symbol));
    tbody.insertBefore(tr, after ?? null);
    rows.set(symbol, row);
    byId("empty").hidden = true;
    return row;
  }

  function removeRow(symbol) {
    rows.get(symbol)?.tr.remove();
    rows.delete(symbol);
    byId("empty").hidden = rows.size > 0;
  }

  function show(row) {
    if (row.prices.length === 0) return;
    const price = row.prices[row.prices.length - 1];
    const change = price - row.open;
    row.price.textContent = price.toFixed(row.decimals);
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "stale";
    row.price.append(badge);
    row.change.textContent = (change >= 0 ? "+" : "") + change.toFixed(row.decimals);
    row.change.className = "change " + (change >= 0 ? "up" : "down");
    row.count.textContent = String(row.updates);
    const min = Math.min(...row.prices);
    const span = Math.max(...row.prices) - min || 1;
    const step = WIDTH / (POINTS - 1);
    const offset = WIDTH - (row.prices.length - 1) * step;
    row.line.setAttribute("points", row.prices.map((p, i) =>
      (offset + i * step).toFixed(1) + "," + (HEIGHT - 2 - ((p - min) / span) * (HEIGHT - 4)).toFixed(1)
    ).join(" "));
  }

  for (const { symbol } of SYMBOLS) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = symbol;
    input.onchange = () => {
      if (input.checked) {
        // The latest quotes first, on this and every resubscription.
        live.subscribe(PREFIX + symbol, { last: POINTS });
      } else {
        removeRow(symbol);
        live.unsubscribe(PREFIX + symbol);
      }
    };
    label.append(input, " " + symbol);
    byId("picker").append(label);
  }

  function setConnection(state) {
    document.body.dataset.connection = state;
    byId("rate-line").hidden = state !== "online";
    showStatus();
  }

  function showStatus() {
    const status = byId("status");
    if (document.body.dataset.connection === "online") {
      status.value = "Online";
    } else if (offline) {
      const wait = Math.ceil((offline.retryAt - Date.now()) / 1000);
      status.value = "Offline since " + clock(offline.since) + ": connection lost (" + offline.close + "). Prices are stale. " +
        (wait > 0 ? "Retrying in " + plural(wait, "second", "seconds") : "Reconnecting") +
        (offline.attempt > 1 ? " (attempt " + offline.attempt + ")." : ".");
    }
  }

  live.addEventListener("connected", () => {
    offline = null;
    setConnection("online");
  });

  live.addEventListener("disconnected", ({ detail }) => {
    for (const row of rows.values()) row.tr.classList.add("stale");
    const close = detail.code + (detail.reason ? " " + detail.reason : "");
    if (!detail.willRetry) {
      offline = null;
      setConnection("closed");
      byId("status").value = "Disconnected (" + close + "). Prices are stale: reload the page to connect again.";
      return;
    }
    // What cut the connection; the attempts that fail after it say less
    // (1006).
    offline ??= { since: Date.now(), attempt: 0, close };
    offline.attempt++;
    offline.retryAt = Date.now() + detail.delay;
    setConnection("offline");
  });

  live.addEventListener("subscribed", ({ detail }) => {
    const symbol = detail.topic.slice(PREFIX.length);
    // Unpicked meanwhile: the client has dropped it.
    if (!byId("picker").querySelector("input[value='" + symbol + "']").checked) return;
    const row = rows.get(symbol) ?? addRow(symbol);
    // The latest quotes follow, up to this position: they are the series.
    row.prices = [];
    row.top = detail.position?.offset ?? 0;
    row.tr.classList.remove("stale");
  });

  live.addEventListener("publication", ({ detail }) => {
    const row = rows.get(detail.topic.slice(PREFIX.length));
    if (row === undefined) return;
    const quote = JSON.parse(detail.data);
    row.open = quote.open;
    row.prices.push(quote.price);
    if (row.prices.length > POINTS) row.prices.shift();
    row.tr.dataset.offset = String(detail.offset);
    row.time.textContent = clock(quote.time);
    // The latest quotes of a (re)subscription are not updates.
    if (detail.offset > row.top) {
      row.updates++;
      arrivals.push(performance.now());
    }
    show(row);
  });

  live.addEventListener("error", ({ detail }) => console.warn("Ticker server:", detail.message));

  setInterval(() => {
    const now = performance.now();
    while (arrivals.length > 0 && arrivals[0] <= now - 1000) arrivals.shift();
    byId("rate").value = String(arrivals.length);
    if (offline) showStatus();
  }, 250);
</script>
</body>
</html>
`;

if (import.meta.main) {
  await runMain("ticker.ts", DEFAULT_PORT, startTickerServer);
}
