// Log panes, one per source (tabs): routing of log/status/gap events, and the keyboard.
import { LogPane } from "./logpane.js";

const panes = new Map(); // name → LogPane
let active = null;
const tabsBox = () => document.getElementById("log-tabs");
const panesBox = () => document.getElementById("log-panes");

function pane(name) {
  let p = panes.get(name);
  if (!p) {
    p = new LogPane(name, select);
    panes.set(name, p);
    tabsBox().append(p.tab);
    panesBox().append(p.pane);
    if (!active) select(name);
    showEmpty();
  }
  return p;
}

function select(name) {
  active = name;
  for (const [n, p] of panes) p.setActive(n === name);
}

function showEmpty() {
  const none = panes.size === 0;
  document.getElementById("no-logs").hidden = !none;
  document.getElementById("logs").classList.toggle("empty-logs", none);
}

let jumped = false;

/** Every pane shows the lines around `ts` (epoch seconds); the URL says so (#t=), so the
 * moment can be shared as a link. */
export function showMoment(ts) {
  history.replaceState(null, "", `#t=${ts.toFixed(3)}`);
  for (const p of panes.values()) p.showMoment(ts);
}

function hello(info) {
  const names = (info.sources || []).filter((s) => s.kind !== "metrics").map((s) => s.name);
  for (const [name, p] of panes) {
    if (!names.includes(name)) { p.remove(); panes.delete(name); }
  }
  if (active && !panes.has(active)) active = null;
  for (const name of names) pane(name);
  if (!active && names.length) select(names[0]);
  showEmpty();
  const moment = /^#t=(\d{1,12}(?:\.\d+)?)$/.exec(location.hash);
  if (moment && !jumped) { // a shared link to a moment: once, on the first hello
    jumped = true;
    showMoment(Number(moment[1]));
  }
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
  const p = panes.get(active);
  if (!p) return;
  if (e.key === "/" && e.type === "keydown") {
    e.preventDefault();
    p.input.focus();
    p.input.select();
  } else if (e.key === " ") {
    // also on keyup: a focused button would otherwise take the space as a click
    e.preventDefault();
    if (e.type === "keydown" && !e.repeat) (p.following ? p.pause() : p.resume());
  }
}

/** Register with main.js's dispatch. */
export function install(on) {
  on("hello", hello);
  on("clear", () => { for (const p of panes.values()) p.clear(); });
  on("log", (ev, id) => { if (ev.source && Array.isArray(ev.lines)) pane(ev.source).push(ev.lines, id); });
  on("status", (st) => { if (st.kind === "log" && st.source) pane(st.source).status(st); });
  // A gap marks the panes only when log lines were lost (no longer in their files): other
  // events a slow client missed are not lines (the charts ask their history again, and the
  // latest status of each source comes again with the gap).
  on("gap", (g) => {
    if (g.lines === 0) return;
    for (const p of panes.values()) p.gap(g.lines ?? g.missed ?? "?");
  });
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKey);
}
