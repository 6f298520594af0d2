// The alerts panel and the header's count of firing alerts.
import { duration, el, when } from "./format.js";
import { scheduler } from "./frame.js";

const MAX_RESOLVED = 20;
const RANK = { critical: 0, warning: 1, info: 2 };
const latest = new Map(); // rule → the latest alert payload
let problem = ""; // the engine's own status detail: rules that can never fire
let targets = []; // notification targets' health (the notifier's status)
const schedule = scheduler(draw);

function item(a, now) {
  const node = el("li", "alert");
  node.dataset.rule = a.rule;
  node.dataset.state = a.state;
  node.dataset.severity = a.severity || "info";
  const head = el("div", "alert-head");
  head.append(el("span", "sev", a.severity || "info"), el("span", "alert-rule", a.rule));
  const since = a.since ?? now;
  const time = el("span", "alert-time muted", a.state === "firing"
    ? `since ${when(since)} · ${duration(now - since)}`
    : `resolved ${when(since)}`);
  head.append(time);
  node.append(head, el("div", "alert-msg", a.message || ""));
  return node;
}

function draw() {
  const now = Date.now() / 1000;
  const all = [...latest.values()];
  const firing = all.filter((a) => a.state === "firing")
    .sort((a, b) => (RANK[a.severity] ?? 3) - (RANK[b.severity] ?? 3) || b.since - a.since);
  const resolved = all.filter((a) => a.state !== "firing")
    .sort((a, b) => b.since - a.since).slice(0, MAX_RESOLVED);
  const list = document.getElementById("alerts");
  const items = [...firing, ...resolved].map((a) => item(a, now));
  if (!items.length) items.push(el("li", "empty", "No alerts. Rules are [[alerts]] tables in the config file."));
  if (problem) items.unshift(el("li", "alert-problem", problem));
  list.replaceChildren(...items);
  const count = document.getElementById("alerts-count");
  count.textContent = String(firing.length);
  count.dataset.level = firing.some((a) => a.severity === "critical") ? "crit" : firing.length ? "warn" : "ok";
  document.getElementById("alerts-summary").textContent =
    firing.length ? `${firing.length} firing` : resolved.length ? "all resolved" : "";
  drawTargets();
}

function targetState(t) {
  if (t.last_error_at && !(t.last_success > t.last_error_at)) return "failing";
  return t.pending ? "pending" : "ok";
}

/** One chip per notification target: name and kind, its health in the title. */
function drawTargets() {
  const list = document.getElementById("notify-targets");
  list.hidden = !targets.length;
  list.replaceChildren(...targets.map((t) => {
    const state = targetState(t);
    const note = state === "failing" ? " · failing" : t.pending ? ` · ${t.pending} waiting` : "";
    const node = el("li", "target", `${t.name} (${t.kind})${note}`);
    node.dataset.state = state;
    node.dataset.name = t.name;
    const last = t.last_success ? `last sent ${when(t.last_success)}` : "nothing sent yet";
    const error = t.last_error ? `; last error ${when(t.last_error_at)}: ${t.last_error}` : "";
    node.title = `${t.where}: ${state}; ${last}${error}; sent ${t.sent}, failed ${t.failed}, dropped ${t.dropped}`;
    return node;
  }));
}

/** Register with main.js's dispatch. */
export function install(on) {
  on("alert", (a) => { if (a && a.rule) { latest.set(a.rule, a); schedule(); } });
  on("status", (st) => {
    if (st.kind === "alerts") { problem = st.state === "error" ? st.detail : ""; schedule(); }
    if (st.kind === "notify" && Array.isArray(st.targets)) { targets = st.targets; schedule(); }
  });
  on("clear", () => { latest.clear(); problem = ""; targets = []; schedule(); });
  // keeps the "for 3m" of firing alerts current
  setInterval(() => { if ([...latest.values()].some((a) => a.state === "firing")) schedule(); }, 10_000);
  schedule();
}
