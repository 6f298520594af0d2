// The fleet page: every host in Redis, its state and figures, live over one EventSource
// (/fleet/events: a `hello` with every host, then a `host` event whenever one changes, or
// `{name, removed: true}` when its keys are gone).
// Rows are made once per host and updated in place, a cell only when its text changes, at
// most 5 times a second (500 hosts send 500 events a second; a row changes once a second);
// sorting and filtering reorder the rows, never rebuild them. Rows are grid boxes of fixed
// columns that off screen are not rendered (content-visibility, which table rows ignore),
// so an update costs its own cells only.
import { config } from "./config.js";
import { el, percent, setText } from "./format.js";
import { scheduler } from "./frame.js";

const NS = "http://www.w3.org/2000/svg";
const STATE_ORDER = { down: 0, stale: 1, stopped: 2, up: 3 };
const hosts = new Map(); // name → latest view from the server
const rows = new Map(); // name → { tr, cells }
const dirty = new Set();
let sortKey = "name";
let sortDown = false;
let filter = "";
let isOrderStale = true;

const tbody = document.getElementById("fleet-rows");
const hostUrl = (name) => new URL(`host/${encodeURIComponent(name)}`, new URL(config.index_url || "./", location.href));

function sortValue(host, key) {
  if (key === "name") return host.name;
  if (key === "state") return STATE_ORDER[host.state] ?? -1;
  if (key === "disk") return host.disk ? host.disk.percent : -1;
  if (key === "alerts") return host.alerts.length;
  return host[key] ?? -1;
}

function makeRow(name) {
  const tr = el("div", "fleet-row");
  tr.setAttribute("role", "row");
  tr.dataset.host = name;
  const link = el("a", "host-link", name);
  link.href = hostUrl(name);
  const cells = {};
  const nameCell = el("div", "name");
  nameCell.append(link);
  tr.append(nameCell);
  for (const key of ["state", "cpu", "memory", "load", "disk", "alerts"]) {
    cells[key] = el("div", key);
    cells[key].setAttribute("role", "cell");
    tr.append(cells[key]);
  }
  const state = el("span", "pill host-state");
  cells.state.append(state);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 60 20");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.classList.add("spark");
  const line = document.createElementNS(NS, "polyline");
  svg.append(line);
  const sparkCell = el("div", "spark-cell");
  sparkCell.append(svg);
  tr.append(sparkCell);
  tr.addEventListener("click", (e) => {
    if (e.target.closest("a")) return;
    location.href = link.href;
  });
  return { tr, cells, line, state };
}

function paint(name) {
  const host = hosts.get(name);
  let row = rows.get(name);
  if (!row) {
    row = makeRow(name);
    rows.set(name, row);
    isOrderStale = true;
  }
  const { cells, line, tr, state } = row;
  if (tr.dataset.state !== host.state) {
    state.dataset.state = host.state;
    tr.dataset.state = host.state;
  }
  setText(state, host.state);
  setText(cells.cpu, percent(host.cpu));
  setText(cells.memory, percent(host.memory));
  setText(cells.load, host.load == null ? "–" : host.load.toFixed(2));
  setText(cells.disk, host.disk ? `${percent(host.disk.percent)} ${host.disk.mount}` : "–");
  setText(cells.alerts, host.alerts.join(", "));
  const firing = host.alerts.length ? "yes" : "no";
  if (cells.alerts.dataset.firing !== firing) cells.alerts.dataset.firing = firing;
  const points = host.spark || [];
  line.setAttribute(
    "points",
    points.map((v, i) => `${i + 60 - points.length},${(20 - (v / 100) * 20).toFixed(1)}`).join(" "),
  );
  if (sortKey !== "name") isOrderStale = true;
}

function matches(host) {
  if (!filter) return true;
  const text = `${host.name} ${host.state} ${host.alerts.join(" ")}`.toLowerCase();
  return filter.split(/\s+/).every((word) => text.includes(word));
}

function draw() {
  for (const name of dirty) paint(name);
  dirty.clear();
  if (isOrderStale) {
    const sorted = [...hosts.values()].sort((a, b) => {
      const x = sortValue(a, sortKey);
      const y = sortValue(b, sortKey);
      const order = x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1;
      return sortDown ? -order : order;
    });
    let shown = 0;
    const wanted = [];
    for (const host of sorted) {
      const { tr } = rows.get(host.name);
      tr.hidden = !matches(host);
      shown += tr.hidden ? 0 : 1;
      wanted.push(tr);
    }
    // Move only rows out of place: a settled order costs no DOM work.
    wanted.forEach((tr, i) => {
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    isOrderStale = false;
    document.getElementById("fleet-empty").hidden = hosts.size > 0;
    const counts = {};
    for (const host of hosts.values()) counts[host.state] = (counts[host.state] || 0) + 1;
    const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
    document.getElementById("fleet-counts").textContent =
      `${hosts.size}${summary ? ` (${summary})` : ""}${shown < hosts.size ? `, ${shown} shown` : ""}`;
  }
}

const redraw = scheduler(draw, { minIntervalMs: 200 });

/** A host no longer in Redis (retired): its row goes. */
function drop(name) {
  hosts.delete(name);
  dirty.delete(name);
  rows.get(name)?.tr.remove();
  rows.delete(name);
  isOrderStale = true;
  redraw();
}

function take(host) {
  if (host.removed) return drop(host.name);
  const before = hosts.get(host.name);
  hosts.set(host.name, host);
  dirty.add(host.name);
  if (!before || before.state !== host.state) isOrderStale = true;
  redraw();
}

function connect() {
  const state = document.getElementById("conn-state");
  const source = new EventSource(new URL(config.fleet_events_url, location.href));
  source.addEventListener("open", () => {
    state.dataset.state = "live";
    state.textContent = "live";
  });
  source.addEventListener("error", () => {
    state.dataset.state = "reconnecting";
    state.textContent = "reconnecting";
  });
  source.addEventListener("hello", (e) => {
    const { hosts: listing } = JSON.parse(e.data);
    // The whole fleet: a host dropped while this page was away is not in it.
    const names = new Set(listing.map((host) => host.name));
    for (const name of [...hosts.keys()]) if (!names.has(name)) drop(name);
    for (const host of listing) take(host);
  });
  source.addEventListener("host", (e) => take(JSON.parse(e.data)));
}

for (const button of document.querySelectorAll("button.sort")) {
  button.addEventListener("click", () => {
    const key = button.dataset.sort;
    sortDown = key === sortKey ? !sortDown : key !== "name";
    sortKey = key;
    for (const other of document.querySelectorAll("button.sort")) other.removeAttribute("aria-sort");
    button.setAttribute("aria-sort", sortDown ? "descending" : "ascending");
    isOrderStale = true;
    redraw.now();
  });
}
document.getElementById("fleet-filter").addEventListener("input", (e) => {
  filter = e.target.value.trim().toLowerCase();
  isOrderStale = true;
  redraw.now();
});
document.getElementById("version").textContent = `v${config.version}`;
connect();
