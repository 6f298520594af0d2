// One log source's tab and pane: lines batched per frame, filter, levels, follow/pause, status;
// scrolling above the oldest line loads earlier ones (/api/logs), and a moment can be shown.
// The pane's lines are data (rows.js); only the rows in view are in the DOM.
import { clock, el, setText } from "./format.js";
import { apiUrl, config } from "./config.js";
import { scheduler } from "./frame.js";
import { compareIds, parseId } from "./ids.js";
import { GAP, LINE as LINE_KIND, NOTE, Rows } from "./rows.js";
import { levelOf, parseFilter } from "./text.js";

const MAX_LINES = 5000;
const ROW_PX = 18; // a line's height unwrapped: main.css's .line line-height
// Rows drawn above and below the view: a scroll of up to this many shows drawn rows at once.
const OVERSCAN = 20;
const PAD_PX = 8; // .log-lines' padding, top and bottom together
const LINE_PAD_PX = 10; // .line's padding, left and right each
const WRAP_PAD_PX = 34; // .wrap .line's padding, left and right together
// A quiet log's line shows at the next frame; under a storm the pane redraws at most this
// often (nobody reads 1,000 lines a second).
const MIN_REDRAW_MS = 100;
const STATE_LABELS = { following: "following", waiting: "waiting for file", error: "error" };
// Scrolled this close to the top, the pane asks for this many earlier lines.
const LOAD_AT_PX = 40;
const PAGE_LINES = 500;
const MOMENT_LINES = 200; // lines shown before (and after) a chosen moment

export class LogPane {
  constructor(name, onSelect) {
    this.name = name;
    this.pending = [];
    this.rows = new Rows(ROW_PX);
    this.following = true;
    this.newWhilePaused = 0;
    this.unread = 0;
    this.active = false;
    this.schedule = scheduler(() => this.flush(), { minIntervalMs: MIN_REDRAW_MS });
    // Where the pane is scrolled to (px), as it last put itself or the reader scrolled it: a
    // scroll event elsewhere is the reader's.
    this.top = 0;
    this.viewH = 0; // the pane's size (px), from a ResizeObserver: 0 while hidden
    this.viewW = 0;
    this.drawn = { top: -1, height: -1, width: -1, empty: null }; // what the DOM shows, to write only changes
    this.charWidth = 0;
    // The events in the pane, oldest first, as [id, lines still shown]: the oldest id is where
    // scrolling back continues from. Without ids (a forwarded event), nothing is loaded.
    this.events = [];
    this.olderId = null; // continue scrolling back from here; null: nothing older is known
    this.loading = false;
    this.detached = false; // the pane no longer holds the newest lines (scrolled far back, a moment)
    this.newest = null; // [run, seq] of the newest event in the pane: one no newer is had
    this.held = []; // [lines, id] of each live event while detached: the newest MAX_LINES lines
    this.heldLines = 0;
    this.buildTab(onSelect);
    this.buildPane();
  }

  buildTab(onSelect) {
    this.tab = el("button", "log-tab");
    this.tab.type = "button";
    this.tab.dataset.source = this.name;
    this.tab.setAttribute("role", "tab");
    this.dot = el("span", "dot");
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.tab.append(this.dot, el("span", "tab-name", this.name), this.badge);
    this.tab.addEventListener("click", () => onSelect(this.name));
  }

  buildPane() {
    this.pane = el("section", "log-pane");
    this.pane.dataset.source = this.name;
    this.pane.hidden = true;
    const bar = el("div", "log-toolbar");
    this.input = el("input", "log-filter");
    Object.assign(this.input, { type: "search", placeholder: "Filter: text or /regex/   ( / )", spellcheck: false, autocomplete: "off" });
    this.input.setAttribute("aria-label", `filter ${this.name} lines`);
    this.error = el("span", "log-filter-error");
    this.error.hidden = true;
    this.followBtn = el("button", "log-follow");
    this.followBtn.title = "Follow new lines (space)";
    this.wrapBtn = el("button", "log-wrap", "Wrap");
    this.wrapBtn.setAttribute("aria-pressed", "false");
    this.wrapBtn.title = "Wrap long lines";
    const clearBtn = el("button", "log-clear", "Clear");
    clearBtn.title = "Clear this pane (new lines still arrive)";
    for (const b of [this.followBtn, this.wrapBtn, clearBtn]) b.type = "button";
    const filterBox = el("div", "filter-box");
    filterBox.append(this.input, this.error);
    bar.append(filterBox, this.followBtn, this.wrapBtn, clearBtn);
    // The rows in view sit in `win`, moved to their place in `canvas`, which is as tall as
    // every shown row together: the scrollbar is the whole pane's.
    this.lines = el("div", "log-lines");
    this.lines.setAttribute("role", "log");
    this.lines.tabIndex = 0;
    this.lines.dataset.empty = "No lines yet.";
    this.canvas = el("div", "log-canvas");
    this.win = el("div", "log-window");
    this.canvas.append(this.win);
    this.lines.append(this.canvas);
    const foot = el("div", "log-foot");
    this.statusEl = el("div", "log-status", "starting");
    this.statusEl.dataset.state = "starting";
    this.countEl = el("div", "log-count muted", "0 lines");
    foot.append(this.statusEl, this.countEl);
    this.pane.append(bar, this.lines, foot);

    this.input.addEventListener("input", () => this.setFilter(this.input.value));
    this.input.addEventListener("keydown", (e) => { if (e.key === "Escape") { this.input.value = ""; this.setFilter(""); this.input.blur(); } });
    this.followBtn.addEventListener("click", () => (this.following ? this.pause() : this.resume()));
    this.wrapBtn.addEventListener("click", () => {
      const on = this.pane.classList.toggle("wrap");
      this.wrapBtn.setAttribute("aria-pressed", String(on));
      this.reflow();
    });
    clearBtn.addEventListener("click", () => this.clear());
    this.lines.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.sizes = new ResizeObserver(() => this.resized());
    this.sizes.observe(this.lines);
    this.drawFollow();
  }

  /** Queue lines; they reach the pane at the next animation frame. */
  push(lines, id) {
    const at = parseId(id);
    // The pane has it already: a "Live" reload's page held it while it was still on its way.
    if (at && this.newest && compareIds(at, this.newest) <= 0) return;
    if (this.detached) { // not shown: "Live" reloads the newest lines, then adds these
      this.held.push([lines, id]);
      this.heldLines += lines.length;
      while (this.heldLines - this.held[0][0].length >= MAX_LINES) this.heldLines -= this.held.shift()[0].length;
      this.newWhilePaused += lines.length;
      this.drawFollow();
      return;
    }
    if (at) this.newest = at;
    if (id) {
      this.events.push([id, lines.length]);
      if (this.events.length === 1) this.olderId = id;
    }
    for (const line of lines) this.pending.push(typeof line === "string" ? line : String(line?.text ?? line));
    if (this.pending.length > MAX_LINES) this.pending.splice(0, this.pending.length - MAX_LINES);
    if (!this.active) this.unread += lines.length;
    this.schedule();
  }

  gap(missed) {
    this.pending.push({ gap: missed });
    this.schedule();
  }

  // Called through this.schedule (or .now()), never directly: the storm throttle times from it.
  flush() {
    const batch = this.pending;
    this.pending = [];
    this.rows.append(batch);
    let top = this.top;
    const extra = this.rows.count - MAX_LINES;
    if (extra > 0) top -= this.trim(extra); // keep what the reader is looking at in place
    if (!this.following) this.newWhilePaused += batch.filter((it) => typeof it === "string").length;
    // Text first: scrollTo lays out, and a write after it would take a second layout.
    this.drawFollow();
    this.drawCount();
    this.badge.hidden = !this.unread;
    setText(this.badge, this.unread > 999 ? "999+" : String(this.unread));
    this.scrollTo(this.following ? Infinity : top);
  }

  /** Drop `count` rows from the top (whole events: scrolling back goes on from the id of the
   * oldest event still shown); the height (px) of those that were shown. */
  trim(count) {
    let drop = 0;
    while (drop < count && this.events.length) drop += this.events.shift()[1];
    if (this.events.length) this.olderId = this.events[0][0];
    return this.rows.drop(Math.max(count, drop));
  }

  /** Put the pane at `top` (px; Infinity: the newest row at the bottom) with the rows there
   * drawn. Hidden, the canvas is sized, and the rest waits until the pane is shown. */
  scrollTo(top) {
    this.top = top;
    if (!this.viewH) {
      this.sizeCanvas(); // shown later at its full size: its scrollbar does not appear then
      return;
    }
    this.place(top);
    if (this.rows.estimate) this.settle();
  }

  /** Draw the rows at `top` and scroll there (one layout, after every write); drawn again if
   * the browser put the pane elsewhere (a horizontal scrollbar came or went). */
  place(top) {
    const box = this.lines;
    top = Math.max(0, Math.min(top, this.rows.height + PAD_PX - this.viewH));
    this.draw(top);
    box.scrollTop = top;
    this.viewH = box.clientHeight;
    this.top = box.scrollTop;
    if (Math.abs(this.top - top) >= ROW_PX) this.draw(this.top);
  }

  /** Wrapped rows: the drawn ones measured; if that moved rows, the first in view is kept where
   * it was (the newest at the bottom when following). Bounded: a second pass at most. */
  settle() {
    for (let pass = 0; pass < 2; pass++) {
      const anchor = this.rows.indexAt(this.top);
      const offset = this.top - this.rows.topOf(anchor);
      let moved = false;
      for (const node of this.win.children) moved = this.rows.measured(node.row, node.offsetHeight) || moved;
      if (!moved) return;
      this.place(this.following ? Infinity : this.rows.topOf(anchor) + offset);
    }
  }

  /** The rows from OVERSCAN above the view at `top` to OVERSCAN below it, as the pane's only
   * row nodes. A node stays with its row: rows that stay in view are not written again (a
   * selection in them holds, and a screen reader hears only the rows that come). */
  draw(top) {
    const rows = this.rows, shown = rows.shown, win = this.win;
    const first = Math.max(0, rows.indexAt(top) - OVERSCAN);
    const end = Math.min(shown.length, rows.indexAt(top + this.viewH) + 1 + OVERSCAN);
    const wanted = new Set();
    for (let i = first; i < end; i++) wanted.add(shown[i]);
    const spare = [];
    for (const node of [...win.children]) {
      if (!wanted.has(node.row)) {
        node.remove();
        spare.push(node);
      }
    }
    // The nodes left show rows of the range, in order: insert the rows they lack between them.
    let node = win.firstElementChild;
    for (let i = first; i < end; i++) {
      if (node && node.row === shown[i]) {
        node = node.nextElementSibling;
        continue;
      }
      const fresh = spare.pop() || document.createElement("div");
      paint(fresh, shown[i]);
      win.insertBefore(fresh, node);
    }
    const y = rows.topOf(first);
    if (y !== this.drawn.top) win.style.transform = `translateY(${(this.drawn.top = y)}px)`;
    this.sizeCanvas();
  }

  /** The canvas as tall as every shown row, and (unwrapped) as wide as the longest line, so
   * the sideways scroll does not change with the rows drawn. */
  sizeCanvas() {
    const drawn = this.drawn, rows = this.rows;
    const height = rows.height, empty = !rows.items.length;
    const width = rows.estimate ? 0 : Math.ceil(rows.widest() * this.charPx()) + 2 * LINE_PAD_PX;
    if (height !== drawn.height) this.canvas.style.height = `${(drawn.height = height)}px`;
    if (width !== drawn.width) this.canvas.style.minWidth = `${(drawn.width = width)}px`;
    if (empty !== drawn.empty) this.lines.classList.toggle("none", (drawn.empty = empty));
  }

  /** The monospace font's character width (px), measured once in the pane when shown. */
  charPx() {
    if (!this.charWidth && this.viewW) {
      const probe = el("span", null, "0".repeat(100));
      probe.style.cssText = "position: absolute; visibility: hidden; white-space: pre";
      this.win.append(probe);
      this.charWidth = probe.getBoundingClientRect().width / 100;
      probe.remove();
    }
    return this.charWidth || 7.2;
  }

  /** The pane was shown, hidden or resized: wrapped rows are measured again, and drawn. */
  resized() {
    const box = this.lines;
    const width = box.clientWidth;
    this.viewH = width ? box.clientHeight : 0;
    if (!width) return; // hidden: what was measured holds until it is shown again
    if (width !== this.viewW && this.rows.estimate) {
      this.viewW = width;
      this.reflow();
    } else {
      this.viewW = width;
      this.scrollTo(this.following ? Infinity : this.top);
    }
  }

  /** Wrap turned on or off, or the width changed: rows' heights start again from an
   * estimate, the first row in view kept at the top. */
  reflow() {
    const anchor = this.rows.indexAt(this.top);
    const wrap = this.pane.classList.contains("wrap");
    this.rows.setEstimate(wrap ? estimator(this.viewW, this.charPx()) : null);
    this.scrollTo(this.following ? Infinity : this.rows.topOf(anchor));
  }

  /** Scrolled to the top: earlier lines from the server, above the oldest shown. */
  async loadOlder() {
    if (this.loading || !this.olderId) return;
    this.loading = true;
    try {
      const url = apiUrl(config.logs_url, { source: this.name, before: this.olderId, limit: PAGE_LINES });
      const resp = await fetch(url);
      if (!resp.ok) return;
      const page = await resp.json();
      this.olderId = page.before;
      if (!page.events.length) return;
      this.schedule.now();
      const added = this.rows.prepend(page.events.flatMap((ev) => ev.lines));
      this.events.unshift(...page.events.map((ev) => [ev.id, ev.lines.length]));
      if (this.rows.count > MAX_LINES) { // bounded: the newest end goes, and "Live" brings it back
        while (this.rows.count > MAX_LINES) this.rows.drop(this.rows.count - MAX_LINES, "end");
        this.detach();
      }
      this.scrollTo(this.top + added); // the lines that were on screen stay put
      this.drawCount();
    } finally {
      this.loading = false;
    }
  }

  /** Show the lines around a moment (a chart point, a #t= link), the first at or after it
   * marked; the pane is off the live edge until "Live". */
  async showMoment(ts) {
    const url = apiUrl(config.logs_url, {
      source: this.name,
      at: ts.toFixed(3),
      before: MOMENT_LINES,
      after: MOMENT_LINES,
    });
    const resp = await fetch(url);
    if (!resp.ok) return;
    const page = await resp.json();
    this.pending = [];
    this.events = page.events.map((ev) => [ev.id, ev.lines.length]);
    this.newest = null; // live events are held from now on, for "Live"
    this.held = [];
    this.heldLines = 0;
    this.detach();
    const texts = [];
    let markAt = -1;
    for (const ev of page.events) {
      if (ev.id === page.at && markAt < 0) markAt = texts.length;
      texts.push(...ev.lines);
    }
    const note = `${page.events.length ? "" : "No lines "}around ${clock(ts)}`;
    const at = this.rows.replace(texts, markAt, note);
    this.olderId = page.before;
    this.scrollTo(this.rows.topOf(at) - this.viewH / 2); // the note and the mark mid-pane
    this.drawCount();
  }

  detach() {
    this.following = false;
    this.detached = true;
    this.newWhilePaused = 0;
    this.drawFollow();
  }

  drawCount() {
    const count = this.rows.count;
    setText(this.countEl, `${count.toLocaleString()} lines${count >= MAX_LINES ? " (max)" : ""}`);
  }

  onScroll() {
    const box = this.lines;
    const top = box.scrollTop;
    if (Math.abs(top - this.top) < 1) return; // where the pane put itself: drawn already
    this.top = top;
    // The reader's scroll: decided before drawing, as a wrapped row measured then must not
    // move the reader back to the newest line.
    const atBottom = box.scrollHeight - top - box.clientHeight < 4;
    if (this.following && !atBottom) this.pause(true);
    else if (!this.following && atBottom && !this.detached) return this.resume();
    if (top < LOAD_AT_PX && box.scrollHeight > box.clientHeight) this.loadOlder();
    this.draw(this.top);
    if (this.rows.estimate) this.settle();
  }

  /** Stop following. Lines that came before are not "new": drawn first, at the bottom (a
   * key or the button) or where the reader scrolled to (`scrolled`). */
  pause(scrolled = false) {
    if (scrolled) this.following = false;
    if (this.pending.length) this.schedule.now();
    this.following = false;
    this.newWhilePaused = 0;
    this.drawFollow();
  }

  resume() {
    if (this.detached) return this.reload();
    this.following = true;
    this.newWhilePaused = 0;
    this.schedule.now();
  }

  /** Back to live from far back or a moment: the newest lines again, then follow. */
  async reload() {
    const resp = await fetch(apiUrl(config.logs_url, { source: this.name, limit: PAGE_LINES }));
    const page = resp.ok ? await resp.json() : { events: [], before: null };
    const held = this.held; // what came live meanwhile: the part newer than the page follows it
    this.clear();
    this.detached = false;
    this.following = true;
    for (const ev of page.events) this.push(ev.lines, ev.id);
    for (const [lines, id] of held) this.push(lines, id);
    this.olderId = page.before ?? this.olderId;
    this.schedule.now();
    if (location.hash.startsWith("#t=")) history.replaceState(null, "", location.pathname + location.search);
  }

  drawFollow() {
    const b = this.followBtn;
    b.dataset.following = String(this.following);
    const paused = this.detached ? "Back to live" : "Paused";
    setText(b, this.following ? "Live" : `${paused}${this.newWhilePaused ? ` · ${this.newWhilePaused.toLocaleString()} new` : ""}`);
    b.title = this.following ? "Following new lines; space or scrolling up pauses" : "Jump back to the newest line (space)";
  }

  setFilter(text) {
    const { test, error } = parseFilter(text.trim());
    this.error.hidden = !error;
    this.error.textContent = error || "";
    this.input.classList.toggle("invalid", Boolean(error));
    const anchor = this.rows.shown[this.rows.indexAt(this.top)];
    this.rows.setFilter(test);
    // paused: the first row the filter keeps from the one that was at the top
    this.scrollTo(this.following ? Infinity : this.rows.topOf(this.rows.indexFromSeq(anchor?.seq ?? 0)));
  }

  status(st) {
    const label = STATE_LABELS[st.state] || st.state;
    const detail = st.detail || "";
    // "waiting for /x.log to appear" already says the state
    const parts = detail.toLowerCase().startsWith(st.state) ? [detail] : [label, ...(detail ? [detail] : [])];
    if (st.state === "error" && st.retry_in_s) parts.push(`retry in ${Math.round(st.retry_in_s)}s`);
    if (st.mode) parts.push(st.mode);
    if (st.change) parts.push(`${st.change} at ${clock(st.ts || Date.now() / 1000)}`);
    if (st.errors?.length) parts.push(st.errors.join("; "));
    this.statusEl.textContent = parts.join(" · ");
    this.statusEl.dataset.state = st.state;
    this.statusEl.title = this.statusEl.textContent;
    this.lines.dataset.empty = st.state === "following" ? "No lines yet: new lines appear here as they are written."
      : `No lines: ${parts.join(" · ")}`;
    this.dot.dataset.state = st.state;
    this.tab.title = `${this.name}: ${label}`;
  }

  setActive(active) {
    this.active = active;
    this.pane.hidden = !active;
    this.tab.setAttribute("aria-selected", String(active));
    if (active) {
      this.unread = 0;
      this.schedule.now();
    }
  }

  /** The pane is gone (its source was removed). */
  remove() {
    this.sizes.disconnect();
    this.tab.remove();
    this.pane.remove();
  }

  clear() {
    this.pending = [];
    this.rows.clear();
    this.events = [];
    this.newest = null;
    this.held = [];
    this.heldLines = 0;
    this.newWhilePaused = 0;
    this.unread = 0;
    this.schedule.now();
  }
}

/** Draw row `r` in `node`: its text (never HTML), and its level's or kind's class. */
function paint(node, r) {
  node.row = r;
  node.textContent = r.text;
  node.className = r.cls || (r.cls = rowClass(r));
  node.dataset.seq = r.seq; // the row's place, for reading a pane's lines in order (tests)
}

function rowClass(r) {
  if (r.kind === GAP) return "line gap";
  if (r.kind === NOTE) return "line moment-note";
  const level = levelOf(r.text);
  return `line${level ? ` lvl-${level}` : ""}${r.mark ? " moment" : ""}`;
}

/** A wrapped row's height before it is drawn: its characters over the pane's width. */
function estimator(width, charPx) {
  const perRow = Math.max(1, Math.floor((width - WRAP_PAD_PX) / charPx));
  return (r) => (r.kind === LINE_KIND ? ROW_PX * Math.max(1, Math.ceil(r.text.length / perRow)) : ROW_PX);
}
