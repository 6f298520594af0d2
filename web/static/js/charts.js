// Time-series charts (uPlot): history from /api/history, then live points from metrics events.
import uPlot from "../vendor/uPlot-1.6.32.esm.js";
import { bytes, percent, rate, setText, short } from "./format.js";
import { apiUrl, config } from "./config.js";
import { scheduler } from "./frame.js";
import { Series, valueAt } from "./series.js";

const WINDOWS = { "5m": 300, "15m": 900, "1h": 3600, "24h": 86400 };
const PLOT_HEIGHT = 150;
const PCT = { range: [0, 100], axis: (v) => `${v}%`, value: (v) => percent(v) };
const BYTES = { axis: (v) => bytes(v, 0), value: rate, bytes: true };
const LOAD = { axis: short, value: (v) => (v == null ? "–" : v.toFixed(2)) };

// Each chart, by its id in the page (data-chart): the history keys it plots, their labels, and
// how values read. The per-core chart's keys are cpu.per_core.0 … n-1, n known once data comes.
const DEFS = {
  cpu: { keys: ["cpu.user", "cpu.system", "cpu.iowait"], labels: ["user", "system", "iowait"], stacked: true, ...PCT },
  cores: { perCore: true, ...PCT },
  load: { keys: ["load.1m", "load.5m", "load.15m"], labels: ["1 min", "5 min", "15 min"], ...LOAD },
  memory: { keys: ["memory.percent", "swap.percent"], labels: ["memory", "swap"], ...PCT },
  diskio: { keys: ["disk_io.read_bytes_per_s", "disk_io.write_bytes_per_s"], labels: ["read", "write"], ...BYTES },
  netio: { keys: ["net.rx_bytes_per_s", "net.tx_bytes_per_s"], labels: ["rx", "tx"], ...BYTES },
};
// Byte axes tick at 1, 2, 5 × powers of 1024, so labels read "200 KiB", not "195.3 KiB".
const BYTE_INCRS = [0, 1, 2, 3, 4, 5].flatMap((k) => [1, 2, 5, 10, 20, 50, 100, 200, 500].map((m) => m * 1024 ** k));

const store = new Series();
let windowName = "15m";
const charts = new Map(); // id → uPlot
let loading = 0;          // token of the history request in flight; live points wait for it
let queued = [];
let again = false;        // a gap came while history was loading: load it again after
let cores = 0;

const keysOf = (id) => (DEFS[id].perCore ? coreKeys() : DEFS[id].keys);
const coreKeys = (n = cores) => Array.from({ length: n }, (_, i) => `cpu.per_core.${i}`);
const CORE_KEY = /^cpu\.per_core\.\d+$/;
// every key some chart plots, the per-core ones for `n` cores
const allKeys = (n = cores) => [...Object.values(DEFS).flatMap((d) => d.keys ?? []), ...coreKeys(n)];

function palette() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return { axis: v("--muted"), grid: v("--grid"), series: [1, 2, 3, 4, 5, 6, 7, 8].map((i) => v(`--c${i}`)) };
}

function options(id, width) {
  const def = DEFS[id];
  const pal = palette();
  const keys = keysOf(id);
  const color = (i) => pal.series[i % pal.series.length];
  const series = [{}];
  keys.forEach((key, i) => {
    const label = def.perCore ? `cpu${i}` : def.labels[i];
    const s = { label, stroke: color(i), width: def.perCore ? 1 : 1.5, points: { size: 4 } };
    // Off the plot, the legend shows the newest value; on it, the value under the cursor.
    s.value = (u, _v, _si, di) => {
      const c = store.cols.get(key);
      return def.value(c?.[di ?? c.length - 1]);
    };
    // stacked: only "user" is stroked; system and iowait are the bands above it
    if (def.stacked) { s.fill = `${color(i)}${i === 0 ? "99" : "00"}`; s.width = i === 0 ? 1 : 0; }
    else if (keys.length <= 2) s.fill = `${color(i)}1a`;
    series.push(s);
  });
  const axis = { stroke: pal.axis, grid: { stroke: pal.grid, width: 1 }, ticks: { show: false }, font: "11px system-ui, sans-serif" };
  const windowS = WINDOWS[windowName];
  return {
    width, height: PLOT_HEIGHT, series, pxAlign: 0,
    legend: { show: !def.perCore || keys.length <= 8, live: true },
    cursor: { drag: { x: false, y: false }, points: { size: 5 } },
    bands: def.stacked ? [{ series: [2, 1], fill: `${color(1)}99` }, { series: [3, 2], fill: `${color(2)}99` }] : [],
    scales: {
      x: { time: true, range: (u, min, max) => xRange(min, max, windowS) },
      y: { range: def.range ? () => def.range : (u, min, max) => [0, max > 0 ? max * 1.15 : def.bytes ? 1024 : 1] },
    },
    axes: [
      { ...axis, space: 70, size: 24, values: timeLabels },
      { ...axis, size: def.bytes ? 62 : 44, values: (u, vals) => vals.map(def.axis), ...(def.bytes ? { incrs: BYTE_INCRS } : {}) },
    ],
  };
}

// The chosen window, ending now; while the data is shorter than the window (a server that
// just started), span the data (at least 30 s) rather than draw a sliver at the edge.
function xRange(min, max, windowS) {
  const end = max || Date.now() / 1000;
  const start = Math.max(min ?? end - windowS, end - windowS);
  return [Math.min(start, end - 30), end];
}

// One line per tick: "14:05", or "14:05:30" when ticks are under a minute apart.
function timeLabels(u, vals) {
  const step = vals.length > 1 ? vals[1] - vals[0] : 60;
  const opts = { hour: "2-digit", minute: "2-digit", hour12: false, ...(step < 60 ? { second: "2-digit" } : {}) };
  return vals.map((v) => new Date(v * 1000).toLocaleTimeString([], opts));
}

let pick = () => {};
/** fn(ts) when a point of a chart is clicked: the logs show that moment. */
export function onPick(fn) { pick = fn; }

function build(id) {
  const box = document.querySelector(`[data-chart="${id}"]`);
  charts.get(id)?.destroy();
  const u = new uPlot(options(id, Math.max(box.clientWidth, 100)), dataFor(id), box);
  u.over.title = "Click: the log lines of that moment";
  u.over.addEventListener("click", () => {
    const i = u.cursor.idx;
    if (i != null && u.data[0][i] != null) pick(u.data[0][i]);
  });
  charts.set(id, u);
}

function buildAll() {
  for (const id of Object.keys(DEFS)) build(id);
}

const dataFor = (id) => store.data(keysOf(id), DEFS[id].stacked);

const schedule = scheduler(render);

function render() {
  for (const [id, u] of charts) u.setData(dataFor(id));
  summarize();
}

let latest = null;
function summarize() {
  const m = latest;
  const text = m ? {
    cpu: percent(m.cpu?.percent),
    cores: `${cores} cores`,
    load: m.cpu?.count ? `${((m.load?.["1m"] ?? 0) / m.cpu.count).toFixed(2)} per core` : "",
    memory: m.memory ? `${bytes(m.memory.used)} of ${bytes(m.memory.total)}` : "",
    diskio: m.disk_io ? `${short((m.disk_io.read_ops_per_s ?? 0) + (m.disk_io.write_ops_per_s ?? 0))} IOPS` : "",
    netio: m.net ? `${short((m.net.rx_packets_per_s ?? 0) + (m.net.tx_packets_per_s ?? 0))} pkt/s` : "",
  } : { cpu: "–", cores: "", load: "", memory: "", diskio: "", netio: "" };
  for (const [id, value] of Object.entries(text)) {
    const node = document.querySelector(`[data-summary="${id}"]`);
    if (node) setText(node, value);
  }
}

function setCores(n) {
  if (n === cores || !(n > 0)) return;
  cores = n;
  build("cores");
}

/** Add one metrics sample: a new point, or (beyond 15 min) into the open bucket's average. */
function addSample(m) {
  latest = m;
  if (loading) { if (queued.push(m) > 2000) queued.shift(); return; }
  setCores(m.cpu?.count ?? m.cpu?.per_core?.length ?? 0);
  const values = Object.fromEntries(allKeys().map((k) => [k, valueAt(m, k)]));
  if (!store.add(m.ts, values)) return;
  store.trim(WINDOWS[windowName]);
  schedule();
}

function clear() {
  latest = null;
  store.reset(store.bucketS);
  schedule();
}

/** Fill the charts from the server's history for the chosen window (on load, reset, change,
 * and after a gap). */
export async function loadHistory() {
  const token = ++loading;
  again = false;
  const note = document.getElementById("charts-note");
  try {
    const resp = await fetch(apiUrl(config.history_url, { window: windowName }));
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const data = await resp.json();
    if (token !== loading) return;
    fill(data);
    note.hidden = true;
  } catch (err) {
    if (token !== loading) return;
    clear();
    note.textContent = `History unavailable (${err.message}); showing live data only.`;
    note.hidden = false;
  }
  loading = 0;
  const pending = queued;
  queued = [];
  pending.forEach(addSample);
  schedule();
  if (again) loadHistory();
}

/** A `gap` may have lost samples (its counts do not say which events it lost), and the
 * charts would draw a straight line across them. The server's history has them: ask again
 * (once more if a request is under way: it may have been answered before those samples were
 * lost to this page). Gaps are rare, and the history's answer is shared between pages. */
function refill() {
  if (loading) again = true;
  else loadHistory();
}

/** Take the charts' keys from /api/history's one shape (see Series.load). */
function fill(data) {
  const n = Object.keys(data.series).filter((k) => CORE_KEY.test(k)).length;
  store.load(data, allKeys(n));
  if (n) setCores(n);
}

/** Register with main.js's dispatch. */
export function install(on) {
  on("metrics", addSample);
  on("clear", clear);
  on("gap", refill);
  const select = document.getElementById("window");
  select.value = windowName;
  select.addEventListener("change", () => {
    windowName = select.value;
    buildAll();
    clear();
    loadHistory();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", buildAll);
  const resize = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const u = charts.get(entry.target.dataset.chart);
      const width = Math.floor(entry.contentRect.width);
      if (u && width > 0 && width !== u.width) u.setSize({ width, height: PLOT_HEIGHT });
    }
  });
  buildAll();
  document.querySelectorAll("[data-chart]").forEach((box) => resize.observe(box));
}
