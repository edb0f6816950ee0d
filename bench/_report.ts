/**
 * The benchmark's report: the markdown tables and the SVG bar chart of the
 * ratios, from the samples of every run.
 *
 * @module
 */
import { type ServerName, SERVERS } from "./_server_process.ts";

/** What one run of one scenario against one server measured. */
export interface Sample {
  /** Named values, e.g. `msgs` (messages/s) or `kib` (KiB per connection). */
  values: Record<string, number>;
}

/** One row of the results table. */
export interface Metric {
  /** The scenario's id: `a` to `m`. */
  scenario: string;
  /** The key into {@linkcode Sample.values}. */
  key: string;
  /** What is measured, with its unit. */
  label: string;
  /** Whether bigger values are better. */
  higherIsBetter: boolean;
  /**
   * The target as a ratio of ours to `targetPeer`: at least this where
   * higher is better, at most where lower is.
   */
  targetRatio?: number;
  /** The peer of `targetRatio`; default `Deno.upgradeWebSocket`. */
  targetPeer?: ServerName;
  /** The target as a maximum of our own value. */
  targetMax?: number;
  /** The unit of an absolute target, for the chart. */
  unit?: string;
  /** Short name in the chart; metrics without one are not charted. */
  chartLabel?: string;
  /** How many decimals to print. */
  decimals: number;
}

/** Every scenario's samples: scenario id → server → samples. */
export type Results = Map<string, Map<ServerName, Sample[]>>;

/** The middle value (mean of the two middle ones for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The value at quantile `q` (0–1) of `values`, nearest rank. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** The median of one metric for one server, or NaN without samples. */
export function medianOf(
  results: Results,
  metric: Metric,
  server: ServerName,
): number {
  const samples = results.get(metric.scenario)?.get(server) ?? [];
  return median(samples.map((sample) => sample.values[metric.key]));
}

function _format(value: number, decimals: number): string {
  if (!Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}

function _ratio(ours: number, peer: number): number {
  return ours / peer;
}

function _formatRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : "–";
}

/** Whether our median meets the metric's target, if it has one. */
export function targetMet(
  results: Results,
  metric: Metric,
): boolean | undefined {
  const ours = medianOf(results, metric, "ours");
  if (metric.targetMax !== undefined) return ours <= metric.targetMax;
  if (metric.targetRatio !== undefined) {
    const ratio = _ratio(
      ours,
      medianOf(results, metric, metric.targetPeer ?? "deno"),
    );
    if (!Number.isFinite(ratio)) return undefined;
    return metric.higherIsBetter
      ? ratio >= metric.targetRatio
      : ratio <= metric.targetRatio;
  }
  return undefined;
}

/**
 * The results table in markdown: the median per server, the ratio of ours
 * to each peer, and the target.
 */
export function resultsTable(
  results: Results,
  metrics: Metric[],
  servers: ServerName[],
): string {
  const peers = servers.filter((server) => server !== "ours");
  const header = [
    "Scenario",
    "Metric",
    ...servers.map((server) => SERVERS[server].label),
    ...peers.map((peer) => `ours ÷ ${SERVERS[peer].label}`),
    "Target",
    "Met",
  ];
  const rows = [header, header.map(() => "---")];
  for (const metric of metrics) {
    if (!results.has(metric.scenario)) continue;
    const medians = servers.map((server) => medianOf(results, metric, server));
    // A metric no server measured (a number of subscribers not run).
    if (!medians.some(Number.isFinite)) continue;
    const ours = medianOf(results, metric, "ours");
    const target = metric.targetMax !== undefined
      ? `≤ ${metric.targetMax}${metric.unit ? " " + metric.unit : ""} (ours)`
      : metric.targetRatio !== undefined
      ? `${metric.higherIsBetter ? "≥" : "≤"} ${
        metric.targetRatio.toFixed(1)
      }× ${metric.targetPeer ? SERVERS[metric.targetPeer].label : "Deno"}`
      : "";
    const met = targetMet(results, metric);
    rows.push([
      `(${metric.scenario})`,
      `${metric.label} (${
        metric.higherIsBetter ? "higher" : "lower"
      } is better)`,
      ...medians.map((value) => _format(value, metric.decimals)),
      ...peers.map((peer) =>
        _formatRatio(_ratio(ours, medianOf(results, metric, peer)))
      ),
      target,
      met === undefined ? "" : met ? "yes" : "**no**",
    ]);
  }
  return rows.map((row) => `| ${row.join(" | ")} |`).join("\n");
}

/** The median per server of each metric, without ratios or targets. */
export function mediansTable(
  results: Results,
  metrics: Metric[],
  servers: ServerName[],
): string {
  return _metricsTable(
    results,
    metrics,
    servers,
    (metric, server) =>
      _format(medianOf(results, metric, server), metric.decimals),
  );
}

/** Every run's value of every metric, for the record. */
export function runsTable(
  results: Results,
  metrics: Metric[],
  servers: ServerName[],
): string {
  return _metricsTable(
    results,
    metrics,
    servers,
    (metric, server) =>
      (results.get(metric.scenario)!.get(server) ?? [])
        .map((sample) => _format(sample.values[metric.key], metric.decimals))
        .join(", "),
  );
}

/**
 * A table with a row per measured metric and a column per server, each cell
 * made by `cell`.
 */
function _metricsTable(
  results: Results,
  metrics: Metric[],
  servers: ServerName[],
  cell: (metric: Metric, server: ServerName) => string,
): string {
  const header = [
    "Scenario",
    "Metric",
    ...servers.map((server) => SERVERS[server].label),
  ];
  const rows = [header, header.map(() => "---")];
  for (const metric of metrics) {
    if (!results.has(metric.scenario)) continue;
    if (
      !servers.some((server) =>
        Number.isFinite(medianOf(results, metric, server))
      )
    ) {
      continue;
    }
    rows.push([
      `(${metric.scenario})`,
      metric.label,
      ...servers.map((server) => cell(metric, server)),
    ]);
  }
  return rows.map((row) => `| ${row.join(" | ")} |`).join("\n");
}

/** One bar group of the chart. */
interface _Group {
  label: string;
  note: string;
  bars: { peer: ServerName; value: number }[];
  target?: number;
  targetLabel: string;
}

const PEER_COLORS: Partial<Record<ServerName, string>> = {
  deno: "#2f6fb0",
  ws: "#e0892b",
  bun: "#8e5bb5",
  node: "#3f9a4f",
  floor: "#888",
  floorstreams: "#aaa",
  floorwebcrypto: "#c4a24a",
};

function _escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;");
}

/**
 * A bar chart (SVG, written by hand) of how ours compares with each peer per
 * charted metric. Bars are "times better than the peer": ours ÷ peer where
 * higher is better, peer ÷ ours where lower is better (memory, latency), so
 * that above 1.0× always means ours wins.
 */
export function ratioChart(
  results: Results,
  metrics: Metric[],
  servers: ServerName[],
  subtitle: string,
): string {
  const peers = servers.filter((server) => server !== "ours");
  const groups: _Group[] = [];
  for (const metric of metrics) {
    if (!metric.chartLabel || !results.has(metric.scenario)) continue;
    const ours = medianOf(results, metric, "ours");
    const bars = peers.map((peer) => {
      const theirs = medianOf(results, metric, peer);
      return {
        peer,
        value: metric.higherIsBetter ? ours / theirs : theirs / ours,
      };
    });
    // A scenario ours did not run (e.g. (g) before the topic API) has no bars.
    if (!bars.some((bar) => Number.isFinite(bar.value))) continue;
    let note = metric.higherIsBetter ? "ours ÷ peer" : "peer ÷ ours";
    // Only targets against Deno are drawn: the line is read against the
    // bars of each peer, as "ours ÷ Deno".
    let target = metric.targetPeer === undefined ||
        metric.targetPeer === "deno"
      ? metric.targetRatio
      : undefined;
    let targetLabel = target === undefined
      ? ""
      : `target ≥ ${target.toFixed(1)}×`;
    if (metric.targetMax !== undefined) {
      const unit = metric.unit ? ` ${metric.unit}` : "";
      note = `ours ${_format(ours, metric.decimals)}${unit}, peer ÷ ours`;
      // An absolute maximum, drawn where it puts the bar against Deno's.
      target = medianOf(results, metric, "deno") / metric.targetMax;
      targetLabel = `target ≤ ${metric.targetMax}${unit}`;
    }
    groups.push({
      label: metric.chartLabel,
      note,
      bars,
      target: Number.isFinite(target) ? target : undefined,
      targetLabel,
    });
  }
  // Wide enough for every group's bars and labels, and for the legend.
  const width = Math.max(
    860,
    80 + groups.length * Math.max(120, peers.length * 34),
  );
  const height = 440;
  const left = 60;
  const right = 20;
  const top = 70;
  const bottom = 95;
  const plotHeight = height - top - bottom;
  const plotWidth = width - left - right;
  const values = groups.flatMap((group) => [
    ...group.bars.map((bar) => bar.value),
    group.target ?? 0,
  ]).filter(Number.isFinite);
  const yMax = Math.max(2.5, Math.ceil(Math.max(...values, 0) * 1.15 * 2) / 2);
  const y = (value: number) => top + plotHeight * (1 - value / yMax);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="600">@scope/ws compared with each peer (above 1.0× = @scope/ws wins)</text>`,
    `<text x="${left}" y="44" fill="#555">${_escape(subtitle)}</text>`,
  );
  for (let tick = 0; tick <= yMax + 1e-9; tick += 0.5) {
    const ty = y(tick);
    out.push(
      `<line x1="${left}" y1="${ty}" x2="${width - right}" y2="${ty}" stroke="${
        tick === 1 ? "#222" : "#e4e4e4"
      }" stroke-width="${tick === 1 ? 1.5 : 1}"${
        tick === 1 ? ' stroke-dasharray="6 4"' : ""
      }/>`,
      `<text x="${left - 8}" y="${ty + 4}" text-anchor="end" fill="#555">${
        tick.toFixed(1)
      }×</text>`,
    );
  }
  const groupWidth = plotWidth / Math.max(groups.length, 1);
  const barWidth = Math.min(48, (groupWidth * 0.7) / Math.max(peers.length, 1));
  groups.forEach((group, g) => {
    const center = left + groupWidth * (g + 0.5);
    const start = center - (barWidth * group.bars.length) / 2;
    group.bars.forEach((bar, b) => {
      const x = start + b * barWidth;
      const value = Number.isFinite(bar.value) ? Math.min(bar.value, yMax) : 0;
      out.push(
        `<rect x="${x + 2}" y="${y(value)}" width="${barWidth - 4}" height="${
          y(0) - y(value)
        }" fill="${PEER_COLORS[bar.peer] ?? "#888"}"/>`,
        `<text x="${x + barWidth / 2}" y="${
          y(value) - 5
        }" text-anchor="middle" font-size="11">${
          Number.isFinite(bar.value) ? bar.value.toFixed(2) + "×" : "–"
        }</text>`,
      );
    });
    if (group.target !== undefined) {
      const ty = y(group.target);
      const x1 = start - 6;
      const x2 = start + barWidth * group.bars.length + 6;
      out.push(
        `<line x1="${x1}" y1="${ty}" x2="${x2}" y2="${ty}" stroke="#c0392b" stroke-width="2.5"/>`,
      );
    }
    out.push(
      `<text x="${center}" y="${
        height - bottom + 20
      }" text-anchor="middle" font-weight="600">${_escape(group.label)}</text>`,
      `<text x="${center}" y="${
        height - bottom + 36
      }" text-anchor="middle" fill="#555" font-size="11">${
        _escape(group.note)
      }</text>`,
      `<text x="${center}" y="${
        height - bottom + 51
      }" text-anchor="middle" fill="#c0392b" font-size="11">${
        _escape(group.targetLabel)
      }</text>`,
    );
  });
  let legendX = left;
  for (const peer of peers) {
    out.push(
      `<rect x="${legendX}" y="${height - 24}" width="14" height="14" fill="${
        PEER_COLORS[peer] ?? "#888"
      }"/>`,
      `<text x="${legendX + 20}" y="${height - 12}">vs ${
        _escape(SERVERS[peer].label)
      }</text>`,
    );
    legendX += 50 + 7 * SERVERS[peer].label.length;
  }
  out.push(
    `<line x1="${legendX}" y1="${height - 17}" x2="${legendX + 24}" y2="${
      height - 17
    }" stroke="#c0392b" stroke-width="2.5"/>`,
    `<text x="${legendX + 30}" y="${
      height - 12
    }">target (vs Deno.upgradeWebSocket)</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}
