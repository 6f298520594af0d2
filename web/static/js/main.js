// Owns the page's one EventSource: connection state, the header, and dispatch by event type.
import { clock, duration } from "./format.js";
import * as charts from "./charts.js";
import * as panels from "./panels.js";
import * as logs from "./logs.js";
import * as alerts from "./alerts.js";

const config = JSON.parse(document.body.dataset.config);
const $ = (id) => document.getElementById(id);
const TYPES = ["hello", "reset", "gap", "status", "metrics", "log", "alert"];
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
const header = { lastTs: 0, uptime: null, dirty: false, frame: 0 };
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
  if (!header.frame) header.frame = requestAnimationFrame(drawHeader);
}

function drawHeader() {
  header.frame = 0;
  $("last-event").textContent = clock(header.lastTs);
  $("last-event").dateTime = new Date(header.lastTs * 1000).toISOString();
  if (header.uptime != null) $("uptime").textContent = duration(header.uptime);
}

on("hello", (info) => {
  $("host").textContent = info.host;
  document.title = `${info.host} · sse-monitor`;
  $("version").textContent = `v${info.version}`;
});
on("metrics", (m) => { header.uptime = m.uptime_s; });
on("clear", () => { header.uptime = null; $("uptime").textContent = "–"; });

// ---- the stream -----------------------------------------------------------------------
// Ids are "<run-id>-<seq>", strictly increasing: a log event at or below the last one seen
// is a replay after a reconnect and must not be shown twice.
let lastLogId = null;
const parseId = (id) => id.split("-").map(Number);
function isNewer(id) {
  if (!id || !lastLogId) return true;
  const [run, seq] = parseId(id), [lastRun, lastSeq] = lastLogId;
  return run > lastRun || (run === lastRun && seq > lastSeq);
}

let source = null;
let lastEventId = "";

function connect() {
  const url = new URL(config.events_url, location.href);
  // A new EventSource cannot send Last-Event-ID: pass it in the query instead.
  if (lastEventId) url.searchParams.set("last_event_id", lastEventId);
  source = new EventSource(url);
  source.addEventListener("open", () => { if (!resetAt) setState("live"); });
  source.addEventListener("error", () => {
    setState("reconnecting");
    if (source.readyState === EventSource.CLOSED) { // HTTP error: the browser gave up
      source = null;
      setTimeout(connect, config.retry_ms || 3000);
    }
  });
  for (const type of TYPES) source.addEventListener(type, (e) => receive(type, e));
}

function receive(type, e) {
  let payload;
  try {
    payload = JSON.parse(e.data);
  } catch {
    return; // not ours to show; the stream goes on
  }
  if (e.lastEventId) lastEventId = e.lastEventId;
  if (type === "log") {
    if (!isNewer(e.lastEventId)) return;
    lastLogId = parseId(e.lastEventId);
  }
  if (type === "reset") {
    resetAt = Date.now();
    setState("reset");
    lastLogId = e.lastEventId ? parseId(e.lastEventId) : null;
    emit("clear");
    emit("hello", payload, e.lastEventId);
    charts.loadHistory();
  } else {
    if (type === "hello" && !resetAt) setState("live");
    emit(type, payload, e.lastEventId);
  }
  touch();
}

for (const module of [charts, panels, logs, alerts]) module.install(on);
charts.loadHistory();
connect();
