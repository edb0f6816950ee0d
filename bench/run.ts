/**
 * `deno task bench`: runs the load generators against the servers, each in
 * its own subprocess (this module, `Deno.upgradeWebSocket`, `npm:ws` on Deno,
 * Bun and `npm:ws` on Node.js), alternating the servers run by run over
 * several rounds, then the micro benchmarks; prints a markdown table of the
 * medians and the ratios of this module to each peer, and writes
 * `bench/results.md`, `bench/results.json` (every sample) and
 * `bench/ratios.svg`. Scenarios (a)–(d) and (i) use the TypeScript generator
 * (load.ts, in this process); (e)–(h) the C one (loadgen.c, compiled here).
 * (h) is this module alone: (g)'s fan-out across two server processes that
 * share the topic through a `redis-server` started for it (RedisPubSub).
 * (i) is (d) on the fan-out servers' `/idle`: sockets only subscribed to a
 * topic, never read from or written to by the application. (j) is an
 * innocent client's ping round trip while another floods tiny frames
 * (_flood_ping.ts, in this process; not the floors, which answer no ping).
 * (k) is a reconnect storm on the fan-out servers (loadgen.c). (l) is (g) at
 * 1,000 subscribers on a topic that keeps history (this module, in memory
 * and in Redis) beside history off and Bun; (m) a reconnect storm of live
 * protocol clients that recover what they missed (this module only).
 *
 * Flags: `--rounds N` (5), `--duration MS` (3000, measured per run),
 * `--warmup MS` (1000), `--idle N` (5000), `--quick` (1 round of 1 s, 1000
 * idle connections, no files written),
 * `--servers ours,deno,ws,bun,node,floor,floorwebcrypto` (the last, the floor
 * with the echo's streams and WebCrypto's SHA-1, runs only in (e); so does
 * `floorstreams`, the floor with the streams, not run by default),
 * `--scenarios a,b,c,d,e,f,g,h,i,j,k,l,m`, `--subscribers 100,1000,10000` and
 * `--sizes 64,100,4096` ((g)'s), `--base DIR` (also run our servers from
 * another checkout, as `base`: before and after in one run), `--no-micro`,
 * `--no-pin` (do not run (b) on one CPU), `--profile DIR` (CPU profiles of
 * our server, one per run), `--out DIR` (where the report goes; by default
 * only a full run writes it, into `bench/`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  mediansTable,
  type Metric,
  quantile,
  ratioChart,
  type Results,
  resultsTable,
  runsTable,
  type Sample,
} from "./_report.ts";
import {
  cpuSeconds,
  hasKind,
  type ServerKind,
  type ServerName,
  ServerProcess,
  SERVERS,
  type ServerSpec,
  setBase,
  UnsupportedServerError,
} from "./_server_process.ts";
import { MICRO_CASES } from "./_micro_cases.ts";
import { IdleConnections, runLoad } from "./load.ts";
import {
  buildLoadgen,
  type LoadgenResult,
  removeLoadgen,
  runLoadgen,
} from "./_loadgen.ts";
import { RedisProcess } from "./_redis.ts";
import { runFloodPing } from "./_flood_ping.ts";
import { prepareRuntime, type Runtime } from "./_runtimes.ts";

const MiB = 1024 * 1024;
const HOST = "127.0.0.1";
/**
 * Idle connections opened (and kept) before the memory baseline. The first
 * connections of a fresh server also pay for one-time growth (the JavaScript
 * heap's young generation, code, runtime tables), which is not a cost per
 * connection; after 1,000 of them, the next 5,000 measure what each adds.
 */
const IDLE_WARM = 1000;
/** File descriptors a process needs beyond its connections (runtime, files). */
const FD_SPARE = 256;
/**
 * (e), a reconnect storm after a deploy: handshakes while many connections
 * stay open, a bounded number in progress (an unbounded burst would overflow
 * the listen backlog, and dropped SYNs are retried only after a second).
 */
const STORM = { open: 1000, handshakes: 5000, concurrency: 128 };
/** (f): many connections with a few messages each, to show unfairness. */
const MANY = { connections: 256, inFlight: 4, size: 16 };
/**
 * (g): one publisher, N subscribers; at most `window` messages published and
 * not yet delivered to every subscriber. `size` at every N; `infoSizes`, for
 * information, at N of 1,000 and more.
 */
const FANOUT = {
  subscribers: [100, 1000, 10000],
  window: 16,
  size: 64,
  infoSizes: [100, 4096],
};
/** (h): (g) across two processes, at these N. */
const CLUSTER_SUBSCRIBERS = [100, 1000];
/**
 * (k), a reconnect storm: `subscribers` subscribed clients drop at once and
 * connect again, all at once, then (a fresh server) `paced` at a time: all
 * at once overflows every server's listen backlog (511 for Deno, 512 for
 * Bun) unless it accepts faster than the clients connect, and a dropped SYN
 * is sent again only 1 s later.
 */
const RECONNECT = { subscribers: 1000, paced: 128 };
/**
 * (l): (g) at `subscribers` on a topic of ours that keeps history (the
 * fan-out server's `--history`: its last 1,000 publications for 10 min),
 * against the same topic without, in one run; each variant a fresh server
 * (and a fresh redis-server). "Redis, no history" is (h)'s adapter on one
 * server: what Redis costs apart from the history.
 */
const HISTORY_FANOUT = { subscribers: 1000 };
/** One way (l) and (m) run our topic; `key` goes into the metrics' keys. */
interface _HistoryVariant {
  key: string;
  label: string;
  history: boolean;
  redis: boolean;
}
const HISTORY_VARIANTS: _HistoryVariant[] = [
  { key: "Off", label: "history off", history: false, redis: false },
  { key: "Memory", label: "history in memory", history: true, redis: false },
  { key: "Redis", label: "Redis, no history", history: false, redis: true },
  {
    key: "RedisHistory",
    label: "history in Redis",
    history: true,
    redis: true,
  },
];
/**
 * (m), a recovery storm: `clients` live-protocol clients drop at once,
 * `missed` publications are made, and they reconnect and resubscribe from
 * their last positions, all at once, then (a fresh server) `paced` at a
 * time; history in memory, then in Redis.
 */
const RECOVERY = { clients: 1000, missed: 100, paced: 128 };
const RECOVERY_VARIANTS = HISTORY_VARIANTS.filter((variant) => variant.history);

const DEFAULT_SERVERS = "ours,deno,ws,bun,node,floor,floorwebcrypto";
const DEFAULT_SCENARIOS = "a,b,c,d,e,f,g,h,i,j,k,l,m";
/** The scenarios that measure memory per idle connection. */
const IDLE_SCENARIOS = ["d", "i"];
/**
 * The path (i) opens on the fan-out servers: a socket that is only
 * subscribed to the topic.
 */
const IDLE_SUBSCRIBER_PATH = "/idle";

interface _Flags {
  rounds: number;
  /** Whether redis-server is here, for (h) and the Redis variants of (l), (m). */
  redis: boolean;
  /** (g)'s numbers of subscribers. */
  subscribers: number[];
  /** (g)'s message sizes (the first at every N, the others at 1,000+). */
  sizes: number[];
  /** Another checkout of this module, run as `base` beside ours. */
  base?: string;
  duration: number;
  warmup: number;
  idle: number;
  servers: ServerName[];
  scenarios: string[];
  micro: boolean;
  pin: boolean;
  profile?: string;
  out?: string;
  quick: boolean;
  /** Every default server and scenario, not quick: the report goes to bench/. */
  full: boolean;
}

interface _LoadScenario {
  id: string;
  title: string;
  connections: number;
  inFlight: number;
  size: number;
  text: boolean;
  latency: boolean;
  /**
   * Run the generator and the server on one CPU: on a virtual machine a
   * wake-up across CPUs can cost ~100 µs, which would hide the servers' own
   * latency (every server then measures about the same).
   */
  pin: boolean;
}

const LOAD_SCENARIOS: _LoadScenario[] = [
  {
    id: "a",
    title: "64 connections × 16 in flight, 16 B text",
    connections: 64,
    inFlight: 16,
    size: 16,
    text: true,
    latency: false,
    pin: false,
  },
  {
    id: "b",
    title: "1 connection × 1 in flight, 16 B text",
    connections: 1,
    inFlight: 1,
    size: 16,
    text: true,
    latency: true,
    pin: true,
  },
  {
    id: "c",
    title: "4 connections × 2 in flight, 1 MiB binary",
    connections: 4,
    inFlight: 2,
    size: MiB,
    text: false,
    latency: false,
    pin: false,
  },
];

const TITLES: Record<string, string> = {
  ...Object.fromEntries(LOAD_SCENARIOS.map((s) => [s.id, s.title])),
  d: "idle connections: server memory per connection",
  e: `connection rate: ${_n(STORM.open)} connections open, then ${
    _n(STORM.handshakes)
  } handshakes, ${STORM.concurrency} in progress at most (C generator)`,
  f: `${MANY.connections} connections × ${MANY.inFlight} in flight, ${MANY.size} B text (C generator)`,
  g: `fan-out: 1 publisher, ${
    FANOUT.subscribers.map(_n).join(", ")
  } subscribers, ${FANOUT.size} B text (and ${
    FANOUT.infoSizes.map((size) => `${_n(size)} B`).join(" and ")
  } at 1,000 and more, for information), at most ${FANOUT.window} messages undelivered; max stall (the longest a subscriber waits between two deliveries) and the server's peak RSS growth from idle (C generator)`,
  h: `cross-process fan-out, @scope/ws only: (g) at ${
    CLUSTER_SUBSCRIBERS.map(_n).join(" and ")
  } subscribers over 2 server processes sharing the topic through Redis (RedisPubSub, a redis-server on this machine), the publisher on the first, the subscribers split over both (C generator)`,
  i: `idle subscribed sockets: server memory per connection (as (d), on the fan-out servers' ${IDLE_SUBSCRIBER_PATH}: subscribed to the topic, never read from or written to)`,
  j: "another client's ping round trip while one client floods tiny frames (1-byte text, 256 KiB per write) at the echo server",
  k: `reconnect storm: ${
    _n(RECONNECT.subscribers)
  } subscribers of the fan-out server drop at once and connect again, all at once, then (a fresh server) ${RECONNECT.paced} at a time; back = 101 and a message published after it (C generator)`,
  l: `fan-out with history: (g) at ${
    _n(HISTORY_FANOUT.subscribers)
  } subscribers, ${FANOUT.size} B, on our topic with ${
    HISTORY_VARIANTS.map((variant) => variant.label).join(", ")
  } (one server, a redis-server of its own); Bun's publish has no history (C generator)`,
  m: `recovery storm, @scope/ws only: ${
    _n(RECOVERY.clients)
  } live-protocol clients (LiveTopics) drop at once, ${RECOVERY.missed} publications are made, they reconnect all at once, then (a fresh server) ${RECOVERY.paced} at a time, and resubscribe from their last position; recovered = every missed publication, once, in order; history in memory and in Redis (C generator)`,
};

function _n(value: number): string {
  return value.toLocaleString("en-US");
}

/**
 * The memory metrics of (d) or (i), both with the 8 KiB target: RSS per
 * connection 1 s after opening them (V8's young generation, grown by the
 * burst, still held), and once settled (given back, as an idle process does).
 */
function _idleMetrics(
  scenario: string,
  what: string,
  chartLabel: string,
): Metric[] {
  const metric = {
    scenario,
    higherIsBetter: false,
    targetMax: 8,
    unit: "KiB",
    decimals: 1,
  };
  return [
    {
      ...metric,
      key: "kib",
      label: `KiB per idle ${what}, 1 s after`,
      chartLabel,
    },
    {
      ...metric,
      key: "kibSettled",
      label: `KiB per idle ${what}, settled`,
      chartLabel: `${chartLabel}, settled`,
    },
  ];
}

/**
 * The fan-out metrics of (g) or (h), per number of subscribers; in (g) at
 * 1,000 and 10,000 the targets of issue 23, against Bun and Deno.
 */
function _fanoutMetrics(n: number, scenario = "g"): Metric[] {
  const targeted = scenario === "g" && n >= 1000;
  return [
    {
      scenario,
      key: `dps${n}`,
      label: `N = ${_n(n)}: deliveries/s`,
      higherIsBetter: true,
      chartLabel: n === 1000 && scenario === "g"
        ? "(g) fan-out to 1,000"
        : undefined,
      ...(targeted ? { targetRatio: 0.5, targetPeer: "bun" as const } : {}),
      decimals: 0,
    },
    {
      scenario,
      key: `p50_${n}`,
      label: `N = ${_n(n)}: p50 publish → receive, ms`,
      higherIsBetter: false,
      decimals: 2,
    },
    {
      scenario,
      key: `p99_${n}`,
      label: `N = ${_n(n)}: p99 publish → receive, ms`,
      higherIsBetter: false,
      decimals: 2,
    },
    ...(scenario === "g"
      ? [
        {
          scenario,
          key: `stall${n}`,
          label: `N = ${_n(n)}: max stall, ms`,
          higherIsBetter: false,
          ...(n >= 10000 ? { targetRatio: 2, targetPeer: "bun" as const } : {}),
          decimals: 1,
        },
        {
          scenario,
          key: `rss${n}`,
          label: `N = ${_n(n)}: peak RSS growth, MiB`,
          higherIsBetter: false,
          ...(targeted ? { targetRatio: 1, targetPeer: "deno" as const } : {}),
          decimals: 1,
        },
        ...FANOUT.infoSizes.filter(() => n >= 1000).map((size) => ({
          scenario,
          key: `dps${n}_${size}`,
          label: `N = ${_n(n)}, ${_n(size)} B: deliveries/s`,
          higherIsBetter: true,
          decimals: 0,
        })),
      ]
      : []),
  ];
}

/** A metric without a target, of scenario `scenario`. */
function _plain(
  scenario: string,
  key: string,
  label: string,
  higherIsBetter: boolean,
  decimals: number,
): Metric {
  return { scenario, key, label, higherIsBetter, decimals };
}

/** (m)'s runs: each variant, all at once and paced, with its label. */
function _recoveryRuns(): { key: string; label: string; redis: boolean }[] {
  return RECOVERY_VARIANTS.flatMap((variant) =>
    ["", "Paced"].map((suffix) => ({
      key: `${variant.key}${suffix}`,
      label: `${variant.label}, ${
        suffix ? `${RECOVERY.paced} at a time` : "all at once"
      }`,
      redis: variant.redis,
    }))
  );
}

export const METRICS: Metric[] = [
  {
    scenario: "a",
    key: "msgs",
    label: "messages/s",
    higherIsBetter: true,
    targetRatio: 2,
    chartLabel: "(a) 64 × 16, 16 B",
    decimals: 0,
  },
  {
    scenario: "b",
    key: "msgs",
    label: "messages/s",
    higherIsBetter: true,
    targetRatio: 1,
    chartLabel: "(b) 1 × 1, 16 B",
    decimals: 0,
  },
  {
    scenario: "b",
    key: "p50",
    label: "p50 round trip, µs",
    higherIsBetter: false,
    decimals: 0,
  },
  {
    scenario: "b",
    key: "p99",
    label: "p99 round trip, µs",
    higherIsBetter: false,
    chartLabel: "(b) p99 latency",
    decimals: 0,
  },
  {
    scenario: "c",
    key: "mibs",
    label: "MiB/s echoed",
    higherIsBetter: true,
    targetRatio: 1,
    chartLabel: "(c) 4 × 2, 1 MiB",
    decimals: 0,
  },
  ..._idleMetrics("d", "connection", "(d) memory per idle conn."),
  {
    scenario: "e",
    key: "hps",
    label: "handshakes/s",
    higherIsBetter: true,
    chartLabel: "(e) handshakes/s",
    decimals: 0,
  },
  {
    scenario: "e",
    key: "hsP50",
    label: "p50 handshake, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  {
    scenario: "e",
    key: "hsP99",
    label: "p99 handshake, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  {
    scenario: "f",
    key: "msgs",
    label: "messages/s",
    higherIsBetter: true,
    chartLabel: "(f) 256 × 4, 16 B",
    decimals: 0,
  },
  {
    scenario: "f",
    key: "p50",
    label: "p50 round trip, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  {
    scenario: "f",
    key: "p99",
    label: "p99 round trip, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  {
    scenario: "f",
    key: "connMin",
    label: "slowest connection, messages/s",
    higherIsBetter: true,
    decimals: 0,
  },
  {
    scenario: "f",
    key: "spread",
    label: "fastest ÷ slowest connection",
    higherIsBetter: false,
    decimals: 2,
  },
  ...FANOUT.subscribers.flatMap((n) => _fanoutMetrics(n)),
  ...CLUSTER_SUBSCRIBERS.flatMap((n) => _fanoutMetrics(n, "h")),
  ..._idleMetrics("i", "subscribed socket", "(i) memory per idle subscriber"),
  {
    scenario: "j",
    key: "pingP99",
    label: "p99 ping under the flood, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  ...["", "Paced"].flatMap((suffix) => {
    const how = suffix
      ? `${RECONNECT.paced} connecting at a time`
      : "all connecting at once";
    return [
      {
        scenario: "k",
        key: `allBack${suffix}`,
        label: `${how}: all back, ms`,
        higherIsBetter: false,
        decimals: 0,
      },
      {
        scenario: "k",
        key: `allOpen${suffix}`,
        label: `${how}: all handshakes done, ms`,
        higherIsBetter: false,
        decimals: 0,
      },
      {
        scenario: "k",
        key: `stormP99${suffix}`,
        label: `${how}: p99 handshake, ms`,
        higherIsBetter: false,
        decimals: 1,
      },
    ];
  }),
  ...HISTORY_VARIANTS.flatMap(({ key, label }) => [
    _plain("l", `dps${key}`, `${label}: deliveries/s`, true, 0),
    _plain(
      "l",
      `cpuPerPub${key}`,
      `${label}: server CPU per publication (${
        _n(HISTORY_FANOUT.subscribers)
      } deliveries), µs`,
      false,
      0,
    ),
    _plain("l", `p99_${key}`, `${label}: p99 publish → receive, ms`, false, 2),
    _plain("l", `stall${key}`, `${label}: max stall, ms`, false, 1),
    _plain("l", `rss${key}`, `${label}: peak RSS growth, MiB`, false, 1),
  ]),
  ..._recoveryRuns().flatMap(({ key, label }) => [
    _plain("m", `allRecovered${key}`, `${label}: all recovered, ms`, false, 0),
    _plain("m", `allOpen${key}`, `${label}: all 101s, ms`, false, 0),
    _plain("m", `subP99${key}`, `${label}: p99 sub → recovered, ms`, false, 1),
    _plain(
      "m",
      `errors${key}`,
      `${label}: clients not recovered, and publications missing, repeated or wrong`,
      false,
      0,
    ),
  ]),
];

const CPU_METRICS: Metric[] = [
  ...["a", "b", "c", "e", "f", "k", "k/Paced"].flatMap((id) => {
    const [scenario, suffix = ""] = id.split("/");
    return [
      {
        scenario,
        key: `serverCpu${suffix}`,
        label: `${
          suffix ? `${RECONNECT.paced} at a time: ` : ""
        }server CPU, % of one core`,
        higherIsBetter: false,
        decimals: 0,
      },
      {
        scenario,
        key: `loadCpu${suffix}`,
        label: `${
          suffix ? `${RECONNECT.paced} at a time: ` : ""
        }load generator CPU, % of one core`,
        higherIsBetter: false,
        decimals: 0,
      },
    ];
  }),
  ...["g", "h"].flatMap((scenario) =>
    (scenario === "g" ? FANOUT.subscribers : CLUSTER_SUBSCRIBERS).flatMap((
      n,
    ) => [
      {
        scenario,
        key: `serverCpu${n}`,
        label: scenario === "h"
          ? `N = ${_n(n)}: both servers' CPU, % of one core`
          : `N = ${_n(n)}: server CPU, % of one core`,
        higherIsBetter: false,
        decimals: 0,
      },
      ...(scenario === "h"
        ? [{
          scenario,
          key: `redisCpu${n}`,
          label: `N = ${_n(n)}: redis-server CPU, % of one core`,
          higherIsBetter: false,
          decimals: 0,
        }]
        : []),
      {
        scenario,
        key: `loadCpu${n}`,
        label: `N = ${_n(n)}: load generator CPU, % of one core`,
        higherIsBetter: false,
        decimals: 0,
      },
    ])
  ),
  ...[
    ...HISTORY_VARIANTS.map((variant) => ({ ...variant, scenario: "l" })),
    ..._recoveryRuns().map((run) => ({ ...run, scenario: "m" })),
  ].flatMap(({ scenario, key, label, redis }) => [
    _plain(
      scenario,
      `serverCpu${key}`,
      `${label}: server CPU, % of one core`,
      false,
      0,
    ),
    ...(redis
      ? [
        _plain(
          scenario,
          `redisCpu${key}`,
          `${label}: redis-server CPU, % of one core`,
          false,
          0,
        ),
      ]
      : []),
    _plain(
      scenario,
      `loadCpu${key}`,
      `${label}: load generator CPU, % of one core`,
      false,
      0,
    ),
  ]),
  ...HISTORY_VARIANTS.filter((variant) => variant.redis).flatMap((
    { key, label, history },
  ) => [
    _plain(
      "l",
      `redisCpuPerPub${key}`,
      `${label}: redis-server CPU per publication, µs`,
      false,
      1,
    ),
    _plain(
      "l",
      `redisUsPerPub${key}`,
      `${label}: Redis's own time per ${
        history ? "publish script (EVALSHA)" : "PUBLISH"
      }, µs (INFO commandstats)`,
      false,
      1,
    ),
  ]),
];

const RUN_METRICS: Metric[] = [
  ...METRICS,
  ...CPU_METRICS,
  ...IDLE_SCENARIOS.flatMap((scenario) => [
    {
      scenario,
      key: "kibNoGc",
      label: "KiB per idle connection, before the forced GC",
      higherIsBetter: false,
      decimals: 1,
    },
    {
      scenario,
      key: "rssBefore",
      label: "server RSS before, MiB",
      higherIsBetter: false,
      decimals: 1,
    },
    {
      scenario,
      key: "rssAfter",
      label: "server RSS with the idle connections, MiB",
      higherIsBetter: false,
      decimals: 1,
    },
    {
      scenario,
      key: "rssSettled",
      label: "server RSS with the idle connections, settled, MiB",
      higherIsBetter: false,
      decimals: 1,
    },
  ]),
  {
    scenario: "e",
    key: "hsErrors",
    label: "failed handshakes and dropped connections",
    higherIsBetter: false,
    decimals: 0,
  },
  {
    scenario: "f",
    key: "connMax",
    label: "fastest connection, messages/s",
    higherIsBetter: true,
    decimals: 0,
  },
  {
    scenario: "f",
    key: "errors",
    label: "failed or unclean connections",
    higherIsBetter: false,
    decimals: 0,
  },
  {
    scenario: "j",
    key: "pingP50",
    label: "p50 ping under the flood, ms",
    higherIsBetter: false,
    decimals: 2,
  },
  {
    scenario: "j",
    key: "pingMax",
    label: "slowest ping under the flood, ms",
    higherIsBetter: false,
    decimals: 1,
  },
  {
    scenario: "j",
    key: "floodMsgs",
    label: "flood messages echoed/s",
    higherIsBetter: true,
    decimals: 0,
  },
  {
    scenario: "j",
    key: "unanswered",
    label: "runs with a ping unanswered for 5 s (counted as 5 s)",
    higherIsBetter: false,
    decimals: 0,
  },
  ...["", "Paced"].flatMap((suffix) => [
    {
      scenario: "k",
      key: `stormErrors${suffix}`,
      label: `${
        suffix ? `${RECONNECT.paced} at a time` : "at once"
      }: clients that did not come back`,
      higherIsBetter: false,
      decimals: 0,
    },
    {
      scenario: "k",
      key: `stormP50${suffix}`,
      label: `${
        suffix ? `${RECONNECT.paced} at a time` : "at once"
      }: p50 handshake, ms`,
      higherIsBetter: false,
      decimals: 1,
    },
  ]),
  ...FANOUT.subscribers.flatMap((n) => [
    {
      scenario: "g",
      key: `stallP50_${n}`,
      label: `N = ${_n(n)}: median of each subscriber's longest stall, ms`,
      higherIsBetter: false,
      decimals: 1,
    },
    {
      scenario: "g",
      key: `failed${n}`,
      label: `N = ${_n(n)}: failed (a subscriber got no message in 30 s)`,
      higherIsBetter: false,
      decimals: 0,
    },
    {
      scenario: "g",
      key: `rssIdle${n}`,
      label: `N = ${_n(n)}: server RSS before, MiB`,
      higherIsBetter: false,
      decimals: 1,
    },
    ...FANOUT.infoSizes.filter(() => n >= 1000).map((size) => ({
      scenario: "g",
      key: `stall${n}_${size}`,
      label: `N = ${_n(n)}, ${_n(size)} B: max stall, ms`,
      higherIsBetter: false,
      decimals: 1,
    })),
  ]),
  ...["g", "h"].flatMap((scenario) =>
    (scenario === "g" ? FANOUT.subscribers : CLUSTER_SUBSCRIBERS).flatMap((
      n,
    ) => [
      {
        scenario,
        key: `pps${n}`,
        label: `N = ${_n(n)}: publishes/s`,
        higherIsBetter: true,
        decimals: 0,
      },
      {
        scenario,
        key: `errors${n}`,
        label: `N = ${_n(n)}: missing, out-of-order or undelivered`,
        higherIsBetter: false,
        decimals: 0,
      },
    ])
  ),
  ...HISTORY_VARIANTS.flatMap(({ key, label }) => [
    _plain("l", `p50_${key}`, `${label}: p50 publish → receive, ms`, false, 2),
    _plain(
      "l",
      `stallP50_${key}`,
      `${label}: median of each subscriber's longest stall, ms`,
      false,
      1,
    ),
    _plain("l", `pps${key}`, `${label}: publishes/s`, true, 0),
    _plain(
      "l",
      `errors${key}`,
      `${label}: missing, out-of-order or undelivered`,
      false,
      0,
    ),
    _plain(
      "l",
      `failed${key}`,
      `${label}: failed (a subscriber got no message in 30 s)`,
      false,
      0,
    ),
    _plain("l", `rssIdle${key}`, `${label}: server RSS before, MiB`, false, 1),
  ]),
  ..._recoveryRuns().flatMap(({ key, label }) => [
    _plain("m", `subP50${key}`, `${label}: p50 sub → recovered, ms`, false, 1),
    _plain(
      "m",
      `subMax${key}`,
      `${label}: slowest sub → recovered, ms`,
      false,
      1,
    ),
    _plain(
      "m",
      `recoverP50${key}`,
      `${label}: p50 connect() → recovered, ms`,
      false,
      1,
    ),
    _plain(
      "m",
      `recoverP99${key}`,
      `${label}: p99 connect() → recovered, ms`,
      false,
      1,
    ),
    _plain("m", `hsP99${key}`, `${label}: p99 handshake, ms`, false, 1),
    _plain(
      "m",
      `publish${key}`,
      `${label}: the ${RECOVERY.missed} missed publications published, ms`,
      false,
      1,
    ),
  ]),
];

function _parseFlags(args: string[]): _Flags {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      idle: { type: "string" },
      quick: { type: "boolean", default: false },
      servers: { type: "string", default: DEFAULT_SERVERS },
      scenarios: { type: "string", default: DEFAULT_SCENARIOS },
      "no-micro": { type: "boolean", default: false },
      "no-pin": { type: "boolean", default: false },
      profile: { type: "string" },
      out: { type: "string" },
      subscribers: {
        type: "string",
        default: FANOUT.subscribers.join(","),
      },
      sizes: {
        type: "string",
        default: [FANOUT.size, ...FANOUT.infoSizes].join(","),
      },
      base: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "deno task bench [--quick] [--rounds N] [--duration MS] [--warmup MS] " +
        `[--idle N] [--servers ${DEFAULT_SERVERS},floorstreams,base] ` +
        `[--scenarios ${DEFAULT_SCENARIOS}] ` +
        `[--subscribers ${FANOUT.subscribers.join(",")}] ` +
        `[--sizes ${[FANOUT.size, ...FANOUT.infoSizes].join(",")}] ` +
        "[--base DIR] [--no-micro] [--no-pin] [--profile DIR] [--out DIR]",
    );
    Deno.exit(0);
  }
  const quick = values.quick;
  const number = (value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`Expected a whole number, got ${value}`);
    }
    return n;
  };
  const servers = values.servers.split(",").map((name) => name.trim());
  for (const name of servers) {
    if (!(name in SERVERS)) throw new RangeError(`Unknown server: ${name}`);
  }
  if (values.base !== undefined && !servers.includes("base")) {
    servers.push("base");
  }
  if (servers.includes("base") && values.base === undefined) {
    throw new RangeError("The base server needs --base DIR");
  }
  const list = (text: string, what: string, allowed?: number[]) =>
    text.split(",").map((item) => {
      const n = Number(item.trim());
      if (!Number.isInteger(n) || n <= 0 || (allowed && !allowed.includes(n))) {
        throw new RangeError(`Invalid ${what}: ${item}`);
      }
      return n;
    });
  if (!servers.includes("ours")) {
    throw new RangeError("The servers must include ours");
  }
  const scenarios = values.scenarios.split(",").map((id) => id.trim());
  for (const id of scenarios) {
    if (!(id in TITLES)) throw new RangeError(`Unknown scenario: ${id}`);
  }
  return {
    subscribers: list(values.subscribers, "number of subscribers"),
    sizes: list(values.sizes, "message size").map((size) => {
      if (size < 48 || size > 65536) {
        throw new RangeError(`A fan-out message is 48 B to 64 KiB: ${size}`);
      }
      return size;
    }),
    base: values.base,
    rounds: Math.max(1, number(values.rounds, quick ? 1 : 5)),
    redis: false,
    duration: number(values.duration, quick ? 1000 : 3000),
    warmup: number(values.warmup, quick ? 300 : 1000),
    idle: number(values.idle, quick ? 1000 : 5000),
    servers: servers as ServerName[],
    scenarios,
    micro: !values["no-micro"],
    pin: !values["no-pin"],
    profile: values.profile,
    out: values.out,
    quick,
    full: !quick && values.profile === undefined &&
      values.base === undefined &&
      values.subscribers === FANOUT.subscribers.join(",") &&
      values.sizes === [FANOUT.size, ...FANOUT.infoSizes].join(",") &&
      _sameSet(servers, DEFAULT_SERVERS.split(",")) &&
      _sameSet(scenarios, DEFAULT_SCENARIOS.split(",")),
  };
}

function _sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && b.every((item) => a.includes(item));
}

async function _shell(script: string, cwd?: string): Promise<string> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", script],
    cwd,
    stdin: "null",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

/**
 * Scenarios (d), (e), (g) and (i) need a file descriptor per connection in the
 * generator and in the server. Deno raises its soft limit to the hard one;
 * when that is still too low, reruns this script once under a shell that
 * tries to raise it (root may raise the hard limit too; the servers inherit
 * it). Returns the limit in force (Infinity for none).
 */
async function _ensureFdLimit(needed: number): Promise<number> {
  const limit = await _shell("ulimit -n");
  if (limit === "unlimited") return Infinity;
  if (Number(limit) >= needed) return Number(limit);
  if (Deno.env.get("BENCH_FD_RAISED") !== "1") {
    console.log(`Raising the open file limit from ${limit} to ${needed}`);
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit -n ${needed} 2>/dev/null; exec "$0" "$@"`,
        Deno.execPath(),
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        ...Deno.args,
      ],
      env: { BENCH_FD_RAISED: "1" },
    }).spawn();
    Deno.exit((await child.status).code);
  }
  return Number(limit);
}

/** The file descriptors scenario `id` needs per process, with spare. */
function _fdsFor(id: string, flags: _Flags): number {
  const connections = IDLE_SCENARIOS.includes(id)
    ? flags.idle + IDLE_WARM
    : id === "e"
    ? STORM.open + STORM.handshakes
    : id === "g"
    ? Math.max(...flags.subscribers) + 1
    : id === "h"
    ? Math.max(...CLUSTER_SUBSCRIBERS) + 1
    : id === "k"
    ? 2 * RECONNECT.subscribers + 1
    : id === "l"
    ? HISTORY_FANOUT.subscribers + 1
    : id === "m"
    ? 2 * RECOVERY.clients + 2
    : id === "f"
    ? MANY.connections
    : 64;
  return connections + FD_SPARE;
}

function _sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function _payload(size: number, text: boolean): Uint8Array {
  const payload = new Uint8Array(size);
  if (text) {
    for (let i = 0; i < size; i++) payload[i] = 97 + (i % 26);
  } else {
    for (let at = 0; at < size; at += 65536) {
      crypto.getRandomValues(payload.subarray(at, Math.min(at + 65536, size)));
    }
  }
  return payload;
}

/**
 * Sets the CPU affinity of every thread of process `pid` with `taskset`;
 * returns the mask it had, or undefined when taskset is missing.
 */
async function _setAffinity(
  pid: number,
  mask: string,
): Promise<string | undefined> {
  const previous = /mask: ([0-9a-f]+)/.exec(
    await _shell(`taskset -p ${pid}`),
  )?.[1];
  if (previous === undefined) return undefined;
  await _shell(`taskset -a -p ${mask} ${pid}`);
  return previous;
}

async function _runLoadScenario(
  scenario: _LoadScenario,
  server: ServerProcess,
  flags: _Flags,
): Promise<Sample> {
  if (scenario.pin && flags.pin) {
    const previous = await _setAffinity(Deno.pid, "1");
    if (previous === undefined) {
      return await _measureLoad(scenario, server, flags);
    }
    try {
      await _setAffinity(server.pid, "1");
      return await _measureLoad(scenario, server, flags);
    } finally {
      await _setAffinity(Deno.pid, previous);
    }
  }
  return await _measureLoad(scenario, server, flags);
}

async function _measureLoad(
  scenario: _LoadScenario,
  server: ServerProcess,
  flags: _Flags,
): Promise<Sample> {
  let serverCpu = 0;
  let loadCpu = 0;
  const result = await runLoad({
    hostname: HOST,
    port: server.port,
    connections: scenario.connections,
    inFlight: scenario.inFlight,
    payload: _payload(scenario.size, scenario.text),
    text: scenario.text,
    warmup: flags.warmup,
    duration: flags.duration,
    latency: scenario.latency,
    onCountStart: () => {
      serverCpu = server.cpuSeconds();
      loadCpu = cpuSeconds(Deno.pid);
    },
    onCountEnd: () => {
      serverCpu = server.cpuSeconds() - serverCpu;
      loadCpu = cpuSeconds(Deno.pid) - loadCpu;
    },
  });
  if (result.unclean > 0) {
    console.warn(
      `  ${result.unclean} connection(s) did not close cleanly in time`,
    );
  }
  const values: Record<string, number> = {
    msgs: result.messages / result.seconds,
    mibs: result.bytes / MiB / result.seconds,
    serverCpu: (serverCpu / result.seconds) * 100,
    loadCpu: (loadCpu / result.seconds) * 100,
  };
  if (scenario.latency) {
    values.p50 = quantile(result.latencies, 0.5) * 1000;
    values.p99 = quantile(result.latencies, 0.99) * 1000;
  }
  return { values };
}

/**
 * (d) and (i): the server's RSS per idle connection, over `idle` connections
 * opened after {@linkcode IDLE_WARM} of the same kind, all to `path`.
 */
async function _runIdleScenario(
  server: ServerProcess,
  idle: number,
  path = "/",
): Promise<Sample> {
  const warm = await IdleConnections.open(
    HOST,
    server.port,
    IDLE_WARM,
    undefined,
    path,
  );
  let conns: IdleConnections | undefined;
  try {
    const before = await _rssAfterGc(server, false);
    const beforeSettled = await _rssAfterGc(server, true);
    conns = await IdleConnections.open(
      HOST,
      server.port,
      idle,
      undefined,
      path,
    );
    await _sleep(1000);
    const noGc = server.rssBytes();
    const after = await _rssAfterGc(server, false);
    const afterSettled = await _rssAfterGc(server, true);
    return {
      values: {
        kib: (after - before) / idle / 1024,
        kibNoGc: (noGc - before) / idle / 1024,
        kibSettled: (afterSettled - beforeSettled) / idle / 1024,
        rssBefore: before / MiB,
        rssAfter: after / MiB,
        rssSettled: afterSettled / MiB,
      },
    };
  } finally {
    // Stop the server first: thousands of closes would only keep it busy.
    await server.stop();
    conns?.close();
    warm.close();
  }
}

/**
 * The server's RSS once a garbage collection it was asked for has run: a
 * full one, or with `settle` the one an idle process gets, which gives back
 * the young generation a burst grew.
 */
async function _rssAfterGc(
  server: ServerProcess,
  settle: boolean,
): Promise<number> {
  server.collectGarbage(settle);
  await _sleep(500);
  return server.rssBytes();
}

/**
 * Runs the C generator against `server`, measuring the server's CPU over the
 * generator's measured window (marked on its stderr).
 */
async function _runLoadgen(
  server: ServerProcess,
  args: string[],
): Promise<{ result: LoadgenResult; serverCpu: number }> {
  const { result, cpu: [serverCpu] } = await _runLoadgenWatching(
    ["--port", String(server.port), ...args],
    [() => server.cpuSeconds()],
  );
  return { result, serverCpu };
}

/**
 * Runs the C generator, measuring over its measured window the CPU time
 * (as % of one core) that each of `clocks` reports.
 */
async function _runLoadgenWatching(
  args: string[],
  clocks: (() => number)[],
): Promise<{ result: LoadgenResult; cpu: number[] }> {
  let start: number[] = [];
  let since = 0;
  let cpu: number[] = clocks.map(() => NaN);
  const result = await runLoadgen(args, {
    onCountStart: () => {
      start = clocks.map((clock) => clock());
      since = performance.now();
    },
    onCountEnd: () => {
      const seconds = (performance.now() - since) / 1000;
      cpu = clocks.map((clock, i) => ((clock() - start[i]) / seconds) * 100);
    },
    onNote: (line) => console.log(`  ${line}`),
  });
  return { result, cpu };
}

function _number(result: LoadgenResult, key: string): number {
  const value = result[key];
  if (typeof value !== "number") {
    throw new Error(`The load generator's result has no ${key}`);
  }
  return value;
}

async function _runHandshakeScenario(server: ServerProcess): Promise<Sample> {
  const { result, serverCpu } = await _runLoadgen(server, [
    "--mode",
    "handshake",
    "--open",
    String(STORM.open),
    "--handshakes",
    String(STORM.handshakes),
    "--concurrency",
    String(STORM.concurrency),
  ]);
  return {
    values: {
      hps: _number(result, "rate"),
      hsP50: _number(result, "p50Us") / 1000,
      hsP99: _number(result, "p99Us") / 1000,
      hsErrors: _number(result, "errors") + _number(result, "idleErrors") +
        _number(result, "dropped"),
      serverCpu,
      loadCpu: _number(result, "cpu"),
    },
  };
}

async function _runManyScenario(
  server: ServerProcess,
  flags: _Flags,
): Promise<Sample> {
  const { result, serverCpu } = await _runLoadgen(server, [
    "--mode",
    "echo",
    "--connections",
    String(MANY.connections),
    "--inflight",
    String(MANY.inFlight),
    "--size",
    String(MANY.size),
    "--warmup",
    String(flags.warmup),
    "--duration",
    String(flags.duration),
  ]);
  const connMin = _number(result, "connMinMsgs");
  const connMax = _number(result, "connMaxMsgs");
  return {
    values: {
      msgs: _number(result, "msgs"),
      p50: _number(result, "p50Us") / 1000,
      p99: _number(result, "p99Us") / 1000,
      connMin,
      connMax,
      spread: connMax / connMin,
      errors: _number(result, "errors") + _number(result, "unclean"),
      serverCpu,
      loadCpu: _number(result, "cpu"),
    },
  };
}

/** The load generator's flags for a fan-out run to `n` subscribers. */
function _fanoutArgs(n: number, flags: _Flags, size = FANOUT.size): string[] {
  return [
    "--mode",
    "fanout",
    "--subscribers",
    String(n),
    "--window",
    String(FANOUT.window),
    "--size",
    String(size),
    "--warmup",
    String(flags.warmup),
    "--duration",
    String(flags.duration),
  ];
}

/**
 * Records a fan-out run's figures under their keys for `n` subscribers
 * (with `_size` after them for a size other than the first), or in (l) for
 * a variant's key.
 */
function _fanoutValues(
  values: Record<string, number>,
  n: number | string,
  result: LoadgenResult,
  suffix = "",
): void {
  values[`dps${n}${suffix}`] = _number(result, "deliveriesPerSec");
  values[`stall${n}${suffix}`] = _number(result, "maxStallUs") / 1000;
  if (suffix) return;
  values[`pps${n}`] = _number(result, "publishesPerSec");
  values[`p50_${n}`] = _number(result, "p50Us") / 1000;
  values[`p99_${n}`] = _number(result, "p99Us") / 1000;
  values[`stallP50_${n}`] = _number(result, "p50StallUs") / 1000;
  values[`errors${n}`] = _number(result, "missing") +
    _number(result, "outOfOrder") + _number(result, "malformed") +
    _number(result, "undelivered");
  values[`loadCpu${n}`] = _number(result, "cpu");
}

/** What {@linkcode _runFanoutMeasured} measured of one run. */
interface _FanoutRun {
  result: LoadgenResult;
  /** The CPU of the server and of each other clock, % of one core. */
  cpu: number[];
  /** The server's RSS when idle just before, and its peak growth, MiB. */
  rssIdle: number;
  rss: number;
}

/**
 * Runs the generator with `args` against a fresh `server`, measuring its
 * CPU (and that of `clocks`) over the measured window and its peak RSS
 * from its idle start (Linux's VmHWM, started again just before the
 * generator opens its connections, or sampled when that cannot be reset).
 */
async function _runFanoutMeasured(
  server: ServerProcess,
  args: string[],
  clocks: (() => number)[] = [],
): Promise<_FanoutRun> {
  await _sleep(200);
  const idle = server.rssBytes();
  let peak = idle;
  const exact = server.resetPeakRss();
  const sampler = exact ? undefined : setInterval(() => {
    peak = Math.max(peak, server.rssBytes());
  }, 20);
  try {
    const { result, cpu } = await _runLoadgenWatching(
      ["--port", String(server.port), ...args],
      [() => server.cpuSeconds(), ...clocks],
    );
    peak = exact ? server.peakRssBytes() : Math.max(peak, server.rssBytes());
    return { result, cpu, rssIdle: idle / MiB, rss: (peak - idle) / MiB };
  } finally {
    clearInterval(sampler);
  }
}

/**
 * (g): one fresh fan-out server per number of subscribers and size; the
 * first size at every N, the others at N ≥ 1,000, each with the server's
 * peak RSS growth.
 */
async function _runFanoutScenario(
  name: ServerName,
  flags: _Flags,
  profile: (label: string) => { profileDir?: string; profileName?: string },
): Promise<Sample> {
  const values: Record<string, number> = {};
  for (const n of flags.subscribers) {
    for (const [index, size] of flags.sizes.entries()) {
      if (index > 0 && n < 1000) continue;
      const suffix = index === 0 ? "" : `_${size}`;
      await using server = await ServerProcess.start(name, {
        kind: "fanout",
        ...profile(`g${n}${suffix}`),
      });
      let run: _FanoutRun;
      try {
        run = await _runFanoutMeasured(server, _fanoutArgs(n, flags, size));
      } catch (error) {
        // A server that never gets every subscriber its first message (an
        // old one starving some at 10,000) fails this run, not the others.
        console.log(
          `  (g) N = ${_n(n)}, ${size} B, ${SERVERS[name].label} failed: ${
            (error as Error).message
          }`,
        );
        values[`failed${n}${suffix}`] = 1;
        continue;
      }
      _fanoutValues(values, n, run.result, suffix);
      if (suffix) continue;
      values[`serverCpu${n}`] = run.cpu[0];
      values[`rss${n}`] = run.rss;
      values[`rssIdle${n}`] = run.rssIdle;
    }
  }
  return { values };
}

/**
 * (h): per number of subscribers, a fresh redis-server and two of our
 * fan-out servers sharing the topic through it; the publisher connects to
 * the first, every other subscriber to the second.
 */
async function _runClusterFanoutScenario(
  flags: _Flags,
  profile: (label: string) => { profileDir?: string; profileName?: string },
): Promise<Sample> {
  const values: Record<string, number> = {};
  for (const n of CLUSTER_SUBSCRIBERS) {
    await using redis = await RedisProcess.start();
    const args = ["--redis", redis.url];
    await using first = await ServerProcess.start("ours", {
      kind: "fanout",
      args,
      ...profile(`h${n}-first`),
    });
    await using second = await ServerProcess.start("ours", {
      kind: "fanout",
      args,
      ...profile(`h${n}-second`),
    });
    const { result, cpu: [firstCpu, secondCpu, redisCpu] } =
      await _runLoadgenWatching([
        "--port",
        String(first.port),
        "--port2",
        String(second.port),
        ..._fanoutArgs(n, flags),
      ], [
        () => first.cpuSeconds(),
        () => second.cpuSeconds(),
        () => cpuSeconds(redis.pid),
      ]);
    _fanoutValues(values, n, result);
    values[`serverCpu${n}`] = firstCpu + secondCpu;
    values[`redisCpu${n}`] = redisCpu;
  }
  return { values };
}

/**
 * (k): a reconnect storm: a fresh fan-out server's subscribers drop at once
 * and connect again all at once, then on another fresh server
 * `RECONNECT.paced` at a time.
 */
async function _runReconnectScenario(
  name: ServerName,
  profile: (label: string) => { profileDir?: string; profileName?: string },
): Promise<Sample> {
  const values: Record<string, number> = {};
  for (const paced of [false, true]) {
    const suffix = paced ? "Paced" : "";
    await using server = await ServerProcess.start(name, {
      kind: "fanout",
      ...profile(`k${suffix}`),
    });
    const { result, serverCpu } = await _runLoadgen(server, [
      "--mode",
      "storm",
      "--subscribers",
      String(RECONNECT.subscribers),
      "--concurrency",
      String(paced ? RECONNECT.paced : RECONNECT.subscribers),
    ]);
    values[`allBack${suffix}`] = _number(result, "allBackMs");
    values[`allOpen${suffix}`] = _number(result, "allOpenMs");
    values[`stormP50${suffix}`] = _number(result, "p50Us") / 1000;
    values[`stormP99${suffix}`] = _number(result, "p99Us") / 1000;
    values[`stormErrors${suffix}`] = _number(result, "errors");
    values[`serverCpu${suffix}`] = serverCpu;
    values[`loadCpu${suffix}`] = _number(result, "cpu");
  }
  return { values };
}

/** The variants of (l) or (m) that run here: the Redis ones need redis-server. */
function _variantsHere(
  variants: _HistoryVariant[],
  flags: _Flags,
  round: number,
): _HistoryVariant[] {
  const here = variants.filter((variant) => flags.redis || !variant.redis);
  // Each round starts with another variant, as the servers alternate.
  return here.map((_, i) => here[(i + round) % here.length]);
}

/** Our fan-out server's flags for a variant, with its redis-server's URL. */
function _variantArgs(
  variant: _HistoryVariant,
  redis?: RedisProcess,
): string[] {
  return [
    ...(variant.history ? ["--history"] : []),
    ...(redis ? ["--redis", redis.url] : []),
  ];
}

/**
 * (l): (g) at {@linkcode HISTORY_FANOUT}'s subscribers on our topic with
 * each variant of history, each a fresh server (and a fresh redis-server).
 * A peer has no history: its plain publish, run once, stands beside each
 * variant, so that each row has its ratio.
 */
async function _runHistoryFanoutScenario(
  name: ServerName,
  flags: _Flags,
  round: number,
  profile: (label: string) => { profileDir?: string; profileName?: string },
): Promise<Sample> {
  const values: Record<string, number> = {};
  const n = HISTORY_FANOUT.subscribers;
  const args = _fanoutArgs(n, flags);
  const record = (key: string, run: _FanoutRun) => {
    _fanoutValues(values, key, run.result);
    values[`serverCpu${key}`] = run.cpu[0];
    values[`cpuPerPub${key}`] = run.cpu[0] / 100 / values[`pps${key}`] * 1e6;
    values[`rss${key}`] = run.rss;
    values[`rssIdle${key}`] = run.rssIdle;
  };
  const variants = _variantsHere(HISTORY_VARIANTS, flags, round);
  if (name !== "ours") {
    await using server = await ServerProcess.start(name, { kind: "fanout" });
    try {
      const run = await _runFanoutMeasured(server, args);
      for (const { key } of variants) record(key, run);
    } catch (error) {
      console.log(
        `  (l) ${SERVERS[name].label} failed: ${(error as Error).message}`,
      );
      for (const { key } of variants) values[`failed${key}`] = 1;
    }
    return { values };
  }
  for (const variant of variants) {
    await using redis = variant.redis ? await RedisProcess.start() : undefined;
    await using server = await ServerProcess.start(name, {
      kind: "fanout",
      args: _variantArgs(variant, redis),
      ...profile(`l${variant.key}`),
    });
    let run: _FanoutRun;
    try {
      run = await _runFanoutMeasured(
        server,
        args,
        redis ? [() => cpuSeconds(redis.pid)] : [],
      );
    } catch (error) {
      console.log(
        `  (l) ${variant.label} failed: ${(error as Error).message}`,
      );
      values[`failed${variant.key}`] = 1;
      continue;
    }
    record(variant.key, run);
    if (redis === undefined) continue;
    const key = variant.key;
    values[`redisCpu${key}`] = run.cpu[1];
    values[`redisCpuPerPub${key}`] = run.cpu[1] / 100 / values[`pps${key}`] *
      1e6;
    // Redis's own time for what a publication costs it: the script that
    // numbers, appends and publishes, or a plain PUBLISH.
    const stat = (await redis.commandStats()).get(
      variant.history ? "evalsha" : "publish",
    );
    if (stat) values[`redisUsPerPub${key}`] = stat.usec / stat.calls;
  }
  return { values };
}

/**
 * (m): for each variant with history, a fresh server (and redis-server)
 * whose live clients drop, miss {@linkcode RECOVERY}'s publications and
 * reconnect all at once; then another fresh one, `RECOVERY.paced` at a
 * time. `errors` counts the clients that did not recover (all of them when
 * the run failed) and every publication missing, repeated, out of order or
 * not the one made, so that a run cannot pass without every recovery.
 */
async function _runRecoveryScenario(
  flags: _Flags,
  round: number,
  profile: (label: string) => { profileDir?: string; profileName?: string },
): Promise<Sample> {
  const values: Record<string, number> = {};
  for (const variant of _variantsHere(RECOVERY_VARIANTS, flags, round)) {
    for (const paced of [false, true]) {
      const key = `${variant.key}${paced ? "Paced" : ""}`;
      await using redis = variant.redis
        ? await RedisProcess.start()
        : undefined;
      await using server = await ServerProcess.start("ours", {
        kind: "fanout",
        args: _variantArgs(variant, redis),
        ...profile(`m${key}`),
      });
      let result: LoadgenResult;
      let cpu: number[];
      try {
        ({ result, cpu } = await _runLoadgenWatching([
          "--port",
          String(server.port),
          "--mode",
          "recover",
          "--subscribers",
          String(RECOVERY.clients),
          "--missed",
          String(RECOVERY.missed),
          "--concurrency",
          String(paced ? RECOVERY.paced : RECOVERY.clients),
        ], [
          () => server.cpuSeconds(),
          ...(redis ? [() => cpuSeconds(redis.pid)] : []),
        ]));
      } catch (error) {
        console.log(
          `  (m) ${variant.label}, ${
            paced ? `${RECOVERY.paced} at a time` : "all at once"
          } failed: ${(error as Error).message}`,
        );
        values[`errors${key}`] = RECOVERY.clients;
        continue;
      }
      values[`allRecovered${key}`] = _number(result, "allRecoveredMs");
      values[`allOpen${key}`] = _number(result, "allOpenMs");
      values[`subP50${key}`] = _number(result, "subP50Us") / 1000;
      values[`subP99${key}`] = _number(result, "subP99Us") / 1000;
      values[`subMax${key}`] = _number(result, "subMaxUs") / 1000;
      values[`recoverP50${key}`] = _number(result, "recoverP50Us") / 1000;
      values[`recoverP99${key}`] = _number(result, "recoverP99Us") / 1000;
      values[`hsP99${key}`] = _number(result, "p99Us") / 1000;
      values[`publish${key}`] = _number(result, "publishMs");
      values[`errors${key}`] = RECOVERY.clients -
        _number(result, "recovered") + _number(result, "liveErrors") +
        _number(result, "missing") + _number(result, "duplicates") +
        _number(result, "wrongData") + _number(result, "outOfOrder") +
        _number(result, "malformed");
      values[`serverCpu${key}`] = cpu[0];
      if (redis) values[`redisCpu${key}`] = cpu[1];
      values[`loadCpu${key}`] = _number(result, "cpu");
    }
  }
  return { values };
}

/**
 * (j): an innocent client's pings, one at a time, while another client
 * floods the echo server with tiny frames.
 */
async function _runFloodPingScenario(
  server: ServerProcess,
  flags: _Flags,
): Promise<Sample> {
  let serverCpu = server.cpuSeconds();
  const result = await runFloodPing({
    hostname: HOST,
    port: server.port,
    warmup: flags.warmup,
    duration: flags.duration,
  });
  serverCpu = server.cpuSeconds() - serverCpu;
  const seconds = (flags.warmup / 1000) + result.seconds;
  return {
    values: {
      pingP50: quantile(result.latencies, 0.5),
      pingP99: quantile(result.latencies, 0.99),
      pingMax: result.latencies.length > 0
        ? Math.max(...result.latencies)
        : NaN,
      pings: result.latencies.length,
      floodMsgs: result.floodMessages / result.seconds,
      unanswered: result.unanswered,
      serverCpu: (serverCpu / seconds) * 100,
    },
  };
}

function _describe(id: string, sample: Sample): string {
  const v = sample.values;
  const n = (value: number, digits = 0) =>
    value.toLocaleString("en-US", { maximumFractionDigits: digits });
  const cpu = () =>
    `server CPU ${n(v.serverCpu)}%, generator CPU ${n(v.loadCpu)}%`;
  switch (id) {
    case "a":
      return `${n(v.msgs)} msg/s (${cpu()})`;
    case "b":
      return `${n(v.msgs)} msg/s, p50 ${n(v.p50)} µs, p99 ${
        n(v.p99)
      } µs (${cpu()})`;
    case "c":
      return `${n(v.mibs)} MiB/s (${cpu()})`;
    case "e":
      return `${n(v.hps)} handshakes/s, p50 ${n(v.hsP50, 2)} ms, p99 ${
        n(v.hsP99, 2)
      } ms${
        v.hsErrors ? `, ${n(v.hsErrors)} failed or dropped` : ""
      } (${cpu()})`;
    case "f":
      return `${n(v.msgs)} msg/s, p50 ${n(v.p50, 2)} ms, p99 ${
        n(v.p99, 2)
      } ms, per connection ${n(v.connMin)}–${n(v.connMax)} msg/s${
        v.errors ? `, ${n(v.errors)} failed` : ""
      } (${cpu()})`;
    case "g":
    case "h":
      return (id === "g" ? FANOUT.subscribers : CLUSTER_SUBSCRIBERS)
        .filter((s) => v[`dps${s}`] !== undefined).map((s) =>
          `N=${s}: ${n(v[`dps${s}`])} deliveries/s (${
            n(v[`pps${s}`])
          } publishes/s), p50 ${n(v[`p50_${s}`], 2)} ms, p99 ${
            n(v[`p99_${s}`], 2)
          } ms${
            id === "g"
              ? `, max stall ${n(v[`stall${s}`], 1)} ms, peak RSS +${
                n(v[`rss${s}`], 1)
              } MiB${
                FANOUT.infoSizes.filter((size) =>
                  v[`dps${s}_${size}`] !== undefined
                ).map((size) => `, ${size} B ${n(v[`dps${s}_${size}`])}/s`)
                  .join("")
              }`
              : ""
          }${v[`errors${s}`] ? `, ${n(v[`errors${s}`])} errors` : ""}${
            id === "h"
              ? ` (servers' CPU ${n(v[`serverCpu${s}`])}%, redis ${
                n(v[`redisCpu${s}`])
              }%)`
              : ""
          }`
        ).join("; ");
    case "k":
      return ["", "Paced"].map((s) =>
        `${s ? `${RECONNECT.paced} at a time` : "at once"}: all back in ${
          n(v[`allBack${s}`])
        } ms, all 101s in ${n(v[`allOpen${s}`])} ms, handshake p50 ${
          n(v[`stormP50${s}`], 1)
        } ms, p99 ${n(v[`stormP99${s}`], 1)} ms${
          v[`stormErrors${s}`] ? `, ${n(v[`stormErrors${s}`])} not back` : ""
        } (server CPU ${n(v[`serverCpu${s}`])}%)`
      ).join("; ");
    case "l":
      return HISTORY_VARIANTS.filter(({ key }) =>
        v[`dps${key}`] !== undefined || v[`failed${key}`]
      ).map(({ key, label }) =>
        v[`failed${key}`]
          ? `${label}: failed`
          : `${label}: ${n(v[`dps${key}`])} deliveries/s (${
            n(v[`cpuPerPub${key}`])
          } µs of CPU per publication), p99 ${
            n(v[`p99_${key}`], 2)
          } ms, max stall ${n(v[`stall${key}`], 1)} ms, peak RSS +${
            n(v[`rss${key}`], 1)
          } MiB${v[`errors${key}`] ? `, ${n(v[`errors${key}`])} errors` : ""}${
            v[`redisCpu${key}`] !== undefined
              ? ` (redis CPU ${n(v[`redisCpu${key}`])}%, its own time ${
                n(v[`redisUsPerPub${key}`], 1)
              } µs per publication)`
              : ""
          }`
      ).join("; ");
    case "m":
      return _recoveryRuns().filter(({ key }) =>
        v[`errors${key}`] !== undefined
      ).map(({ key, label }) =>
        `${label}: ${
          v[`allRecovered${key}`] === undefined
            ? "failed"
            : `all recovered in ${n(v[`allRecovered${key}`])} ms (101s in ${
              n(v[`allOpen${key}`])
            } ms), sub → recovered p50 ${n(v[`subP50${key}`], 1)} ms, p99 ${
              n(v[`subP99${key}`], 1)
            } ms`
        }${
          v[`errors${key}`]
            ? `, ${n(v[`errors${key}`])} not recovered or wrong`
            : ""
        } (server CPU ${n(v[`serverCpu${key}`])}%${
          v[`redisCpu${key}`] !== undefined
            ? `, redis ${n(v[`redisCpu${key}`])}%`
            : ""
        })`
      ).join("; ");
    case "j":
      return `${n(v.pings)} pings, p50 ${n(v.pingP50, 2)} ms, p99 ${
        n(v.pingP99, 2)
      } ms, slowest ${n(v.pingMax, 1)} ms${
        v.unanswered ? ", then one unanswered for 5 s" : ""
      }; flood echoed at ${n(v.floodMsgs)} msg/s (server CPU ${
        n(v.serverCpu)
      }%)`;
    default:
      return `${n(v.kib, 1)} KiB per connection, ${
        n(v.kibSettled, 1)
      } settled (${n(v.kibNoGc, 1)} before GC; RSS ${n(v.rssBefore, 1)} → ${
        n(v.rssAfter, 1)
      } MiB, ${n(v.rssSettled, 1)} settled)`;
  }
}

/** Which kind of server a scenario runs against. */
function _kindOf(id: string): ServerKind {
  return ["g", "h", "i", "k", "l", "m"].includes(id) ? "fanout" : "echo";
}

async function _runScenario(
  id: string,
  name: ServerName,
  flags: _Flags,
  round: number,
): Promise<Sample> {
  const profile = (label: string) =>
    flags.profile && name === "ours"
      ? {
        profileDir: flags.profile,
        profileName: `ours-${label}-round${round + 1}.cpuprofile`,
      }
      : {};
  if (id === "g") return await _runFanoutScenario(name, flags, profile);
  if (id === "k") return await _runReconnectScenario(name, profile);
  if (id === "h") return await _runClusterFanoutScenario(flags, profile);
  if (id === "l") {
    return await _runHistoryFanoutScenario(name, flags, round, profile);
  }
  if (id === "m") return await _runRecoveryScenario(flags, round, profile);
  const server = await ServerProcess.start(name, {
    kind: _kindOf(id),
    ...profile(id),
  });
  try {
    const load = LOAD_SCENARIOS.find((s) => s.id === id);
    if (load) return await _runLoadScenario(load, server, flags);
    if (id === "d") return await _runIdleScenario(server, flags.idle);
    if (id === "i") {
      return await _runIdleScenario(server, flags.idle, IDLE_SUBSCRIBER_PATH);
    }
    if (id === "e") return await _runHandshakeScenario(server);
    if (id === "j") return await _runFloodPingScenario(server, flags);
    return await _runManyScenario(server, flags);
  } finally {
    await server.stop();
  }
}

async function _runScenarios(flags: _Flags): Promise<Results> {
  const results: Results = new Map();
  /** Server and kind pairs that said they cannot run (e.g. no topic API). */
  const unsupported = new Set<string>();
  for (let round = 0; round < flags.rounds; round++) {
    for (const id of flags.scenarios) {
      const kind = _kindOf(id);
      // (h) and (m) are this module's own scale-out and recovery: they
      // have no peers; (l) has Bun's publish beside it, the others' are in
      // (g). `base` may predate history: (l) and (m) leave it out. The
      // floors answer no ping: (j) cannot measure them. The floors with
      // streams echo as the floor does: they tell only of handshakes, (e).
      const servers = flags.servers.filter((name) =>
        hasKind(name, kind) && !unsupported.has(`${name}/${kind}`) &&
        (!["h", "m"].includes(id) || name === "ours") &&
        (id !== "l" || name === "ours" || name === "bun") &&
        (id !== "j" || !name.startsWith("floor")) &&
        (id === "e" || (name !== "floorstreams" && name !== "floorwebcrypto"))
      );
      // Alternate the servers run by run: each round starts with another.
      const order = servers.map((_, i) =>
        servers[(i + round) % servers.length]
      );
      for (const name of order) {
        let sample: Sample;
        try {
          sample = await _runScenario(id, name, flags, round);
        } catch (error) {
          if (!(error instanceof UnsupportedServerError)) throw error;
          unsupported.add(`${name}/${kind}`);
          console.log(
            `Leaving out ${SERVERS[name].label} (${kind}): ${error.message}`,
          );
          continue;
        }
        const byServer = results.get(id) ?? new Map<ServerName, Sample[]>();
        results.set(id, byServer);
        byServer.set(name, [...(byServer.get(name) ?? []), sample]);
        console.log(
          `round ${round + 1}/${flags.rounds} (${id}) ${
            SERVERS[name].label.padEnd(21)
          } ${_describe(id, sample)}`,
        );
      }
    }
  }
  return results;
}

interface _MicroRow {
  name: string;
  group: string;
  nsPerIteration: number;
  bytesPerSecond: number;
  framesPerSecond: number;
}

async function _runMicro(): Promise<_MicroRow[]> {
  const file = new URL("./micro_bench.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "--json", file],
    stdin: "null",
    stderr: "inherit",
  }).output();
  if (!output.success) throw new Error("The micro benchmarks failed");
  const report = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    benches: { name: string; results: { ok?: { avg: number } }[] }[];
  };
  const rows: _MicroRow[] = [];
  for (const bench of report.benches) {
    const micro = MICRO_CASES.find((c) => c.name === bench.name);
    const avg = bench.results[0]?.ok?.avg;
    if (!micro || avg === undefined) continue;
    rows.push({
      name: micro.name,
      group: micro.group,
      nsPerIteration: avg,
      bytesPerSecond: micro.bytes / (avg / 1e9),
      framesPerSecond: micro.frames / (avg / 1e9),
    });
  }
  return rows;
}

function _microTable(rows: _MicroRow[]): string {
  const time = (ns: number) =>
    ns >= 1e6
      ? `${(ns / 1e6).toFixed(2)} ms`
      : ns >= 1e3
      ? `${(ns / 1e3).toFixed(1)} µs`
      : `${ns.toFixed(0)} ns`;
  const rate = (bytes: number) =>
    bytes >= 1024 ** 3
      ? `${(bytes / 1024 ** 3).toFixed(2)} GiB/s`
      : `${(bytes / MiB).toFixed(0)} MiB/s`;
  const lines = [
    "| Case | Time per iteration | Payload throughput | Frames/s |",
    "| --- | --- | --- | --- |",
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.name} | ${time(row.nsPerIteration)} | ${
        rate(row.bytesPerSecond)
      } | ${Math.round(row.framesPerSecond).toLocaleString("en-US")} |`,
    );
  }
  return lines.join("\n");
}

async function _machine(): Promise<string> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? "unknown CPU";
  const cores = navigator.hardwareConcurrency;
  const memory = Deno.systemMemoryInfo().total / 1024 ** 3;
  return `${model}, ${cores} cores, ${memory.toFixed(0)} GiB RAM, ` +
    `Linux ${Deno.osRelease()}`;
}

/** The commit measured, marked when the module's files have changes. */
async function _source(): Promise<string> {
  const root = new URL("..", import.meta.url).pathname;
  const commit = await _shell("git rev-parse --short HEAD", root);
  if (!commit) return "unknown (not a git checkout)";
  const changed = await _shell("git status --porcelain -- src mod.ts", root);
  return changed ? `${commit} with uncommitted changes to src/` : commit;
}

/** The 1-minute load average: other work on the machine skews results. */
async function _loadAverage(): Promise<string> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return text.split(" ")[0] || "unknown";
}

/**
 * Finds or installs Bun and Node.js for the servers that run on them, and
 * leaves out (with a note) those that cannot run here. Returns what runs.
 */
async function _prepareRuntimes(
  flags: _Flags,
  wsVersion: string,
): Promise<string[]> {
  const needed = new Set<Runtime>();
  for (const name of flags.servers) {
    const runtime = (SERVERS[name] as ServerSpec).runtime;
    if (runtime !== "deno") needed.add(runtime);
  }
  const versions: string[] = [];
  for (const runtime of needed) {
    try {
      versions.push((await prepareRuntime(runtime, wsVersion)).version);
    } catch (error) {
      const left = flags.servers.filter((name) =>
        SERVERS[name].runtime === runtime
      );
      console.log(
        `Leaving out ${left.map((name) => SERVERS[name].label).join(", ")}: ${
          (error as Error).message
        }`,
      );
      flags.servers = flags.servers.filter((name) => !left.includes(name));
    }
  }
  return versions;
}

async function _wsVersion(): Promise<string> {
  try {
    const lock = JSON.parse(
      await Deno.readTextFile(new URL("../deno.lock", import.meta.url)),
    );
    return lock.specifiers?.["npm:ws@8"] ?? "8";
  } catch {
    return "8";
  }
}

async function main(): Promise<void> {
  const flags = _parseFlags(Deno.args);
  const fdLimit = await _ensureFdLimit(
    Math.max(...flags.scenarios.map((id) => _fdsFor(id, flags))),
  );
  const idleScenarios = IDLE_SCENARIOS.filter((id) =>
    flags.scenarios.includes(id)
  );
  if (idleScenarios.length > 0) {
    const fit = Math.max(
      0,
      Math.min(flags.idle, fdLimit - IDLE_WARM - FD_SPARE),
    );
    if (fit < flags.idle) {
      console.log(
        `The open file limit (${fdLimit}) allows only ${fit} idle connections`,
      );
      flags.idle = fit;
    }
    if (flags.idle === 0) {
      console.log(
        `Skipping (${idleScenarios.join("), (")}): no idle connections to open`,
      );
      flags.scenarios = flags.scenarios.filter((id) =>
        !IDLE_SCENARIOS.includes(id)
      );
    }
  }
  for (const id of ["e", "k", "l", "m"]) {
    const needed = _fdsFor(id, flags);
    if (flags.scenarios.includes(id) && fdLimit < needed) {
      console.log(
        `The open file limit (${fdLimit}) is below the ${needed} that (${id}) needs: expect failed handshakes`,
      );
    }
  }
  if (flags.scenarios.includes("g")) {
    const fit = flags.subscribers.filter((n) => n + 1 + FD_SPARE <= fdLimit);
    if (fit.length < flags.subscribers.length) {
      console.log(
        `The open file limit (${fdLimit}) is too low for (g) with ${
          flags.subscribers.filter((n) => !fit.includes(n)).map(_n).join(
            " and ",
          )
        } subscribers: left out`,
      );
      flags.subscribers = fit;
      if (fit.length === 0) {
        flags.scenarios = flags.scenarios.filter((id) => id !== "g");
      }
    }
  }
  if (flags.base !== undefined) {
    const base = await Deno.realPath(flags.base);
    const commit = await _shell("git rev-parse --short HEAD", base);
    setBase(base, `@scope/ws at ${commit || base}`);
  }
  if (["h", "l", "m"].some((id) => flags.scenarios.includes(id))) {
    flags.redis = await RedisProcess.available();
  }
  if (!flags.redis) {
    if (["h", "l", "m"].some((id) => flags.scenarios.includes(id))) {
      console.log(
        `No redis-server (apt-get install redis-server): skipping (h), and (l) and (m) without Redis`,
      );
    }
    flags.scenarios = flags.scenarios.filter((id) => id !== "h");
  }
  const usesLoadgen = ["e", "f", "g", "h", "k", "l", "m"].filter((id) =>
    flags.scenarios.includes(id)
  );
  if (usesLoadgen.length > 0) {
    try {
      await buildLoadgen();
    } catch (error) {
      console.log(
        `Skipping (${
          usesLoadgen.join("), (")
        }): the C load generator did not build: ${(error as Error).message}`,
      );
      flags.scenarios = flags.scenarios.filter((id) =>
        !usesLoadgen.includes(id)
      );
    }
  }
  const wsVersion = await _wsVersion();
  const runtimes = await _prepareRuntimes(flags, wsVersion);
  if (flags.profile) {
    flags.profile = await Deno.realPath(
      await Deno.mkdir(flags.profile, { recursive: true }).then(() =>
        flags.profile!
      ),
    );
  }
  const command = ["deno task bench", ...Deno.args].join(" ");
  const machine = await _machine();
  const source = await _source();
  const runtimeNote = [
    `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); npm:ws ${wsVersion} runs on Deno's Node.js compatibility layer`,
    ...runtimes,
  ].join("; ");
  const idleRun = IDLE_SCENARIOS.filter((id) => flags.scenarios.includes(id));
  const setup = [
    `${flags.rounds} round(s)`,
    `per run ${flags.warmup} ms warm-up, then ${flags.duration} ms measured`,
    ...(idleRun.length > 0
      ? [
        `in (${idleRun.join(") and (")}), ${
          flags.idle.toLocaleString("en-US")
        } idle connections opened after ${IDLE_WARM.toLocaleString("en-US")}`,
      ]
      : []),
    ...(flags.pin && flags.scenarios.includes("b")
      ? ["in (b) the generator and the server are pinned to CPU 0 (taskset)"]
      : []),
    ...(flags.scenarios.includes("e")
      ? ["(e) times its handshakes from the first to the last, no warm-up"]
      : []),
    ...(flags.scenarios.includes("g")
      ? [
        `in (g), ${flags.subscribers.map(_n).join(", ")} subscribers, ${
          flags.sizes.map((size) => `${_n(size)} B`).join(", ")
        } messages (the first size at every N, the others at 1,000 and more), a fresh server for each`,
      ]
      : []),
    ...(flags.scenarios.includes("k")
      ? [
        `in (k), ${
          _n(RECONNECT.subscribers)
        } subscribers reconnecting all at once, then ${RECONNECT.paced} at a time, a fresh server for each`,
      ]
      : []),
    ...(flags.scenarios.includes("h")
      ? [
        "in (h), a fresh redis-server and two fresh servers for each number of subscribers",
      ]
      : []),
    ...(flags.scenarios.includes("l")
      ? [
        `in (l), ${
          _n(HISTORY_FANOUT.subscribers)
        } subscribers, a fresh server (and redis-server) for each variant, Bun's plain publish run once per round beside them`,
      ]
      : []),
    ...(flags.scenarios.includes("m")
      ? [
        `in (m), ${
          _n(RECOVERY.clients)
        } live clients missing ${RECOVERY.missed} publications each, a fresh server (and redis-server) for each run`,
      ]
      : []),
  ].join("; ");
  console.log(`${command}\n${machine}\n${runtimeNote}\n${setup}\n`);
  const loadBefore = await _loadAverage();
  let results: Results;
  try {
    results = await _runScenarios(flags);
  } finally {
    await removeLoadgen();
  }
  const micro = flags.micro ? await _runMicro() : [];
  const loadAfter = await _loadAverage();

  const table = resultsTable(results, METRICS, flags.servers);
  const cpu = mediansTable(results, CPU_METRICS, flags.servers);
  console.log(`\nMedians of ${flags.rounds} round(s):\n\n${table}\n`);
  console.log(`CPU during the measured window (medians):\n\n${cpu}\n`);
  if (micro.length > 0) {
    console.log(`Micro benchmarks:\n\n${_microTable(micro)}\n`);
  }
  const out = flags.out ??
    (flags.full ? new URL(".", import.meta.url).pathname : undefined);
  if (out === undefined) return;
  await Deno.mkdir(out, { recursive: true });
  const subtitle =
    `Medians of ${flags.rounds} round(s), Deno ${Deno.version.deno}, ${machine}`;
  const report = [
    "# Benchmark results",
    "",
    "Written by `deno task bench` (bench/run.ts); see bench/README.md for how to read it.",
    "",
    `- Command: \`${command}\``,
    `- Date: ${new Date().toISOString().slice(0, 10)}`,
    `- Source measured: ${source}`,
    `- Machine: ${machine}`,
    `- Runtimes: ${runtimeNote}`,
    `- Setup: ${setup}; servers alternated run by run, each run in a fresh server subprocess`,
    "- The load generators share the cores with the server: bench/load.ts runs (a)–(d) and (i) in the benchmark's own process, bench/loadgen.c (compiled with `cc -O2`) runs (e)–(h) and (k)–(m) as a subprocess; in (h), (l) and (m) redis-server shares them too",
    `- 1-minute load average before and after the run (other work on the machine skews results): ${loadBefore}, ${loadAfter}`,
    "",
    `## Medians of ${flags.rounds} round(s)`,
    "",
    ...flags.scenarios.map((id) => `- (${id}) ${TITLES[id]}`),
    "",
    table,
    "",
    "![Ratios of @scope/ws to each peer](ratios.svg)",
    "",
    "## CPU during the measured window (medians)",
    "",
    cpu,
    "",
    "## Every run",
    "",
    runsTable(results, RUN_METRICS, flags.servers),
    "",
    ...(micro.length > 0
      ? [
        "## Micro benchmarks (`deno bench bench/micro_bench.ts`)",
        "",
        _microTable(micro),
        "",
      ]
      : []),
  ].join("\n");
  const files = ["results.md", "results.json", "ratios.svg"].map((name) =>
    `${out}/${name}`
  );
  await Deno.writeTextFile(`${out}/results.md`, report);
  const raw = {
    command,
    date: new Date().toISOString(),
    machine,
    source,
    deno: Deno.version,
    ws: wsVersion,
    runtimes,
    flags,
    loadAverage: [loadBefore, loadAfter],
    samples: Object.fromEntries(
      [...results].map(([id, byServer]) => [
        id,
        Object.fromEntries(
          [...byServer].map((
            [server, samples],
          ) => [server, samples.map((sample) => sample.values)]),
        ),
      ]),
    ),
    micro,
  };
  await Deno.writeTextFile(
    `${out}/results.json`,
    JSON.stringify(raw, null, 2) + "\n",
  );
  await Deno.writeTextFile(
    `${out}/ratios.svg`,
    ratioChart(results, METRICS, flags.servers, subtitle),
  );
  // Keep the written files as `deno fmt` wants them (CI checks formatting).
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", ...files],
    stdin: "null",
  }).output();
  console.log(`Wrote results.md, results.json and ratios.svg to ${out}`);
}

if (import.meta.main) await main();
