// The page's event stream (shared with the profile's other tabs by stream.js): connection
// state, the header, and dispatch by event type.
import { clock, duration } from "./format.js";
import { scheduler } from "./frame.js";
import * as charts from "./charts.js";
import * as panels from "./panels.js";
import * as logs from "./logs.js";
import * as alerts from "./alerts.js";
import * as stream from "./stream.js";
import { config } from "./config.js";

const $ = (id) => document.getElementById(id);
const RESET_SHOWN_MS = 2500; // "reset" stays up this long, so it is seen, then back to "live"

const handlers = new Map();
/** Register fn(payload, id) for an event type; "clear" is ours: a reset is starting. */
function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}
function emit(type, payload, id) {
  for (const fn of handlers.get(type) || []) fn(payload, id);
}

// ---- header ---------------------------------------------------------------------------
const header = { lastTs: 0, uptime: null, dirty: false, shownSecond: 0 };
const scheduleHeader = scheduler(drawHeader);
let resetAt = 0;

function setState(state) {
  const node = $("conn-state");
  if (node.dataset.state === state) return;
  node.dataset.state = state;
  node.textContent = state;
  node.title = state === "reconnecting" ? "connection lost; the browser retries by itself" : "";
}

function touch() {
  header.lastTs = Date.now() / 1000;
  if (resetAt && Date.now() - resetAt > RESET_SHOWN_MS) { resetAt = 0; setState("live"); }
  // The header shows whole seconds: under a log storm, redraw it once a second, not per event.
  const changed = header.dirty || Math.floor(header.lastTs) !== header.shownSecond;
  if (changed) scheduleHeader();
}

function drawHeader() {
  header.dirty = false;
  header.shownSecond = Math.floor(header.lastTs);
  $("last-event").textContent = clock(header.lastTs);
  $("last-event").dateTime = new Date(header.lastTs * 1000).toISOString();
  if (header.uptime != null) $("uptime").textContent = duration(header.uptime);
}

on("hello", (info) => {
  $("host").textContent = info.host;
  document.title = `${info.host} · sse-monitor`;
  $("version").textContent = `v${info.version}`;
});
on("metrics", (m) => { header.uptime = m.uptime_s; header.dirty = true; });
on("clear", () => { header.uptime = null; $("uptime").textContent = "–"; });

// ---- the stream -----------------------------------------------------------------------
// stream.js delivers each event once, in order, whether this tab holds the EventSource or
// another tab forwards it.
function showState(state) {
  if (state === "live" && resetAt) return; // "reset" stays up for a moment
  setState(state);
}

function receive(type, payload, id) {
  if (type === "reset") {
    resetAt = Date.now();
    setState("reset");
    emit("clear");
    emit("hello", payload, id);
    charts.loadHistory();
  } else {
    if (type === "hello" && !resetAt) setState("live");
    emit(type, payload, id);
  }
  touch();
}

for (const module of [charts, panels, logs, alerts]) module.install(on);
charts.onPick(logs.showMoment);
charts.loadHistory();
stream.start({ url: config.events_url, retryMs: config.retry_ms || 3000, deliver: receive, showState });
