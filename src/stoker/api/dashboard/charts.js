// Charts: the daemon's recent figures (GET /api/v1/history) drawn with uPlot (uPlot.iife.min.js,
// vendored beside this file, loaded as a classic script: the global `uPlot`).
//
// An overview (jobs done and failed, queue depth, programs running, restarts, the daemon's own
// memory and CPU), a chart per queue,
// memory and CPU per program with its restarts marked, lateness per schedule. Hovering a chart
// shows the values of that slot in its legend. The points refresh on the daemon's events (a
// job that ends shows without a reload) and every slot (10 s) for what is sampled, not told.
//
// What each chart holds is on `window.stokerCharts[key]` ({data: {times, series}, plot}): what
// the browser tests read, and a way to look at the numbers from the console.

import * as api from "./api.js";
import { bytes, duration } from "./format.js";
import { coalesce, fill, h, part, serial } from "./dom.js";

const RANGES = ["1h", "6h", "24h"];
const HEIGHT = 150;
window.stokerCharts = {};

// Element-wise sum of some series (null where every one is null).
export function sum(all, length) {
  const out = new Array(length).fill(null);
  for (const points of all) {
    points?.forEach((p, i) => {
      if (p !== null) out[i] = (out[i] ?? 0) + p;
    });
  }
  return out;
}

// Whether a series has few enough points to draw each (uPlot's points.show).
function sparse(u, si) {
  let n = 0;
  for (const v of u.data[si]) if (v !== null && v !== undefined && ++n > 30) return false;
  return true;
}

// The index of the last point that is not null (null if none).
function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return i;
  return null;
}

const count = (v) => (v === null || v === undefined ? "—" : String(Math.round(v * 100) / 100));
const seconds = (v) => (v === null || v === undefined ? "—" : v < 60 ? `${v.toFixed(v < 1 ? 3 : 1)}s` : duration(v));
const cpu = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)}%`);
const memory = (v) => (v === null || v === undefined ? "—" : bytes(Math.round(v)));

function theme() {
  const style = getComputedStyle(document.documentElement);
  const v = (name) => style.getPropertyValue(name).trim();
  return { fg: v("--fg"), muted: v("--muted"), line: v("--line"), ok: v("--ok"), bad: v("--bad"),
    accent: v("--accent"), warn: v("--warn") };
}

// One chart: `lines` [{label, color, values, format, points (markers only)}].
class Chart {
  constructor(key, title) {
    this.key = key;
    this.plot = null;
    this.shape = "";
    this.box = h("div", { class: "chart-plot" });
    this.element = h("figure", { class: "chart", dataset: { chart: key } }, h("figcaption", {}, title), this.box);
  }

  set(times, lines, width) {
    this.lines = lines; // (the legend's value functions read the latest)
    const data = { times, series: Object.fromEntries(lines.map((l) => [l.label, l.raw ?? l.values])) };
    window.stokerCharts[this.key] = { data, plot: null };
    const shape = `${lines.map((l) => l.label).join("|")}@${width}`;
    const columns = [times, ...lines.map((l) => l.values)];
    if (this.plot && this.shape === shape) {
      this.plot.setData(columns);
    } else {
      this.plot?.destroy();
      this.shape = shape;
      this.plot = new uPlot(this.options(lines, width), columns, this.box);
    }
    window.stokerCharts[this.key].plot = this.plot;
  }

  options(lines, width) {
    const t = theme();
    const axis = { stroke: t.muted, grid: { stroke: t.line, width: 1 }, ticks: { stroke: t.line, width: 1 } };
    const scales = { x: { time: true } };
    const series = [{ label: "time" }];
    const axes = [{ ...axis }];
    const units = [];
    for (const line of lines) {
      const color = t[line.color] ?? line.color;
      const scale = line.points ? "marks" : line.scale ?? "y";
      if (line.points) scales.marks = { auto: false, range: () => [0, 1.15] };
      series.push({
        label: line.label,
        stroke: color,
        width: 1.5,
        scale,
        spanGaps: false,
        // the hovered slot's value; not hovering, the latest
        value: (u, v, si, i) => {
          const now = this.lines[si - 1];
          const at = i ?? latest(now.raw ?? now.values);
          return now.legend ? now.legend(at) : now.format(at === null ? null : now.values[at]);
        },
        // a few points (a daemon just started): dots, or a lone point would not show
        ...(line.points ? { paths: () => null, points: { show: true, size: 9, fill: color } } : { points: { show: sparse, size: 5, fill: color } }),
      });
      if (!line.points && !units.includes(scale)) {
        units.push(scale);
        axes.push({ ...axis, scale, side: units.length === 1 ? 3 : 1, size: 72, values: (u, ticks) => ticks.map(line.format) });
      }
    }
    return { width, height: HEIGHT, scales, series, axes, legend: { live: true }, cursor: { y: false } };
  }

  destroy() {
    this.plot?.destroy();
    delete window.stokerCharts[this.key];
  }
}

export class ChartsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.range = "1h";
    this.charts = new Map();
    this.load = serial(() => this.read());
    this.buttons = RANGES.map((r) =>
      h("button", { type: "button", dataset: { range: r }, "aria-pressed": String(r === this.range), onclick: () => this.pick(r) }, r),
    );
    this.overview = h("div", { class: "charts" });
    this.queues = h("div", { class: "charts" });
    this.programs = h("div", { class: "charts" });
    this.schedules = h("div", { class: "charts" });
    this.element = h(
      "section",
      { "aria-labelledby": "charts-title" },
      h("div", { class: "view-head" }, h("h2", { id: "charts-title" }, "Charts"),
        h("div", { class: "ranges", role: "group", "aria-label": "Time range" }, this.buttons),
        (this.note = h("span", { id: "charts-note", class: "muted" }))),
      part("charts-overview", "Overview", this.overview),
      part("charts-queues", "Queues", this.queues),
      part("charts-programs", "Programs", this.programs),
      part("charts-schedules", "Schedules", this.schedules),
    );
    this.reloadSoon = coalesce(() => this.load().catch(ctx.failed), 2000); // a whole range each time: not too often
    this.timer = null;
    this.width = 0;
    this.resized = new ResizeObserver(coalesce(() => this.redraw(), 200));
  }

  async show() {
    this.resized.observe(this.overview);
    await this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load().catch(this.ctx.failed), 10_000); // what is sampled
  }

  hide() {
    clearInterval(this.timer);
    this.resized.disconnect();
  }

  event(e) {
    if (e.type === "job" || e.type === "program") this.reloadSoon();
  }

  pick(range) {
    this.range = range;
    for (const b of this.buttons) b.setAttribute("aria-pressed", String(b.dataset.range === range));
    this.load().catch(this.ctx.failed);
  }

  async read() {
    this.history = await api.get(`${api.path("history")}?range=${this.range}`);
    this.draw();
  }

  redraw() {
    if (this.history && this.chartWidth() !== this.width) this.draw();
  }

  chartWidth() {
    const room = this.overview.clientWidth;
    if (room < 560) return Math.max(240, room - 2); // a phone: one chart a row
    return Math.floor((room - 16) / 2) - 2; // two a row
  }

  draw() {
    const hist = this.history;
    const n = hist.times.length;
    const width = (this.width = this.chartWidth());
    const seen = new Set();
    const put = (where, key, title, lines) => {
      seen.add(key);
      let chart = this.charts.get(key);
      if (!chart) {
        chart = new Chart(key, title);
        this.charts.set(key, chart);
      }
      if (chart.element.parentNode !== where) where.append(chart.element);
      chart.set(hist.times, lines, width);
    };
    const queues = Object.values(hist.queues);
    const programs = Object.values(hist.programs);
    put(this.overview, "overview-jobs", "Jobs done and failed", [
      { label: "done", color: "ok", values: sum(queues.map((q) => q.succeeded), n), format: count },
      { label: "failed", color: "bad", values: sum(queues.map((q) => q.failed), n), format: count },
    ]);
    put(this.overview, "overview-depth", "Jobs queued", [
      { label: "queued", color: "accent", values: sum(queues.map((q) => q.depth), n), format: count },
    ]);
    put(this.overview, "overview-running", "Programs running", [
      { label: "running", color: "ok", values: sum(programs.map((p) => p.running), n), format: count },
    ]);
    put(this.overview, "overview-restarts", "Restarts", [
      { label: "restarts", color: "warn", values: sum(programs.map((p) => p.restarts), n), format: count },
    ]);
    put(this.overview, "overview-daemon", "The daemon itself", [
      { label: "memory", color: "accent", values: hist.daemon.rss ?? new Array(n).fill(null), format: memory },
      { label: "CPU", color: "ok", values: hist.daemon.cpu ?? new Array(n).fill(null), format: cpu, scale: "%" },
    ]);
    for (const [name, q] of Object.entries(hist.queues)) {
      put(this.queues, `queue-${name}`, `Queue ${name}`, [
        { label: "done", color: "ok", values: q.succeeded, format: count },
        { label: "failed", color: "bad", values: q.failed, format: count },
        { label: "queued", color: "accent", values: q.depth, format: count },
        { label: "wait p95", color: "warn", values: q.wait_p95, format: seconds, scale: "s" },
        { label: "run p95", color: "muted", values: q.run_p95, format: seconds, scale: "s" },
      ]);
    }
    for (const [name, p] of Object.entries(hist.programs)) {
      // restarts: a marker on top of each slot that had any; its legend says how many
      const marks = p.restarts.map((r) => (r ? 1 : null));
      const restarts = (i) => (i === null || i === undefined ? "—" : count(p.restarts[i]));
      put(this.programs, `program-${name}`, `Program ${name}`, [
        { label: "memory", color: "accent", values: p.memory, format: memory },
        { label: "CPU", color: "ok", values: p.cpu, format: cpu, scale: "%" },
        { label: "restarts", color: "bad", values: marks, raw: p.restarts, format: count, legend: restarts, points: true },
      ]);
    }
    for (const [name, s] of Object.entries(hist.schedules)) {
      put(this.schedules, `schedule-${name}`, `Schedule ${name}`, [
        { label: "lateness", color: "warn", values: s.lateness, format: seconds },
        { label: "succeeded", color: "ok", values: s.succeeded, format: count, scale: "n" },
        { label: "failed", color: "bad", values: s.failed, format: count, scale: "n" },
      ]);
    }
    for (const [key, chart] of this.charts) {
      if (!seen.has(key)) {
        chart.element.remove();
        chart.destroy();
        this.charts.delete(key);
      }
    }
    for (const [where, what] of [[this.queues, "queues"], [this.programs, "programs"], [this.schedules, "schedules"]]) {
      const empty = where.querySelector(".empty");
      if (!Object.keys(hist[what]).length && !empty) where.append(h("p", { class: "muted empty" }, `No ${what} yet.`));
      else if (Object.keys(hist[what]).length) empty?.remove();
    }
    const step = hist.step === 10 ? "10-second" : `${hist.step / 60}-minute`;
    const left = hist.omitted ? ` · ${hist.omitted} left out (more than 32 of a kind)` : "";
    fill(this.note, `${step} slots, this node since its daemon started${left}`);
  }
}
