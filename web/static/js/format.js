// Number and time formatting shared by the dashboard's modules.
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB"; null → "–". */
export function bytes(n, digits = 1) {
  if (n == null || !Number.isFinite(n)) return "–";
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  const shown = i === 0 ? Math.round(v) : v.toFixed(v >= 100 ? 0 : digits);
  return `${n < 0 ? "-" : ""}${shown} ${UNITS[i]}`;
}

/** A rate in bytes per second, for axes and legends. */
export const rate = (n) => (n == null ? "–" : `${bytes(n)}/s`);

export function percent(n, digits = 1) {
  return n == null || !Number.isFinite(n) ? "–" : `${n.toFixed(digits)}%`;
}

/** 273000 s → "3d 3h 50m". */
export function duration(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** Unix seconds → local "HH:MM:SS". */
export function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

/** Unix seconds → "HH:MM:SS" today, else "Mon 24 HH:MM". */
export function when(ts) {
  const d = new Date(ts * 1000);
  if (d.toDateString() === new Date().toDateString()) return clock(ts);
  return d.toLocaleString([], { weekday: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
}

/** Compact numbers for axes: 0.25, 3, 1.2k. */
export function short(n) {
  if (n == null) return "–";
  const a = Math.abs(n);
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return `${+n.toFixed(a < 10 ? 2 : 0)}`;
}

/** Set a node's text only if it changed: an unchanged text costs no style or layout. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** One element, with a class and text (never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}
