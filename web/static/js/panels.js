// Disk usage bars and the top-processes table, from the latest metrics event.
import { bytes, el } from "./format.js";
import { scheduler } from "./frame.js";

let latest = null;
let drawn = { disks: "", procs: "" };
let sortBy = "cpu";
const schedule = scheduler(draw);

function draw() {
  const disks = latest?.disks || [];
  const procs = latest?.processes || {};
  const disksKey = JSON.stringify(disks);
  if (disksKey !== drawn.disks) { drawn.disks = disksKey; drawDisks(disks); }
  const rows = (sortBy === "cpu" ? procs.top_cpu : procs.top_memory) || [];
  const procsKey = sortBy + JSON.stringify(rows);
  if (procsKey !== drawn.procs) { drawn.procs = procsKey; drawProcs(rows, procs); }
}

function level(pct) {
  return pct >= 90 ? "crit" : pct >= 80 ? "warn" : "ok";
}

function drawDisks(disks) {
  const box = document.getElementById("disk-usage");
  const items = disks.map((d) => {
    const row = el("div", "disk");
    row.dataset.mount = d.mount;
    row.dataset.level = level(d.percent);
    row.title = `${d.device} (${d.fstype}) mounted on ${d.mount}`;
    const head = el("div", "disk-head");
    head.append(el("span", "disk-mount", d.mount), el("span", "disk-pct", `${d.percent.toFixed(1)}%`));
    const bar = el("div", "bar");
    const fill = el("div", "bar-fill");
    fill.style.width = `${Math.min(100, Math.max(0, d.percent))}%`;
    bar.append(fill);
    const foot = el("div", "disk-foot muted",
      `${bytes(d.used)} used of ${bytes(d.total)} · ${bytes(d.free)} free · ${d.device} ${d.fstype}`);
    row.append(head, bar, foot);
    return row;
  });
  if (!items.length) items.push(el("p", "empty", latest ? "No real filesystems reported." : "Waiting for metrics…"));
  box.replaceChildren(...items);
}

function drawProcs(rows, procs) {
  const body = document.querySelector("#procs tbody");
  body.replaceChildren(...rows.map((p) => {
    const tr = el("tr");
    tr.dataset.pid = p.pid;
    const name = el("td", "proc-name", p.name);
    name.title = `${p.name} (pid ${p.pid}, ${p.user ?? "?"})`;
    tr.append(el("td", "num", String(p.pid)), name, el("td", "proc-user", p.user ?? "–"),
      el("td", "num", p.cpu_percent == null ? "–" : p.cpu_percent.toFixed(1)), el("td", "num", bytes(p.rss)));
    return tr;
  }));
  const note = document.getElementById("procs-note");
  note.textContent = procs.count != null ? `${procs.count} processes` : "";
}

/** Register with main.js's dispatch. */
export function install(on) {
  on("metrics", (m) => { latest = m; schedule(); });
  on("clear", () => { latest = null; drawn = { disks: "", procs: "" }; schedule(); });
  for (const button of document.querySelectorAll("[data-sort]")) {
    button.addEventListener("click", () => {
      sortBy = button.dataset.sort;
      for (const b of document.querySelectorAll("[data-sort]")) b.setAttribute("aria-pressed", String(b === button));
      schedule();
    });
  }
  schedule();
}
