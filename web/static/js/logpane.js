// One log source's tab and pane: lines batched per frame, filter, levels, follow/pause, status;
// scrolling above the oldest line loads earlier ones (/api/logs), and a moment can be shown.
import { clock, el } from "./format.js";
import { apiUrl, config } from "./config.js";
import { scheduler } from "./frame.js";
import { levelOf, parseFilter } from "./text.js";

const MAX_LINES = 5000;
// Lines live in blocks of this many, each with CSS containment: a new line lays out and paints
// its block, not all 5,000 lines (at 1,000 lines/s that was most of the main thread).
const BLOCK_LINES = 100;
const PLAIN_BLOCKS = 2; // 200 lines: more than a pane shows, and the browser's margin around it
// A quiet log's line shows at the next frame; under a storm the pane redraws at most this
// often (nobody reads 1,000 lines a second, and every redraw lays out and paints).
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
    this.following = true;
    this.newWhilePaused = 0;
    this.unread = 0;
    this.active = false;
    this.filter = null;
    this.schedule = scheduler(() => this.flush(), { minIntervalMs: MIN_REDRAW_MS });
    this.expectedTop = 0;
    this.count = 0; // lines (and gap marks) in the pane
    // The events in the pane, oldest first, as [id, lines still shown]: the oldest id is where
    // scrolling back continues from. Without ids (a forwarded event), nothing is loaded.
    this.events = [];
    this.olderId = null; // continue scrolling back from here; null: nothing older is known
    this.loading = false;
    this.detached = false; // the pane no longer holds the newest lines (scrolled far back, a moment)
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
    this.lines = el("div", "log-lines");
    this.lines.setAttribute("role", "log");
    this.lines.tabIndex = 0;
    this.lines.dataset.empty = "No lines yet.";
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
    });
    clearBtn.addEventListener("click", () => this.clear());
    this.lines.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.drawFollow();
  }

  /** Queue lines; they reach the DOM at the next animation frame. */
  push(lines, id) {
    if (this.detached) { // not shown: "Live" reloads the newest lines, these among them
      this.newWhilePaused += lines.length;
      this.drawFollow();
      return;
    }
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
    const box = this.lines;
    let block = box.lastElementChild;
    let added = 0;
    for (const item of batch) {
      let node;
      if (typeof item === "string") {
        node = lineNode(item, this.filter);
        added++;
      } else {
        node = el("div", "line gap", `… ${item.gap} lines missed`);
      }
      if (!block || block.childElementCount >= BLOCK_LINES) {
        block = el("div", "block");
        box.append(block);
      }
      block.append(node);
    }
    markFull(box);
    this.count += batch.length;
    const extra = this.count - MAX_LINES;
    if (extra > 0) this.trim(extra);
    if (this.following) this.toBottom();
    else this.newWhilePaused += added;
    this.drawFollow();
    this.drawCount();
    this.badge.hidden = !this.unread;
    this.badge.textContent = this.unread > 999 ? "999+" : String(this.unread);
  }

  /** Drop `count` lines from the top (whole events: scrolling back goes on from the id of
   * the oldest event still shown). */
  trim(count) {
    let drop = 0;
    while (drop < count && this.events.length) drop += this.events.shift()[1];
    if (this.events.length) this.olderId = this.events[0][0];
    count = Math.min(Math.max(count, drop), this.count);
    const box = this.lines;
    const before = this.following ? 0 : box.scrollHeight;
    this.count -= count;
    removeLines(box, count, "first");
    if (!this.following) { // keep what the reader is looking at in place
      box.scrollTop -= before - box.scrollHeight;
      this.expectedTop = box.scrollTop;
    }
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
      const box = this.lines;
      const height = box.scrollHeight;
      const nodes = [];
      for (const ev of page.events) for (const line of ev.lines) nodes.push(lineNode(line, this.filter));
      for (let i = nodes.length; i > 0; i -= BLOCK_LINES) {
        const block = el("div", "block");
        block.append(...nodes.slice(Math.max(0, i - BLOCK_LINES), i));
        box.prepend(block);
      }
      this.events.unshift(...page.events.map((ev) => [ev.id, ev.lines.length]));
      this.count += nodes.length;
      box.scrollTop += box.scrollHeight - height; // the lines that were on screen stay put
      this.expectedTop = box.scrollTop;
      const extra = this.count - MAX_LINES;
      if (extra > 0) { // bounded: the newest end goes, and "Live" brings it back
        this.count -= extra;
        removeLines(box, extra, "last");
        this.detach();
      }
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
    this.lines.replaceChildren();
    this.count = 0;
    this.events = [];
    this.detach();
    let mark = null;
    let block = null;
    for (const ev of page.events) {
      this.events.push([ev.id, ev.lines.length]);
      for (const line of ev.lines) {
        const node = lineNode(line, this.filter);
        if (ev.id === page.at && !mark) { mark = node; node.classList.add("moment"); }
        if (!block || block.childElementCount >= BLOCK_LINES) { block = el("div", "block"); this.lines.append(block); }
        block.append(node);
        this.count++;
      }
    }
    this.olderId = page.before;
    const note = el("div", "line moment-note", `${page.events.length ? "" : "No lines "}around ${clock(ts)}`);
    if (mark) mark.before(note); else this.lines.append(note);
    // Centre the mark in the pane by scrolling the pane alone (scrollIntoView would scroll
    // the page too, away from the chart that was clicked).
    const box = this.lines;
    box.scrollTop += note.getBoundingClientRect().top - box.getBoundingClientRect().top - box.clientHeight / 2;
    this.expectedTop = box.scrollTop;
    this.drawCount();
  }

  detach() {
    this.following = false;
    this.detached = true;
    this.newWhilePaused = 0;
    this.drawFollow();
  }

  drawCount() {
    this.countEl.textContent = `${this.count.toLocaleString()} lines${this.count >= MAX_LINES ? " (max)" : ""}`;
  }

  toBottom() {
    this.lines.scrollTop = this.lines.scrollHeight;
    this.expectedTop = this.lines.scrollTop;
  }

  onScroll() {
    const box = this.lines;
    if (box.scrollTop < LOAD_AT_PX && box.scrollHeight > box.clientHeight) this.loadOlder();
    if (Math.abs(box.scrollTop - this.expectedTop) < 2) return; // ours, not the reader's
    this.expectedTop = box.scrollTop;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    if (this.following && !atBottom) this.pause();
    else if (!this.following && atBottom && !this.detached) this.resume();
  }

  pause() {
    if (this.pending.length) this.schedule.now(); // lines that came before the pause are not "new"
    this.following = false;
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
    this.clear();
    this.detached = false;
    this.following = true;
    for (const ev of page.events) this.push(ev.lines, ev.id);
    this.olderId = page.before ?? this.olderId;
    this.schedule.now();
    if (location.hash.startsWith("#t=")) history.replaceState(null, "", location.pathname + location.search);
  }

  drawFollow() {
    const b = this.followBtn;
    b.dataset.following = String(this.following);
    const paused = this.detached ? "Back to live" : "Paused";
    b.textContent = this.following ? "Live" : `${paused}${this.newWhilePaused ? ` · ${this.newWhilePaused.toLocaleString()} new` : ""}`;
    b.title = this.following ? "Following new lines; space or scrolling up pauses" : "Jump back to the newest line (space)";
  }

  setFilter(text) {
    const { test, error } = parseFilter(text.trim());
    this.filter = test;
    this.error.hidden = !error;
    this.error.textContent = error || "";
    this.input.classList.toggle("invalid", Boolean(error));
    for (const node of this.lines.querySelectorAll(".line:not(.gap)")) {
      node.classList.toggle("filtered", Boolean(test) && !test(node.textContent));
    }
    if (this.following) this.toBottom();
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

  clear() {
    this.pending = [];
    this.lines.replaceChildren();
    this.count = 0;
    this.events = [];
    this.newWhilePaused = 0;
    this.unread = 0;
    this.schedule.now();
  }
}

/** One line's node: text (never HTML), its level's class, filtered or not. */
function lineNode(text, filter) {
  const node = el("div", "line");
  node.textContent = text;
  const level = levelOf(text);
  if (level) node.classList.add(`lvl-${level}`);
  if (filter && !filter(text)) node.classList.add("filtered");
  return node;
}

/**
 * Every block but the last PLAIN_BLOCKS is laid out only when in view (".full", main.css),
 * marked before the frame lays them out. The last ones, where the view is when following,
 * always lay out: a block marked as it filled up came into view unlaid-out at once, and
 * laying it out then took a second layout pass every redraw (#17).
 */
function markFull(box) {
  let block = box.lastElementChild;
  for (let i = 0; block && i < PLAIN_BLOCKS; i++) block = block.previousElementSibling;
  while (block && !block.classList.contains("full")) {
    block.classList.add("full");
    block = block.previousElementSibling;
  }
}

/** Remove `count` lines from the `first` or `last` end of a pane's blocks. */
function removeLines(box, count, end) {
  while (count > 0) { // whole blocks, then lines of the next one
    const block = end === "first" ? box.firstElementChild : box.lastElementChild;
    if (!block) return;
    const n = block.childElementCount;
    if (n <= count) {
      block.remove();
      count -= n;
    } else {
      const range = document.createRange();
      if (end === "first") {
        range.setStartBefore(block.firstChild);
        range.setEndAfter(block.children[count - 1]);
      } else {
        range.setStartBefore(block.children[n - count]);
        range.setEndAfter(block.lastChild);
      }
      range.deleteContents();
      count = 0;
    }
  }
}
